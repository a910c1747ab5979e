//! The iptables rule language: parse, compile, evaluate.
//!
//! * [`parse`] reads `iptables-save`/`ip6tables-save` files and shell scripts
//!   of `iptables …` commands into a [`RuleFile`] (per family, per table),
//!   refusing exactly what `iptables-restore` (nf_tables backend, v1.8.9)
//!   refuses, with errors that point at the offending word.
//! * [`compile`] turns a [`RuleFile`] into an immutable [`Ruleset`]: chains by
//!   index, jumps resolved, addresses as integer (address, mask) pairs, state
//!   sets as bit masks, stateful matches given state slots. No strings are
//!   looked at while evaluating.
//! * [`eval`] walks a built-in chain for one packet described by an
//!   [`EvalCtx`] and returns a [`Decision`]: verdict, the deciding rule
//!   (`filter:INPUT:3`, `filter:INPUT:policy`), LOG/NFLOG records, the first
//!   CT/NOTRACK action, and marks changed on the way.
//!
//! What this layer does not do: it knows nothing of conntrack internals or
//! of the order of hooks; the netfilter layer fills an [`EvalCtx`] per packet
//! (including the conntrack view) and decides which table and hook to run.
//! NAT targets are parsed and kept (so a file with a `*nat` table is
//! accepted and can be reported) but not simulated. Host names are not
//! resolved (only `localhost`); ctsim refuses them where iptables would ask
//! DNS.
//!
//! Where iptables-nft runs a native nf_tables expression instead of the
//! xtables extension (`-m limit` becomes the nft `limit` expression), the
//! native semantics are modelled, since that is what the kernel executes.

pub mod ast;
pub mod compile;
pub mod error;
pub mod eval;
mod listing;
pub mod matches;
pub mod parse;
mod services;
pub mod targets;

pub use ast::{ChainAst, FamilyRules, IpSpec, Note, RuleAst, RuleFile, TableAst};
pub use compile::Ruleset;
pub use error::{RuleError, RuleErrorKind};
pub use eval::{
    ConnLiveness, CtAction, CtTupleView, CtView, Decision, EvalCtx, Liveness, LogRecord, RuleRef,
    RuleState, Verdict,
};
pub use parse::parse_rules;
pub use targets::RejectWith;

/// The iptables tables, in the order netfilter runs them at a hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TableId {
    Raw,
    Mangle,
    Nat,
    Filter,
    Security,
}

impl TableId {
    pub const ALL: [TableId; 5] = [
        TableId::Raw,
        TableId::Mangle,
        TableId::Nat,
        TableId::Filter,
        TableId::Security,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TableId::Raw => "raw",
            TableId::Mangle => "mangle",
            TableId::Nat => "nat",
            TableId::Filter => "filter",
            TableId::Security => "security",
        }
    }

    pub fn from_name(s: &str) -> Option<TableId> {
        TableId::ALL.into_iter().find(|t| t.name() == s)
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// The hooks this table has built-in chains for, in listing order.
    pub fn hooks(self) -> &'static [Hook] {
        use Hook::*;
        match self {
            TableId::Raw => &[Prerouting, Output],
            TableId::Mangle => &[Prerouting, Input, Forward, Output, Postrouting],
            TableId::Nat => &[Prerouting, Input, Output, Postrouting],
            TableId::Filter | TableId::Security => &[Input, Forward, Output],
        }
    }

    /// Whether ctsim simulates this table's rules (nat and security are
    /// parsed and reported only).
    pub fn simulated(self) -> bool {
        matches!(self, TableId::Raw | TableId::Mangle | TableId::Filter)
    }
}

pub use crate::netfilter::Hook;

/// Policy of a built-in chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Accept,
    Drop,
}

impl Policy {
    pub fn name(self) -> &'static str {
        match self {
            Policy::Accept => "ACCEPT",
            Policy::Drop => "DROP",
        }
    }
}
