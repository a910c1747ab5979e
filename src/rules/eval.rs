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
use super::matches::{SlotState, addr_bits};
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
    if let Some(s) = &ip.src
        && s.contains(addr_bits(ctx.src)) == ip.src_inv
    {
        return false;
    }
    if let Some(d) = &ip.dst
        && d.contains(addr_bits(ctx.dst)) == ip.dst_inv
    {
        return false;
    }
    if let Some(i) = &ip.iniface
        && i.matches(ctx.in_iface) == ip.iniface_inv
    {
        return false;
    }
    if let Some(o) = &ip.outiface
        && o.matches(ctx.out_iface) == ip.outiface_inv
    {
        return false;
    }
    if ip.proto != 0 && (ctx.proto == ip.proto) == ip.proto_inv {
        return false;
    }
    if let Some(f) = ip.frag
        && ctx.non_first_fragment != f
    {
        return false;
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
            rule: RuleRef {
                table,
                chain: hook.chain_name(),
                num: None,
            },
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
            let here = RuleRef {
                table,
                chain: &c.name,
                num: Some(idx as u32),
            };
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
                            ConnmarkOp::Set { value, ctmask } => {
                                ct.ctmark = (ct.ctmark & !ctmask) ^ value
                            }
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
        d.rule = RuleRef {
            table,
            chain: &b.name,
            num: None,
        };
        d
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::rules::{Ruleset, parse_rules};
    use crate::wire::ipproto;
    use std::net::Ipv4Addr;
    use std::path::PathBuf;

    pub(crate) fn ruleset(text: &str) -> Ruleset {
        let f = parse_rules(text, &PathBuf::from("t.rules"), Family::Ipv4)
            .unwrap_or_else(|e| panic!("{e}"));
        Ruleset::compile(&f).unwrap_or_else(|e| panic!("{e}"))
    }

    pub(crate) fn tcp(
        src: [u8; 4],
        sport: u16,
        dst: [u8; 4],
        dport: u16,
        flags: u8,
    ) -> EvalCtx<'static> {
        EvalCtx {
            family: Family::Ipv4,
            src: IpAddr::V4(Ipv4Addr::from(src)),
            dst: IpAddr::V4(Ipv4Addr::from(dst)),
            proto: ipproto::TCP,
            sport: Some(sport),
            dport: Some(dport),
            tcp_flags: Some(flags),
            tcp_options: &[],
            icmp: None,
            non_first_fragment: false,
            ip_len: 60,
            ttl: 64,
            tos: 0,
            in_iface: Some("eth0"),
            out_iface: None,
            src_mac: None,
            pkttype: PktType::Host,
            src_type: 0,
            dst_type: 0,
            nfmark: 0,
            ct: None,
            now: Timestamp(1_700_000_000_000_000_000),
            locally_generated: false,
            conns: None,
        }
    }

    pub(crate) fn with_state(
        mut c: EvalCtx<'static>,
        state: CtState,
        dir: Dir,
    ) -> EvalCtx<'static> {
        let t = CtTupleView {
            src: c.src,
            dst: c.dst,
            sport: c.sport.unwrap_or(0),
            dport: c.dport.unwrap_or(0),
        };
        let r = CtTupleView {
            src: c.dst,
            dst: c.src,
            sport: t.dport,
            dport: t.sport,
        };
        let (orig, reply) = if dir == Dir::Original { (t, r) } else { (r, t) };
        c.ct = Some(CtView {
            state,
            dir,
            status: Status::default(),
            l4proto: c.proto,
            orig,
            reply,
            ctmark: 0,
            expires_in_secs: 100,
        });
        c
    }

    fn decide(
        rs: &Ruleset,
        hook: Hook,
        ctx: &mut EvalCtx,
        st: &mut RuleState,
    ) -> (Verdict, String) {
        let d = rs.evaluate(Family::Ipv4, TableId::Filter, hook, ctx, st);
        (d.verdict, d.rule.to_string())
    }

    const SSH: &str = "*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT DROP [0:0]
