//! IP defragmentation as `nf_defrag_ipv4` / `nf_defrag_ipv6` do it before
//! conntrack (hook priority -400): fragments are held until their datagram is
//! complete, and only the reassembled datagram continues through raw,
//! conntrack and the filter table.
//!
//! The model follows the kernel's queue logic (`ip_frag_queue`,
//! `nf_ct_frag6_queue`, `inet_frag_queue_insert`), written anew:
//!
//! * Queues are keyed like the kernel's: IPv4 (source, destination, id,
//!   protocol); IPv6 (source, destination, id). One queue per key; a queue
//!   that completed or was discarded is forgotten, so a late fragment starts
//!   a new one.
//! * A queue lives `ipfrag_time` (IPv4, 30 s) or `nf_conntrack_frag6_timeout`
//!   (IPv6, 60 s) from its creation; fragments do not extend it.
//! * Fragments that arrive in order are appended to a "run"; a fragment that
//!   lies wholly inside an existing run is a duplicate (dropped, queue kept);
//!   any other overlap discards the whole queue (RFC 5722, and IPv4 alike in
//!   modern kernels).
//! * The last fragment fixes the length; a conflicting length, or data past
//!   it, discards the queue (IPv4) or just the fragment (IPv6). Non-final
//!   IPv4 fragments are cut to a multiple of 8; a non-final IPv6 fragment
//!   that is not a multiple of 8 kills the queue and passes unreassembled.
//! * IPv4: `ipfrag_max_dist` (64): when more than that many fragments from
//!   the same source arrived since this queue's previous one, the queue is
//!   emptied and restarted (`ip_frag_too_far`).
//! * ECN: mixing Not-ECT with ECT/CE fragments fails reassembly; CE in any
//!   fragment marks the datagram CE.
//! * The reassembled IPv4 header is the first fragment's, with the total
//!   length, a recomputed checksum, and DF set only when the largest
//!   fragment carried DF. IPv6: the first fragment's unfragmentable part,
//!   the fragment header removed, the payload length rewritten.
//! * IPv6 atomic fragments (offset 0, M=0) go through the queue like any
//!   other and complete at once: the datagram continues without its
//!   fragment header (the kernel has no special case for them in
//!   `nf_ct_frag6_gather`; checked on Linux 6.18: an atomic UDP fragment sent
//!   into a namespace with conntrack did not match `-m frag` in raw
//!   PREROUTING, reached INPUT 8 bytes shorter, and made a NEW UDP entry).
//!
//! Not modelled: the fragment memory limits (`ipfrag_high_thresh`, 4 MiB),
//! defrag "users" (zones, the OUTPUT hook), and interface indexes in the
//! IPv6 key for link-local destinations. A fragment cut by the capture's
//! snap length cannot be reassembled; it is reported as dropped.

use crate::time::{Duration, Timestamp};
use crate::wire::{Family, LinkInfo, Packet, WalkEnd, walk_ext_headers};
use rustc_hash::FxHashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::Sysctls;

/// How long incomplete datagrams are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefragTimeouts {
    /// `net.ipv4.ipfrag_time`.
    pub ipv4: Duration,
    /// `nf_conntrack_frag6_timeout`.
    pub ipv6: Duration,
}

impl Default for DefragTimeouts {
    fn default() -> Self {
        DefragTimeouts::from(&Sysctls::default())
    }
}

impl From<&Sysctls> for DefragTimeouts {
    fn from(s: &Sysctls) -> Self {
        DefragTimeouts {
            ipv4: Sysctls::secs(s.ipfrag_time),
            ipv6: Sysctls::secs(s.frag6_timeout),
        }
    }
}

/// `net.ipv4.ipfrag_max_dist` default.
pub const IPFRAG_MAX_DIST: u32 = 64;

/// Largest IP datagram (and IPv6 payload).
const MAX_DATAGRAM: u32 = 65535;

/// What became of a packet handed to [`Defrag::push`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DefragOutcome {
    /// Not a fragment: the packet continues as it is.
    NotFragment,
    /// Queued; nothing continues for now. `discarded`: frames of the
    /// queue's earlier fragments thrown away because the queue was restarted
    /// (`ipfrag_max_dist`); usually empty.
    Held { discarded: Vec<u64> },
    /// This fragment completed its datagram; the reassembled datagram
    /// continues in its place.
    Complete(Reassembled),
    /// The fragment is gone. `discarded` lists the frames of the queue's
    /// other fragments that were thrown away with it (empty when the queue
    /// survives).
    Dropped {
        reason: DropReason,
        discarded: Vec<u64>,
    },
    /// IPv6 only: `nf_ct_frag6_gather` declined the packet and lets it
    /// continue unreassembled (conntrack then sees a fragment). `discarded`
    /// as for `Dropped`.
    PassThrough {
        reason: PassReason,
        discarded: Vec<u64>,
    },
}

/// A reassembled datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reassembled {
    /// The IP datagram from its header on, ready for
    /// [`crate::wire::decode_ip`].
    pub datagram: Vec<u8>,
    /// Frames of the fragments that make it up, in arrival order.
    pub fragments: Vec<u64>,
    /// Link facts of the first fragment (offset 0), which the kernel's
    /// reassembled packet inherits.
    pub link: LinkInfo,
}

