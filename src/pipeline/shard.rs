//! The sharded replay: N workers, one merger.
//!
//! * Every frame gets a shard: a hash of the unordered address pair of the
//!   conntrack tuple it will be looked up under ([`shard_of`]). Both
//!   directions of a connection, a helper's expected connections (same
//!   address pair) and an ICMP error (keyed by the packet it quotes) land
//!   in the same shard.
//! * Every worker owns a [`Firewall`] (conntrack table, defrag queues, rule
//!   state) over the shared ruleset, and sees every frame: it processes its
//!   own frames, but runs the capture clock and the conntrack garbage
//!   collector at *every* frame, so its timers and its gc schedule are those
//!   of a single firewall fed the whole capture. That is what makes the output
//!   independent of the shard count.
//! * How the capture is read, in small batches (no allocation per packet;
//!   a mapped file's frames are read in place):
//!   - a pcap file in memory (mapped), the common case, is read in turns
//!     from 4 workers on ([`Relay`], `RELAY_MIN_JOBS`): batch n is read and
//!     keyed by worker n mod N, which hands it to the others. Each frame is
//!     read and keyed once, whatever N;
//!   - with fewer workers, and for any other file (pcapng, whose sections
//!     and interfaces make reading a matter of state, or `--no-mmap`),
//!     every worker reads the file for itself and keeps its own frames;
//!   - a stream (a pipe) can be read only once: a reader thread fills larger
//!     batches, copying the frames, and hands each to every worker;
//!   - a single worker gets its batches from a reader thread too: reading,
//!     simulating and formatting (in the merger, below) then run as a
//!     pipeline, on three cores where there are.
//! * The merger (the caller's thread) puts rows back in capture order —
//!   runs of one shard's consecutive rows in one piece — and hands them, and
//!   the conntrack events, to the [`Sink`]. A relayed capture's merger gets
//!   the batches too and follows their frames ([`write_in_sequence`]);
//!   otherwise it takes the lowest pending row while no shard can still
//!   send a lower one ([`write_ready`]). From 3 workers on, when the sink
//!   takes formatted rows, the workers format and tally their rows and the
//!   merger only copies bytes; with one or two, the merger has the time to
//!   format them itself. Even one worker runs here, so that the formatting
//!   and the writes are not on its core.
//! * A mapped capture gets a [`Prefaulter`] thread: it faults pages in a few
//!   MiB ahead of the workers and unmaps what they have all left behind, so
//!   that neither is on a worker's time.
//! * Workers, and the one-worker replay, look a few packets ahead
//!   ([`Lookahead`]) and ask conntrack to prefetch the index bucket and then
//!   the entry each of those packets will need: a lookup in a table of tens
//!   of thousands of entries otherwise waits on memory at every packet.
//!
//! Workers are plain threads joined by bounded channels rather than rayon
//! tasks: each is a long-lived stage with its own state that blocks on its
//! input, which is what channels are for; rayon's pool is for fork-join work
//! and must not block. Memory is the live connection tables plus a constant
//! window, whatever the capture size: a worker that reads for itself sends
//! its rows every few batches and waits once a few such chunks are still
//! unwritten (`CHUNKS_AHEAD`), so no worker runs far ahead of the others;
//! relayed workers read at most `RELAY_AHEAD` rounds of turns ahead, and
//! none can pass a batch another has not read; the reader thread of a
//! stream has a fixed number of batches in flight; and the pages of a
//! mapped capture behind the readers are released. The
//! exception is a held fragment's row: the rows behind it wait in the merger
//! until its datagram completes or times out (`ipfrag_time`, 30 s of capture
//! time by default).
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
use crate::capture::{
    CaptureBytes, CaptureError, CaptureReader, Frame, Linktype, Prefaulter, ResumePoint,
};
use crate::conntrack::proto::icmp::{self, IcmpClass};
use crate::conntrack::{Conntrack, Event, EventKind, Sysctls};
use crate::pipeline::EngineConfig;
use crate::report::Row;
use crate::report::summary::Summary;
use crate::rules::{RuleState, Ruleset};
use crate::time::Timestamp;
use crate::wire::{self, L4, Packet};
use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};

/// Frames per batch where the thread that reads a batch also processes it:
/// small enough that the frames read are still in its cache when their
/// turn comes.
pub(crate) const OWN_BATCH_FRAMES: usize = 256;
/// Frames per batch that the reader thread hands to the workers: larger,
/// to keep hand-offs rare.
const SHARED_BATCH_FRAMES: usize = 1024;
/// A batch is also closed when its frame bytes pass this size.
const BATCH_BYTES: usize = 4 << 20;
/// What a streamed batch's buffer holds: its bytes and the frame that
/// passed the limit.
const BATCH_BUFFER: usize = BATCH_BYTES + (64 << 10);
/// Capture bytes a reader keeps mapped behind it: the batch being read and
/// the one before, whose frames are still being processed.
pub(crate) const KEEP_BEHIND: usize = 2 * BATCH_BUFFER;
/// Most shards (shard numbers are `u16`).
pub const MAX_JOBS: usize = 256;

/// How far ahead of the furthest reader a mapped capture's pages are
/// faulted in (see [`Prefaulter`]): a few batches.
pub(crate) const PREFAULT_AHEAD: usize = 2 * BATCH_BUFFER;

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
///
/// An ICMP error goes by the quoted addresses whenever the quoted IP header
/// can be read, even where the quoted transport header is too short for a
/// tuple: the row of such an error still names the entry it is about (see
/// [`crate::conntrack::Conntrack::peek`]), which lives in that shard.
pub fn packet_key(pkt: &Packet<'_>) -> u64 {
    if pkt.frag.is_none()
        && let L4::Icmp(ic) | L4::Icmpv6(ic) = pkt.l4
        && icmp::classify(pkt.proto, ic.icmp_type) == IcmpClass::Error
        && let Some(Ok(inner)) = pkt.inner()
    {
        return pair_hash(inner.src, inner.dst);
    }
    pair_hash(pkt.src, pkt.dst)
}

/// The shard key of a frame; frames that do not decode touch no shared state
/// and get key 0.
pub fn frame_key(frame: &Frame<'_>) -> u64 {
    key_with_hint(frame, wire::hint::flow_hint(frame).as_ref())
}

