//! The human summary printed on stderr after a replay.

use super::row::{Row, RowVerdict};
use crate::conntrack::CtState;
use std::fmt::Write as _;

/// Counters over all rows.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub packets: u64,
    pub accept: u64,
    pub drop: u64,
    pub reject: u64,
    pub notip: u64,
    pub defrag: u64,
    /// NEW, ESTABLISHED, RELATED, INVALID, UNTRACKED.
    pub states: [u64; 5],
}

impl Summary {
    pub fn add(&mut self, r: &Row) {
        self.packets += 1;
        match r.verdict {
            RowVerdict::Accept => self.accept += 1,
            RowVerdict::Drop => self.drop += 1,
            RowVerdict::Reject => self.reject += 1,
            RowVerdict::NotIp => self.notip += 1,
            RowVerdict::Defrag => self.defrag += 1,
        }
        if let Some(s) = r.ctstate {
            self.states[match s {
                CtState::New => 0,
                CtState::Established => 1,
                CtState::Related => 2,
                CtState::Invalid => 3,
                CtState::Untracked => 4,
            }] += 1;
        }
    }

    pub fn merge(&mut self, o: &Summary) {
        self.packets += o.packets;
        self.accept += o.accept;
        self.drop += o.drop;
        self.reject += o.reject;
        self.notip += o.notip;
        self.defrag += o.defrag;
        for i in 0..5 {
            self.states[i] += o.states[i];
        }
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} packets: {} ACCEPT, {} DROP, {} REJECT, {} not IP, {} in incomplete fragment sets",
            self.packets, self.accept, self.drop, self.reject, self.notip, self.defrag
        );
        let _ = writeln!(
            s,
            "ctstate: {} NEW, {} ESTABLISHED, {} RELATED, {} INVALID, {} UNTRACKED",
            self.states[0], self.states[1], self.states[2], self.states[3], self.states[4]
        );
        s
    }
}
