//! The connection table: entries in a slab, found through both of their
//! tuples, invisible from the moment their timer runs out.
//!
//! Expiry is found through a timer wheel of deadlines rather than a scan of
//! the slab, so the periodic gc costs what it reaps, not what the table
//! holds. The wheel is lazy: a timer that moves later keeps its old deadline
//! in the wheel and is re-queued when that deadline comes up; a timer that
//! moves earlier must be reported with [`Table::rearm`]. The table does not
//! decide when entries leave; [`Table::expired`] lists them for the caller.
//!
//! A wheel rather than a heap because timers move on nearly every packet of
//! a connection whose state changes (a TCP entry goes from its 5-day to its
//! 300-second timeout while data is unacknowledged, and back): queueing is
//! one append to a slot's list instead of a sift through a heap far larger
//! than the cache.
//!
//! The tuple index ([`super::index`]) holds slot numbers and hash bits
//! only, and keys are compared against the tuples stored in the entries
//! themselves: a lookup touches one line of the index and the entry it
//! needs anyway. Both can be prefetched packets ahead ([`Table::prefetch`]).

use super::index::{Packed, TupleIndex, prefetch_line};
use super::tuple::Tuple;
use super::{Conn, Dir};
use crate::time::Timestamp;
use rustc_hash::FxHasher;
use std::hash::{Hash, Hasher};

/// A queued deadline: when, which slot, and the uid of the entry that was in
/// it (slots are reused).
#[derive(Debug, Clone, Copy)]
struct Deadline {
    at: Timestamp,
    id: ConnId,
    uid: u64,
}

/// log2 of a wheel tick in nanoseconds (about 1.07 s, near the gc's 1 s
/// period, so a sweep visits one or two slots).
const TICK_SHIFT: u32 = 30;
/// Slots in the wheel (about 18 minutes of ticks). Deadlines further out
/// share slots with nearer ones and are passed over until their turn.
const WHEEL_SLOTS: usize = 1024;

/// Deadlines by the tick they fall in, modulo [`WHEEL_SLOTS`].
#[derive(Debug)]
struct Wheel {
    slots: Vec<Vec<Deadline>>,
    /// Every tick before this one has been fully visited.
    swept: u64,
    len: usize,
}

impl Default for Wheel {
    fn default() -> Self {
        Wheel {
            slots: (0..WHEEL_SLOTS).map(|_| Vec::new()).collect(),
            swept: 0,
            len: 0,
        }
    }
}

impl Wheel {
    fn tick(at: Timestamp) -> u64 {
        at.0 >> TICK_SHIFT
    }

    fn push(&mut self, d: Deadline) {
        // A deadline in a tick already passed is due at the next visit,
        // which starts at `swept`.
        let t = Self::tick(d.at).max(self.swept);
        self.slots[t as usize % WHEEL_SLOTS].push(d);
        self.len += 1;
    }

    /// Hands every deadline not later than `now` to `due`, which returns
    /// the deadline to queue instead, if any; later ones stay.
    fn advance(&mut self, now: Timestamp, mut due: impl FnMut(Deadline) -> Option<Deadline>) {
        let cur = Self::tick(now);
        let first = self.swept.min(cur);
        // Past a full turn every slot is visited once.
        let last = cur.min(first + WHEEL_SLOTS as u64 - 1);
        let mut again = Vec::new();
        for t in first..=last {
            let slot = &mut self.slots[t as usize % WHEEL_SLOTS];
            let before = slot.len();
            slot.retain(|d| {
                if d.at > now {
                    return true;
                }
                if let Some(n) = due(*d) {
                    again.push(n);
                }
                false
            });
            self.len -= before - slot.len();
            // A slot that once held a crowd keeps no memory for it.
            if slot.capacity() > 64 && slot.len() < slot.capacity() / 4 {
                slot.shrink_to(slot.len() * 2);
            }
        }
        // The current tick may still hold deadlines later than `now`.
        self.swept = cur;
        for d in again {
            self.push(d);
        }
    }

    /// Empties the wheel and gives back the slots' memory.
    fn clear(&mut self) {
        for s in &mut self.slots {
            *s = Vec::new();
        }
        self.len = 0;
    }
}

/// Index of an entry in the table's slab.
pub type ConnId = u32;

#[derive(Debug, Default)]
pub struct Table {
    slots: Vec<Option<Conn>>,
    free: Vec<ConnId>,
    /// `id << 1 | direction`, keyed by the entry's tuple in that direction.
    index: TupleIndex,
    live: usize,
    /// Deadlines; may hold stale ones (see module docs).
    timers: Wheel,
}