/// [`frame_key`], given the frame's flow hint (the reader computes it once,
/// for the key and the table hash).
#[inline]
fn key_with_hint(frame: &Frame<'_>, hint: Option<&wire::hint::FlowHint>) -> u64 {
    // The common shapes without a full decode: the hint gives up on ICMP
    // errors and fragments, whose keys need the decoder. Where it answers
    // and the decoder would too, the addresses are the same ones.
    if let Some(h) = hint {
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
#[inline]
fn pair_hash(a: IpAddr, b: IpAddr) -> u64 {
    // Every worker keys every frame: the common IPv4 pair gets one round.
    if let (IpAddr::V4(a), IpAddr::V4(b)) = (a, b) {
        let (x, y) = (u32::from(a), u32::from(b));
        let (lo, hi) = if x <= y { (x, y) } else { (y, x) };
        return mix((u64::from(lo) << 32) | u64::from(hi));
    }
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

/// How many of its own frames ahead a worker prefetches a frame's bytes.
/// Measured on 2 cores, 1M packets of 828 bytes, `--jobs 1` pinned to one
/// core, the worker thread's CPU time (medians of 7 interleaved runs):
/// 395 ms without, 351 ms at 1, 353 ms at 2, 341 ms at 4. Two leaves the
/// lines in flight a packet's processing ahead of the checksum that reads
/// them, without holding many more.
const FRAME_PREFETCH_AHEAD: usize = 2;

/// Walks a list of frame positions alongside the processing loop and
/// prefetches the connection-table lines of the frames ahead (see
/// [`crate::conntrack::Conntrack::prefetch`]). Only speed depends on it.
pub(crate) struct Lookahead<'a> {
    positions: &'a [usize],
    /// How many frames of `positions` have been processed.
    done: usize,
    /// Table hashes of the frames ahead, by position modulo the distance:
    /// each is looked up once, for the bucket, and used again for the entry.
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

    /// The position `n` frames of `positions` after the one [`Self::step`]
    /// was last called for.
    #[inline]
    pub(crate) fn upcoming(&self, n: usize) -> Option<usize> {
        self.positions.get(self.done + n - 1).copied()
    }

    /// Called before processing the next frame of `positions`; `hash`
    /// gives the conntrack table hash of the frame at a position, if it
    /// has a common shape (see [`Conntrack::flow_hash`]).
    #[inline]
    pub(crate) fn step(&mut self, fw: &Firewall<'_>, hash: impl Fn(usize) -> Option<u64>) {
        let hash_at = |k: usize| hash(*self.positions.get(k)?);
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

    /// Whether `index` is the next row to go out with nothing waiting, in
    /// which case its row counts as out.
    #[inline]
    pub(crate) fn take_if_next(&mut self, index: u64) -> bool {
        let next = self.waiting.is_empty() && self.own.front() == Some(&index);
        if next {
            self.own.pop_front();
        }
        next
    }

    /// The first own index whose row is not out yet.
    pub(crate) fn first(&self) -> Option<u64> {
        self.own.front().copied()
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
    /// Its conntrack table hash, where it was wanted and the frame has a
    /// common shape (see [`Keying::hash_for`]).
    hash: Option<u64>,
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
    /// Relayed reading: the capture ends with this batch.
    last: bool,
}

impl Batch {
    /// The number of frames in the batch.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// A frame's bytes.
    fn bytes(&self, s: &Slot) -> &[u8] {
        match &self.capture {
            Some(c) => &c[s.start..s.end],
            None => &self.data[s.start..s.end],
        }
    }

    /// Starts loading a frame's bytes into the cache: the checksum reads
    /// every byte of a frame, and a frame's bytes are otherwise first
    /// touched there, one memory latency per line.
    #[inline]
    fn prefetch(&self, s: &Slot) {
        for line in self.bytes(s).chunks(64) {
            crate::conntrack::index::prefetch_line(line.as_ptr());
        }
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
            data: self.bytes(s),
        }
    }
}

/// Where a worker's batches come from.
enum Source {
    /// The worker reads the capture itself: a file, which every worker can
    /// open, so that each frame is read on the core that processes it.
    Own(Box<CaptureReader>),
    /// Batches filled by the reader thread, for a stream (a pipe) that only
    /// one reader can read, and for a single worker (the thread takes the
    /// reading off its core); each goes back to `pool` when the last worker
    /// is done with it.
    Shared {
        rx: Receiver<Arc<Batch>>,
        pool: SyncSender<Batch>,
    },
    /// A pcap file in memory, read in turns: see [`Relay`].
    Relay(Box<Relay>),
}

/// Reading in turns ("relayed"): batch n of the capture is read and keyed by
/// worker n mod jobs, which hands it to every other worker and tells the
/// next worker where to go on reading. Every frame is then read and keyed
/// once, not once per worker, and a worker's core fetches from memory the
/// frames of its turns and, in other batches, only its own frames' bytes.
/// Only a pcap file in memory can be read so: its state between records is
/// a place and a count ([`ResumePoint`]).
///
/// A worker takes its turn as soon as it is told, ahead of the batch it is
/// processing (up to [`RELAY_AHEAD`] rounds), so that the others seldom
/// wait for a batch: reading is never stuck behind processing.
struct Relay {
    reader: CaptureReader,
    jobs: usize,
    /// Turns and batches from the other workers.
    inbox: Receiver<Relayed>,
    /// The other workers' inboxes, by number (`None` at this worker's).
    outboxes: Vec<Option<Sender<Relayed>>>,
    /// The merger, which takes rows in the order of the batches' frames.
    merger: SyncSender<Msg>,
    /// Batches received or read, not processed yet, by number.
    ready: BTreeMap<u64, Arc<Batch>>,
    /// This worker's turn, told and not taken yet: the batch's number,
    /// where it starts, and the frames read before it.
    turn: Option<(u64, ResumePoint, u64)>,
    /// The number of the next batch to process.
    next: u64,
    /// This worker read the last batch.
    ended: bool,
    /// This worker has been given the last batch: everyone has had every
    /// batch.
    through: bool,
}

/// What relayed workers tell each other.
enum Relayed {
    /// Batch `n` is yours to read, from `at`; `frames` frames come before.
    Turn {
        n: u64,
        at: ResumePoint,
        frames: u64,
    },
    Batch(u64, Arc<Batch>),
    /// A worker has ended before the capture did (the replay is being torn
    /// down): no more batches will come.
    Gone,
}

impl Drop for Relay {
    fn drop(&mut self) {
        // At the end of the capture the others may still be waiting for a
        // batch another worker is about to send them: only a worker that
        // ends early says so.
        if self.through {
            return;
        }
        for tx in self.outboxes.iter().flatten() {
            let _ = tx.send(Relayed::Gone);
        }
    }
}

/// Rounds of turns a relayed worker reads ahead of the batch it processes.
const RELAY_AHEAD: u64 = 2;

/// Workers from which a pcap file in memory is relayed rather than read by
/// every worker. Relaying saves each worker reading every frame, about 260
/// instructions a frame, but its workers wait for each other's batches.
/// Measured on 2 cores, `--jobs 2` runs about 10% faster with each worker
/// reading (the waits cost more than the reading); counted with callgrind
/// on 200k packets, the busiest worker executes 17% fewer instructions
/// relayed at `--jobs 4`, 30% fewer at 8 and 45% fewer at 16.
const RELAY_MIN_JOBS: usize = 4;

/// What a worker tells the merger.
enum Msg {
    /// This shard's rows of one batch, in its own frame order, and the
    /// batch's events; `counted` is false for the final flush, which
    /// carries no events.
    Out {
        shard: u16,
        chunk: Chunk,
        events: Vec<Tagged>,
        counted: bool,
        /// No later row of this shard has a capture index below this.
        upto: u64,
    },
    Done(Box<ShardTotals>),
    /// Batch `n` of a relayed capture, from the worker that read it: the
    /// merger takes rows in the order of its frames (see
    /// [`write_in_sequence`]).
    Frames(u64, Arc<Batch>),
}

/// Batches whose rows a worker that reads the capture itself sends in one
/// message.
const OWN_GROUP: usize = 8;

/// Chunks of one worker's rows that may wait in the merger, unwritten:
/// workers that read the capture themselves are not held together by
/// anything else, and one that runs ahead must not fill memory with rows
/// that wait for a slower one.
const CHUNKS_AHEAD: usize = 4;

/// Rows of one shard from one batch.
struct Chunk {
    /// Capture index of each row, and where its bytes end in `text` (0
    /// when the sink formats rows itself and `rows` holds them).
    marks: Vec<(u64, u32)>,
    text: Vec<u8>,
    rows: Vec<Row>,
    /// Rows already written.
    next: usize,
}

struct ShardTotals {
    bad_l4_checksums: u64,
    checked_l4_checksums: u64,
    conntrack_entries: usize,
    rule_state: RuleState,
    /// Of the rows this worker formatted (empty when the sink formats).
    tally: Summary,
    /// Frames read and the error that ended the capture, from a worker that
    /// read the capture itself.
    read: Option<(u64, Option<CaptureError>)>,
}

/// One firewall running through batches: the capture-wide clock and the
/// conntrack gc at every frame, this shard's frames processed in order.
/// Both the one-worker replay and the sharded workers are made of it.
pub(crate) struct ShardRun<'r> {
    pub(crate) fw: Firewall<'r>,
    order: LocalOrder,
    ready: Vec<Row>,
    /// The capture-wide clock, as a single firewall's `Clock` would run.
    now: Timestamp,
    own: Vec<usize>,
    id: u16,
    trace: bool,
}

impl<'r> ShardRun<'r> {
    pub(crate) fn new(rules: &'r Ruleset, cfg: &'r EngineConfig, id: u16) -> Self {
        ShardRun {
            fw: Firewall::new(rules, cfg),
            order: LocalOrder::default(),
            ready: Vec::with_capacity(16),
            now: Timestamp(0),
            own: Vec::with_capacity(SHARED_BATCH_FRAMES),
            id,
            trace: cfg.trace,
        }
    }

    /// Runs one batch. This shard's rows go to `emit` in its own frame
    /// order (a held fragment's row, and the rows behind it, come out in a
    /// later batch); with tracing on, the batch's events are appended to
    /// `events`, in no particular order yet (see [`order_events`]).
    pub(crate) fn batch(
        &mut self,
        batch: &Batch,
        events: &mut Vec<Tagged>,
        emit: &mut impl FnMut(Row),
    ) {
        let ShardRun {
            fw,
            order,
            ready,
            now,
            own,
            id,
            trace,
        } = self;
        own.clear();
        own.extend(
            (batch.slots.iter().enumerate())
                .filter(|(_, s)| s.shard == *id)
                .map(|(i, _)| i),
        );
        let mut ahead = Lookahead::new(own);
        for s in &batch.slots {
            *now = (*now).max(s.ts);
            sweep_at(fw, *now, s.index, trace.then_some(&mut *events));
            if s.shard != *id {
                continue;
            }
            ahead.step(fw, |i| batch.slots[i].hash);
            if let Some(i) = ahead.upcoming(FRAME_PREFETCH_AHEAD) {
                batch.prefetch(&batch.slots[i]);
            }
            order.expect(s.index);
            let frame = batch.frame(s);
            process_at(
                fw,
                &frame,
                *now,
                trace.then_some(&mut *events),
                &mut |row| {
                    // The common case, a row in turn with nothing held,
                    // skips the queue.
                    if ready.is_empty() && order.take_if_next(row.packet) {
                        emit(row);
                    } else {
                        order.push(row, ready);
                    }
                },
            );
            for r in ready.drain(..) {
                emit(r);
            }
        }
        fw.expire_fragments(*now, &mut |row| order.push(row, ready));
        for r in ready.drain(..) {
            emit(r);
        }
    }

    /// The capture has ended: rows still held come out.
    pub(crate) fn finish(&mut self, emit: &mut impl FnMut(Row)) {
        let ShardRun {
            fw, order, ready, ..
        } = self;
        fw.finish(&mut |row| order.push(row, ready));
        order.drain(ready);
        for r in ready.drain(..) {
            emit(r);
        }
    }

    /// No later row of this shard has a capture index below this, given
    /// that the next frame's index is above `last`.
    fn upto(&self, last: u64) -> u64 {
        self.order.first().unwrap_or(last + 1)
    }
}

/// Runs the replay on `jobs` worker threads, the rows written by this one.
/// `capture` and `input` say how each worker opens the file where each
/// reads it for itself (see the module docs for who reads what).
pub(crate) fn replay_sharded(
    reader: CaptureReader,
    capture: &std::path::Path,
    input: &super::InputOptions<'_>,
    rules: &Ruleset,
    cfg: &EngineConfig,
    jobs: usize,
    sink: &mut dyn Sink,
) -> Result<ReplayStats, ReplayError> {
    let jobs = jobs.clamp(1, MAX_JOBS);
    let progress = input.progress;
    // With one worker there is nothing to share, but a reader thread takes
    // the reading and keying off the worker's core. On 2 cores that, with
    // the merger formatting (below), took `--jobs 1` on 1M packets from
    // 0.39 s to 0.32 s.
    let shared = reader.size().is_none() || jobs == 1;
    let in_flight = 2 * jobs + 2;
    let (merge_tx, merge_rx) = sync_channel::<Msg>(4 * jobs + 4);
    // The merger formats the rows of a worker or two: it has time to spare
    // (a row costs it about a third of what it costs a worker of two), and
    // the workers' time is what bounds the run. With more workers it would
    // be the bottleneck. Measured on 2 cores, `--jobs 2` (medians of 9 runs
    // on 1M packets, 3 on 10M): 0.39 s -> 0.36 s and 3.52 s -> 3.25 s.
    let fmt = if jobs <= 2 { None } else { sink.formatter() };
    // A file: every worker reads it for itself (a failure to open it again,
    // just after it was opened, is reported like any capture error). A
    // stream: the reader thread reads it for all.
    let mut sources = Vec::with_capacity(jobs);
    let mut work_txs = Vec::new();
    let (pool_tx, pool_rx) = sync_channel::<Batch>(in_flight);
    let mut reader = Some(reader);
    let _prefault = match &reader {
        Some(r) if !shared => r.bytes().and_then(|b| Prefaulter::start(b, PREFAULT_AHEAD)),
        _ => None,
    };
    if shared {
        for _ in 0..jobs {
            let (tx, rx) = sync_channel::<Arc<Batch>>(in_flight);
            work_txs.push(tx);
            sources.push(Source::Shared {
                rx,
                pool: pool_tx.clone(),
            });
        }
    } else if jobs >= RELAY_MIN_JOBS
        && let Some(mut first) = reader.take_if(|r| r.bytes().is_some() && r.format() == "pcap")
    {
        let start = first.resume_point().expect("a pcap file in memory");
        let mut readers = vec![first];
        for _ in 1..jobs {
            let other = readers[0].reopen_shared().expect("in memory")?;
            readers.push(other);
        }
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..jobs).map(|_| channel()).unzip();
        txs[0]
            .send(Relayed::Turn {
                n: 0,
                at: start,
                frames: 0,
            })
            .expect("the receiver is right here");
        for (id, (reader, inbox)) in readers.into_iter().zip(rxs).enumerate() {
            let outboxes = (txs.iter().enumerate())
                .map(|(v, tx)| (v != id).then(|| tx.clone()))
                .collect();
            sources.push(Source::Relay(Box::new(Relay {
                reader,
                jobs,
                inbox,
                outboxes,
                merger: merge_tx.clone(),
                ready: BTreeMap::new(),
                turn: None,
                next: 0,
                ended: false,
                through: false,
            })));
        }
    } else {
        let first = reader.take().expect("not taken yet");
        for _ in 1..jobs {
            // A mapped file is mapped once and its pages faulted in once;
            // a file read with read() is opened again by every worker.
            let other = match first.reopen_shared() {
                Some(r) => r?,
                None => super::open(capture, input)?,
            };
            sources.push(Source::Own(Box::new(other)));
        }
        sources.insert(0, Source::Own(Box::new(first)));
    }
    drop(pool_tx);
    let sequenced = matches!(sources.first(), Some(Source::Relay(_)));
    let (spent_txs, spent_rxs): (Vec<_>, Vec<_>) = (0..jobs).map(|_| channel::<Chunk>()).unzip();
    std::thread::scope(|scope| {
        for ((id, source), spent) in sources.into_iter().enumerate().zip(spent_rxs) {
            let out = merge_tx.clone();
            // Relayed workers report progress in their turns.
            let progress = if id == 0 || matches!(source, Source::Relay(_)) {
                progress
            } else {
                None
            };
            std::thread::Builder::new()
                .name(format!("ctsim-shard-{id}"))
                .spawn_scoped(scope, move || {
                    worker(
                        id as u16, jobs, rules, cfg, fmt, source, out, spent, progress,
                    )
                })
                .expect("spawning a worker thread");
        }
        drop(merge_tx);
        let read = reader.take().map(|reader| {
            std::thread::Builder::new()
                .name("ctsim-reader".into())
                .spawn_scoped(scope, move || {
                    read(reader, jobs, in_flight, work_txs, pool_rx, progress)
                })
                .expect("spawning the reader thread")
        });
        let merged = merge(jobs, merge_rx, &spent_txs, cfg.trace, sequenced, sink);
        // Workers still waiting for chunks back (the merger failed) end.
        drop(spent_txs);
        let mut read = match read.map(|r| r.join()) {
            Some(Ok(r)) => Some(r),
            Some(Err(panic)) => std::panic::resume_unwind(panic),
            None => None,
        };
        let (mut stats, worker_read) = merged?;
        if read.is_none() {
            read = worker_read;
        }
        let (frames, err) = read.unwrap_or((0, None));
        stats.frames = frames;
        match err {
            Some(e) => Err(e.into()),
            None => Ok(stats),
        }
    })
}

/// How [`fill_batch`] keys the frames it reads.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Keying {
    /// Shards to spread frames over (1: every frame is shard 0's).
    pub(crate) jobs: usize,
    /// Frames per batch.
    pub(crate) frames: usize,
    /// The shard whose frames get their conntrack table hash for the
    /// lookahead, `None` for every frame: a worker that reads the capture
    /// itself needs only its own.
    pub(crate) hash_for: Option<u16>,
}