-A INPUT -p tcp --sport 513:65535 --dport 22 -m state --state NEW,ESTABLISHED -j ACCEPT
-A OUTPUT -p tcp --sport 22 --dport 513:65535 -m state --state ESTABLISHED -j ACCEPT
COMMIT
";

    #[test]
    fn textbook_ssh_ruleset() {
        let rs = ruleset(SSH);
        let mut st = rs.new_state();
        let c = [10, 0, 0, 2];
        let s = [10, 0, 0, 1];
        // client SYN: NEW, accepted by INPUT rule 1
        let mut p = with_state(tcp(c, 40000, s, 22, 0x02), CtState::New, Dir::Original);
        assert_eq!(
            decide(&rs, Hook::Input, &mut p, &mut st),
            (Verdict::Accept, "filter:INPUT:1".into())
        );
        // server SYN/ACK out: ESTABLISHED, OUTPUT rule 1
        let mut p = with_state(tcp(s, 22, c, 40000, 0x12), CtState::Established, Dir::Reply);
        assert_eq!(
            decide(&rs, Hook::Output, &mut p, &mut st),
            (Verdict::Accept, "filter:OUTPUT:1".into())
        );
        // a NEW packet leaving from port 22 is dropped by the OUTPUT policy
        let mut p = with_state(tcp(s, 22, c, 40000, 0x02), CtState::New, Dir::Original);
        assert_eq!(
            decide(&rs, Hook::Output, &mut p, &mut st),
            (Verdict::Drop, "filter:OUTPUT:policy".into())
        );
        // a privileged source port is outside 513:65535
        let mut p = with_state(tcp(c, 100, s, 22, 0x02), CtState::New, Dir::Original);
        assert_eq!(
            decide(&rs, Hook::Input, &mut p, &mut st),
            (Verdict::Drop, "filter:INPUT:policy".into())
        );
        // INVALID (no entry) is not NEW or ESTABLISHED
        let mut p = with_state(tcp(c, 40000, s, 22, 0x10), CtState::Invalid, Dir::Original);
        assert_eq!(
            decide(&rs, Hook::Input, &mut p, &mut st),
            (Verdict::Drop, "filter:INPUT:policy".into())
        );
        // FORWARD has no rules
        let mut p = with_state(tcp(c, 40000, s, 22, 0x02), CtState::New, Dir::Original);
        assert_eq!(
            decide(&rs, Hook::Forward, &mut p, &mut st),
            (Verdict::Drop, "filter:FORWARD:policy".into())
        );
        let l = rs.listing(Family::Ipv4, &st);
        assert!(
            l.contains("Chain INPUT (policy DROP 2 packets, 120 bytes)"),
            "{l}"
        );
        // column layout as printed by iptables v1.8.9 for the same rule
        assert!(l.contains("1           1       60 ACCEPT     6    --  *      *       0.0.0.0/0            0.0.0.0/0            tcp spts:513:65535 dpt:22 state NEW,ESTABLISHED\n"), "{l}");
    }

    #[test]
    fn jump_goto_return_and_policy() {
        let rs = ruleset(
            "*filter
:INPUT DROP [0:0]
:a - [0:0]
:b - [0:0]
:c - [0:0]
-A INPUT -p tcp --dport 1 -j a
-A INPUT -p tcp --dport 2 -g b
-A INPUT -p tcp --dport 3 -j RETURN
-A INPUT -j ACCEPT
-A a -s 10.0.0.9 -j DROP
-A a -j c
-A a -j REJECT
-A c -p tcp --sport 7 -j ACCEPT
-A c -j RETURN
-A b -p tcp --sport 8 -j ACCEPT
COMMIT
",
        );
        let mut st = rs.new_state();
        let mut run = |src: [u8; 4], sport: u16, dport: u16| {
            let mut p = tcp(src, sport, [10, 0, 0, 1], dport, 0x02);
            decide(&rs, Hook::Input, &mut p, &mut st)
        };
        assert_eq!(
            run([10, 0, 0, 9], 5, 1),
            (Verdict::Drop, "filter:a:1".into())
        );
        assert_eq!(
            run([10, 0, 0, 2], 7, 1),
            (Verdict::Accept, "filter:c:1".into())
        );
        // c returns to a, a's next rule rejects
        assert_eq!(
            run([10, 0, 0, 2], 5, 1),
            (
                Verdict::Reject(RejectWith::IcmpPortUnreachable),
                "filter:a:3".into()
            )
        );
        assert_eq!(
            run([10, 0, 0, 2], 8, 2),
            (Verdict::Accept, "filter:b:1".into())
        );
        // the end of a goto'd chain returns to INPUT's caller: the policy
        assert_eq!(
            run([10, 0, 0, 2], 9, 2),
            (Verdict::Drop, "filter:INPUT:policy".into())
        );
        // RETURN in a built-in chain applies the policy
        assert_eq!(
            run([10, 0, 0, 2], 9, 3),
            (Verdict::Drop, "filter:INPUT:policy".into())
        );
        assert_eq!(
            run([10, 0, 0, 2], 9, 4),
            (Verdict::Accept, "filter:INPUT:4".into())
        );
    }

    #[test]
    fn marks_logs_and_ct_actions() {
        let rs = ruleset(
            "*raw
-A PREROUTING -p tcp --dport 21 -j CT --helper ftp
-A PREROUTING -p tcp --dport 21 -j CT --notrack
-A PREROUTING -p udp -j NOTRACK
COMMIT
*mangle
-A PREROUTING -j MARK --set-xmark 0x5/0xf
-A PREROUTING -m mark --mark 0x5/0xf -j CONNMARK --save-mark
-A PREROUTING -j LOG --log-prefix \"seen: \"
-A PREROUTING -j MARK --or-mark 0x100
COMMIT
",
        );
        let mut st = rs.new_state();
        let mut p = tcp([1, 1, 1, 1], 1000, [2, 2, 2, 2], 21, 0x02);
        let d = rs.evaluate(
            Family::Ipv4,
            TableId::Raw,
            Hook::Prerouting,
            &mut p,
            &mut st,
        );
        assert_eq!(
            d.ct,
            Some(CtAction::Helper("ftp")),
            "the first CT target wins"
        );
        assert_eq!(d.rule.to_string(), "raw:PREROUTING:policy");
        let mut p = with_state(
            tcp([1, 1, 1, 1], 1000, [2, 2, 2, 2], 21, 0x02),
            CtState::New,
            Dir::Original,
        );
        p.nfmark = 0xa0;
        let d = rs.evaluate(
            Family::Ipv4,
            TableId::Mangle,
            Hook::Prerouting,
            &mut p,
            &mut st,
        );
        assert_eq!(p.nfmark, 0x1a5);
        assert_eq!(p.ct.unwrap().ctmark, 0xa5);
        assert_eq!(d.logged.len(), 1);
        assert_eq!(d.logged[0].prefix, "seen: ");
        assert_eq!(d.logged[0].rule.to_string(), "mangle:PREROUTING:3");
        // CONNMARK restore with masks
        let rs = ruleset(
            "*mangle\n-A PREROUTING -j CONNMARK --restore-mark --nfmask 0xff --ctmask 0x0f\nCOMMIT\n",
        );
        let mut st = rs.new_state();
        let mut p = with_state(
            tcp([1, 1, 1, 1], 1, [2, 2, 2, 2], 2, 0x10),
            CtState::Established,
            Dir::Original,
        );
        p.nfmark = 0x1234;
        p.ct.as_mut().unwrap().ctmark = 0xab;
        rs.evaluate(
            Family::Ipv4,
            TableId::Mangle,
            Hook::Prerouting,
            &mut p,
            &mut st,
        );
        assert_eq!(p.nfmark, 0x120b);
    }

    #[test]
    fn conntrack_match_without_entry() {
        let rs = ruleset(
            "*filter
-A INPUT -m conntrack --ctdir ORIGINAL -j ACCEPT
-A INPUT -m conntrack --ctdir REPLY -j ACCEPT
-A INPUT -m conntrack ! --ctstatus ASSURED -j ACCEPT
-A INPUT -m conntrack --ctstate INVALID --ctproto tcp -j ACCEPT
-A INPUT -m conntrack --ctstate INVALID,UNTRACKED -j DROP
-A INPUT -m conntrack --ctstate NEW --ctorigdstport 22 --ctexpire 50:150 -j ACCEPT
COMMIT
",
        );
        let mut st = rs.new_state();
        // Without an entry a --ctstate test that passes decides alone: the
        // other options of the same match are not looked at (xt_conntrack).
        let mut p = with_state(
            tcp([1, 1, 1, 1], 1, [2, 2, 2, 2], 2, 0x10),
            CtState::Invalid,
            Dir::Original,
        );
        assert_eq!(
            decide(&rs, Hook::Input, &mut p, &mut st),
            (Verdict::Accept, "filter:INPUT:4".into())
        );
        let mut p = with_state(
            tcp([1, 1, 1, 1], 1, [2, 2, 2, 2], 2, 0x10),
            CtState::Untracked,
            Dir::Original,
        );
        assert_eq!(
            decide(&rs, Hook::Input, &mut p, &mut st),
            (Verdict::Drop, "filter:INPUT:5".into())
        );
        let mut p = tcp([1, 1, 1, 1], 1, [2, 2, 2, 2], 2, 0x10);
        p.proto = 17;
        assert_eq!(
            decide(&rs, Hook::Input, &mut p, &mut st),
            (Verdict::Accept, "filter:INPUT:4".into()),
            "no view at all is INVALID"
        );
        let mut p = with_state(
            tcp([1, 1, 1, 1], 1, [2, 2, 2, 2], 22, 0x02),
            CtState::New,
            Dir::Reply,
        );
        assert_eq!(
            decide(&rs, Hook::Input, &mut p, &mut st),
            (Verdict::Accept, "filter:INPUT:2".into())
        );
    }

    #[test]
    fn ip_header_tests() {
        let rs = ruleset(
            "*filter
:INPUT DROP [0:0]
-A INPUT ! -i eth+ -j ACCEPT
-A INPUT -s 192.168.0.0/255.255.0.0 ! -d 10.0.0.1 -j ACCEPT
-A INPUT ! -p tcp -j ACCEPT
-A INPUT -f -j ACCEPT
COMMIT
",
        );
        let mut st = rs.new_state();
        let mut p = tcp([1, 1, 1, 1], 1, [10, 0, 0, 1], 2, 0x02);
        p.in_iface = Some("lo");
        assert_eq!(
            decide(&rs, Hook::Input, &mut p, &mut st).1,
            "filter:INPUT:1"
        );
        let mut p = tcp([192, 168, 3, 4], 1, [10, 0, 0, 2], 2, 0x02);
        assert_eq!(
            decide(&rs, Hook::Input, &mut p, &mut st).1,
            "filter:INPUT:2"
        );
        let mut p = tcp([192, 168, 3, 4], 1, [10, 0, 0, 1], 2, 0x02);
        assert_eq!(
            decide(&rs, Hook::Input, &mut p, &mut st).1,
            "filter:INPUT:policy"
        );
        p.proto = ipproto::UDP;
        assert_eq!(
            decide(&rs, Hook::Input, &mut p, &mut st).1,
            "filter:INPUT:3"
        );
        p.proto = ipproto::TCP;
        p.non_first_fragment = true;
        assert_eq!(
            decide(&rs, Hook::Input, &mut p, &mut st).1,
            "filter:INPUT:4"
        );
    }

    #[test]
    fn limit_token_bucket_in_nanoseconds() {
        // 1/second, burst 2: two at once, then one per second.
        let rs = ruleset(
            "*filter\n:INPUT DROP [0:0]\n-A INPUT -m limit --limit 1/s --limit-burst 2 -j ACCEPT\nCOMMIT\n",
        );
        let mut st = rs.new_state();
        let t0 = 1_700_000_000_000_000_000u64;
        let mut at = |ns: u64| {
            let mut p = tcp([1, 1, 1, 1], 1, [2, 2, 2, 2], 2, 0x02);
            p.now = Timestamp(t0 + ns);
            decide(&rs, Hook::Input, &mut p, &mut st).0 == Verdict::Accept
        };
        assert!(at(0));
        assert!(at(1));
        assert!(!at(2));
        assert!(!at(999_999_999));
        assert!(at(1_000_000_001));
        assert!(!at(1_500_000_000));
        assert!(at(2_000_000_001));
        // a long pause refills only up to the burst
        assert!(at(10_000_000_000));
        assert!(at(10_000_000_000));
        assert!(!at(10_000_000_000));
    }

    #[test]
    fn recent_ssh_brute_force_idiom() {
        let rs = ruleset(
            "*filter
-A INPUT -p tcp --dport 22 -m state --state NEW -m recent --set --name SSH
-A INPUT -p tcp --dport 22 -m state --state NEW -m recent --update --seconds 60 --hitcount 4 --name SSH -j DROP
-A INPUT -p tcp --dport 22 -j ACCEPT
COMMIT
",
        );
        let mut st = rs.new_state();
        let t0 = 1_700_000_000_000_000_000u64;
        let mut at = |secs: u64, src: [u8; 4]| {
            let mut p = with_state(
                tcp(src, 4000, [2, 2, 2, 2], 22, 0x02),
                CtState::New,
                Dir::Original,
            );
            p.now = Timestamp(t0 + secs * 1_000_000_000);
            decide(&rs, Hook::Input, &mut p, &mut st).1
        };
        assert_eq!(at(0, [1, 1, 1, 1]), "filter:INPUT:3");
        assert_eq!(at(1, [1, 1, 1, 1]), "filter:INPUT:3");
        assert_eq!(at(2, [1, 1, 1, 1]), "filter:INPUT:3");
        // fourth attempt within 60 s: set made 4 stamps → hitcount reached
        assert_eq!(at(3, [1, 1, 1, 1]), "filter:INPUT:2");
        assert_eq!(
            at(4, [9, 9, 9, 9]),
            "filter:INPUT:3",
            "another source has its own entry"
        );
        // after 60 s without attempts the old stamps fall out of the window
        assert_eq!(at(200, [1, 1, 1, 1]), "filter:INPUT:3");
    }

    struct Table(Vec<ConnTuple>);
    impl ConnLiveness for Table {
        fn liveness(&self, _f: Family, t: &ConnTuple) -> Liveness {
            if self.0.contains(t) {
                Liveness::Live
            } else {
                Liveness::Gone
            }
        }
    }

    #[test]
    fn connlimit_counts_live_connections_it_has_seen() {
        let rs = ruleset(
            "*filter\n-A INPUT -p tcp --syn -m connlimit --connlimit-above 2 -j REJECT --reject-with tcp-reset\nCOMMIT\n",
        );
        let mut st = rs.new_state();
        let t0 = 1_700_000_000_000_000_000u64;
        let mut live = Table(Vec::new());
        let mut verdicts = Vec::new();
        for (k, port) in [1001u16, 1002, 1003, 1004].iter().enumerate() {
            let mut p = with_state(
                tcp([1, 1, 1, 1], *port, [2, 2, 2, 2], 80, 0x02),
                CtState::New,
                Dir::Original,
            );
            p.now = Timestamp(t0 + k as u64 * 1_000_000_000);
            p.conns = Some(&live);
            verdicts.push(decide(&rs, Hook::Input, &mut p, &mut st).0);
            let ct = p.ct.unwrap();
            let mut lv = Table(std::mem::take(&mut live.0));
            lv.0.push(ConnTuple {
                proto: 6,
                src: ct.orig.src,
                dst: ct.orig.dst,
                sport: ct.orig.sport,
                dport: ct.orig.dport,
            });
            live = lv;
        }
        assert_eq!(verdicts[..2], [Verdict::Accept, Verdict::Accept]);
        assert_eq!(verdicts[2], Verdict::Reject(RejectWith::TcpReset));
        // once the first two connections are gone, a new one fits again
        live.0.drain(..2);
        let mut p = with_state(
            tcp([1, 1, 1, 1], 1009, [2, 2, 2, 2], 80, 0x02),
            CtState::New,
            Dir::Original,
        );
        p.now = Timestamp(t0 + 10_000_000_000);
        p.conns = Some(&live);
        assert_eq!(
            decide(&rs, Hook::Input, &mut p, &mut st).0,
            Verdict::Reject(RejectWith::TcpReset),
            "1003 and 1004 remain plus this one: 3 > 2"
        );
        live.0.clear();
        let mut p = with_state(
            tcp([1, 1, 1, 1], 1010, [2, 2, 2, 2], 80, 0x02),
            CtState::New,
            Dir::Original,
        );
        p.now = Timestamp(t0 + 11_000_000_000);
        p.conns = Some(&live);
        assert_eq!(decide(&rs, Hook::Input, &mut p, &mut st).0, Verdict::Accept);
    }

    #[test]
    fn hashlimit_per_source() {
        let rs = ruleset(
            "*filter\n:INPUT DROP [0:0]\n-A INPUT -m hashlimit --hashlimit-upto 1/sec --hashlimit-burst 2 --hashlimit-mode srcip --hashlimit-name h -j ACCEPT\nCOMMIT\n",
        );
        let mut st = rs.new_state();
        let t0 = 1_700_000_000_000_000_000u64;
        let mut at = |ms: u64, src: [u8; 4]| {
            let mut p = tcp(src, 1, [2, 2, 2, 2], 2, 0x02);
            p.now = Timestamp(t0 + ms * 1_000_000);
            decide(&rs, Hook::Input, &mut p, &mut st).0 == Verdict::Accept
        };
        assert!(at(0, [1, 1, 1, 1]));
        assert!(at(0, [1, 1, 1, 1]));
        assert!(!at(0, [1, 1, 1, 1]));
        assert!(at(0, [3, 3, 3, 3]), "own bucket per source");
        assert!(
            !at(996, [1, 1, 1, 1]),
            "249 jiffies is not yet one second of credit"
        );
        assert!(at(1000, [1, 1, 1, 1]));
    }

    #[test]
    fn state_merge_adds_counters() {
        let rs = ruleset(SSH);
        let mut a = rs.new_state();
        let mut b = rs.new_state();
        let mut p = with_state(
            tcp([1, 1, 1, 1], 40000, [2, 2, 2, 2], 22, 0x02),
            CtState::New,
            Dir::Original,
        );
        rs.evaluate(Family::Ipv4, TableId::Filter, Hook::Input, &mut p, &mut a);
        rs.evaluate(Family::Ipv4, TableId::Filter, Hook::Input, &mut p, &mut b);
        a.merge(&b);
        assert!(
            rs.listing(Family::Ipv4, &a)
                .contains("1           2      120 ACCEPT")
        );
        assert!(!rs.needs_global_state());
    }
}