impl Table {
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Finds the entry holding `tuple` in either direction, whatever its
    /// timer says; the caller decides about expiry.
    #[inline]
    pub fn find(&self, tuple: &Tuple) -> Option<(ConnId, Dir)> {
        let slots = &self.slots;
        self.index
            .find(hash(tuple), |e| key_of(slots, e) == Some(tuple))
            .map(unpack)
    }

    /// Starts loading what a lookup of the tuple with hash `h` (from
    /// [`Table::hash_of`]) will read: with `entry` false the index bucket,
    /// with `entry` true (some packets later, when the bucket has arrived)
    /// the entries it points to. Only a hint.
    #[inline]
    pub fn prefetch(&self, h: u64, entry: bool) {
        if !entry {
            self.index.prefetch(h);
            return;
        }
        self.index.candidates(h, |e| {
            if let Some(slot) = self.slots.get((e >> 1) as usize) {
                let p = slot as *const Option<Conn> as *const u8;
                // The fields a lookup and the trackers read are the first
                // 170 or so bytes (Conn is laid out hot fields first), which
                // an unaligned entry spreads over up to four lines.
                for off in [0, 64, 128, 176] {
                    prefetch_line(p.wrapping_add(off));
                }
            }
        });
    }

    /// The hash the index files `tuple` under.
    pub fn hash_of(tuple: &Tuple) -> u64 {
        hash(tuple)
    }

    pub fn get(&self, id: ConnId) -> &Conn {
        self.slots[id as usize].as_ref().expect("live conn id")
    }

    pub fn get_mut(&mut self, id: ConnId) -> &mut Conn {
        self.slots[id as usize].as_mut().expect("live conn id")
    }

    pub fn try_get(&self, id: ConnId) -> Option<&Conn> {
        self.slots.get(id as usize).and_then(|s| s.as_ref())
    }

    pub fn insert(&mut self, conn: Conn) -> ConnId {
        let (expires, uid) = (conn.expires, conn.uid);
        let mut conn = conn;
        conn.timer = expires;
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = Some(conn);
                id
            }
            None => {
                self.slots.push(Some(conn));
                (self.slots.len() - 1) as ConnId
            }
        };
        self.timers.push(Deadline {
            at: expires,
            id,
            uid,
        });
        for dir in [Dir::Original, Dir::Reply] {
            self.link(id, dir);
        }
        self.live += 1;
        id
    }

    /// Makes the entry's tuple in `dir` find it; a live entry already
    /// found under that tuple loses it (the later insert wins).
    fn link(&mut self, id: ConnId, dir: Dir) {
        let slots = &self.slots;
        let t = &slots[id as usize].as_ref().expect("live conn id").tuple[dir.index()];
        let packed = pack(id, dir);
        self.index.insert(hash(t), packed, |e| {
            e != packed && key_of(slots, e) == Some(t)
        });
    }

    pub fn remove(&mut self, id: ConnId) -> Conn {
        let conn = self.slots[id as usize].take().expect("live conn id");
        for dir in [Dir::Original, Dir::Reply] {
            self.index
                .remove(hash(&conn.tuple[dir.index()]), pack(id, dir));
        }
        self.free.push(id);
        self.live -= 1;
        conn
    }

    /// Tells the table that entry `id`'s timer may have moved earlier.
    /// Needed after every change of `expires` that can shorten it; a later
    /// deadline needs nothing.
    pub fn rearm(&mut self, id: ConnId) {
        let Some(c) = self.slots.get_mut(id as usize).and_then(|s| s.as_mut()) else {
            return;
        };
        if c.expires < c.timer {
            c.timer = c.expires;
            self.timers.push(Deadline {
                at: c.expires,
                id,
                uid: c.uid,
            });
        }
    }

    /// Ids of every entry whose timer ran out at `now`, in ascending order.
    pub fn expired(&mut self, now: Timestamp, out: &mut Vec<ConnId>) {
        out.clear();
        let slots = &mut self.slots;
        self.timers.advance(now, |d| {
            let c = slots[d.id as usize].as_mut()?;
            // Stale: the slot was reused, or a rearm queued an earlier one.
            if c.uid != d.uid || c.timer != d.at {
                return None;
            }
            if c.expires <= now {
                out.push(d.id);
                None
            } else {
                c.timer = c.expires;
                Some(Deadline { at: c.expires, ..d })
            }
        });
        // Two queued deadlines of one entry can be equal after a rearm.
        out.sort_unstable();
        out.dedup();
        self.compact_timers();
    }

    /// Drops stale deadlines (of removed entries, or superseded by a rearm)
    /// once they outnumber the live ones, so the wheel stays proportional
    /// to the table and not to the number of timer changes.
    fn compact_timers(&mut self) {
        if self.timers.len <= 2 * self.live + 1024 {
            return;
        }
        self.timers.clear();
        for (i, s) in self.slots.iter().enumerate() {
            if let Some(c) = s {
                self.timers.push(Deadline {
                    at: c.timer,
                    id: i as ConnId,
                    uid: c.uid,
                });
            }
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (ConnId, &Conn)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|c| (i as ConnId, c)))
    }
}