/// Why a fragment (and maybe its queue) was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Lies wholly within data already queued; the queue is kept.
    Duplicate,
    /// Overlaps queued data partially; the queue is discarded.
    Overlap,
    /// A last fragment whose end disagrees with the length already known.
    LengthMismatch,
    /// Data beyond the end fixed by the last fragment.
    BeyondEnd,
    /// A fragment without data.
    Empty,
    /// The datagram would exceed 65535 bytes.
    Oversized,
    /// Fragments mixing Not-ECT with ECT/CE codepoints.
    EcnMismatch,
    /// The capture's snap length cut the fragment: ctsim cannot reassemble.
    CaptureTruncated,
}

impl DropReason {
    pub fn describe(self) -> &'static str {
        match self {
            DropReason::Duplicate => "duplicate fragment",
            DropReason::Overlap => "overlapping fragment: reassembly queue discarded",
            DropReason::LengthMismatch => "last fragment disagrees with the datagram length",
            DropReason::BeyondEnd => "fragment data beyond the datagram's end",
            DropReason::Empty => "fragment without data",
            DropReason::Oversized => "reassembled datagram longer than 65535 bytes",
            DropReason::EcnMismatch => "fragments with incompatible ECN codepoints",
            DropReason::CaptureTruncated => "fragment cut by the capture's snap length",
        }
    }
}

/// Why the IPv6 defragmenter let a fragment through unreassembled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassReason {
    /// A first fragment that does not hold the whole upper-layer header
    /// (RFC 8200 4.5).
    IncompleteFirstFragment,
    /// A non-final fragment whose length is not a multiple of 8; the queue
    /// is discarded too.
    UnalignedFragment,
    /// Payload length 0 (jumbogram): no reassembly.
    Jumbogram,
}

/// A queue that timed out, for reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiredQueue {
    pub family: Family,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub id: u32,
    /// IPv4 protocol (part of the key); `None` for IPv6.
    pub proto: Option<u8>,
    /// When the queue was created (its first fragment).
    pub created: Timestamp,
    /// Frames of the fragments that were held, in arrival order.
    pub fragments: Vec<u64>,
    /// Whether the first fragment (offset 0) had arrived.
    pub had_first: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    V4 {
        src: Ipv4Addr,
        dst: Ipv4Addr,
        id: u16,
        proto: u8,
    },
    V6 {
        src: Ipv6Addr,
        dst: Ipv6Addr,
        id: u32,
    },
}

#[derive(Debug, Clone, Copy)]
struct Run {
    offset: u32,
    len: u32,
}

#[derive(Debug)]
struct Stored {
    offset: u32,
    data: Vec<u8>,
}

/// The first fragment's header material for the reassembled datagram.
#[derive(Debug)]
struct Head {
    /// IPv4: the IP header. IPv6: everything before the fragment header.
    header: Vec<u8>,
    /// IPv6: offset in `header` of the byte naming the fragment header, and
    /// the fragment header's next header.
    v6_prev_nexthdr: usize,
    v6_nexthdr: u8,
    link: LinkInfo,
}

#[derive(Debug)]
struct Queue {
    created: Timestamp,
    /// Known end of the datagram's data (the kernel's `q.len`).
    len: u32,
    /// Bytes of data queued (`q.meat`).
    meat: u32,
    first_in: bool,
    last_in: bool,
    runs: Vec<Run>,
    /// Index into `runs` of the last run created at the tail.
    last_run: usize,
    /// End of the fragment most recently placed at the tail.
    tail_end: u32,
    stored: Vec<Stored>,
    frames: Vec<u64>,
    head: Option<Head>,
    /// OR of the fragments' ECN bits, as `ip_frag_ecn_table` indexes them.
    ecn: u8,
    /// IPv4: largest fragment, and largest fragment with DF.
    max_size: u32,
    max_df_size: u32,
    /// IPv4: the source's fragment counter when this queue last got one.
    rid: u32,
}

impl Queue {
    fn new(now: Timestamp) -> Self {
        Queue {
            created: now,
            len: 0,
            meat: 0,
            first_in: false,
            last_in: false,
            runs: Vec::new(),
            last_run: 0,
            tail_end: 0,
            stored: Vec::new(),
            frames: Vec::new(),
            head: None,
            ecn: 0,
            max_size: 0,
            max_df_size: 0,
            rid: 0,
        }
    }

    /// `ip_frag_reinit`: forget every fragment, keep the key, restart the
    /// timer. Returns the frames thrown away.
    /// Keeps an accepted fragment's bytes (`offset..end` of the datagram,
    /// already placed by [`Queue::insert`]); the first fragment also gives
    /// the datagram its header.
    fn store(
        &mut self,
        offset: u32,
        end: u32,
        data: &[u8],
        frame: u64,
        ecn_bit: u8,
        head: impl FnOnce() -> Head,
    ) {
        self.stored.push(Stored {
            offset,
            data: data.to_vec(),
        });
        self.frames.push(frame);
        self.meat += end - offset;
        self.ecn |= ecn_bit;
        if offset == 0 {
            self.first_in = true;
            self.head = Some(head());
        }
    }

