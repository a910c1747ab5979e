//! The per-packet walk through one simulated firewall: defrag, raw,
//! conntrack, mangle, routing, filter, confirm — in the kernel's hook order.
//!
//! A [`Firewall`] owns one conntrack table and the stateful-rule state; the
//! ruleset is shared and read-only. It turns frames into [`Row`]s. Rows of
//! fragments held by defrag are produced once their datagram completes (or
//! its queue expires), so rows may come out of capture order; the caller
//! puts them back in order.

use crate::capture::Frame;
use crate::conntrack::defrag::{Defrag, DefragOutcome, DefragTimeouts};
use crate::conntrack::proto::tcp::TcpState;
use crate::conntrack::{
    self, Conntrack, CtHook, CtRef, CtResult, CtState, HelperKind, HookInput, Sysctls,
};
use crate::netfilter::{Hook, Path, RouteDrop, Topology};
use crate::report::{Notes, Row, RowPacket, RowVerdict};
use crate::rules::eval::ConnTuple;
use crate::rules::matches::meta::addrtype;
use crate::rules::{ConnLiveness, Liveness};
use crate::rules::{
    CtAction, CtTupleView, CtView, Decision, EvalCtx, RejectWith, RuleRef, RuleState, Ruleset,
    TableId, Verdict,
};
use crate::time::{Clock, Timestamp};
use crate::wire::{self, DecodeError, L4, Packet};
use rustc_hash::FxHashMap;
use std::net::IpAddr;
use std::sync::Arc;

/// Options that shape the simulation.
#[derive(Debug, Clone, Default)]
pub struct EngineConfig {
    pub sysctls: Sysctls,
    pub topology: Topology,
    /// Record conntrack events for `--trace`.
    pub trace: bool,
    /// Emulate pre-4.7 automatic helper assignment by well-known port.
    pub auto_helpers: bool,
}

/// One simulated firewall.
pub struct Firewall<'r> {
    rules: &'r Ruleset,
    cfg: &'r EngineConfig,
    pub ct: Conntrack,
    pub rule_state: RuleState,
    defrag: Defrag,
    clock: Clock,
    /// Rows of fragments waiting for their datagram, by capture index.
    held: FxHashMap<u64, Row>,
    labels: Labels,
    pub bad_l4_checksums: u64,
    pub checked_l4_checksums: u64,
}

/// Where a walk ended.
struct Walk<'r> {
    verdict: RowVerdict,
    rule: Option<RuleRef<'r>>,
    /// REJECT sent a TCP reset.
    tcp_reset: bool,
}

impl<'r> Firewall<'r> {
    pub fn new(rules: &'r Ruleset, cfg: &'r EngineConfig) -> Self {
        Firewall {
            rules,
            cfg,
            ct: Conntrack::new(cfg.sysctls.clone(), cfg.trace),
            rule_state: rules.new_state(),
            defrag: Defrag::new(),
            clock: Clock::default(),
            held: FxHashMap::default(),
            labels: Labels::new(),
            bad_l4_checksums: 0,
            checked_l4_checksums: 0,
        }
    }

    /// Moves this firewall's clock to the capture-wide clock. A shard sees
    /// only some frames; its conntrack timers must still run on the time of
    /// the whole capture so that results do not depend on the shard count.
    pub fn advance_clock(&mut self, to: Timestamp) {
        self.clock.advance(to);
    }

    /// Gives back the rows of fragments whose datagram timed out by `now`,
    /// as the next frame would. A shard that sees no frame for a long time
    /// calls this so that held rows do not wait for the end of the capture.
    #[inline]
    pub fn expire_fragments(&mut self, now: Timestamp, emit: &mut impl FnMut(Row)) {
        // Asked at every frame, and almost always with nothing held.
        if self.defrag.is_idle() {
            return;
        }
        let timeouts = DefragTimeouts::from(&self.cfg.sysctls);
        for exp in self.defrag.expire(now, timeouts) {
            for idx in exp.fragments {
                if let Some(mut row) = self.held.remove(&idx) {
                    row.verdict = RowVerdict::Defrag;
                    emit(row);
                }
            }
        }
    }

