//! Evaluating a table's chain for one packet.
//!
//! The caller (the netfilter layer) describes the packet in an [`EvalCtx`]
//! and calls [`Ruleset::evaluate`] for a table at a hook. The walk follows
//! the kernel's: rules in order, `-j` pushes a return point, `-g` does not,
//! RETURN (or the end of a user chain) pops, and falling off the end of the
//! built-in chain (or returning from it) applies its policy. Marks are
//! changed in place in the context; LOG/NFLOG records and the first CT
//! action come back in the [`Decision`].

use std::fmt;
use std::net::IpAddr;

use super::ast::IpSpec;
use super::compile::{CTarget, Ruleset};
use super::matches::{addr_bits, SlotState};
use super::targets::{ConnmarkOp, RejectWith};
use super::{Hook, Policy, TableId};
use crate::conntrack::{CtState, Dir, Status};
use crate::time::Timestamp;
use crate::wire::{Family, PktType};

/// One direction's tuple of a conntrack entry. For protocols without
/// ports the kernel's "port" fields hold other identifiers (ICMP id and
/// type/code, GRE keys); give them as the conntrack layer stores them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CtTupleView {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
}

/// What the rules may see of the packet's conntrack entry.
///
/// For INVALID and UNTRACKED (no entry), only `state` is meaningful and
/// every other conntrack test fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CtView {
    pub state: CtState,
    /// Direction of this packet relative to the entry.
    pub dir: Dir,
    pub status: Status,
    pub l4proto: u8,
    pub orig: CtTupleView,
    pub reply: CtTupleView,
    /// The connection mark; CONNMARK changes it here and the caller writes
    /// it back to the entry.
    pub ctmark: u32,
    /// Whole seconds until the entry expires (`--ctexpire`).
    pub expires_in_secs: u32,
}

impl CtView {
    /// Whether there is an entry (not INVALID/UNTRACKED).
    #[inline]
    pub fn has_entry(&self) -> bool {
        !matches!(self.state, CtState::Invalid | CtState::Untracked)
    }
}

/// A connection's original-direction tuple, as `-m connlimit` remembers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnTuple {
    pub proto: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
}

/// What the conntrack table says about a remembered connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// The entry exists and is not closing.
    Live,
    /// The entry exists but TCP is in TIME_WAIT or CLOSE.
    Closed,
    /// No entry with this original tuple.
    Gone,
}

/// The question `-m connlimit` asks the conntrack table: is the connection
/// with this original-direction tuple still tracked? The caller implements
/// it over its connection table (lookup by tuple, either direction of the
/// entry's tuples, at the current capture time: an entry that has expired
/// by `EvalCtx::now` is `Gone`).
pub trait ConnLiveness {
    fn liveness(&self, family: Family, orig: &ConnTuple) -> Liveness;
}

/// The packet as the rules see it. Filled by the caller per packet.
pub struct EvalCtx<'a> {
    pub family: Family,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// L4 protocol (IPv6: after extension headers).
    pub proto: u8,
    /// TCP/UDP/UDP-Lite/SCTP/DCCP ports; None when there is no readable
    /// transport header.
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub tcp_flags: Option<u8>,
    /// TCP option bytes (after the fixed header).
    pub tcp_options: &'a [u8],
    /// ICMP or ICMPv6 type and code.
    pub icmp: Option<(u8, u8)>,
    /// IPv4 fragment offset ≠ 0 (what `-f` tests).
    pub non_first_fragment: bool,
    /// IPv4 total length; IPv6 payload length + 40 (what `-m length` and
    /// the byte counters use).
    pub ip_len: u32,
    /// TTL or hop limit.
    pub ttl: u8,
    pub tos: u8,
    pub in_iface: Option<&'a str>,
    pub out_iface: Option<&'a str>,
    pub src_mac: Option<[u8; 6]>,
    pub pkttype: PktType,
    /// Route type bits of the addresses (`matches::meta::addrtype`).
    pub src_type: u16,
    pub dst_type: u16,
    /// The packet mark; MARK/CONNMARK change it here.
    pub nfmark: u32,
    /// None: conntrack is not in use (no entry, state INVALID).
    pub ct: Option<CtView>,
    pub now: Timestamp,
    /// Sent by a local socket (OUTPUT path); `-m recent` uses it for the TTL.
    pub locally_generated: bool,
    /// For `-m connlimit`; None: every remembered connection counts as live.
    pub conns: Option<&'a dyn ConnLiveness>,
}

