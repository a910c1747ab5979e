//! The sharded replay: one reader, N workers, one merger.
//!
//! * The reader reads the capture into reusable batches of a few thousand
//!   frames (no allocation per packet): when the capture is in memory (a
//!   mapped file) a batch holds only where each frame lies in it, and the
//!   workers read the frames in place; a streamed capture's frames are
//!   copied into the batch's buffer. It gives every frame a shard: a hash
//!   of the unordered address pair of the conntrack tuple it will be looked
//!   up under ([`shard_of`]). Both directions of a connection, a helper's
//!   expected connections (same address pair) and an ICMP error (keyed by
//!   the packet it quotes) land in the same shard.
//! * Every worker owns a [`Firewall`] (conntrack table, defrag queues, rule
//!   state) over the shared ruleset, and sees every batch: it processes its
//!   own frames, but runs the capture clock and the conntrack garbage
//!   collector at *every* frame, so its timers and its gc schedule are those
//!   of a single firewall fed the whole capture. That is what makes the output
//!   independent of the shard count.
//! * The merger (the caller's thread) puts rows back in capture order and
//!   hands them, and the conntrack events, to the [`Sink`].
//! * Workers, and the one-worker replay, which reads the same batches on the
//!   caller's thread, look a few packets ahead ([`Lookahead`]) and ask
//!   conntrack to prefetch the index bucket and then the entry each of
//!   those packets will need: a lookup in a table of tens of thousands of
//!   entries otherwise waits on memory at every packet.
//!
//! Workers are plain threads joined by bounded channels rather than rayon
//! tasks: each is a long-lived stage with its own state that blocks on its
//! input, which is what channels are for; rayon's pool is for fork-join work
//! and must not block. The number of batches in flight is fixed, so memory is
//! the live connection tables plus a constant window, whatever the capture
//! size — except while a fragment's row is held: rows behind it wait in the
//! merger until its datagram completes or times out (`ipfrag_time`, 30 s of
//! capture time by default).
//!
//! What it does not do: split traffic that conntrack couples across
//! addresses. Rulesets with global state (`limit`, `recent`, …) and a
//! non-default `nf_conntrack_expect_max` run on one worker (see
//! [`coupling`]). Two couplings are not detected: a fragmented ICMP error
//! (its fragments are keyed by the outer addresses, the reassembled error by
//! the quoted ones) and IPv4 `ipfrag_max_dist`, which counts fragments per
//! source across destinations.

use super::{Firewall, ReplayError, ReplayStats, Sink};
use super::{Progress, RowFormat};
use crate::capture::{CaptureBytes, CaptureError, CaptureReader, Frame, Linktype};
use crate::conntrack::proto::icmp::{self, IcmpClass};
use crate::conntrack::{Conntrack, Event, EventKind, Sysctls, Tuple};
use crate::pipeline::EngineConfig;
use crate::report::Row;
use crate::rules::{RuleState, Ruleset};
use crate::time::Timestamp;
use crate::wire::{self, L4, Packet};
use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

/// Frames per batch.
pub(crate) const BATCH_FRAMES: usize = 4096;
/// A batch is also closed when its frame bytes pass this size.
pub(crate) const BATCH_BYTES: usize = 4 << 20;
/// Most shards (shard numbers are `u16`).
pub const MAX_JOBS: usize = 256;

/// Why a replay must run on one worker, if it must.
pub fn coupling(rules: &Ruleset, cfg: &EngineConfig) -> Option<&'static str> {
    if rules.needs_global_state() {
        return Some(
            "the ruleset uses limit, hashlimit, recent, connlimit or statistic, whose state spans all traffic",
        );
    }
    if cfg.sysctls.expect_max != Sysctls::default().expect_max {
        return Some("nf_conntrack_expect_max is a limit over all connections");
    }
    None
}