    /// First and last fragments in, and no hole between them.
    fn complete(&self) -> bool {
        self.first_in && self.last_in && self.meat == self.len
    }

    fn reinit(&mut self, now: Timestamp) -> Vec<u64> {
        let rid = self.rid;
        let frames = std::mem::take(&mut self.frames);
        *self = Queue::new(now);
        self.rid = rid;
        frames
    }

    /// `inet_frag_queue_insert`.
    fn insert(&mut self, offset: u32, end: u32) -> Insert {
        if self.runs.is_empty() {
            self.runs.push(Run {
                offset,
                len: end - offset,
            });
            self.last_run = 0;
            self.tail_end = end;
            return Insert::Ok;
        }
        if self.tail_end < end {
            if offset < self.tail_end {
                return Insert::Overlap;
            }
            if offset == self.tail_end {
                self.runs[self.last_run].len += end - offset;
            } else {
                self.runs.push(Run {
                    offset,
                    len: end - offset,
                });
                self.last_run = self.runs.len() - 1;
            }
            self.tail_end = end;
            return Insert::Ok;
        }
        for r in &self.runs {
            let run_end = r.offset + r.len;
            if end <= r.offset || offset >= run_end {
                continue;
            }
            return if offset >= r.offset && end <= run_end {
                Insert::Duplicate
            } else {
                Insert::Overlap
            };
        }
        // A single-fragment run in a hole; the tail stays where it is.
        self.runs.push(Run {
            offset,
            len: end - offset,
        });
        Insert::Ok
    }

    fn expired(&self, now: Timestamp, timeout: Duration) -> bool {
        now >= self.created.add(timeout)
    }
}

enum Insert {
    Ok,
    Duplicate,
    Overlap,
}

/// The state of both defragmenters of one network namespace.
#[derive(Debug, Default)]
pub struct Defrag {
    queues: FxHashMap<Key, Queue>,
    /// Per-source IPv4 fragment counters (`inet_peer.rid`).
    peers: FxHashMap<Ipv4Addr, u32>,
    /// Queues that expired while `push` looked them up, reported by the next
    /// [`Defrag::expire`].
    expired: Vec<ExpiredQueue>,
    max_dist: Option<u32>,
}

impl Defrag {
    pub fn new() -> Self {
        Defrag::default()
    }

    /// Sets `ipfrag_max_dist` (0 disables the check).
    pub fn with_max_dist(mut self, max_dist: u32) -> Self {
        self.max_dist = Some(max_dist);
        self
    }

    /// Number of incomplete datagrams held.
    pub fn pending(&self) -> usize {
        self.queues.len()
    }

    /// Offers a decoded packet to the defragmenter at capture time `now`.
    pub fn push(
        &mut self,
        pkt: &Packet,
        frame_index: u64,
        now: Timestamp,
        timeouts: DefragTimeouts,
    ) -> DefragOutcome {
        match pkt.family {
            Family::Ipv4 => self.push_v4(pkt, frame_index, now, timeouts.ipv4),
            Family::Ipv6 => self.push_v6(pkt, frame_index, now, timeouts.ipv6),
        }
    }

    /// Whether no fragment is held: [`Defrag::expire`] would find nothing.
    #[inline]
    pub fn is_idle(&self) -> bool {
        self.queues.is_empty() && self.expired.is_empty()
    }

    /// Removes the queues whose time is up at `now` (and those `push` found
    /// expired), oldest first.
    pub fn expire(&mut self, now: Timestamp, timeouts: DefragTimeouts) -> Vec<ExpiredQueue> {
        // Called for every frame: without queues there is nothing to scan.
        if self.queues.is_empty() && self.expired.is_empty() {
            return Vec::new();
        }
        let mut out = std::mem::take(&mut self.expired);
        let dead: Vec<Key> = self
            .queues
            .iter()
            .filter(|(k, q)| q.expired(now, timeout_for(k, timeouts)))
            .map(|(k, _)| *k)
            .collect();
        for k in dead {
            if let Some(q) = self.queues.remove(&k) {
                out.push(expired_info(k, q));
            }
        }
        out.sort_by_key(|e| (e.created, e.fragments.first().copied()));
        out
    }

    /// The queue for `key`, created if needed; a queue past its time is
    /// expired first, as the kernel's timer would have done.
    fn queue(&mut self, key: Key, now: Timestamp, timeout: Duration) -> &mut Queue {
        if self
            .queues
            .get(&key)
            .is_some_and(|q| q.expired(now, timeout))
            && let Some(q) = self.queues.remove(&key)
        {
            self.expired.push(expired_info(key, q));
        }
        self.queues.entry(key).or_insert_with(|| Queue::new(now))
    }

    fn discard(&mut self, key: Key, reason: DropReason) -> DefragOutcome {
        let discarded = self
            .queues
            .remove(&key)
            .map(|q| q.frames)
            .unwrap_or_default();
        DefragOutcome::Dropped { reason, discarded }
    }

