//! The connection table: entries in a slab, found through both of their
//! tuples, invisible from the moment their timer runs out.

use super::tuple::Tuple;
use super::{Conn, Dir};
use crate::time::Timestamp;
use rustc_hash::FxHashMap;

/// Index of an entry in the table's slab.
pub type ConnId = u32;

#[derive(Debug, Default)]
pub struct Table {
    slots: Vec<Option<Conn>>,
    free: Vec<ConnId>,
    index: FxHashMap<Tuple, (ConnId, Dir)>,
    live: usize,
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
    pub fn find(&self, tuple: &Tuple) -> Option<(ConnId, Dir)> {
        self.index.get(tuple).copied()
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
        let t0 = conn.tuple[0];
        let t1 = conn.tuple[1];
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
        self.index.insert(t0, (id, Dir::Original));
        self.index.insert(t1, (id, Dir::Reply));
        self.live += 1;
        id
    }

    pub fn remove(&mut self, id: ConnId) -> Conn {
        let conn = self.slots[id as usize].take().expect("live conn id");
        for (d, t) in conn.tuple.iter().enumerate() {
            if self.index.get(t).is_some_and(|&(i, _)| i == id) {
                self.index.remove(t);
            }
            let _ = d;
        }
        self.free.push(id);
        self.live -= 1;
        conn
    }

    /// Ids of every entry whose timer ran out at `now`.
    pub fn expired(&self, now: Timestamp, out: &mut Vec<ConnId>) {
        out.clear();
        for (i, s) in self.slots.iter().enumerate() {
            if let Some(c) = s
                && c.expires <= now
            {
                out.push(i as ConnId);
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