/// The shard key of a decoded packet: a hash of the unordered address pair
/// of the tuple conntrack will look up (for an ICMP error, the quoted
/// packet's; for a fragment, the outer one, which is the datagram's).
pub fn packet_key(pkt: &Packet<'_>) -> u64 {
    if pkt.frag.is_none()
        && let L4::Icmp(ic) | L4::Icmpv6(ic) = pkt.l4
        && icmp::classify(pkt.proto, ic.icmp_type) == IcmpClass::Error
        && let Some(Ok(inner)) = pkt.inner()
        && let Some(t) = Tuple::from_inner(&inner)
    {
        return pair_hash(t.src, t.dst);
    }
    pair_hash(pkt.src, pkt.dst)
}

/// The shard key of a frame; frames that do not decode touch no shared state
/// and get key 0.
pub fn frame_key(frame: &Frame<'_>) -> u64 {
    // The common shapes without a full decode: the hint gives up on ICMP
    // errors and fragments, whose keys need the decoder. Where it answers
    // and the decoder would too, the addresses are the same ones.
    if let Some(h) = wire::hint::flow_hint(frame) {
        return pair_hash(h.src, h.dst);
    }
    match wire::decode(frame) {
        Ok(p) => packet_key(&p),
        Err(_) => 0,
    }
}

/// Shard number for a key among `n` shards.
pub fn shard_of(key: u64, n: usize) -> usize {
    ((u128::from(key) * n as u128) >> 64) as usize
}

fn addr_bits(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v) => u128::from(u32::from(v)),
        IpAddr::V6(v) => u128::from(v) ^ (1 << 127),
    }
}

/// Order-independent, platform-independent mix of two addresses.
fn pair_hash(a: IpAddr, b: IpAddr) -> u64 {
    let (x, y) = (addr_bits(a), addr_bits(b));
    let (lo, hi) = if x <= y { (x, y) } else { (y, x) };
    let mut h = 0x9e37_79b9_7f4a_7c15u64;
    for w in [lo as u64, (lo >> 64) as u64, hi as u64, (hi >> 64) as u64] {
        h = mix(h ^ w);
    }
    h
}

/// splitmix64's finaliser.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Events of the periodic gc come before those of the packet at whose time
/// the gc ran.
const PHASE_SWEEP: u8 = 0;
const PHASE_PACKET: u8 = 1;

/// A conntrack event with the capture position it belongs to.
#[derive(Debug)]
pub(crate) struct Tagged {
    packet: u64,
    phase: u8,
    pub(crate) event: Event,
}

/// Puts events into their canonical order: by packet, gc events before the
/// packet's own. The gc reaps entries in hash-table order, which depends on
/// what else the table holds; gc events are therefore ordered by connection
/// (its expectations before the entry itself), which is the same whatever
/// the shard count. A packet's own events keep the order they happened in.
pub(crate) fn order_events(v: &mut [Tagged]) {
    fn rank(k: EventKind) -> u8 {
        match k {
            EventKind::ExpectDestroy | EventKind::ExpectNew => 0,
            _ => 1,
        }
    }
    v.sort_by(|a, b| {
        (a.packet, a.phase).cmp(&(b.packet, b.phase)).then_with(|| {
            if a.phase != PHASE_SWEEP {
                return std::cmp::Ordering::Equal;
            }
            let key = |t: &Tagged| {
                let e = &t.event;
                (
                    e.conn_uid,
                    rank(e.kind),
                    e.orig.proto,
                    e.orig.src,
                    e.orig.dst,
                    e.orig.sport,
                    e.orig.dport,
                )
            };
            key(a).cmp(&key(b))
        })
    });
}

/// The conntrack gc at capture position `index`, on the capture-wide clock.
/// Every shard runs it at every frame, so all shards reap on the same
/// schedule as one firewall would.
pub(crate) fn sweep_at(
    fw: &mut Firewall<'_>,
    now: Timestamp,
    index: u64,
    events: Option<&mut Vec<Tagged>>,
) {
    fw.ct.sweep(now, index);
    if let Some(ev) = events {
        ev.extend(fw.ct.drain_events().map(|event| Tagged {
            packet: index,
            phase: PHASE_SWEEP,
            event,
        }));
    }
}