    fn push_v4(
        &mut self,
        pkt: &Packet,
        frame: u64,
        now: Timestamp,
        timeout: Duration,
    ) -> DefragOutcome {
        let Some(frag) = pkt.frag else {
            return DefragOutcome::NotFragment;
        };
        let (IpAddr::V4(src), IpAddr::V4(dst)) = (pkt.src, pkt.dst) else {
            return DefragOutcome::NotFragment;
        };
        let key = Key::V4 {
            src,
            dst,
            id: frag.id as u16,
            proto: pkt.proto,
        };
        let ihl = pkt.l4_offset;
        let offset = frag.offset;
        let mut end = offset + (pkt.ip_len - ihl);
        let df = pkt.ip.get(6).is_some_and(|b| b & 0x40 != 0);
        let ecn_bit = 1u8 << (pkt.tos & 3);
        let max_dist = self.max_dist.unwrap_or(IPFRAG_MAX_DIST);
        let rid = {
            let r = self.peers.entry(src).or_insert(0);
            *r = r.wrapping_add(1);
            *r
        };
        let q = self.queue(key, now, timeout);
        // ip_frag_too_far: too many fragments from this source since this
        // queue's previous one.
        let start = q.rid;
        q.rid = rid;
        let mut discarded = Vec::new();
        if max_dist != 0 && !q.frames.is_empty() && rid.wrapping_sub(start) > max_dist {
            discarded = q.reinit(now);
        }
        if !frag.more {
            if end < q.len || (q.last_in && end != q.len) {
                return self.discard_with(key, DropReason::LengthMismatch, discarded);
            }
            q.last_in = true;
            q.len = end;
        } else {
            end &= !7;
            if end > q.len {
                if q.last_in {
                    return self.discard_with(key, DropReason::BeyondEnd, discarded);
                }
                q.len = end;
            }
        }
        if end == offset {
            return self.discard_with(key, DropReason::Empty, discarded);
        }
        let Some(data) = pkt.ip.get(ihl as usize..(ihl + end - offset) as usize) else {
            return DefragOutcome::Dropped {
                reason: DropReason::CaptureTruncated,
                discarded,
            };
        };
        match q.insert(offset, end) {
            Insert::Ok => {}
            Insert::Duplicate => {
                return DefragOutcome::Dropped {
                    reason: DropReason::Duplicate,
                    discarded,
                };
            }
            Insert::Overlap => return self.discard_with(key, DropReason::Overlap, discarded),
        }
        q.store(offset, end, data, frame, ecn_bit, || Head {
            header: pkt.ip[..ihl as usize].to_vec(),
            v6_prev_nexthdr: 0,
            v6_nexthdr: 0,
            link: pkt.link_info(),
        });
        let fragsize = end - offset + ihl;
        q.max_size = q.max_size.max(fragsize);
        if df {
            q.max_df_size = q.max_df_size.max(fragsize);
        }
        if !q.complete() {
            return DefragOutcome::Held { discarded };
        }
        let q = self.queues.remove(&key).expect("queue present");
        match reassemble_v4(q) {
            DefragOutcome::Dropped {
                reason,
                discarded: d,
            } => {
                discarded.extend(d);
                DefragOutcome::Dropped { reason, discarded }
            }
            done => done,
        }
    }

    fn discard_with(
        &mut self,
        key: Key,
        reason: DropReason,
        mut earlier: Vec<u64>,
    ) -> DefragOutcome {
        let DefragOutcome::Dropped { discarded, .. } = self.discard(key, reason) else {
            unreachable!("discard always drops")
        };
        earlier.extend(discarded);
        DefragOutcome::Dropped {
            reason,
            discarded: earlier,
        }
    }