    /// Rows of fragments whose queue defrag threw away: they never reach a
    /// rule.
    fn drop_held(&mut self, frames: Vec<u64>, emit: &mut impl FnMut(Row)) {
        for idx in frames {
            if let Some(mut r) = self.held.remove(&idx) {
                r.verdict = RowVerdict::Defrag;
                r.notes.set(Notes::DEFRAG_DROPPED);
                emit(r);
            }
        }
    }

    /// Processes one capture frame; finished rows go to `emit` (possibly
    /// several, for a completed fragment set, or none, for a held fragment).
    pub fn process(
        &mut self,
        frame: &Frame<'_>,
        iface_name: Option<&str>,
        emit: &mut impl FnMut(Row),
    ) {
        let now = self.clock.advance(frame.ts);
        self.ct.sweep(now, frame.index);
        self.expire_fragments(now, emit);
        let timeouts = DefragTimeouts::from(&self.cfg.sysctls);
        let mut row = Row::new(frame.index, frame.ts);
        // Borrowed where it was decoded: a Packet is large, and moving it out
        // of the Result costs a copy per packet.
        let decoded = wire::decode(frame);
        let pkt = match &decoded {
            Ok(p) => p,
            Err(e) => {
                match e {
                    DecodeError::NotIp { .. } => {
                        row.verdict = RowVerdict::NotIp;
                    }
                    DecodeError::BadIpHeader { .. } => {
                        row.verdict = RowVerdict::Drop;
                        row.notes.set(Notes::DECODE_ERROR);
                    }
                    _ => {
                        row.verdict = RowVerdict::Drop;
                        row.notes.set(Notes::DECODE_ERROR);
                    }
                }
                row.detail = Some(decode_error_text(e));
                emit(row);
                return;
            }
        };
        row.pkt = Some(RowPacket::of(pkt));
        if pkt.truncated {
            row.notes.set(Notes::TRUNCATED);
        }
        if !pkt.ipv4_csum_ok {
            // ip_rcv drops it before any hook.
            row.verdict = RowVerdict::Drop;
            row.notes.set(Notes::BAD_IP_CSUM);
            emit(row);
            return;
        }
        if ipv6_rcv_drops(pkt, &self.cfg.topology) {
            row.verdict = RowVerdict::Drop;
            row.notes.set(Notes::IPV6_RCV);
            emit(row);
            return;
        }
        if pkt.frag.is_some() {
            row.notes.set(Notes::FRAGMENT);
            match self.defrag.push(pkt, frame.index, now, timeouts) {
                DefragOutcome::Held { discarded } => {
                    // Defrag sits in the first hook (priority -400).
                    row.chains.push(if self.cfg.topology.is_local(&pkt.src) {
                        Hook::Output
                    } else {
                        Hook::Prerouting
                    });
                    self.held.insert(frame.index, row);
                    self.drop_held(discarded, emit);
                }
                DefragOutcome::Dropped { discarded, .. } => {
                    row.chains.push(if self.cfg.topology.is_local(&pkt.src) {
                        Hook::Output
                    } else {
                        Hook::Prerouting
                    });
                    row.verdict = RowVerdict::Defrag;
                    row.notes.set(Notes::DEFRAG_DROPPED);
                    self.drop_held(discarded, emit);
                    emit(row);
                }
                DefragOutcome::Complete(re) => {
                    let mut whole = Row::new(frame.index, frame.ts);
                    let fragments = re.fragments;
                    match wire::decode_ip(&re.datagram, re.link) {
                        Ok(full) => self.walk(&full, iface_name, now, frame.index, &mut whole),
                        Err(e) => {
                            whole.verdict = RowVerdict::Drop;
                            whole.detail = Some(decode_error_text(&e));
                        }
                    }
                    for idx in fragments {
                        let mut r = if idx == frame.index {
                            row.clone()
                        } else {
                            match self.held.remove(&idx) {
                                Some(r) => r,
                                None => continue,
                            }
                        };
                        copy_fate(&whole, &mut r);
                        emit(r);
                    }
                }
                DefragOutcome::NotFragment => {
                    self.walk(pkt, iface_name, now, frame.index, &mut row);
                    emit(row);
                }
                DefragOutcome::PassThrough { discarded, .. } => {
                    self.drop_held(discarded, emit);
                    self.walk(pkt, iface_name, now, frame.index, &mut row);
                    emit(row);
                }
            }
            return;
        }
        self.walk(pkt, iface_name, now, frame.index, &mut row);
        emit(row);
    }