/// One frame of this shard, after [`sweep_at`] for its position.
pub(crate) fn process_at(
    fw: &mut Firewall<'_>,
    frame: &Frame<'_>,
    now: Timestamp,
    events: Option<&mut Vec<Tagged>>,
    emit: &mut impl FnMut(Row),
) {
    fw.advance_clock(now);
    fw.process(frame, frame.interface_name, emit);
    if let Some(ev) = events {
        ev.extend(fw.ct.drain_events().map(|event| Tagged {
            packet: frame.index,
            phase: PHASE_PACKET,
            event,
        }));
    }
}

/// Packets ahead of the current one whose conntrack index bucket is
/// prefetched; their entries are prefetched at half this distance, when the
/// bucket has arrived. Far enough to cover a DRAM miss per stage at a few
/// hundred nanoseconds per packet, near enough that the lines are still in
/// cache when the packet comes.
const PREFETCH_AHEAD: usize = 8;

/// Walks a list of frame positions alongside the processing loop and
/// prefetches the connection-table lines of the frames ahead (see
/// [`crate::conntrack::Conntrack::prefetch`]). Only speed depends on it.
pub(crate) struct Lookahead<'a> {
    positions: &'a [usize],
    /// How many frames of `positions` have been processed.
    done: usize,
    /// Table hashes of the frames ahead, by position modulo the distance:
    /// each is computed once, for the bucket, and used again for the entry.
    hashes: [Option<u64>; PREFETCH_AHEAD],
}

impl<'a> Lookahead<'a> {
    pub(crate) fn new(positions: &'a [usize]) -> Self {
        Lookahead {
            positions,
            done: 0,
            hashes: [None; PREFETCH_AHEAD],
        }
    }

    /// Called before processing the next frame of `positions`; `frame`
    /// gives the frame at a position.
    #[inline]
    pub(crate) fn step<'f>(&mut self, fw: &Firewall<'_>, frame: impl Fn(usize) -> Frame<'f>) {
        let hash_at = |k: usize| {
            let p = *self.positions.get(k)?;
            wire::hint::flow_hint(&frame(p)).map(|h| Conntrack::flow_hash(&h))
        };
        let k = self.done;
        self.done += 1;
        if k == 0 {
            // Warm-up: the first frames get both stages at once.
            for i in 0..PREFETCH_AHEAD {
                self.hashes[i] = hash_at(i);
                if let Some(h) = self.hashes[i] {
                    fw.ct.prefetch(h, false);
                    fw.ct.prefetch(h, true);
                }
            }
        }
        // Frame k's slot is free again: its entry was prefetched 4 steps ago.
        let far = hash_at(k + PREFETCH_AHEAD);
        self.hashes[k % PREFETCH_AHEAD] = far;
        if let Some(h) = far {
            fw.ct.prefetch(h, false);
        }
        if let Some(h) = self.hashes[(k + PREFETCH_AHEAD / 2) % PREFETCH_AHEAD] {
            fw.ct.prefetch(h, true);
        }
    }
}

/// Releases one firewall's rows in the order of its own frames: rows of
/// held fragments come out late, and the rows behind them wait.
#[derive(Default)]
pub(crate) struct LocalOrder {
    /// Own capture indices whose row is not out yet, in order.
    own: VecDeque<u64>,
    waiting: BTreeMap<u64, Row>,
}

impl LocalOrder {
    pub(crate) fn expect(&mut self, index: u64) {
        self.own.push_back(index);
    }

    pub(crate) fn push(&mut self, row: Row, out: &mut Vec<Row>) {
        if self.own.front() != Some(&row.packet) {
            self.waiting.insert(row.packet, row);
            return;
        }
        self.own.pop_front();
        out.push(row);
        while !self.waiting.is_empty() {
            let Some(next) = self.own.front() else { break };
            let Some(r) = self.waiting.remove(next) else {
                break;
            };
            self.own.pop_front();
            out.push(r);
        }
    }

    /// Everything left, at the end of the capture (rows of frames that
    /// produced none are skipped; that does not happen).
    pub(crate) fn drain(&mut self, out: &mut Vec<Row>) {
        self.own.clear();
        out.extend(std::mem::take(&mut self.waiting).into_values());
    }
}