/// Reads frames into `b` (emptied first) until it is full or the capture
/// ends, and gives each its shard and table hash. Returns whether the batch
/// filled up (more may follow); on a capture error the frames before it are
/// in the batch.
pub(crate) fn fill_batch(
    reader: &mut CaptureReader,
    b: &mut Batch,
    keying: Keying,
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
    while b.slots.len() < keying.frames && bytes < BATCH_BYTES {
        // Most captures are pcap files in memory: their records come in
        // runs, without a call per frame.
        let run = reader.next_records(
            keying.frames - b.slots.len(),
            BATCH_BYTES - bytes,
            |r, data| {
                let f = Frame {
                    index: r.index,
                    ts: r.ts,
                    linktype: r.linktype,
                    orig_len: r.orig_len,
                    interface: 0,
                    interface_name: None,
                    data,
                };
                b.slots.push(keyed_slot(&f, keying, r.start, r.end, 0));
                bytes += r.end - r.start;
            },
        );
        if run > 0 {
            continue;
        }
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
        b.slots.push(keyed_slot(&f, keying, start, end, ifname));
    }
    Ok(true)
}

/// A frame's slot in a batch, with its shard and (where [`Keying::hash_for`]
/// wants it and the frame has a common shape) its conntrack table hash.
#[inline(always)]
fn keyed_slot(f: &Frame<'_>, keying: Keying, start: usize, end: usize, ifname: u16) -> Slot {
    // One look at the frame's first bytes gives both the shard key and the
    // table hash, where its shape is a common one.
    let hint = wire::hint::flow_hint(f);
    let shard = if keying.jobs > 1 {
        shard_of(key_with_hint(f, hint.as_ref()), keying.jobs) as u16
    } else {
        0
    };
    let hash = match (hint, keying.hash_for) {
        (Some(h), None) => Some(Conntrack::flow_hash(&h)),
        (Some(h), Some(id)) if id == shard => Some(Conntrack::flow_hash(&h)),
        _ => None,
    };
    Slot {
        index: f.index,
        ts: f.ts,
        linktype: f.linktype,
        orig_len: f.orig_len,
        interface: f.interface,
        start,
        end,
        shard,
        ifname,
        hash,
    }
}