    /// Rows still held at the end of the capture: their datagrams never
    /// completed.
    pub fn finish(&mut self, emit: &mut impl FnMut(Row)) {
        let mut rest: Vec<Row> = self.held.drain().map(|(_, r)| r).collect();
        rest.sort_by_key(|r| r.packet);
        for mut r in rest {
            r.verdict = RowVerdict::Defrag;
            emit(r);
        }
    }

    /// The hooks for one (whole) packet.
    fn walk(
        &mut self,
        pkt: &Packet<'_>,
        iface_name: Option<&str>,
        now: Timestamp,
        index: u64,
        row: &mut Row,
    ) {
        let cfg: &'r EngineConfig = self.cfg;
        let topo = &cfg.topology;
        let path = topo.path(pkt);
        let first = if path == Path::Output {
            Hook::Output
        } else {
            Hook::Prerouting
        };
        let in_iface: Option<&str> = if path == Path::Output {
            None
        } else {
            Some(
                topo.iface_of(&pkt.src)
                    .or(iface_name)
                    .unwrap_or(crate::netfilter::topology::DEFAULT_IFACE),
            )
        };
        let out_iface: Option<&str> = if path == Path::Input {
            None
        } else {
            Some(
                topo.iface_of(&pkt.dst)
                    .unwrap_or(crate::netfilter::topology::DEFAULT_IFACE),
            )
        };
        let csum_ok = if first == Hook::Prerouting && self.cfg.sysctls.checksum {
            let c = pkt.l4_checksum_ok();
            if c.is_some() {
                self.checked_l4_checksums += 1;
            }
            if c == Some(false) {
                self.bad_l4_checksums += 1;
            }
            c
        } else {
            None
        };
        let mut ctx = eval_ctx(pkt, now);
        ctx.in_iface = if first == Hook::Prerouting {
            in_iface
        } else {
            None
        };
        ctx.locally_generated = path == Path::Output;
        ctx.src_type = addr_type(topo, &pkt.src);
        ctx.dst_type = addr_type(topo, &pkt.dst);

        // raw table, before conntrack: the state match sees no entry.
        row.chains.push(first);
        let mut notrack = false;
        let mut helper: Option<HelperKind> = None;
        let raw = TableWalk {
            rules: self.rules,
            state: &mut self.rule_state,
            labels: &mut self.labels,
            topo,
        }
        .eval(TableId::Raw, first, &mut ctx);
        if let Some(d) = raw {
            match d.ct {
                Some(CtAction::Notrack) => notrack = true,
                Some(CtAction::Helper(name)) => helper = HelperKind::from_name(name),
                Some(CtAction::Template) | None => {}
            }
            if let Some(w) = final_walk(&d) {
                row.verdict = w.verdict;
                row.rule = w.rule.map(|r| self.labels.rule(r));
                row.ctstate = Some(CtState::Invalid);
                return;
            }
        }
        if helper.is_none() && self.cfg.auto_helpers {
            helper = auto_helper(pkt);
        }
        let inp = HookInput {
            hook: if first == Hook::Output {
                CtHook::Output
            } else {
                CtHook::Prerouting
            },
            now,
            packet: index,
            helper,
            l4_csum_ok: csum_ok,
        };
        let res = if notrack {
            CtResult {
                state: CtState::Untracked,
                dir: None,
                conn: CtRef::None,
                reason: None,
            }
        } else {
            self.ct.packet_in(pkt, &inp)
        };
        row.ctstate = Some(res.state);
        row.ctdir = res.dir;
        row.reason = res.reason;
        ctx.ct = ct_view(&self.ct, &res, now);

        let live = CtLiveness { ct: &self.ct, now };
        ctx.conns = Some(&live);
        let walk = TableWalk {
            rules: self.rules,
            state: &mut self.rule_state,
            labels: &mut self.labels,
            topo,
        }
        .walk_tables(&mut ctx, pkt, path, first, in_iface, out_iface, row);
        // The conntrack view must not outlive the walk (the entry changes
        // next): carry over only what the walk changed.
        let (nfmark, ct_view_after) = (ctx.nfmark, ctx.ct);
        // CONNMARK targets changed the view's mark; the entry keeps it.
        if let Some(v) = ct_view_after
            && v.has_entry()
            && let Some(c) = self.ct.conn_mut(res.conn)
        {
            c.mark = v.ctmark;
        }
        let after = match walk {
            Some(w) => {
                row.verdict = w.verdict;
                row.rule = w.rule.map(|r| self.labels.rule(r));
                // nf_send_reset puts the entry into CLOSE when it really
                // sends a reset: not in answer to a RST, nor to a segment
                // whose checksum it refuses. REJECT verifies the checksum
                // itself, at whatever hook it runs and whatever the
                // nf_conntrack_checksum sysctl says, for a packet whose
                // checksum nobody vouched for (CHECKSUM_NONE: what a
                // capture replayed into the kernel is; a locally sent
                // segment left to checksum offload would not be checked).
                if w.tcp_reset
                    && let L4::Tcp(t) = pkt.l4
                    && t.flags & crate::wire::tcpflag::RST == 0
                    && pkt.l4_checksum_ok() != Some(false)
                {
                    self.ct.set_closing(res.conn, now);
                }
                self.ct.discard(&res, &inp);
                res.conn
            }
            None => match self.ct.confirm(&res, pkt, &inp) {
                Ok(r) => {
                    row.verdict = RowVerdict::Accept;
                    if path == Path::Output && topo.is_local(&pkt.dst) {
                        // Back in on `lo`. A packet that left OUTPUT with
                        // an entry keeps it; one that was INVALID (none
                        // attached) meets conntrack again at PREROUTING,
                        // checksum check included.
                        let mut ctx = eval_ctx(pkt, now);
                        ctx.nfmark = nfmark;
                        ctx.ct = ct_view_after;
                        ctx.src_type = addr_type(topo, &pkt.src);
                        ctx.dst_type = addr_type(topo, &pkt.dst);
                        let mut second = None;
                        if res.state == CtState::Invalid {
                            let inp2 = HookInput {
                                hook: CtHook::Prerouting,
                                l4_csum_ok: if cfg.sysctls.checksum {
                                    pkt.l4_checksum_ok()
                                } else {
                                    None
                                },
                                ..inp
                            };
                            let r2 = self.ct.packet_in(pkt, &inp2);
                            row.ctstate = Some(r2.state);
                            row.ctdir = r2.dir;
                            match (row.reason, r2.reason) {
                                (None, r) => row.reason = r,
                                (Some(_), r) => row.reason2 = r,
                            }
                            ctx.ct = ct_view(&self.ct, &r2, now);
                            second = Some((r2, inp2));
                        }
                        TableWalk {
                            rules: self.rules,
                            state: &mut self.rule_state,
                            labels: &mut self.labels,
                            topo,
                        }
                        .loopback(&mut ctx, row);
                        if let Some((r2, inp2)) = second {
                            if row.verdict == RowVerdict::Accept {
                                let _ = self.ct.confirm(&r2, pkt, &inp2);
                            } else {
                                self.ct.discard(&r2, &inp2);
                            }
                        }
                    }
                    r
                }
                Err(why) => {
                    // Dropped at the confirm hook, after every table: no
                    // rule decided.
                    row.verdict = RowVerdict::Drop;
                    row.rule = None;
                    row.reason = Some(conntrack::Reason::HelperDrop(why));
                    res.conn
                }
            },
        };
        // What the entry looks like after the packet (for INVALID packets,
        // the untouched entry their tuple names, as `conntrack -G` shows it).
        let entry = match after {
            CtRef::Table(id) => self.ct.table().try_get(id),
            CtRef::None if res.state == CtState::Invalid => self.ct.peek(pkt, now),
            _ => None,
        };
        if let Some(c) = entry {
            row.ctstatus = Some(c.status);
            row.tcp_state = c.tcp_state();
        }
    }
}