/// Where a frame's bytes lie: in the capture's memory when it is mapped,
/// in its batch's buffer otherwise.
#[derive(Debug, Clone, Copy)]
struct Slot {
    index: u64,
    ts: Timestamp,
    linktype: Linktype,
    orig_len: u32,
    interface: u32,
    start: usize,
    end: usize,
    shard: u16,
    /// The frame's interface name: 1 + its position in the batch's
    /// `ifnames`, or 0 for none.
    ifname: u16,
}

/// Frames of the capture, shared read-only by all workers and recycled when
/// the last one is done with it.
#[derive(Default)]
pub(crate) struct Batch {
    /// The capture in memory, which the slots point into; `None` when it is
    /// streamed and the frames are copied into `data`.
    capture: Option<Arc<CaptureBytes>>,
    data: Vec<u8>,
    slots: Vec<Slot>,
    /// pcapng interface names the frames of this batch carry (a name can
    /// change within a batch where a new section starts).
    ifnames: Vec<Arc<str>>,
}

impl Batch {
    /// The batch's frames, in capture order.
    pub(crate) fn frames(&self) -> impl ExactSizeIterator<Item = Frame<'_>> {
        self.slots.iter().map(|s| self.frame(s))
    }

    /// The `i`th frame of the batch.
    pub(crate) fn frame_at(&self, i: usize) -> Frame<'_> {
        self.frame(&self.slots[i])
    }

    fn frame(&self, s: &Slot) -> Frame<'_> {
        Frame {
            index: s.index,
            ts: s.ts,
            linktype: s.linktype,
            orig_len: s.orig_len,
            interface: s.interface,
            interface_name: match s.ifname {
                0 => None,
                n => self.ifnames.get(usize::from(n) - 1).map(|n| &**n),
            },
            data: match &self.capture {
                Some(c) => &c[s.start..s.end],
                None => &self.data[s.start..s.end],
            },
        }
    }
}

/// What workers and the reader tell the merger.
enum Msg {
    /// Shards of the frames of the next batch, in capture order.
    Map(Vec<u16>),
    /// Rows (in the shard's frame order) and events of one batch; `counted`
    /// is false for the final flush, which carries no events.
    Out {
        rows: Vec<Row>,
        /// The rows' formatted bytes, back to back, when the sink takes
        /// formatted rows (`ends[i]` is where row i's bytes end).
        text: Vec<u8>,
        ends: Vec<u32>,
        events: Vec<Tagged>,
        counted: bool,
        shard: u16,
    },
    Done(Box<ShardTotals>),
}

struct ShardTotals {
    bad_l4_checksums: u64,
    checked_l4_checksums: u64,
    conntrack_entries: usize,
    rule_state: RuleState,
}

/// Runs the replay on `jobs` workers (at least 2; one worker runs inline in
/// [`super::replay_with`]).
pub(crate) fn replay_sharded(
    reader: CaptureReader,
    rules: &Ruleset,
    cfg: &EngineConfig,
    jobs: usize,
    progress: Option<Progress<'_>>,
    sink: &mut dyn Sink,
) -> Result<ReplayStats, ReplayError> {
    let jobs = jobs.clamp(1, MAX_JOBS);
    let in_flight = 2 * jobs + 2;
    let (merge_tx, merge_rx) = sync_channel::<Msg>(4 * jobs + 4);
    let (pool_tx, pool_rx) = sync_channel::<Batch>(in_flight);
    let fmt = sink.formatter();
    std::thread::scope(|scope| {
        let mut work_txs = Vec::with_capacity(jobs);
        for id in 0..jobs {
            let (tx, rx) = sync_channel::<Arc<Batch>>(in_flight);
            work_txs.push(tx);
            let (out, pool) = (merge_tx.clone(), pool_tx.clone());
            std::thread::Builder::new()
                .name(format!("ctsim-shard-{id}"))
                .spawn_scoped(scope, move || {
                    worker(id as u16, rules, cfg, fmt, rx, pool, out)
                })
                .expect("spawning a worker thread");
        }
        drop(pool_tx);
        let reader_out = merge_tx.clone();
        drop(merge_tx);
        let read = std::thread::Builder::new()
            .name("ctsim-reader".into())
            .spawn_scoped(scope, move || {
                read(
                    reader, jobs, in_flight, work_txs, pool_rx, reader_out, progress,
                )
            })
            .expect("spawning the reader thread");
        let merged = merge(jobs, merge_rx, cfg.trace, sink);
        let read = match read.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        let mut stats = merged?;
        match read {
            Ok(n) => stats.frames = n,
            Err((n, e)) => {
                stats.frames = n;
                return Err(e.into());
            }
        }
        Ok(stats)
    })
}

