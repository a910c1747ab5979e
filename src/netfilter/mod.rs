//! Netfilter's skeleton: hooks, tables, and the path a packet takes through
//! them from the firewall's point of view.
//!
//! Which hooks a packet enters depends on where its addresses live: packets
//! to one of the firewall's own addresses go PREROUTING→INPUT, packets from
//! one go OUTPUT→POSTROUTING, everything else is forwarded
//! (PREROUTING→FORWARD→POSTROUTING). [`Topology`] answers that, and which
//! interface each address sits behind. This module holds no rules and no
//! connection state.

pub mod topology;

pub use topology::{Path, RouteDrop, Topology};

/// A netfilter hook (`NF_INET_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Hook {
    Prerouting,
    Input,
    Forward,
    Output,
    Postrouting,
}

impl Hook {
    pub const ALL: [Hook; 5] = [
        Hook::Prerouting,
        Hook::Input,
        Hook::Forward,
        Hook::Output,
        Hook::Postrouting,
    ];

    /// The built-in chain name for this hook.
    pub fn chain_name(self) -> &'static str {
        match self {
            Hook::Prerouting => "PREROUTING",
            Hook::Input => "INPUT",
            Hook::Forward => "FORWARD",
            Hook::Output => "OUTPUT",
            Hook::Postrouting => "POSTROUTING",
        }
    }

    pub fn from_chain_name(n: &str) -> Option<Hook> {
        Hook::ALL.into_iter().find(|h| h.chain_name() == n)
    }

    /// Same as [`Hook::chain_name`].
    pub fn name(self) -> &'static str {
        self.chain_name()
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// The hooks where the filter table sits and `-m state` decides.
    pub fn is_filter_hook(self) -> bool {
        matches!(self, Hook::Input | Hook::Forward | Hook::Output)
    }

    /// Bit for hook masks (`1 << NF_INET_*`).
    pub fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl std::fmt::Display for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.chain_name())
    }
}

/// The hooks a packet entered, in order (at most four: a packet from the
/// firewall to itself loops OUTPUT>POSTROUTING>PREROUTING>INPUT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HookTrail {
    hooks: [Option<Hook>; 4],
    len: u8,
}

impl HookTrail {
    pub fn push(&mut self, h: Hook) {
        if (self.len as usize) < self.hooks.len() {
            self.hooks[self.len as usize] = Some(h);
            self.len += 1;
        }
    }
    pub fn iter(&self) -> impl Iterator<Item = Hook> + '_ {
        self.hooks[..self.len as usize].iter().flatten().copied()
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }
    /// The whole trail in one word, equal for equal trails: a hook per byte
    /// (5 for none, the value the compiler gives an absent hook, so this is
    /// a plain load) and the length above them.
    #[inline(always)]
    pub fn bits(&self) -> u64 {
        let h = |i: usize| u64::from(self.hooks[i].map_or(5, |h| h as u8)) << (8 * i);
        h(0) | h(1) | h(2) | h(3) | u64::from(self.len) << 32
    }
    /// `PREROUTING>FORWARD>POSTROUTING`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        for (i, h) in self.iter().enumerate() {
            if i > 0 {
                out.push(b'>');
            }
            out.extend_from_slice(h.chain_name().as_bytes());
        }
    }
}