fn hash(t: &Tuple) -> u64 {
    let mut h = FxHasher::default();
    t.hash(&mut h);
    h.finish()
}

fn pack(id: ConnId, dir: Dir) -> Packed {
    id << 1 | dir.index() as u32
}

fn unpack(e: Packed) -> (ConnId, Dir) {
    let dir = if e & 1 == 0 {
        Dir::Original
    } else {
        Dir::Reply
    };
    (e >> 1, dir)
}

/// The tuple an index entry stands for.
#[inline]
fn key_of(slots: &[Option<Conn>], e: Packed) -> Option<&Tuple> {
    let (id, dir) = unpack(e);
    slots
        .get(id as usize)
        .and_then(|s| s.as_ref())
        .map(|c| &c.tuple[dir.index()])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conntrack::{ProtoState, Status, expect::HelpState};

    fn conn(uid: u64, expires: u64) -> Conn {
        let t = Tuple {
            src: std::net::IpAddr::from([10, 0, (uid >> 8) as u8, uid as u8]),
            dst: std::net::IpAddr::from([10, 1, 0, 1]),
            sport: 1000,
            dport: 80,
            proto: 17,
        };
        let r = t.invert().unwrap();
        Conn {
            uid,
            tuple: [t, r],
            status: Status::default(),
            expires: Timestamp(expires),
            timer: Timestamp(0),
            proto: ProtoState::Generic,
            mark: 0,
            master: None,
            helper: None,
            help: HelpState::default(),
        }
    }

    /// A slot that held a crowd of deadlines gives its memory back once
    /// they are due, and so does a cleared wheel.
    #[test]
    fn wheel_memory_follows_what_it_holds() {
        let mut w = Wheel::default();
        let at = Timestamp(5 << TICK_SHIFT);
        for id in 0..100_000 {
            w.push(Deadline { at, id, uid: 1 });
        }
        w.push(Deadline {
            at: Timestamp(6 << TICK_SHIFT),
            id: 7,
            uid: 1,
        });
        let mut due = 0;
        w.advance(at, |_| {
            due += 1;
            None
        });
        assert_eq!((due, w.len), (100_000, 1));
        let cap: usize = w.slots.iter().map(Vec::capacity).sum();
        assert!(cap < 1000, "{cap}");
        for id in 0..100_000 {
            w.push(Deadline { at, id, uid: 1 });
        }
        w.clear();
        assert_eq!(w.slots.iter().map(Vec::capacity).sum::<usize>(), 0);
    }

    /// The gc wheel finds exactly what a scan of every entry finds, in slot
    /// order, while timers move both ways and slots are reused.
    #[test]
    fn expired_matches_a_full_scan() {
        // Nanosecond steps (all in one wheel tick); steps of a third of a
        // second with timers up to 45 minutes, so deadlines span many
        // ticks and wrap the wheel; and long gaps between sweeps.
        for (scale, step, spread, end, new) in [
            (1, 7, 300, 4_000, 3),
            (333_333_333, 7, 8_000, 4_000, 3),
            (1_000_000_000, 1_500, 3_000, 400_000, 300),
        ] {
            scan_with(scale, step, spread, end, new);
        }
    }

    fn scan_with(scale: u64, step: usize, spread: u64, end: u64, new: usize) {
        let mut t = Table::default();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let (mut uid, mut got) = (0u64, Vec::new());
        for now in (0..end).step_by(step) {
            let now = now * scale;
            for _ in 0..new {
                uid += 1;
                t.insert(conn(uid, now + 1 + rnd(spread) * scale));
            }
            let ids: Vec<ConnId> = t.iter().map(|(id, _)| id).collect();
            for _ in 0..4 {
                let id = ids[rnd(ids.len() as u64) as usize];
                // Later or earlier, as refreshes and closes move timers.
                t.get_mut(id).expires = Timestamp(now + rnd(spread * 4 / 3) * scale);
                t.rearm(id);
            }
            let mut want: Vec<ConnId> = t
                .iter()
                .filter(|(_, c)| c.expires.0 <= now)
                .map(|(id, _)| id)
                .collect();
            want.sort_unstable();
            t.expired(Timestamp(now), &mut got);
            assert_eq!(got, want, "at {now}");
            for &id in &got {
                t.remove(id);
            }
        }
        assert!(t.timers.len <= 2 * t.len() + 1024);
        // Nor does the wheel keep the memory of crowds it once held.
        let cap: usize = t.timers.slots.iter().map(Vec::capacity).sum();
        assert!(cap <= 4 * t.timers.len + 128 * WHEEL_SLOTS, "{cap}");
    }
}