/// The final verdict of a built-in chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Drop,
    Reject(RejectWith),
}

/// The rule that decided (or a LOG rule that fired): `filter:INPUT:3`,
/// `filter:INPUT:policy`, `filter:ssh_in:2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleRef<'r> {
    pub table: TableId,
    pub chain: &'r str,
    /// 1-based rule number as `iptables -L --line-numbers`; None: the policy.
    pub num: Option<u32>,
}

impl fmt::Display for RuleRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.num {
            Some(n) => write!(f, "{}:{}:{}", self.table.name(), self.chain, n),
            None => write!(f, "{}:{}:policy", self.table.name(), self.chain),
        }
    }
}

impl RuleRef<'_> {
    /// `filter:INPUT:3` / `filter:INPUT:policy`.
    pub fn display(&self) -> String {
        self.to_string()
    }
}

/// A LOG or NFLOG rule that fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRecord<'r> {
    pub rule: RuleRef<'r>,
    pub prefix: &'r str,
    /// LOG level (0-7); None for NFLOG.
    pub level: Option<u8>,
    /// NFLOG group; None for LOG.
    pub nflog_group: Option<u16>,
}

/// The CT target's effect, for the conntrack layer to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtAction<'r> {
    /// `-j CT --notrack` / `-j NOTRACK`: the packet is UNTRACKED.
    Notrack,
    /// `-j CT --helper NAME`: a new connection gets this helper.
    Helper(&'r str),
    /// `-j CT` with nothing ctsim simulates: a template without effect.
    Template,
}

/// The outcome of walking a built-in chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<'r> {
    pub verdict: Verdict,
    pub rule: RuleRef<'r>,
    /// LOG/NFLOG rules that fired on the way, in order (no allocation unless
    /// one fires).
    pub logged: Vec<LogRecord<'r>>,
    /// The first CT/NOTRACK target that fired.
    pub ct: Option<CtAction<'r>>,
    /// Whether a NAT target decided (not simulated: the verdict is ACCEPT).
    pub nat: bool,
}

/// Per-worker mutable state: rule counters and the state of stateful
/// matches. Create it with [`Ruleset::new_state`].
#[derive(Debug, Clone)]
pub struct RuleState {
    /// (packets, bytes) per rule, then per built-in chain policy.
    pub(crate) counters: Vec<(u64, u64)>,
    pub(crate) slots: Vec<SlotState>,
}

impl RuleState {
    /// Adds another worker's counters. Stateful-match state is not merged:
    /// rulesets that have any ([`Ruleset::needs_global_state`]) must run on
    /// one worker.
    pub fn merge(&mut self, other: &RuleState) {
        for (a, b) in self.counters.iter_mut().zip(&other.counters) {
            a.0 += b.0;
            a.1 += b.1;
        }
    }

    /// (packets, bytes) of a counter index.
    pub(crate) fn counter(&self, i: usize) -> (u64, u64) {
        self.counters.get(i).copied().unwrap_or_default()
    }
}

#[inline]
fn ip_matches(ip: &IpSpec, ctx: &EvalCtx) -> bool {
    if let Some(s) = &ip.src {
        if s.contains(addr_bits(ctx.src)) == ip.src_inv {
            return false;
        }
    }
    if let Some(d) = &ip.dst {
        if d.contains(addr_bits(ctx.dst)) == ip.dst_inv {
            return false;
        }
    }
    if let Some(i) = &ip.iniface {
        if i.matches(ctx.in_iface) == ip.iniface_inv {
            return false;
        }
    }
    if let Some(o) = &ip.outiface {
        if o.matches(ctx.out_iface) == ip.outiface_inv {
            return false;
        }
    }
    if ip.proto != 0 && (ctx.proto == ip.proto) == ip.proto_inv {
        return false;
    }
    if let Some(f) = ip.frag {
        if ctx.non_first_fragment != f {
            return false;
        }
    }
    true
}

/// Depth of the kernel's jump stack (`NFT_JUMP_STACK_SIZE`).
pub(crate) const JUMP_STACK: usize = 16;