/// Reads frames into `b` (emptied first) until it is full or the capture
/// ends, and gives each its shard among `jobs`, also pushed to `map`.
/// Returns whether the batch filled up (more may follow); on a capture
/// error the frames before it are in the batch.
pub(crate) fn fill_batch(
    reader: &mut CaptureReader,
    b: &mut Batch,
    jobs: usize,
    map: &mut Vec<u16>,
) -> Result<bool, CaptureError> {
    b.data.clear();
    b.slots.clear();
    b.ifnames.clear();
    b.capture = reader.bytes().cloned();
    // Frame bytes in the batch, copied or not: a batch of a mapped capture
    // spans about as much of it as a copied batch would hold.
    let mut bytes = 0;
    // The last name per interface id, as an `ifname` value.
    let mut last_names: Vec<u16> = Vec::new();
    while b.slots.len() < BATCH_FRAMES && bytes < BATCH_BYTES {
        let Some(f) = reader.next_frame()? else {
            return Ok(false);
        };
        let ifname = match f.interface_name {
            None => 0,
            Some(name) => {
                let id = f.interface as usize;
                let known = last_names.get(id).copied().unwrap_or(0);
                if known != 0 && *b.ifnames[usize::from(known) - 1] == *name {
                    known
                } else {
                    b.ifnames.push(Arc::from(name));
                    let n = b.ifnames.len() as u16;
                    if last_names.len() <= id {
                        last_names.resize(id + 1, 0);
                    }
                    last_names[id] = n;
                    n
                }
            }
        };
        let shard = if jobs > 1 {
            shard_of(frame_key(&f), jobs) as u16
        } else {
            0
        };
        let (start, end) = match &b.capture {
            Some(c) => {
                let at = c
                    .span_of(f.data)
                    .expect("a frame of a capture in memory lies in it");
                (at.start, at.end)
            }
            None => {
                let start = b.data.len();
                b.data.extend_from_slice(f.data);
                (start, b.data.len())
            }
        };
        bytes += end - start;
        b.slots.push(Slot {
            index: f.index,
            ts: f.ts,
            linktype: f.linktype,
            orig_len: f.orig_len,
            interface: f.interface,
            start,
            end,
            shard,
            ifname,
        });
        map.push(shard);
    }
    Ok(true)
}