    fn push_v6(
        &mut self,
        pkt: &Packet,
        frame: u64,
        now: Timestamp,
        timeout: Duration,
    ) -> DefragOutcome {
        let Some(frag) = pkt.frag else {
            return DefragOutcome::NotFragment;
        };
        let (IpAddr::V6(src), IpAddr::V6(dst)) = (pkt.src, pkt.dst) else {
            return DefragOutcome::NotFragment;
        };
        if pkt.ip.len() < 40 {
            return DefragOutcome::Dropped {
                reason: DropReason::CaptureTruncated,
                discarded: Vec::new(),
            };
        }
        if u16::from_be_bytes([pkt.ip[4], pkt.ip[5]]) == 0 {
            return DefragOutcome::PassThrough {
                reason: PassReason::Jumbogram,
                discarded: Vec::new(),
            };
        }
        let ip_len = pkt.ip_len as usize;
        let Ok(walk) = walk_ext_headers(pkt.ip, ip_len, pkt.ip[6], 40) else {
            return DefragOutcome::Dropped {
                reason: DropReason::CaptureTruncated,
                discarded: Vec::new(),
            };
        };
        let Some(fhoff) = walk.frag_hdr else {
            return DefragOutcome::NotFragment;
        };
        // RFC 8200 4.5: a first fragment must hold the upper-layer header.
        if frag.offset == 0 {
            match walk_ext_headers(pkt.ip, ip_len, 44, fhoff) {
                Ok(w) if w.end == WalkEnd::Upper => {
                    let need = match w.proto {
                        6 => 20,
                        17 | 58 => 8,
                        _ => 1,
                    };
                    if w.offset + need > ip_len {
                        return DefragOutcome::PassThrough {
                            reason: PassReason::IncompleteFirstFragment,
                            discarded: Vec::new(),
                        };
                    }
                }
                Ok(_) => {}
                Err(_) => {
                    return DefragOutcome::Dropped {
                        reason: DropReason::CaptureTruncated,
                        discarded: Vec::new(),
                    };
                }
            }
        }
        let key = Key::V6 {
            src,
            dst,
            id: frag.id,
        };
        let offset = frag.offset;
        let Some(data_len) = ip_len.checked_sub(fhoff + 8) else {
            return DefragOutcome::Dropped {
                reason: DropReason::Empty,
                discarded: Vec::new(),
            };
        };
        let end = offset + data_len as u32;
        if end > MAX_DATAGRAM {
            return DefragOutcome::Dropped {
                reason: DropReason::Oversized,
                discarded: Vec::new(),
            };
        }
        let ecn_bit = 1u8 << (pkt.tos & 3);
        let q = self.queue(key, now, timeout);
        let drop_one = |reason| DefragOutcome::Dropped {
            reason,
            discarded: Vec::new(),
        };
        if !frag.more {
            if end < q.len || (q.last_in && end != q.len) {
                return drop_one(DropReason::LengthMismatch);
            }
            q.last_in = true;
            q.len = end;
        } else {
            if end & 7 != 0 {
                let discarded = self
                    .queues
                    .remove(&key)
                    .map(|q| q.frames)
                    .unwrap_or_default();
                return DefragOutcome::PassThrough {
                    reason: PassReason::UnalignedFragment,
                    discarded,
                };
            }
            if end > q.len {
                if q.last_in {
                    return drop_one(DropReason::BeyondEnd);
                }
                q.len = end;
            }
        }
        if end == offset {
            return drop_one(DropReason::Empty);
        }
        let start = fhoff + 8;
        let Some(data) = pkt.ip.get(start..start + (end - offset) as usize) else {
            return drop_one(DropReason::CaptureTruncated);
        };
        match q.insert(offset, end) {
            Insert::Ok => {}
            Insert::Duplicate => return drop_one(DropReason::Duplicate),
            Insert::Overlap => return self.discard(key, DropReason::Overlap),
        }
        q.store(offset, end, data, frame, ecn_bit, || Head {
            header: pkt.ip[..fhoff].to_vec(),
            v6_prev_nexthdr: walk.frag_prev_nexthdr,
            v6_nexthdr: pkt.ip[fhoff],
            link: pkt.link_info(),
        });
        if !q.complete() {
            return DefragOutcome::Held {
                discarded: Vec::new(),
            };
        }
        let q = self.queues.remove(&key).expect("queue present");
        reassemble_v6(q)
    }
}

fn timeout_for(k: &Key, t: DefragTimeouts) -> Duration {
    match k {
        Key::V4 { .. } => t.ipv4,
        Key::V6 { .. } => t.ipv6,
    }
}

fn expired_info(k: Key, q: Queue) -> ExpiredQueue {
    let (family, src, dst, id, proto) = match k {
        Key::V4 {
            src,
            dst,
            id,
            proto,
        } => (
            Family::Ipv4,
            IpAddr::V4(src),
            IpAddr::V4(dst),
            id as u32,
            Some(proto),
        ),
        Key::V6 { src, dst, id } => (Family::Ipv6, IpAddr::V6(src), IpAddr::V6(dst), id, None),
    };
    ExpiredQueue {
        family,
        src,
        dst,
        id,
        proto,
        created: q.created,
        fragments: q.frames,
        had_first: q.first_in,
    }
}

/// `ip_frag_ecn_table`: the ECN codepoint to OR into the datagram, or
/// `None` for an invalid mix (Not-ECT together with ECT or CE).
fn ecn_merge(bits: u8) -> Option<u8> {
    const NOT_ECT: u8 = 1;
    const CE: u8 = 8;
    if bits & NOT_ECT != 0 && bits != NOT_ECT {
        return None;
    }
    if bits & CE != 0 && bits != CE {
        return Some(3);
    }
    Some(0)
}

fn payload(q: &mut Queue) -> Vec<u8> {
    q.stored.sort_by_key(|s| s.offset);
    let mut out = Vec::with_capacity(q.len as usize);
    for s in &q.stored {
        out.extend_from_slice(&s.data);
    }
    out
}

