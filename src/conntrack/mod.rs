//! Connection tracking: a model of the kernel's `nf_conntrack`.
//!
//! Tuples and directions, the connection table with expiry on the capture
//! clock, per-protocol trackers (`proto/`), helpers and expectations
//! (`helper/`), and IP defragmentation as `nf_defrag_ipv4/ipv6` does it before
//! conntrack. It knows decoded packets (`wire`) and nothing of rules or hooks:
//! the netfilter layer calls [`Conntrack`] at the conntrack and confirm hooks.

pub mod defrag;
pub mod proto;
pub mod sysctl;

pub use sysctl::Sysctls;

/// Direction of a packet relative to its connection (`IP_CT_DIR_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dir {
    Original = 0,
    Reply = 1,
}

impl Dir {
    pub fn index(self) -> usize {
        self as usize
    }
    pub fn opposite(self) -> Dir {
        match self {
            Dir::Original => Dir::Reply,
            Dir::Reply => Dir::Original,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Dir::Original => "ORIGINAL",
            Dir::Reply => "REPLY",
        }
    }
}

/// Connection status bits (`IPS_*`), as a bit set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Status(pub u32);

impl Status {
    pub const EXPECTED: u32 = 1 << 0;
    pub const SEEN_REPLY: u32 = 1 << 1;
    pub const ASSURED: u32 = 1 << 2;
    pub const CONFIRMED: u32 = 1 << 3;
    pub const SRC_NAT: u32 = 1 << 4;
    pub const DST_NAT: u32 = 1 << 5;
    pub const DYING: u32 = 1 << 9;
    pub const FIXED_TIMEOUT: u32 = 1 << 10;
    pub const HELPER: u32 = 1 << 13;

    pub fn has(self, bit: u32) -> bool {
        self.0 & bit != 0
    }
    pub fn set(&mut self, bit: u32) {
        self.0 |= bit;
    }
    /// `EXPECTED|SEEN_REPLY|ASSURED|CONFIRMED` in bit order, as `conntrack`
    /// and ctnetlink name them; empty when no bit is set.
    pub fn names(self) -> String {
        const NAMES: &[(u32, &str)] = &[
            (Status::EXPECTED, "EXPECTED"),
            (Status::SEEN_REPLY, "SEEN_REPLY"),
            (Status::ASSURED, "ASSURED"),
            (Status::CONFIRMED, "CONFIRMED"),
            (Status::SRC_NAT, "SRC_NAT"),
            (Status::DST_NAT, "DST_NAT"),
            (Status::DYING, "DYING"),
            (Status::FIXED_TIMEOUT, "FIXED_TIMEOUT"),
            (Status::HELPER, "HELPER"),
        ];
        let mut out = String::new();
        for (bit, name) in NAMES {
            if self.has(*bit) {
                if !out.is_empty() {
                    out.push('|');
                }
                out.push_str(name);
            }
        }
        out
    }
}

/// The state an iptables `state`/`conntrack` match sees (`XT_STATE_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CtState {
    New,
    Established,
    Related,
    Invalid,
    Untracked,
}

impl CtState {
    pub fn name(self) -> &'static str {
        match self {
            CtState::New => "NEW",
            CtState::Established => "ESTABLISHED",
            CtState::Related => "RELATED",
            CtState::Invalid => "INVALID",
            CtState::Untracked => "UNTRACKED",
        }
    }
}