/// The reader stage: fills batches, keys frames, hands every batch to every
/// worker. Returns the number of frames read (and the error that ended it).
fn read(
    mut reader: CaptureReader,
    jobs: usize,
    in_flight: usize,
    work_txs: Vec<SyncSender<Arc<Batch>>>,
    pool: Receiver<Batch>,
    merger: SyncSender<Msg>,
    progress: Option<Progress<'_>>,
) -> Result<u64, (u64, CaptureError)> {
    let mut allocated = 0;
    let mut frames = 0u64;
    let mut failed = None;
    let capture = reader.bytes().cloned();
    // Frames of every batch in flight stay mapped (one more batch: the one
    // being filled).
    reader.keep_behind((in_flight + 1) * (BATCH_BYTES + (64 << 10)));
    while failed.is_none() {
        let mut b = if allocated < in_flight {
            allocated += 1;
            Batch {
                capture: capture.clone(),
                data: match capture {
                    Some(_) => Vec::new(),
                    None => Vec::with_capacity(BATCH_BYTES + (64 << 10)),
                },
                slots: Vec::with_capacity(BATCH_FRAMES),
                ifnames: Vec::new(),
            }
        } else {
            match pool.recv() {
                Ok(b) => b,
                Err(_) => break,
            }
        };
        let mut map = Vec::with_capacity(BATCH_FRAMES);
        let full = match fill_batch(&mut reader, &mut b, jobs, &mut map) {
            Ok(full) => full,
            Err(e) => {
                failed = Some(e);
                false
            }
        };
        frames += b.slots.len() as u64;
        if b.slots.is_empty() {
            break;
        }
        if let Some(p) = progress {
            p(frames, reader.offset());
        }
        if merger.send(Msg::Map(map)).is_err() {
            break;
        }
        // The last worker to finish a batch sends it back to the pool, so
        // the reader must not keep a reference itself.
        let b = Arc::new(b);
        let (last, rest) = work_txs.split_last().expect("at least one worker");
        for tx in rest {
            let _ = tx.send(Arc::clone(&b));
        }
        let _ = last.send(b);
        if !full {
            break;
        }
    }
    match failed {
        Some(e) => Err((frames, e)),
        None => Ok(frames),
    }
}

/// One worker: its own firewall over every batch.
fn worker(
    id: u16,
    rules: &Ruleset,
    cfg: &EngineConfig,
    fmt: Option<RowFormat>,
    input: Receiver<Arc<Batch>>,
    pool: SyncSender<Batch>,
    out: SyncSender<Msg>,
) {
    // Formatting here, in parallel, leaves the merger only byte copies.
    let format = |rows: &[Row]| {
        let mut text = Vec::new();
        let mut ends = Vec::new();
        if let Some(f) = fmt {
            text.reserve(rows.len() * 112);
            ends.reserve(rows.len());
            for r in rows {
                f(r, &mut text);
                ends.push(text.len() as u32);
            }
        }
        (text, ends)
    };
    let mut fw = Firewall::new(rules, cfg);
    let mut order = LocalOrder::default();
    // The capture-wide clock, as a single firewall's `Clock` would run.
    let mut now = Timestamp(0);
    let trace = cfg.trace;
    let mut own: Vec<usize> = Vec::with_capacity(BATCH_FRAMES);
    for batch in input {
        let mut rows = Vec::with_capacity(BATCH_FRAMES);
        let mut events = Vec::new();
        own.clear();
        own.extend(
            (batch.slots.iter().enumerate())
                .filter(|(_, s)| s.shard == id)
                .map(|(i, _)| i),
        );
        let mut ahead = Lookahead::new(&own);
        for s in &batch.slots {
            now = now.max(s.ts);
            sweep_at(&mut fw, now, s.index, trace.then_some(&mut events));
            if s.shard == id {
                ahead.step(&fw, |i| batch.frame(&batch.slots[i]));
                order.expect(s.index);
                let frame = batch.frame(s);
                process_at(
                    &mut fw,
                    &frame,
                    now,
                    trace.then_some(&mut events),
                    &mut |row| order.push(row, &mut rows),
                );
            }
        }
        fw.expire_fragments(now, &mut |row| order.push(row, &mut rows));
        if let Some(b) = Arc::into_inner(batch) {
            let _ = pool.send(b);
        }
        if trace || !rows.is_empty() {
            let (text, ends) = format(&rows);
            let msg = Msg::Out {
                rows,
                text,
                ends,
                events,
                counted: true,
                shard: id,
            };
            if out.send(msg).is_err() {
                return;
            }
        }
    }
    let mut rows = Vec::new();
    fw.finish(&mut |row| order.push(row, &mut rows));
    order.drain(&mut rows);
    let (text, ends) = format(&rows);
    let _ = out.send(Msg::Out {
        rows,
        text,
        ends,
        events: Vec::new(),
        counted: false,
        shard: id,
    });
    let _ = out.send(Msg::Done(Box::new(ShardTotals {
        bad_l4_checksums: fw.bad_l4_checksums,
        checked_l4_checksums: fw.checked_l4_checksums,
        conntrack_entries: fw.ct.len(),
        rule_state: fw.rule_state,
    })));
}