/// What `-m connlimit` asks conntrack: is a remembered connection still
/// there, and is it closing (`nf_conncount` looks up its original tuple).
struct CtLiveness<'a> {
    ct: &'a Conntrack,
    now: Timestamp,
}

impl ConnLiveness for CtLiveness<'_> {
    fn liveness(&self, _family: crate::wire::Family, orig: &ConnTuple) -> Liveness {
        let t = conntrack::Tuple {
            src: orig.src,
            dst: orig.dst,
            sport: orig.sport,
            dport: orig.dport,
            proto: orig.proto,
        };
        let Some((id, _)) = self.ct.table().find(&t) else {
            return Liveness::Gone;
        };
        let c = self.ct.table().get(id);
        if c.expires <= self.now {
            return Liveness::Gone;
        }
        match c.tcp_state() {
            Some(TcpState::TimeWait | TcpState::Close) => Liveness::Closed,
            _ => Liveness::Live,
        }
    }
}

/// A rule: its table, chain (by address) and number (None: the policy).
type LabelKey = (TableId, usize, Option<u32>);

/// Rendered rule names, cached: the row takes a shared string, so the
/// per-packet path never formats a rule name twice.
struct Labels {
    /// Keyed by (table, chain name address, number).
    map: FxHashMap<LabelKey, Arc<str>>,
    /// The last rule asked for: most packets of a capture are decided by
    /// the same rule as the one before, and this skips the map for them.
    last: Option<(LabelKey, Arc<str>)>,
    implicit: [Arc<str>; 3],
}

