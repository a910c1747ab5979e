//! Expectations: connections a helper announced before they start
//! (`nf_conntrack_expect.c` semantics).
//!
//! An expectation is consulted only when a packet creates a new entry; the
//! first match turns that entry into an EXPECTED, RELATED child of the master
//! and is consumed. Expectations die with their master and on their own timer,
//! which is never refreshed.
//!
//! The timer runs out at exactly its timeout on the capture clock. The
//! kernel removes expectations from a timer callback, and its timer wheel
//! rounds long timers up to the granularity of their wheel level (4096
//! jiffies, 16.4 s at HZ=250, for the 300 s of FTP and TFTP), at a phase set by
//! the machine's uptime. So on a real box an expectation may still match up
//! to 16.4 s after its timeout; no offline tool can know that phase.

use super::HelperKind;
use super::table::ConnId;
use super::tuple::Tuple;
use crate::time::Timestamp;
use rustc_hash::FxHashMap;
use std::net::IpAddr;
use thiserror::Error;

/// One expected connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectation {
    /// The expected ORIGINAL tuple. `sport` is ignored when `any_sport`.
    pub tuple: Tuple,
    pub any_sport: bool,
    /// Source address to match; None matches any source.
    pub src: Option<IpAddr>,
    pub master: ConnId,
    pub master_uid: u64,
    pub helper: HelperKind,
    pub expires: Timestamp,
}

impl Expectation {
    fn matches(&self, t: &Tuple) -> bool {
        t.proto == self.tuple.proto
            && t.dst == self.tuple.dst
            && t.dport == self.tuple.dport
            && self.src.is_none_or(|s| s == t.src)
            && (self.any_sport || t.sport == self.tuple.sport)
    }

    /// Same tuple and mask: a re-announcement of the same expectation.
    fn same(&self, o: &Expectation) -> bool {
        self.tuple.proto == o.tuple.proto
            && self.tuple.dst == o.tuple.dst
            && self.tuple.dport == o.tuple.dport
            && self.src == o.src
            && self.any_sport == o.any_sport
            && (self.any_sport || self.tuple.sport == o.tuple.sport)
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ExpectError {
    /// An identical expectation belongs to another master (`-EALREADY`).
    #[error("an identical expectation exists for another connection")]
    Already,
    /// The global limit `nf_conntrack_expect_max` is reached.
    #[error("expectation table full")]
    Full,
}

/// Per-connection helper scratch state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HelpState {
    /// FTP: per direction, sequence numbers that follow a newline.
    pub seq_after_nl: [[u32; 2]; 2],
    pub seq_after_nl_count: [u8; 2],
}

/// All pending expectations, indexed by (destination address, port, protocol),
/// the part of the tuple that is never masked.
#[derive(Debug, Default)]
pub struct Expectations {
    by_dst: FxHashMap<(IpAddr, u16, u8), Vec<Expectation>>,
    count: usize,
}

impl Expectations {
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = &Expectation> {
        self.by_dst.values().flatten()
    }

    /// Finds and removes the expectation a new tuple matches, if its master
    /// is still alive (`alive(master id, master uid)`) and it has not expired.
    pub fn take_match(
        &mut self,
        t: &Tuple,
        now: Timestamp,
        alive: impl Fn(ConnId, u64) -> bool,
    ) -> Option<Expectation> {
        if self.count == 0 {
            return None;
        }
        let list = self.by_dst.get_mut(&(t.dst, t.dport, t.proto))?;
        let pos = list
            .iter()
            .position(|e| e.expires > now && e.matches(t) && alive(e.master, e.master_uid))?;
        let e = list.swap_remove(pos);
        self.count -= 1;
        Some(e)
    }

    /// Inserts an expectation, first evicting the master's older
    /// expectations beyond `max_expected = 1` (FTP and TFTP) and any identical
    /// one of the same master. Returns what was evicted.
    pub fn insert(
        &mut self,
        e: Expectation,
        global_max: usize,
    ) -> Result<Vec<Expectation>, ExpectError> {
        let mut evicted = Vec::new();
        // An identical expectation of another master blocks the new one.
        if let Some(list) = self
            .by_dst
            .get(&(e.tuple.dst, e.tuple.dport, e.tuple.proto))
            && list
                .iter()
                .any(|o| o.same(&e) && o.master_uid != e.master_uid)
        {
            {
                return Err(ExpectError::Already);
            }
        }
        // One pending expectation per master and helper class.
        for list in self.by_dst.values_mut() {
            let mut i = 0;
            while i < list.len() {
                if list[i].master_uid == e.master_uid && list[i].helper == e.helper {
                    evicted.push(list.swap_remove(i));
                } else {
                    i += 1;
                }
            }
        }
        self.count -= evicted.len();
        if self.count >= global_max {
            return Err(ExpectError::Full);
        }
        self.by_dst
            .entry((e.tuple.dst, e.tuple.dport, e.tuple.proto))
            .or_default()
            .push(e);
        self.count += 1;
        Ok(evicted)
    }

    /// Removes every expectation of a master (it is being destroyed).
    pub fn remove_master(&mut self, id: ConnId, uid: u64) -> Vec<Expectation> {
        if self.count == 0 {
            return Vec::new();
        }
        let mut out = Vec::new();
        for list in self.by_dst.values_mut() {
            let mut i = 0;
            while i < list.len() {
                if list[i].master == id && list[i].master_uid == uid {
                    out.push(list.swap_remove(i));
                } else {
                    i += 1;
                }
            }
        }
        self.count -= out.len();
        self.by_dst.retain(|_, l| !l.is_empty());
        out
    }

    /// Removes expectations whose timer ran out.
    pub fn expire(&mut self, now: Timestamp) -> Vec<Expectation> {
        if self.count == 0 {
            return Vec::new();
        }
        let mut out = Vec::new();
        for list in self.by_dst.values_mut() {
            let mut i = 0;
            while i < list.len() {
                if list[i].expires <= now {
                    out.push(list.swap_remove(i));
                } else {
                    i += 1;
                }
            }
        }
        self.count -= out.len();
        self.by_dst.retain(|_, l| !l.is_empty());
        out
    }
}