impl Ruleset {
    /// Walks the built-in chain of `table` for `hook`. A table the rule file
    /// does not define (or a hook it has no chain for) accepts, attributed
    /// to that chain's policy.
    pub fn evaluate<'r>(
        &'r self,
        family: Family,
        table: TableId,
        hook: Hook,
        ctx: &mut EvalCtx,
        state: &mut RuleState,
    ) -> Decision<'r> {
        let mut d = Decision {
            verdict: Verdict::Accept,
            rule: RuleRef { table, chain: hook.chain_name(), num: None },
            logged: Vec::new(),
            ct: None,
            nat: false,
        };
        let Some(t) = self.table(family, table) else {
            return d;
        };
        let Some(base) = t.builtin[hook as usize] else {
            return d;
        };
        let bytes = ctx.ip_len as u64;
        let mut stack = [(0u32, 0u32); JUMP_STACK];
        let mut sp = 0usize;
        let mut chain = base;
        let mut idx = 0usize;
        loop {
            let c = &t.chains[chain];
            if idx >= c.rules.len() {
                if sp == 0 {
                    break;
                }
                sp -= 1;
                chain = stack[sp].0 as usize;
                idx = stack[sp].1 as usize;
                continue;
            }
            let r = &c.rules[idx];
            idx += 1;
            if !ip_matches(&r.ip, ctx) {
                continue;
            }
            let mut all = true;
            for m in &r.matches {
                if !m.matches(ctx, &mut state.slots) {
                    all = false;
                    break;
                }
            }
            if !all {
                continue;
            }
            if let Some(cnt) = state.counters.get_mut(r.counter) {
                cnt.0 += 1;
                cnt.1 += bytes;
            }
            let here = RuleRef { table, chain: &c.name, num: Some(idx as u32) };
            match &r.target {
                CTarget::None => {}
                CTarget::Accept => {
                    d.verdict = Verdict::Accept;
                    d.rule = here;
                    return d;
                }
                CTarget::Drop => {
                    d.verdict = Verdict::Drop;
                    d.rule = here;
                    return d;
                }
                CTarget::Reject(w) => {
                    d.verdict = Verdict::Reject(*w);
                    d.rule = here;
                    return d;
                }
                CTarget::Nat => {
                    d.verdict = Verdict::Accept;
                    d.rule = here;
                    d.nat = true;
                    return d;
                }
                CTarget::Return => {
                    if sp == 0 {
                        break;
                    }
                    sp -= 1;
                    chain = stack[sp].0 as usize;
                    idx = stack[sp].1 as usize;
                }
                CTarget::Jump(j) => {
                    if sp == JUMP_STACK {
                        // The loader refuses deeper nesting; never reached.
                        d.verdict = Verdict::Drop;
                        d.rule = here;
                        return d;
                    }
                    stack[sp] = (chain as u32, idx as u32);
                    sp += 1;
                    chain = *j;
                    idx = 0;
                }
                CTarget::Goto(j) => {
                    chain = *j;
                    idx = 0;
                }
                CTarget::Log { prefix, level } => d.logged.push(LogRecord {
                    rule: here,
                    prefix,
                    level: Some(*level),
                    nflog_group: None,
                }),
                CTarget::Nflog { prefix, group } => d.logged.push(LogRecord {
                    rule: here,
                    prefix,
                    level: None,
                    nflog_group: Some(*group),
                }),
                CTarget::Mark { value, mask } => ctx.nfmark = (ctx.nfmark & !mask) ^ value,
                CTarget::Connmark(op) => {
                    let nfmark = ctx.nfmark;
                    if let Some(ct) = ctx.ct.as_mut().filter(|c| c.has_entry()) {
                        match *op {
                            ConnmarkOp::Set { value, ctmask } => ct.ctmark = (ct.ctmark & !ctmask) ^ value,
                            ConnmarkOp::Save { nfmask, ctmask } => {
                                ct.ctmark = (ct.ctmark & !ctmask) ^ (nfmark & nfmask)
                            }
                            ConnmarkOp::Restore { nfmask, ctmask } => {
                                ctx.nfmark = (nfmark & !nfmask) ^ (ct.ctmark & ctmask)
                            }
                        }
                    }
                }
                CTarget::Ct { notrack, helper } => {
                    if d.ct.is_none() {
                        d.ct = Some(if *notrack {
                            CtAction::Notrack
                        } else if let Some(h) = helper {
                            CtAction::Helper(h)
                        } else {
                            CtAction::Template
                        });
                    }
                }
            }
        }
        let b = &t.chains[base];
        if let Some(cnt) = state.counters.get_mut(b.counter) {
            cnt.0 += 1;
            cnt.1 += bytes;
        }
        d.verdict = match b.policy {
            Policy::Accept => Verdict::Accept,
            Policy::Drop => Verdict::Drop,
        };
        d.rule = RuleRef { table, chain: &b.name, num: None };
        d
    }
}