impl Labels {
    fn new() -> Self {
        Labels {
            map: FxHashMap::default(),
            last: None,
            implicit: [
                Arc::from("filter:INPUT:policy"),
                Arc::from("filter:FORWARD:policy"),
                Arc::from("filter:OUTPUT:policy"),
            ],
        }
    }

    fn rule(&mut self, r: RuleRef<'_>) -> Arc<str> {
        let key = (r.table, r.chain.as_ptr() as usize, r.num);
        if let Some((k, label)) = &self.last
            && *k == key
        {
            return label.clone();
        }
        let label = self
            .map
            .entry(key)
            .or_insert_with(|| Arc::from(r.to_string().as_str()))
            .clone();
        self.last = Some((key, label.clone()));
        label
    }

    /// The implicit ACCEPT policy of a filter chain the rules do not define.
    fn policy(&self, hook: Hook) -> Arc<str> {
        match hook {
            Hook::Input => self.implicit[0].clone(),
            Hook::Forward => self.implicit[1].clone(),
            _ => self.implicit[2].clone(),
        }
    }
}

/// The rule tables of one firewall, borrowed apart from its conntrack so
/// that rules (`-m connlimit`) can ask conntrack about live connections
/// while the walk updates counters.
struct TableWalk<'a, 'r> {
    rules: &'r Ruleset,
    state: &'a mut RuleState,
    labels: &'a mut Labels,
    topo: &'a Topology,
}