/// The reader stage, for a stream: fills batches, keys frames, hands every
/// batch to every worker. Returns the number of frames read and the error
/// that ended the capture, if one did.
fn read(
    mut reader: CaptureReader,
    jobs: usize,
    in_flight: usize,
    work_txs: Vec<SyncSender<Arc<Batch>>>,
    pool: Receiver<Batch>,
    progress: Option<Progress<'_>>,
) -> (u64, Option<CaptureError>) {
    // A mapped file (one worker): the batches in flight lie behind.
    reader.keep_behind(KEEP_BEHIND);
    let mut allocated = 0;
    let mut frames = 0u64;
    let mut failed = None;
    let keying = Keying {
        jobs,
        frames: SHARED_BATCH_FRAMES,
        hash_for: None,
    };
    while failed.is_none() {
        let mut b = if allocated < in_flight {
            allocated += 1;
            Batch {
                data: Vec::with_capacity(BATCH_BUFFER),
                slots: Vec::with_capacity(SHARED_BATCH_FRAMES),
                ..Batch::default()
            }
        } else {
            match pool.recv() {
                Ok(b) => b,
                Err(_) => break,
            }
        };
        let full = match fill_batch(&mut reader, &mut b, keying) {
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
        // The last worker to finish a batch sends it back to the pool, so
        // the reader must not keep a reference itself.
        let b = Arc::new(b);
        let (last, rest) = work_txs.split_last().expect("at least one worker");
        for tx in rest {
            let _ = tx.send(Arc::clone(&b));
        }
        if last.send(b).is_err() || !full {
            break;
        }
    }
    (frames, failed)
}

/// One worker: its own firewall over every batch, formatting its rows when
/// the sink takes formatted ones (in parallel, leaving the merger only byte
/// copies). Written chunks come back through `spent`, to be filled again.
fn worker(
    id: u16,
    jobs: usize,
    rules: &Ruleset,
    cfg: &EngineConfig,
    fmt: Option<RowFormat>,
    mut source: Source,
    out: SyncSender<Msg>,
    spent: Receiver<Chunk>,
    progress: Option<Progress<'_>>,
) {
    let mut run = ShardRun::new(rules, cfg, id);
    let mut tally = Summary::default();
    let mut own_batch = Batch::default();
    let mut frames = 0u64;
    let mut failed = None;
    let keying = Keying {
        jobs,
        frames: OWN_BATCH_FRAMES,
        hash_for: Some(id),
    };
    match &mut source {
        Source::Own(reader) => reader.keep_behind(KEEP_BEHIND),
        Source::Relay(r) => r.reader.keep_behind(KEEP_BEHIND),
        Source::Shared { .. } => {}
    }
    // Chunks sent and not yet back; only a worker that reads for itself
    // waits for them (batches from the reader thread keep workers within
    // a few batches of each other, and rows behind a held fragment must not
    // stop a worker that the fragment's worker waits for).
    let mut out_chunks = 0usize;
    // Relayed workers wait for each other's batches: one held back by
    // credits would hold everyone.
    let limit = match source {
        Source::Own(_) => CHUNKS_AHEAD,
        Source::Shared { .. } | Source::Relay(_) => usize::MAX,
    };
    let mut free: Vec<Chunk> = Vec::new();
    let mut new_chunk = |out_chunks: &mut usize, rows_hint: usize| {
        while let Ok(c) = spent.try_recv() {
            *out_chunks -= 1;
            free.push(c);
        }
        while *out_chunks >= limit {
            let Ok(c) = spent.recv() else { break };
            *out_chunks -= 1;
            free.push(c);
        }
        match free.pop() {
            Some(mut c) => {
                c.marks.clear();
                c.text.clear();
                c.rows.clear();
                c.next = 0;
                c
            }
            None => Chunk {
                marks: Vec::with_capacity(rows_hint),
                text: Vec::with_capacity(if fmt.is_some() { rows_hint * 192 } else { 0 }),
                rows: Vec::new(),
                next: 0,
            },
        }
    };
    // Rows and events of the batches since the last message: a message per
    // `group` batches keeps hand-offs (and wake-ups of the merger) rare.
    // Every worker sees the same batches, so the k-th message of each
    // covers the same ones, which is how the merger groups events.
    let group = match source {
        Source::Own(_) | Source::Relay(_) => OWN_GROUP,
        Source::Shared { .. } => 1,
    };
    let mut pending: Option<(Chunk, usize)> = None;
    let mut events = Vec::new();
    let mut upto = 0;
    let send = |pending: &mut Option<(Chunk, usize)>,
                events: &mut Vec<Tagged>,
                out_chunks: &mut usize,
                upto: u64| {
        let Some((chunk, _)) = pending.take() else {
            return true;
        };
        *out_chunks += usize::from(!chunk.marks.is_empty());
        let msg = Msg::Out {
            shard: id,
            chunk,
            events: std::mem::take(events),
            counted: true,
            upto,
        };
        out.send(msg).is_ok()
    };
    let mut more = true;
    while more {
        // The batch: read here, or received from the reader thread.
        let mut shared = None;
        let batch: &Batch = match &mut source {
            Source::Own(reader) => {
                more = match fill_batch(reader, &mut own_batch, keying) {
                    Ok(full) => full,
                    Err(e) => {
                        failed = Some(e);
                        false
                    }
                };
                frames += own_batch.slots.len() as u64;
                if let Some(p) = progress {
                    p(frames, reader.offset());
                }
                &own_batch
            }
            Source::Shared { rx, .. } => match rx.recv() {
                Ok(b) => shared.insert(b),
                Err(_) => break,
            },
            Source::Relay(r) => {
                let Some(b) = relay_batch(r, &mut frames, &mut failed, progress) else {
                    return;
                };
                more = !b.last;
                shared.insert(b)
            }
        };
        let Some(last) = batch.slots.last().map(|s| s.index) else {
            break;
        };
        let chunk = match &mut pending {
            Some((c, _)) => c,
            None => {
                let c = new_chunk(&mut out_chunks, group * batch.slots.len() / jobs + 16);
                &mut pending.insert((c, 0)).0
            }
        };
        run.batch(batch, &mut events, &mut |row| {
            add_row(fmt, &mut tally, chunk, row)
        });
        if let Source::Shared { pool, .. } = &source
            && let Some(b) = shared.and_then(Arc::into_inner)
        {
            let _ = pool.send(b);
        }
        upto = run.upto(last);
        if let Some((_, n)) = &mut pending {
            *n += 1;
            if *n == group && !send(&mut pending, &mut events, &mut out_chunks, upto) {
                return;
            }
        }
    }
    if !send(&mut pending, &mut events, &mut out_chunks, upto) {
        return;
    }
    let mut chunk = new_chunk(&mut out_chunks, 16);
    run.finish(&mut |row| add_row(fmt, &mut tally, &mut chunk, row));
    let _ = out.send(Msg::Out {
        shard: id,
        chunk,
        events: Vec::new(),
        counted: false,
        upto: u64::MAX,
    });
    let fw = run.fw;
    let _ = out.send(Msg::Done(Box::new(ShardTotals {
        bad_l4_checksums: fw.bad_l4_checksums,
        checked_l4_checksums: fw.checked_l4_checksums,
        conntrack_entries: fw.ct.len(),
        rule_state: fw.rule_state,
        tally,
        read: match &source {
            Source::Own(_) => Some((frames, failed)),
            Source::Relay(r) if r.ended => Some((frames, failed)),
            _ => None,
        },
    })));
}

/// The next batch of a relayed worker, taking this worker's turns as they
/// come due. `None` when another worker has gone (the replay is being torn
/// down). Taking a turn sets `frames` to the count of frames read up to the
/// batch's end and `failed` to the error that ended the capture, if one did.
fn relay_batch(
    r: &mut Relay,
    frames: &mut u64,
    failed: &mut Option<CaptureError>,
    progress: Option<Progress<'_>>,
) -> Option<Arc<Batch>> {
    loop {
        while let Ok(m) = r.inbox.try_recv() {
            r.accept(m)?;
        }
        if let Some((n, at, before)) = r.turn
            && n < r.next + RELAY_AHEAD * r.jobs as u64
        {
            r.turn = None;
            r.take_turn(n, at, before, frames, failed, progress);
        }
        if let Some(b) = r.ready.remove(&r.next) {
            r.next += 1;
            r.through = b.last;
            return Some(b);
        }
        let m = r.inbox.recv().ok()?;
        r.accept(m)?;
    }
}

impl Relay {
    /// Files a message; `None` if a worker has gone.
    fn accept(&mut self, m: Relayed) -> Option<()> {
        match m {
            Relayed::Turn { n, at, frames } => self.turn = Some((n, at, frames)),
            Relayed::Batch(n, b) => {
                self.ready.insert(n, b);
            }
            Relayed::Gone => return None,
        }
        Some(())
    }

    /// Reads batch `n` from `at`, tells the next worker its turn (unless the
    /// capture ended) and hands the batch to everyone.
    fn take_turn(
        &mut self,
        n: u64,
        at: ResumePoint,
        before: u64,
        frames: &mut u64,
        failed: &mut Option<CaptureError>,
        progress: Option<Progress<'_>>,
    ) {
        let resumed = self.reader.resume(at);
        debug_assert!(resumed, "a reader of the same bytes, behind the point");
        let mut b = Batch {
            slots: Vec::with_capacity(OWN_BATCH_FRAMES),
            ..Batch::default()
        };
        // Every frame's table hash: the worker that processes it did not
        // read it.
        let keying = Keying {
            jobs: self.jobs,
            frames: OWN_BATCH_FRAMES,
            hash_for: None,
        };
        let full = match fill_batch(&mut self.reader, &mut b, keying) {
            Ok(full) => full,
            Err(e) => {
                *failed = Some(e);
                false
            }
        };
        *frames = before + b.slots.len() as u64;
        if let Some(p) = progress {
            p(*frames, self.reader.offset());
        }
        let next = (n + 1) as usize % self.jobs;
        match full.then(|| self.reader.resume_point()).flatten() {
            Some(at) => {
                if let Some(tx) = &self.outboxes[next] {
                    let _ = tx.send(Relayed::Turn {
                        n: n + 1,
                        at,
                        frames: *frames,
                    });
                }
            }
            None => {
                b.last = true;
                self.ended = true;
            }
        }
        let b = Arc::new(b);
        for tx in self.outboxes.iter().flatten() {
            let _ = tx.send(Relayed::Batch(n, Arc::clone(&b)));
        }
        let _ = self.merger.send(Msg::Frames(n, Arc::clone(&b)));
        self.ready.insert(n, b);
    }
}

/// Adds a row to a worker's chunk: formatted and tallied, or kept whole.
fn add_row(fmt: Option<RowFormat>, tally: &mut Summary, chunk: &mut Chunk, row: Row) {
    match fmt {
        Some(f) => {
            tally.add(&row);
            f(&row, &mut chunk.text);
            chunk.marks.push((row.packet, chunk.text.len() as u32));
        }
        None => {
            chunk.marks.push((row.packet, 0));
            chunk.rows.push(row);
        }
    }
}

/// The merger: rows in capture order, events batch by batch in canonical
/// order. Returns the merged totals and what a worker that read the
/// capture itself read.
#[allow(clippy::type_complexity)]
fn merge(
    jobs: usize,
    rx: Receiver<Msg>,
    spent: &[Sender<Chunk>],
    trace: bool,
    sequenced: bool,
    sink: &mut dyn Sink,
) -> Result<(ReplayStats, Option<(u64, Option<CaptureError>)>), ReplayError> {
    // Relayed reading: the batches, by number, from the one whose rows are
    // being written on; and the next frame to write, by batch and slot.
    let mut batches: BTreeMap<u64, Arc<Batch>> = BTreeMap::new();
    let mut at = (0u64, 0usize);
    // Per shard: chunks not yet written, and the bound on its later rows.
    let mut queues: Vec<VecDeque<Chunk>> = (0..jobs).map(|_| VecDeque::new()).collect();
    let mut upto = vec![0u64; jobs];
    let mut keys = MinTree::new(jobs);
    for s in 0..jobs {
        keys.set(s, 0);
    }
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
    let mut read = None;
    let mut tally = Summary::default();
    let mut done = 0;
    while done < jobs {
        let Ok(msg) = rx.recv() else { break };
        match msg {
            Msg::Out {
                shard,
                chunk,
                events,
                counted,
                upto: bound,
            } => {
                let s = usize::from(shard);
                if !chunk.marks.is_empty() {
                    queues[s].push_back(chunk);
                }
                upto[s] = bound;
                if counted && trace {
                    let k = ev_seen[s] - ev_base;
                    ev_seen[s] += 1;
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
                if sequenced {
                    write_in_sequence(&mut batches, &mut at, &mut queues, spent, sink)?;
                } else {
                    keys.set(s, key_of(&queues, &upto, s));
                    write_ready(&mut queues, &upto, spent, sink, &mut keys)?;
                }
            }
            Msg::Frames(n, b) => {
                batches.insert(n, b);
                write_in_sequence(&mut batches, &mut at, &mut queues, spent, sink)?;
            }
            Msg::Done(t) => {
                done += 1;
                stats.bad_l4_checksums += t.bad_l4_checksums;
                stats.checked_l4_checksums += t.checked_l4_checksums;
                stats.conntrack_entries += t.conntrack_entries;
                tally.merge(&t.tally);
                if t.read.is_some() && read.is_none() {
                    read = t.read;
                }
                match &mut rule_state {
                    Some(r) => r.merge(&t.rule_state),
                    None => rule_state = Some(t.rule_state),
                }
            }
        }
    }
    if sequenced && queues.iter().any(|q| !q.is_empty()) {
        // Every frame gives one row, so nothing is left; were it otherwise,
        // what is left still goes out in capture order.
        debug_assert!(false, "rows left after the last frame");
        let ended = vec![u64::MAX; jobs];
        let mut keys = MinTree::new(jobs);
        for s in 0..jobs {
            keys.set(s, key_of(&queues, &ended, s));
        }
        write_ready(&mut queues, &ended, spent, sink, &mut keys)?;
    }
    if tally.packets > 0 {
        sink.tally(&tally);
    }
    stats.rule_state = rule_state;
    Ok((stats, read))
}

/// The merger of a relayed capture, which has every batch: writes rows in
/// the order of the batches' frames, each from its frame's shard, for as
/// long as that shard's row has come. A row costs a look at its frame's slot
/// and at its shard's next row, whatever the shard count (with many shards
/// a run is about one row, and finding the lowest pending row at every run
/// cost the merger more than a worker's share of the packets).
fn write_in_sequence(
    batches: &mut BTreeMap<u64, Arc<Batch>>,
    at: &mut (u64, usize),
    queues: &mut [VecDeque<Chunk>],
    spent: &[Sender<Chunk>],
    sink: &mut dyn Sink,
) -> std::io::Result<()> {
    loop {
        let Some(b) = batches.get(&at.0) else {
            return Ok(());
        };
        let slots = &b.slots;
        if at.1 >= slots.len() {
            batches.remove(&at.0);
            *at = (at.0 + 1, 0);
            continue;
        }
        let s = usize::from(slots[at.1].shard);
        let Some(c) = queues[s].front_mut() else {
            return Ok(());
        };
        let from = c.next;
        // A shard's rows come in the order of its frames, one a frame: the
        // row there is this frame's. (Were it not, nothing more is written
        // here, and what is left goes out in capture order at the end.)
        if c.marks[from].0 != slots[at.1].index {
            debug_assert!(
                false,
                "row {} for frame {}",
                c.marks[from].0, slots[at.1].index
            );
            return Ok(());
        }
        // The run: this shard's next frames, as far as this chunk goes.
        let mut n = 1;
        while from + n < c.marks.len()
            && slots
                .get(at.1 + n)
                .is_some_and(|t| usize::from(t.shard) == s && t.index == c.marks[from + n].0)
        {
            n += 1;
        }
        at.1 += n;
        write_run(c, n, sink)?;
        if c.next == c.marks.len()
            && let Some(c) = queues[s].pop_front()
        {
            // A worker that has ended no longer takes chunks back.
            let _ = spent[s].send(c);
        }
    }
}

/// Hands the sink a chunk's next `n` rows, in one piece when formatted.
fn write_run(c: &mut Chunk, n: usize, sink: &mut dyn Sink) -> std::io::Result<()> {
    let from = c.next;
    c.next += n;
    if c.rows.is_empty() {
        let start = match from {
            0 => 0,
            k => c.marks[k - 1].1 as usize,
        };
        let end = c.marks[c.next - 1].1 as usize;
        sink.formatted_rows(&c.text[start..end])
    } else {
        c.rows[from..c.next].iter().try_for_each(|r| sink.row(r))
    }
}

/// The capture index of a shard's next row to write.
fn front(q: &VecDeque<Chunk>) -> Option<u64> {
    q.front().map(|c| c.marks[c.next].0)
}

/// Each shard's next index for the merger: its next pending row or, with
/// none pending, the lowest it may still send. It gives the lowest and the
/// lowest of the others in a few steps whatever the shard count: with many
/// shards runs are short, and this is asked at every run.
struct MinTree {
    leaves: usize,
    /// A binary tree in an array, node i over 2i and 2i+1, leaves from
    /// `leaves` on: the lowest key below each node with its shard in the low
    /// 16 bits (so that one comparison picks both, the lower shard on a
    /// tie); `u64::MAX` under no shard.
    node: Vec<u64>,
}

/// Keys past this (`u64::MAX`: a shard that has ended) all read as it: no
/// capture comes near 2^48 frames.
const KEY_MAX: u64 = (1 << 48) - 1;

impl MinTree {
    fn new(shards: usize) -> MinTree {
        debug_assert!(shards <= 1 << 16);
        let leaves = shards.next_power_of_two();
        MinTree {
            leaves,
            node: vec![u64::MAX; 2 * leaves],
        }
    }

    fn set(&mut self, shard: usize, key: u64) {
        let mut i = self.leaves + shard;
        let mut low = (key.min(KEY_MAX) << 16) | shard as u64;
        self.node[i] = low;
        while i > 1 {
            low = low.min(self.node[i ^ 1]);
            i /= 2;
            self.node[i] = low;
        }
    }

    /// The shard with the lowest key, and that key.
    fn lowest(&self) -> (usize, u64) {
        let n = self.node[1];
        ((n & 0xffff) as usize, key_of_node(n))
    }

    /// The lowest key of the shards other than `shard`.
    fn lowest_but(&self, shard: usize) -> u64 {
        let mut i = self.leaves + shard;
        let mut low = u64::MAX;
        while i > 1 {
            low = low.min(self.node[i ^ 1]);
            i /= 2;
        }
        key_of_node(low)
    }
}

fn key_of_node(n: u64) -> u64 {
    match n >> 16 {
        KEY_MAX.. => u64::MAX,
        k => k,
    }
}

/// Shard `s`'s key for the [`MinTree`].
fn key_of(queues: &[VecDeque<Chunk>], upto: &[u64], s: usize) -> u64 {
    front(&queues[s]).unwrap_or(upto[s])
}

/// Writes every row whose turn has come: the lowest pending index, as long
/// as no shard can still send a lower one. Rows of one shard that follow
/// each other in capture order go out in one piece. `keys` holds every
/// shard's key on entry, and on return.
fn write_ready(
    queues: &mut [VecDeque<Chunk>],
    upto: &[u64],
    spent: &[Sender<Chunk>],
    sink: &mut dyn Sink,
    keys: &mut MinTree,
) -> std::io::Result<()> {
    loop {
        let (s, first) = keys.lowest();
        let bound = keys.lowest_but(s);
        // The lowest is a shard with nothing pending: what it may still
        // send comes first.
        if s >= queues.len() || queues[s].is_empty() || first >= bound {
            return Ok(());
        }
        // Shard s's rows below `bound`, chunk by chunk.
        while let Some(c) = queues[s].front_mut() {
            let from = c.next;
            // Runs are short when shards interleave: a scan beats a search.
            let n = c.marks[from..]
                .iter()
                .position(|&(i, _)| i >= bound)
                .unwrap_or(c.marks.len() - from);
            if n == 0 {
                break;
            }
            write_run(c, n, sink)?;
            if c.next < c.marks.len() {
                break;
            }
            if let Some(c) = queues[s].pop_front() {
                // A worker that has ended no longer takes chunks back.
                let _ = spent[s].send(c);
            }
        }
        keys.set(s, key_of(queues, upto, s));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conntrack::Tuple;
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

    /// A sink that records what it was given, formatted rows as their text
    /// and whole rows as their index, and counts calls of each kind.
    #[derive(Default)]
    struct Text(Vec<u8>, usize, usize);

    impl Text {
        /// The rows written so far are 1, 2, 3, … in capture order, with
        /// no gap.
        fn assert_in_order(&self, jobs: usize) {
            let text = std::str::from_utf8(&self.0).unwrap();
            let got: Vec<u64> = text
                .split_terminator(';')
                .map(|x| x.parse().unwrap())
                .collect();
            assert!(
                got.iter().copied().eq(1..=got.len() as u64),
                "{jobs} shards: {got:?}"
            );
        }
    }

    impl Sink for Text {
        /// A row given whole: recorded as its index, like formatted text,
        /// and counted.
        fn row(&mut self, r: &Row) -> std::io::Result<()> {
            self.0
                .extend_from_slice(format!("{};", r.packet).as_bytes());
            self.2 += 1;
            Ok(())
        }
        fn events(&mut self, _: &mut dyn Iterator<Item = Event>) -> std::io::Result<()> {
            Ok(())
        }
        fn formatted_rows(&mut self, text: &[u8]) -> std::io::Result<()> {
            self.0.extend_from_slice(text);
            self.1 += 1;
            Ok(())
        }
    }

    fn chunk(rows: &[u64]) -> Chunk {
        let mut c = Chunk {
            marks: Vec::new(),
            text: Vec::new(),
            rows: Vec::new(),
            next: 0,
        };
        for &i in rows {
            c.text.extend_from_slice(format!("{i};").as_bytes());
            c.marks.push((i, c.text.len() as u32));
        }
        c
    }

    fn tree(q: &[VecDeque<Chunk>], upto: &[u64]) -> MinTree {
        let mut t = MinTree::new(q.len());
        for s in 0..q.len() {
            t.set(s, key_of(q, upto, s));
        }
        t
    }

    /// Rows go out in capture order, only once no shard can still send a
    /// lower one (a shard that holds a fragment's row bounds everyone), and
    /// a shard's consecutive rows in one piece; written chunks go back.
    #[test]
    fn merger_writes_rows_whose_turn_has_come() {
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..3).map(|_| channel::<Chunk>()).unzip();
        let mut q: Vec<VecDeque<Chunk>> = (0..3).map(|_| VecDeque::new()).collect();
        let mut sink = Text::default();
        // Shard 2 has said nothing yet: nothing may go out.
        q[0].push_back(chunk(&[1, 2, 5]));
        q[1].push_back(chunk(&[3, 4]));
        let mut upto = [6, 6, 0];
        let mut t = tree(&q, &upto);
        write_ready(&mut q, &upto, &txs, &mut sink, &mut t).unwrap();
        assert_eq!(sink.0, b"");
        // Shard 2 holds frame 6's row (a fragment) while its later frames
        // are done: rows up to 5 go out, nothing of shard 0 past it.
        upto[2] = 6;
        q[0].push_back(chunk(&[7, 8]));
        let mut t = tree(&q, &upto);
        write_ready(&mut q, &upto, &txs, &mut sink, &mut t).unwrap();
        assert_eq!(sink.0, b"1;2;3;4;5;");
        assert_eq!(sink.1, 3, "runs 1-2, 3-4 and 5");
        assert_eq!(rxs[1].try_iter().count(), 1);
        assert_eq!(rxs[0].try_iter().count(), 1);
        // The fragment's datagram completes: its rows and the rest follow.
        q[2].push_back(chunk(&[6, 9]));
        upto = [u64::MAX; 3];
        q[1].push_back(chunk(&[10]));
        let mut t = tree(&q, &upto);
        write_ready(&mut q, &upto, &txs, &mut sink, &mut t).unwrap();
        assert_eq!(sink.0, b"1;2;3;4;5;6;7;8;9;10;");
        assert!(q.iter().all(|q| q.is_empty()));
    }

    /// Shards' rows arriving in chunks, interleaved at random, with each
    /// shard's bound: whatever the shard count, what is written is always
    /// the rows in capture order with no gap, and at the end all of them.
    #[test]
    fn merger_keeps_capture_order_for_any_shard_count() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = move |n: u64| {
            seed = mix(seed);
            seed % n
        };
        for jobs in [1usize, 2, 3, 5, 16] {
            let rows = 3000u64;
            let mut of: Vec<Vec<u64>> = vec![Vec::new(); jobs];
            for i in 1..=rows {
                of[rand(jobs as u64) as usize].push(i);
            }
            let (txs, _rxs): (Vec<_>, Vec<_>) = (0..jobs).map(|_| channel::<Chunk>()).unzip();
            let mut q: Vec<VecDeque<Chunk>> = (0..jobs).map(|_| VecDeque::new()).collect();
            let mut upto = vec![0u64; jobs];
            let mut t = tree(&q, &upto);
            let mut sink = Text::default();
            let mut sent = vec![0usize; jobs];
            while sent.iter().zip(&of).any(|(n, v)| *n < v.len())
                || upto.iter().any(|&u| u != u64::MAX)
            {
                let s = rand(jobs as u64) as usize;
                let n = (rand(40) as usize).min(of[s].len() - sent[s]);
                let part = &of[s][sent[s]..sent[s] + n];
                sent[s] += n;
                if !part.is_empty() {
                    q[s].push_back(chunk(part));
                }
                // No later row of this shard below its next one.
                upto[s] = of[s].get(sent[s]).copied().unwrap_or(u64::MAX);
                t.set(s, key_of(&q, &upto, s));
                write_ready(&mut q, &upto, &txs, &mut sink, &mut t).unwrap();
                sink.assert_in_order(jobs);
            }
            assert_eq!(
                sink.0.iter().filter(|&&b| b == b';').count() as u64,
                rows,
                "{jobs} shards"
            );
        }
    }

    /// The merger of a relayed capture, given the batches and each shard's
    /// rows in chunks, interleaved at random: what is written is always the
    /// rows in capture order with no gap, and at the end all of them.
    #[test]
    fn merger_in_sequence_keeps_capture_order() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rand = move |n: u64| {
            seed = mix(seed);
            seed % n
        };
        for (jobs, direct_rows) in [(1usize, false), (2, false), (4, true), (16, false)] {
            let rows = 3000u64;
            // Frames in batches of random sizes, each of a random shard.
            let mut batches = Vec::new();
            let mut of: Vec<Vec<u64>> = vec![Vec::new(); jobs];
            let mut i = 1;
            while i <= rows {
                let mut b = Batch::default();
                for _ in 0..=rand(300) {
                    if i > rows {
                        break;
                    }
                    let shard = rand(jobs as u64) as u16;
                    of[usize::from(shard)].push(i);
                    b.slots.push(Slot {
                        index: i,
                        ts: Timestamp(0),
                        linktype: Linktype::ETHERNET,
                        orig_len: 0,
                        interface: 0,
                        start: 0,
                        end: 0,
                        shard,
                        ifname: 0,
                        hash: None,
                    });
                    i += 1;
                }
                batches.push(Arc::new(b));
            }
            let (txs, _rxs): (Vec<_>, Vec<_>) = (0..jobs).map(|_| channel::<Chunk>()).unzip();
            let mut q: Vec<VecDeque<Chunk>> = (0..jobs).map(|_| VecDeque::new()).collect();
            let mut have = BTreeMap::new();
            let mut at = (0, 0);
            let mut sink = Text::default();
            let (mut given, mut sent) = (0, vec![0usize; jobs]);
            while given < batches.len() || sent.iter().zip(&of).any(|(n, v)| *n < v.len()) {
                if given < batches.len() && rand(3) == 0 {
                    have.insert(given as u64, Arc::clone(&batches[given]));
                    given += 1;
                } else {
                    let s = rand(jobs as u64) as usize;
                    let n = (rand(40) as usize).min(of[s].len() - sent[s]);
                    if n > 0 {
                        let mut c = chunk(&of[s][sent[s]..sent[s] + n]);
                        if direct_rows {
                            // A sink that formats nothing: the rows whole.
                            c.rows = c
                                .marks
                                .iter()
                                .map(|&(i, _)| Row::new(i, Timestamp(0)))
                                .collect();
                        }
                        q[s].push_back(c);
                        sent[s] += n;
                    }
                }
                write_in_sequence(&mut have, &mut at, &mut q, &txs, &mut sink).unwrap();
                sink.assert_in_order(jobs);
            }
            let written = if direct_rows {
                sink.2
            } else {
                sink.0.iter().filter(|&&b| b == b';').count()
            };
            assert_eq!(written as u64, rows, "{jobs} shards");
            assert!(q.iter().all(|q| q.is_empty()) && have.is_empty());
        }
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