fn reassemble_v4(mut q: Queue) -> DefragOutcome {
    let frames = std::mem::take(&mut q.frames);
    let dropped = |reason| DefragOutcome::Dropped {
        reason,
        discarded: frames.clone(),
    };
    let Some(ecn) = ecn_merge(q.ecn) else {
        return dropped(DropReason::EcnMismatch);
    };
    let Some(head) = q.head.take() else {
        return dropped(DropReason::Empty);
    };
    let total = head.header.len() as u32 + q.len;
    if total > MAX_DATAGRAM {
        return dropped(DropReason::Oversized);
    }
    let mut datagram = head.header;
    datagram.extend_from_slice(&payload(&mut q));
    datagram[1] |= ecn;
    datagram[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    let frag_off: u16 = if q.max_df_size == q.max_size {
        0x4000
    } else {
        0
    };
    datagram[6..8].copy_from_slice(&frag_off.to_be_bytes());
    datagram[10..12].copy_from_slice(&[0, 0]);
    let ihl = (datagram[0] & 0x0f) as usize * 4;
    let csum = crate::wire::ipv4_header_checksum(&datagram[..ihl]);
    datagram[10..12].copy_from_slice(&csum.to_be_bytes());
    DefragOutcome::Complete(Reassembled {
        datagram,
        fragments: frames,
        link: head.link,
    })
}

fn reassemble_v6(mut q: Queue) -> DefragOutcome {
    let frames = std::mem::take(&mut q.frames);
    let dropped = |reason| DefragOutcome::Dropped {
        reason,
        discarded: frames.clone(),
    };
    let Some(ecn) = ecn_merge(q.ecn) else {
        return dropped(DropReason::EcnMismatch);
    };
    let Some(head) = q.head.take() else {
        return dropped(DropReason::Empty);
    };
    let payload_len = head.header.len() as u32 - 40 + q.len;
    if payload_len > MAX_DATAGRAM {
        return dropped(DropReason::Oversized);
    }
    let mut datagram = head.header;
    datagram[head.v6_prev_nexthdr] = head.v6_nexthdr;
    datagram[4..6].copy_from_slice(&(payload_len as u16).to_be_bytes());
    // Traffic class straddles bytes 0 and 1; its ECN bits are the low two.
    datagram[1] |= ecn << 4;
    datagram.extend_from_slice(&payload(&mut q));
    DefragOutcome::Complete(Reassembled {
        datagram,
        fragments: frames,
        link: head.link,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::CaptureReader;
    use crate::wire::{L4, decode, decode_ip};
    use std::path::Path;

    const T: DefragTimeouts = DefragTimeouts {
        ipv4: Duration::from_secs(30),
        ipv6: Duration::from_secs(60),
    };

    /// An IPv4 fragment: `offset` in bytes, header checksum left zero (the
    /// defragmenter does not look at it).
    fn frag4(
        id: u16,
        proto: u8,
        offset: u16,
        more: bool,
        df: bool,
        tos: u8,
        data: &[u8],
    ) -> Vec<u8> {
        let mut h = vec![0x45, tos];
        h.extend_from_slice(&(20 + data.len() as u16).to_be_bytes());
        h.extend_from_slice(&id.to_be_bytes());
        let fo = (offset / 8) | if more { 0x2000 } else { 0 } | if df { 0x4000 } else { 0 };
        h.extend_from_slice(&fo.to_be_bytes());
        h.extend_from_slice(&[64, proto, 0, 0, 192, 0, 2, 1, 198, 51, 100, 7]);
        h.extend_from_slice(data);
        h
    }

    fn push(d: &mut Defrag, bytes: &[u8], frame: u64, secs: u64) -> DefragOutcome {
        let p = decode_ip(bytes, LinkInfo::default()).unwrap();
        d.push(&p, frame, Timestamp::from_secs_nanos(secs, 0), T)
    }

    fn held(o: &DefragOutcome) -> bool {
        matches!(o, DefragOutcome::Held { discarded } if discarded.is_empty())
    }

    /// 24 bytes of UDP: header (ports 1000 → 2000, length 24) and 16 bytes.
    fn udp24() -> Vec<u8> {
        let mut u = vec![0x03, 0xe8, 0x07, 0xd0, 0, 24, 0, 0];
        u.extend((0u8..16).collect::<Vec<_>>());
        u
    }

    #[test]
    fn ipv4_out_of_order_reassembles_with_first_fragment_header() {
        let u = udp24();
        let mut d = Defrag::new();
        assert!(held(&push(
            &mut d,
            &frag4(7, 17, 16, false, false, 0, &u[16..]),
            10,
            1
        )));
        assert!(held(&push(
            &mut d,
            &frag4(7, 17, 0, true, false, 0, &u[..8]),
            11,
            1
        )));
        let DefragOutcome::Complete(r) =
            push(&mut d, &frag4(7, 17, 8, true, false, 0, &u[8..16]), 12, 1)
        else {
            panic!()
        };
        assert_eq!(r.fragments, vec![10, 11, 12]);
        assert_eq!(d.pending(), 0);
        let p = decode_ip(&r.datagram, r.link).unwrap();
        assert_eq!(p.ip_len, 44);
        assert!(p.frag.is_none() && p.ipv4_csum_ok);
        let L4::Udp(x) = p.l4 else { panic!() };
        assert_eq!((x.sport, x.dport, x.payload.len()), (1000, 2000, 16));
        assert_eq!(&r.datagram[20..], &u[..]);
    }

    #[test]
    fn ipv4_duplicates_are_dropped_overlaps_discard_the_queue() {
        let u = udp24();
        let mut d = Defrag::new();
        assert!(held(&push(
            &mut d,
            &frag4(1, 17, 0, true, false, 0, &u[..8]),
            1,
            0
        )));
        assert!(held(&push(
            &mut d,
            &frag4(1, 17, 8, true, false, 0, &u[8..16]),
            2,
            0
        )));
        // Exact duplicate, and a fragment inside the run 0..16: duplicates.
        let o = push(&mut d, &frag4(1, 17, 0, true, false, 0, &u[..8]), 3, 0);
        assert_eq!(
            o,
            DefragOutcome::Dropped {
                reason: DropReason::Duplicate,
                discarded: vec![]
            }
        );
        let o = push(&mut d, &frag4(1, 17, 8, true, false, 0, &u[8..16]), 4, 0);
        assert_eq!(
            o,
            DefragOutcome::Dropped {
                reason: DropReason::Duplicate,
                discarded: vec![]
            }
        );
        // Straddles the end of the run: overlap, the queue goes.
        let o = push(&mut d, &frag4(1, 17, 8, false, false, 0, &u[8..]), 5, 0);
        assert_eq!(
            o,
            DefragOutcome::Dropped {
                reason: DropReason::Overlap,
                discarded: vec![1, 2]
            }
        );
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn ipv4_length_conflicts_and_key_includes_protocol() {
        let u = udp24();
        let mut d = Defrag::new();
        assert!(held(&push(
            &mut d,
            &frag4(2, 17, 16, false, false, 0, &u[16..]),
            1,
            0
        )));
        // Another last fragment with a different end.
        let o = push(&mut d, &frag4(2, 17, 8, false, false, 0, &u[8..16]), 2, 0);
        assert_eq!(
            o,
            DefragOutcome::Dropped {
                reason: DropReason::LengthMismatch,
                discarded: vec![1]
            }
        );
        // Same id, other protocol: a separate queue.
        assert!(held(&push(
            &mut d,
            &frag4(3, 17, 0, true, false, 0, &u[..8]),
            3,
            0
        )));
        assert!(held(&push(
            &mut d,
            &frag4(3, 6, 8, false, false, 0, &u[8..16]),
            4,
            0
        )));
        assert_eq!(d.pending(), 2);
    }

    #[test]
    fn ipv4_ecn_and_df_rules() {
        let u = udp24();
        // Not-ECT mixed with ECT(0): reassembly fails.
        let mut d = Defrag::new();
        push(&mut d, &frag4(4, 17, 0, true, false, 0, &u[..16]), 1, 0);
        let o = push(&mut d, &frag4(4, 17, 16, false, false, 2, &u[16..]), 2, 0);
        assert_eq!(
            o,
            DefragOutcome::Dropped {
                reason: DropReason::EcnMismatch,
                discarded: vec![1, 2]
            }
        );
        // ECT(0) with CE: the datagram is CE. DF on the largest fragment: DF.
        push(&mut d, &frag4(5, 17, 0, true, true, 2, &u[..16]), 3, 0);
        let DefragOutcome::Complete(r) =
            push(&mut d, &frag4(5, 17, 16, false, false, 3, &u[16..]), 4, 0)
        else {
            panic!()
        };
        assert_eq!(r.datagram[1] & 3, 3);
        assert_eq!(r.datagram[6] & 0x40, 0x40);
        // DF only on the smaller fragment: no DF.
        push(&mut d, &frag4(6, 17, 0, true, false, 0, &u[..16]), 5, 0);
        let DefragOutcome::Complete(r) =
            push(&mut d, &frag4(6, 17, 16, false, true, 0, &u[16..]), 6, 0)
        else {
            panic!()
        };
        assert_eq!(r.datagram[6] & 0x40, 0);
    }

    #[test]
    fn queues_expire_from_their_first_fragment() {
        let u = udp24();
        let mut d = Defrag::new();
        push(&mut d, &frag4(8, 17, 0, true, false, 0, &u[..8]), 1, 100);
        push(&mut d, &frag4(8, 17, 8, true, false, 0, &u[8..16]), 2, 129);
        assert!(
            d.expire(Timestamp::from_secs_nanos(129, 999_999_999), T)
                .is_empty()
        );
        let e = d.expire(Timestamp::from_secs_nanos(130, 0), T);
        assert_eq!(e.len(), 1);
        assert_eq!(
            (e[0].fragments.clone(), e[0].had_first, e[0].proto),
            (vec![1, 2], true, Some(17))
        );
        // A fragment arriving after the deadline starts a new queue; the old
        // one is reported by the next expire().
        let mut d = Defrag::new();
        push(&mut d, &frag4(9, 17, 0, true, false, 0, &u[..8]), 1, 0);
        assert!(held(&push(
            &mut d,
            &frag4(9, 17, 8, true, false, 0, &u[8..16]),
            2,
            31
        )));
        let e = d.expire(Timestamp::from_secs_nanos(31, 0), T);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].fragments, vec![1]);
        assert_eq!(d.pending(), 1);
    }

    #[test]
    fn ipfrag_max_dist_restarts_a_stale_queue() {
        let u = udp24();
        let mut d = Defrag::new();
        push(&mut d, &frag4(10, 17, 0, true, false, 0, &u[..8]), 1, 0);
        // 65 fragments of other datagrams from the same source.
        for i in 0..65u16 {
            push(
                &mut d,
                &frag4(100 + i, 17, 8, true, false, 0, &u[8..16]),
                2 + i as u64,
                0,
            );
        }
        let o = push(&mut d, &frag4(10, 17, 8, false, false, 0, &u[8..]), 100, 0);
        assert_eq!(o, DefragOutcome::Held { discarded: vec![1] });
        // With the check off, the same sequence completes.
        let mut d = Defrag::new().with_max_dist(0);
        push(&mut d, &frag4(10, 17, 0, true, false, 0, &u[..8]), 1, 0);
        for i in 0..65u16 {
            push(
                &mut d,
                &frag4(100 + i, 17, 8, true, false, 0, &u[8..16]),
                2 + i as u64,
                0,
            );
        }
        assert!(matches!(
            push(&mut d, &frag4(10, 17, 8, false, false, 0, &u[8..]), 100, 0),
            DefragOutcome::Complete(_)
        ));
    }

    fn corpus(name: &str) -> Option<CaptureReader> {
        let p = Path::new("/work/shared/captures/ipv6").join(name);
        if !p.exists() {
            eprintln!("SKIPPED: {} not found", p.display());
            return None;
        }
        Some(CaptureReader::open(&p).unwrap())
    }

    #[test]
    fn sanders_ipv6_fragments_reassemble_into_echo_messages() {
        let Some(mut r) = corpus("sanders_ipv6-fragments.pcapng") else {
            return;
        };
        let mut d = Defrag::new();
        let mut done = Vec::new();
        while let Some(f) = r.next_frame().unwrap() {
            let p = decode(&f).unwrap();
            match d.push(&p, f.index, f.ts, T) {
                DefragOutcome::Complete(c) => {
                    let q = decode_ip(&c.datagram, c.link).unwrap();
                    let L4::Icmpv6(i) = q.l4 else { panic!() };
                    // The sender's checksum covers the whole message: it only
                    // verifies if the pieces were put together right.
                    assert_eq!(q.l4_checksum_ok(), Some(true));
                    assert_eq!((q.ip_len, q.l4_offset, q.frag), (1548, 40, None));
                    done.push((c.fragments, i.icmp_type, i.id, i.seq));
                }
                DefragOutcome::Held { .. } => {}
                DefragOutcome::NotFragment => assert!(f.index > 20),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(done.len(), 10);
        for (k, (frames, t, id, seq)) in done.iter().enumerate() {
            let k = k as u64;
            assert_eq!(frames, &vec![2 * k + 1, 2 * k + 2]);
            assert_eq!(
                (*t, *id, *seq as u64),
                (
                    if k.is_multiple_of(2) { 128 } else { 129 },
                    59968,
                    k / 2 + 1
                )
            );
        }
    }

    #[test]
    fn zeek_fragmented_dns_completes_and_a_lone_fragment_expires() {
        let Some(mut r) = corpus("zeek_ipv6-fragmented-dns.pcap") else {
            return;
        };
        let mut d = Defrag::new();
        let mut complete = Vec::new();
        let mut last = Timestamp(0);
        while let Some(f) = r.next_frame().unwrap() {
            last = f.ts;
            let p = decode(&f).unwrap();
            if let DefragOutcome::Complete(c) = d.push(&p, f.index, f.ts, T) {
                let q = decode_ip(&c.datagram, c.link).unwrap();
                let L4::Udp(u) = q.l4 else { panic!() };
                assert_eq!((u.sport, u.dport, u.length), (53, 51851, 3238));
                assert_eq!(q.l4_checksum_ok(), Some(true));
                complete.push(c.fragments);
            }
        }
        assert_eq!(complete, vec![vec![6, 7, 8]]);
        assert_eq!(d.pending(), 1);
        let e = d.expire(last.add(Duration::from_secs(60)), T);
        assert_eq!(e.len(), 1);
        assert_eq!(
            (e[0].fragments.clone(), e[0].had_first, e[0].id),
            (vec![4], false, 1)
        );
    }

    #[test]
    fn ipv6_atomic_fragment_completes_without_its_fragment_header() {
        // fixed header (next = fragment) + fragment header (next = UDP, offset 0, M=0) + UDP
        let mut pkt = vec![0x60, 0, 0, 0, 0, 24, 44, 64];
        pkt.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        pkt.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        pkt.extend_from_slice(&[17, 0, 0, 0, 0, 0, 0, 9]);
        pkt.extend_from_slice(&[0, 7, 0, 9, 0, 16, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
        let mut d = Defrag::new();
        let p = decode_ip(&pkt, LinkInfo::default()).unwrap();
        let DefragOutcome::Complete(c) = d.push(&p, 1, Timestamp(0), T) else {
            panic!()
        };
        assert_eq!(c.datagram.len(), 56);
        assert_eq!((c.datagram[6], &c.datagram[4..6]), (17, &[0u8, 16][..]));
        assert_eq!(&c.datagram[40..], &pkt[48..]);
    }

    #[test]
    fn ipv6_first_fragment_without_whole_tcp_header_passes_through() {
        let mut pkt = vec![0x60, 0, 0, 0, 0, 16, 44, 64];
        pkt.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        pkt.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        pkt.extend_from_slice(&[6, 0, 0, 1, 0, 0, 0, 9]); // offset 0, M=1
        pkt.extend_from_slice(&[0; 8]); // only 8 of TCP's 20 bytes
        let p = decode_ip(&pkt, LinkInfo::default()).unwrap();
        assert!(matches!(p.l4, L4::Malformed));
        let o = Defrag::new().push(&p, 1, Timestamp(0), T);
        assert_eq!(
            o,
            DefragOutcome::PassThrough {
                reason: PassReason::IncompleteFirstFragment,
                discarded: vec![]
            }
        );
    }
}