impl<'r> TableWalk<'_, 'r> {
    fn eval(&mut self, table: TableId, hook: Hook, ctx: &mut EvalCtx<'_>) -> Option<Decision<'r>> {
        let rules: &'r Ruleset = self.rules;
        if !rules.has_table(ctx.family, table) {
            return None;
        }
        Some(rules.evaluate(ctx.family, table, hook, ctx, self.state))
    }

    /// A packet from the firewall to one of its own addresses, after
    /// POSTROUTING confirmed it, comes back in on `lo`: PREROUTING (the entry
    /// is already attached, conntrack skips it), then INPUT.
    /// The row's rule stays the OUTPUT filter decision unless INPUT drops.
    fn loopback(&mut self, ctx: &mut EvalCtx<'_>, row: &mut Row) {
        ctx.in_iface = Some("lo");
        ctx.out_iface = None;
        ctx.locally_generated = false;
        for (table, hook) in [
            (TableId::Raw, Hook::Prerouting),
            (TableId::Mangle, Hook::Prerouting),
            (TableId::Mangle, Hook::Input),
            (TableId::Filter, Hook::Input),
        ] {
            if table == TableId::Raw {
                row.chains.push(Hook::Prerouting);
            } else if hook == Hook::Input && table == TableId::Mangle {
                row.chains.push(Hook::Input);
            }
            // An accepted packet keeps the OUTPUT decision as its rule, as
            // the oracle reports it.
            if let Some(w) = self.gate(table, hook, ctx) {
                row.verdict = w.verdict;
                row.rule = w.rule.map(|r| self.labels.rule(r));
                return;
            }
        }
    }

    /// Runs one table at one hook; Some when it dropped or rejected.
    fn gate(&mut self, table: TableId, hook: Hook, ctx: &mut EvalCtx<'_>) -> Option<Walk<'r>> {
        self.eval(table, hook, ctx).and_then(|d| final_walk(&d))
    }

    /// mangle/filter hooks after conntrack; Some when the packet was
    /// dropped or rejected on the way.
    fn walk_tables<'c>(
        &mut self,
        ctx: &mut EvalCtx<'c>,
        pkt: &Packet<'_>,
        path: Path,
        first: Hook,
        in_iface: Option<&'c str>,
        out_iface: Option<&'c str>,
        row: &mut Row,
    ) -> Option<Walk<'r>> {
        if let Some(w) = self.gate(TableId::Mangle, first, ctx) {
            return Some(w);
        }
        // Routing between PREROUTING and INPUT/FORWARD.
        if path != Path::Output
            && let Some(drop) = self.topo.route_drop(pkt, path, in_iface == out_iface)
        {
            row.notes.set(match drop {
                RouteDrop::Martian => Notes::ROUTE_MARTIAN,
                RouteDrop::Multicast => Notes::ROUTE_MULTICAST,
                RouteDrop::TtlExceeded => Notes::ROUTE_TTL,
                RouteDrop::LinkLocal => Notes::ROUTE_LINKLOCAL,
                RouteDrop::NotForUs => Notes::ROUTE_NOT_FOR_US,
            });
            return Some(Walk {
                verdict: RowVerdict::Drop,
                rule: None,
                tcp_reset: false,
            });
        }
        let filter_hook = match path {
            Path::Input => Hook::Input,
            Path::Forward => Hook::Forward,
            Path::Output => Hook::Output,
        };
        if path != Path::Input {
            ctx.out_iface = out_iface;
        }
        // ip_forward / ip6_forward decrement the TTL before the FORWARD
        // hook, so FORWARD and POSTROUTING match on the decremented value.
        if path == Path::Forward {
            ctx.ttl = ctx.ttl.saturating_sub(1);
        }
        if filter_hook != first {
            row.chains.push(filter_hook);
            if let Some(w) = self.gate(TableId::Mangle, filter_hook, ctx) {
                return Some(w);
            }
        }
        match self.eval(TableId::Filter, filter_hook, ctx) {
            Some(d) => {
                if let Some(w) = final_walk(&d) {
                    return Some(w);
                }
                row.rule = Some(self.labels.rule(d.rule));
            }
            // No filter table for this family: the built-in chain's
            // implicit ACCEPT policy.
            None => row.rule = Some(self.labels.policy(filter_hook)),
        }
        if path != Path::Input {
            row.chains.push(Hook::Postrouting);
            if let Some(w) = self.gate(TableId::Mangle, Hook::Postrouting, ctx) {
                return Some(w);
            }
        }
        None
    }
}

/// `ipv6_rcv` refuses, before any hook, packets from a wire that carry a
/// loopback source or destination or a multicast source. (Packets from a
/// local address take the OUTPUT path and never pass `ipv6_rcv`.)
fn ipv6_rcv_drops(pkt: &Packet<'_>, topo: &Topology) -> bool {
    match (pkt.src, pkt.dst) {
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            !topo.is_local(&pkt.src) && (s.is_loopback() || d.is_loopback() || s.is_multicast())
        }
        _ => false,
    }
}

/// Drop/Reject decisions end the walk.
fn final_walk<'r>(d: &Decision<'r>) -> Option<Walk<'r>> {
    match d.verdict {
        Verdict::Accept => None,
        Verdict::Drop => Some(Walk {
            verdict: RowVerdict::Drop,
            rule: Some(d.rule),
            tcp_reset: false,
        }),
        Verdict::Reject(with) => Some(Walk {
            verdict: RowVerdict::Reject,
            rule: Some(d.rule),
            tcp_reset: with == RejectWith::TcpReset,
        }),
    }
}

fn copy_fate(whole: &Row, r: &mut Row) {
    r.chains = whole.chains;
    r.ctstate = whole.ctstate;
    r.ctdir = whole.ctdir;
    r.ctstatus = whole.ctstatus;
    r.tcp_state = whole.tcp_state;
    r.verdict = whole.verdict;
    r.rule = whole.rule.clone();
    r.reason = whole.reason;
    r.reason2 = whole.reason2;
    r.notes.0 |= whole.notes.0;
    r.notes.set(Notes::FRAGMENT);
}