/// The merger: rows in capture order, events batch by batch in canonical
/// order.
fn merge(
    jobs: usize,
    rx: Receiver<Msg>,
    trace: bool,
    sink: &mut dyn Sink,
) -> Result<ReplayStats, ReplayError> {
    let mut map: VecDeque<u16> = VecDeque::new();
    // Per shard: rows waiting for their turn, with the length of their
    // formatted bytes (0 when the sink formats itself), and those bytes.
    let mut queues: Vec<VecDeque<(Row, u32)>> = (0..jobs).map(|_| VecDeque::new()).collect();
    let mut texts: Vec<VecDeque<u8>> = (0..jobs).map(|_| VecDeque::new()).collect();
    let mut scratch: Vec<u8> = Vec::new();
    // Events of batch n (counted per shard): shard outputs arrive in batch
    // order per shard, so the k-th output of each shard is batch k.
    let mut ev_seen = vec![0usize; jobs];
    let mut ev_batches: VecDeque<(usize, Vec<Tagged>)> = VecDeque::new();
    let mut ev_base = 0usize;
    let mut stats = ReplayStats {
        shards: jobs,
        ..ReplayStats::default()
    };
    let mut rule_state: Option<RuleState> = None;
    let mut done = 0;
    while done < jobs {
        let Ok(msg) = rx.recv() else { break };
        match msg {
            Msg::Map(m) => map.extend(m),
            Msg::Out {
                rows,
                text,
                ends,
                events,
                counted,
                shard,
            } => {
                let q = &mut queues[shard as usize];
                if ends.is_empty() {
                    q.extend(rows.into_iter().map(|r| (r, 0)));
                } else {
                    let mut start = 0u32;
                    for (r, end) in rows.into_iter().zip(ends) {
                        q.push_back((r, end - start));
                        start = end;
                    }
                    texts[shard as usize].extend(text);
                }
                if counted && trace {
                    let k = ev_seen[shard as usize] - ev_base;
                    ev_seen[shard as usize] += 1;
                    while ev_batches.len() <= k {
                        ev_batches.push_back((0, Vec::new()));
                    }
                    let slot = &mut ev_batches[k];
                    slot.0 += 1;
                    slot.1.extend(events);
                    while ev_batches.front().is_some_and(|b| b.0 == jobs) {
                        let (_, mut evs) = ev_batches.pop_front().expect("checked");
                        ev_base += 1;
                        order_events(&mut evs);
                        sink.events(&mut evs.into_iter().map(|t| t.event))?;
                    }
                }
            }
            Msg::Done(t) => {
                done += 1;
                stats.bad_l4_checksums += t.bad_l4_checksums;
                stats.checked_l4_checksums += t.checked_l4_checksums;
                stats.conntrack_entries += t.conntrack_entries;
                match &mut rule_state {
                    Some(r) => r.merge(&t.rule_state),
                    None => rule_state = Some(t.rule_state),
                }
            }
        }
        while let Some(&s) = map.front() {
            let Some((row, len)) = queues[s as usize].pop_front() else {
                break;
            };
            map.pop_front();
            if len == 0 {
                sink.row(&row)?;
            } else {
                let text = &mut texts[s as usize];
                let len = len as usize;
                let (a, _) = text.as_slices();
                if a.len() >= len {
                    sink.formatted_row(&row, &a[..len])?;
                } else {
                    scratch.clear();
                    scratch.extend(text.range(..len));
                    sink.formatted_row(&row, &scratch)?;
                }
                text.drain(..len);
            }
        }
    }
    stats.rule_state = rule_state;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::RowVerdict;

    fn v4(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn pair_hash_ignores_direction() {
        let (a, b) = (v4("10.0.0.1"), v4("192.0.2.7"));
        assert_eq!(pair_hash(a, b), pair_hash(b, a));
        assert_ne!(pair_hash(a, b), pair_hash(a, v4("192.0.2.8")));
        let (c, d) = (v4("2001:db8::1"), v4("2001:db8::2"));
        assert_eq!(pair_hash(c, d), pair_hash(d, c));
    }

    /// The shortcut in `frame_key` gives the key the decoder gives, on
    /// every frame of the repo's captures that decodes.
    #[test]
    fn frame_key_shortcut_is_the_decoders_key() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/captures");
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        paths.extend(
            std::fs::read_dir(format!("{dir}/crafted"))
                .unwrap()
                .flatten()
                .map(|e| e.path()),
        );
        let mut checked = 0;
        for p in paths
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng"))
        {
            let mut r = CaptureReader::open(p).unwrap();
            while let Ok(Some(f)) = r.next_frame() {
                if let Ok(pkt) = wire::decode(&f) {
                    assert_eq!(
                        frame_key(&f),
                        packet_key(&pkt),
                        "{} frame {}",
                        p.display(),
                        f.index
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked > 500, "only {checked} frames");
    }

    #[test]
    fn shard_of_spreads_and_stays_in_range() {
        let mut counts = [0usize; 4];
        for i in 0..4000u32 {
            let k = pair_hash(IpAddr::from(i.to_be_bytes()), v4("10.9.9.9"));
            let s = shard_of(k, 4);
            counts[s] += 1;
        }
        for c in counts {
            assert!(c > 800, "uneven spread {counts:?}");
        }
        assert_eq!(shard_of(u64::MAX, 3), 2);
        assert_eq!(shard_of(0, 3), 0);
    }

    #[test]
    fn local_order_holds_rows_behind_a_late_one() {
        let mut o = LocalOrder::default();
        let mut out = Vec::new();
        for i in [3, 5, 9] {
            o.expect(i);
        }
        o.push(Row::new(5, Timestamp(0)), &mut out);
        o.push(Row::new(9, Timestamp(0)), &mut out);
        assert!(out.is_empty());
        let mut late = Row::new(3, Timestamp(0));
        late.verdict = RowVerdict::Defrag;
        o.push(late, &mut out);
        let got: Vec<u64> = out.iter().map(|r| r.packet).collect();
        assert_eq!(got, [3, 5, 9]);
    }

    fn ev(packet: u64, phase: u8, kind: EventKind, uid: u64) -> Tagged {
        let t = Tuple {
            src: v4("10.0.0.1"),
            dst: v4("10.0.0.2"),
            sport: 1,
            dport: 2,
            proto: 6,
        };
        Tagged {
            packet,
            phase,
            event: Event {
                packet,
                time: Timestamp(0),
                kind,
                conn_uid: uid,
                orig: t,
                reply: t,
                tcp_state: None,
                status: Default::default(),
                timeout: 0,
                helper: None,
            },
        }
    }

    #[test]
    fn gc_events_sort_by_connection_packet_events_keep_order() {
        let mut v = vec![
            ev(7, PHASE_PACKET, EventKind::Update, 5),
            ev(7, PHASE_PACKET, EventKind::New, 1),
            ev(7, PHASE_SWEEP, EventKind::Destroy, 4),
            ev(7, PHASE_SWEEP, EventKind::Destroy, 2),
            ev(7, PHASE_SWEEP, EventKind::ExpectDestroy, 4),
            ev(3, PHASE_PACKET, EventKind::New, 3),
        ];
        order_events(&mut v);
        let got: Vec<(u64, u8, &str, u64)> = v
            .iter()
            .map(|t| (t.packet, t.phase, t.event.kind.name(), t.event.conn_uid))
            .collect();
        assert_eq!(
            got,
            [
                (3, PHASE_PACKET, "NEW", 3),
                (7, PHASE_SWEEP, "DESTROY", 2),
                (7, PHASE_SWEEP, "EXP_DESTROY", 4),
                (7, PHASE_SWEEP, "DESTROY", 4),
                (7, PHASE_PACKET, "UPDATE", 5),
                (7, PHASE_PACKET, "NEW", 1),
            ]
        );
    }
}