/// Old kernels attached helpers by well-known port; `--auto-helpers`
/// emulates that for teaching.
fn auto_helper(pkt: &Packet<'_>) -> Option<HelperKind> {
    match pkt.l4 {
        L4::Tcp(t) if t.dport == 21 => Some(HelperKind::Ftp),
        L4::Udp(u) if u.dport == 69 => Some(HelperKind::Tftp),
        _ => None,
    }
}

/// Route type of an address as `-m addrtype` sees it on a router whose only
/// local addresses are `--local` ones.
fn addr_type(topo: &Topology, a: &IpAddr) -> u16 {
    if topo.is_local(a) {
        return addrtype::LOCAL;
    }
    match a {
        IpAddr::V4(v) if v.is_broadcast() => addrtype::BROADCAST,
        IpAddr::V4(v) if v.is_multicast() => addrtype::MULTICAST,
        IpAddr::V4(v) if v.is_unspecified() => addrtype::UNSPEC,
        IpAddr::V6(v) if v.is_multicast() => addrtype::MULTICAST,
        IpAddr::V6(v) if v.is_unspecified() => addrtype::UNSPEC,
        _ => addrtype::UNICAST,
    }
}

/// The rule-evaluation view of a packet (before conntrack and interfaces).
fn eval_ctx<'a>(pkt: &'a Packet<'_>, now: Timestamp) -> EvalCtx<'a> {
    let (sport, dport, tcp_flags, tcp_options, icmp) = match pkt.l4 {
        L4::Tcp(t) => (Some(t.sport), Some(t.dport), Some(t.flags), t.options, None),
        L4::Udp(u) => (Some(u.sport), Some(u.dport), None, &[][..], None),
        L4::Icmp(i) | L4::Icmpv6(i) => (None, None, None, &[][..], Some((i.icmp_type, i.code))),
        _ => (None, None, None, &[][..], None),
    };
    EvalCtx {
        family: pkt.family,
        src: pkt.src,
        dst: pkt.dst,
        proto: pkt.proto,
        sport,
        dport,
        tcp_flags,
        tcp_options,
        icmp,
        non_first_fragment: pkt.frag.is_some_and(|f| f.offset != 0),
        ip_len: pkt.ip_len,
        ttl: pkt.ttl,
        tos: pkt.tos,
        in_iface: None,
        out_iface: None,
        src_mac: pkt.src_mac,
        pkttype: pkt.pkttype,
        src_type: 0,
        dst_type: 0,
        nfmark: 0,
        ct: None,
        now,
        locally_generated: false,
        conns: None,
    }
}

/// What the state/conntrack matches see of the packet's entry.
fn ct_view(ct: &Conntrack, res: &CtResult, now: Timestamp) -> Option<CtView> {
    let tv = |t: &conntrack::Tuple| CtTupleView {
        src: t.src,
        dst: t.dst,
        sport: t.sport,
        dport: t.dport,
    };
    match ct.conn(res.conn) {
        Some(c) => Some(CtView {
            state: res.state,
            dir: res.dir.unwrap_or(conntrack::Dir::Original),
            status: c.status,
            l4proto: c.tuple[0].proto,
            orig: tv(&c.tuple[0]),
            reply: tv(&c.tuple[1]),
            ctmark: c.mark,
            expires_in_secs: c.expires.since(now).as_secs().min(u64::from(u32::MAX)) as u32,
        }),
        None => {
            let none = CtTupleView {
                src: IpAddr::from([0, 0, 0, 0]),
                dst: IpAddr::from([0, 0, 0, 0]),
                sport: 0,
                dport: 0,
            };
            Some(CtView {
                state: res.state,
                dir: res.dir.unwrap_or(conntrack::Dir::Original),
                status: conntrack::Status::default(),
                l4proto: 0,
                orig: none,
                reply: none,
                ctmark: 0,
                expires_in_secs: 0,
            })
        }
    }
}

fn decode_error_text(e: &DecodeError) -> &'static str {
    match e {
        DecodeError::NotIp { .. } => "not IP",
        DecodeError::UnsupportedLinktype { .. } => "unsupported link type",
        DecodeError::LinkTruncated { .. } => "link header cut short",
        DecodeError::BadIpHeader { .. } => "ip_rcv: malformed IP header",
        DecodeError::Truncated { .. } => "header cut by snap length",
    }
}
