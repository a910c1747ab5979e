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
    /// Bit names as `conntrack` and ctnetlink spell them, in bit order.
    const NAMES: [(u32, &'static str); 9] = [
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

    /// The names of the bits that are set, in bit order (no allocation).
    pub fn set_names(self) -> impl Iterator<Item = &'static str> {
        Self::NAMES
            .into_iter()
            .filter(move |(bit, _)| self.has(*bit))
            .map(|(_, n)| n)
    }

    /// `EXPECTED|SEEN_REPLY|ASSURED|CONFIRMED` in bit order; empty when no
    /// bit is set.
    pub fn names(self) -> String {
        self.set_names().collect::<Vec<_>>().join("|")
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

pub mod expect;
pub mod helper;
pub mod index;
pub mod table;
pub mod tuple;

use crate::time::{Duration, Timestamp};
use crate::wire::{L4, Packet, ipproto};
use expect::{Expectation, Expectations};
use proto::L4Verdict;
use proto::icmp::{self, IcmpClass};
use proto::tcp::{TcpConn, TcpReason, TcpState, TcpVerdict};
use proto::udp::UdpConn;
use std::fmt;
use std::net::IpAddr;
pub use table::ConnId;
use table::Table;
pub use tuple::Tuple;

/// Why conntrack called a packet INVALID, or let it through unused, in the
/// words of the kernel's `nf_conntrack_log_invalid` messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Text(&'static str),
    Tcp(TcpReason),
    /// A helper dropped the packet (`nf_ct_helper_log`: "dropping packet: …").
    HelperDrop(&'static str),
    /// An ICMP error whose outer destination is not the quoted connection's.
    OuterDaddr {
        outer: IpAddr,
        inner: IpAddr,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Text(s) => f.write_str(s),
            Reason::Tcp(r) => r.fmt(f),
            Reason::HelperDrop(why) => write!(f, "dropping packet: {why}"),
            Reason::OuterDaddr { outer, inner } => {
                f.write_str("outer daddr ")?;
                write_addr_pi(f, outer)?;
                f.write_str(" != inner ")?;
                write_addr_pi(f, inner)
            }
        }
    }
}

/// An address as the kernel's `%pI4` / `%pI6` print it: IPv6 in full,
/// eight groups of four hex digits, no `::` compression.
fn write_addr_pi(f: &mut fmt::Formatter<'_>, a: &IpAddr) -> fmt::Result {
    match a {
        IpAddr::V4(v4) => write!(f, "{v4}"),
        IpAddr::V6(v6) => {
            for (i, g) in v6.segments().iter().enumerate() {
                if i > 0 {
                    f.write_str(":")?;
                }
                write!(f, "{g:04x}")?;
            }
            Ok(())
        }
    }
}

/// Protocol-specific part of an entry.
#[derive(Debug, Clone)]
pub enum ProtoState {
    /// Inline, not boxed: the tracker state is read on every packet, and a
    /// box costs a second cache miss per lookup.
    Tcp(TcpConn),
    Udp(UdpConn),
    UdpLite,
    Icmp,
    Generic,
}

/// Conntrack helpers that can be attached to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HelperKind {
    Ftp,
    Tftp,
}

impl HelperKind {
    pub fn name(self) -> &'static str {
        match self {
            HelperKind::Ftp => "ftp",
            HelperKind::Tftp => "tftp",
        }
    }
    pub fn from_name(n: &str) -> Option<HelperKind> {
        match n {
            "ftp" => Some(HelperKind::Ftp),
            "tftp" => Some(HelperKind::Tftp),
            _ => None,
        }
    }
}

/// A connection entry (`struct nf_conn`).
///
/// Laid out in declaration order, with what every packet reads first
/// (tuples, timer, status, tracker state), so a lookup touches the fewest
/// lines and the table can prefetch exactly those. Not padded to a cache
/// line: entries that never close stay for days of capture time, and the
/// table's memory is the replay's.
#[derive(Debug, Clone)]
#[repr(C)]
pub struct Conn {
    pub tuple: [Tuple; 2],
    /// Absolute expiry on the capture clock.
    pub expires: Timestamp,
    pub status: Status,
    pub proto: ProtoState,
    /// The deadline the table's gc wheel holds as current for this entry,
    /// never later than `expires`; kept by [`table::Table`], beside
    /// `expires` so timer bookkeeping touches no other memory.
    pub timer: Timestamp,
    /// Stable name: the capture index of the packet that created it.
    pub uid: u64,
    pub mark: u32,
    /// uid of the master connection for expected connections.
    pub master: Option<u64>,
    pub helper: Option<HelperKind>,
    /// Helper scratch state (FTP line tracking).
    pub help: expect::HelpState,
}

impl Conn {
    pub fn tcp_state(&self) -> Option<TcpState> {
        match &self.proto {
            ProtoState::Tcp(t) => Some(t.state()),
            _ => None,
        }
    }
    /// Seconds left, rounded down as `conntrack -L` prints them.
    pub fn timeout_secs(&self, now: Timestamp) -> u64 {
        self.expires.since(now).as_secs()
    }
}

/// Where the conntrack hook runs for this packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtHook {
    /// PREROUTING: packets from the wire; checksums are verified here.
    Prerouting,
    /// OUTPUT: locally generated packets; never checksum-verified.
    Output,
}

/// Which entry a packet is attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtRef {
    /// No entry (INVALID or UNTRACKED).
    None,
    /// The packet created a new, not yet confirmed entry.
    Pending,
    /// A confirmed entry in the table.
    Table(ConnId),
}

/// The outcome of the conntrack hook for one packet.
#[derive(Debug, Clone, Copy)]
pub struct CtResult {
    pub state: CtState,
    /// Direction of the packet (for RELATED: which tuple of the master it matched).
    pub dir: Option<Dir>,
    pub conn: CtRef,
    pub reason: Option<Reason>,
}

impl CtResult {
    fn invalid(reason: Option<Reason>) -> Self {
        CtResult {
            state: CtState::Invalid,
            dir: None,
            conn: CtRef::None,
            reason,
        }
    }
}

/// A conntrack event, as `conntrack -E` reports them.
#[derive(Debug, Clone)]
pub struct Event {
    /// Capture index of the packet during which it happened.
    pub packet: u64,
    pub time: Timestamp,
    pub kind: EventKind,
    pub conn_uid: u64,
    pub orig: Tuple,
    pub reply: Tuple,
    pub tcp_state: Option<TcpState>,
    pub status: Status,
    /// Seconds left on the timer (0 for DESTROY).
    pub timeout: u64,
    pub helper: Option<HelperKind>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    New,
    Update,
    Destroy,
    ExpectNew,
    /// An expectation was used by the connection it announced (the kernel
    /// reports this as the expectation's DESTROY).
    ExpectMatch,
    ExpectDestroy,
}

impl EventKind {
    pub fn name(self) -> &'static str {
        match self {
            EventKind::New => "NEW",
            EventKind::Update => "UPDATE",
            EventKind::Destroy => "DESTROY",
            EventKind::ExpectNew => "EXP_NEW",
            EventKind::ExpectMatch => "EXP_MATCH",
            EventKind::ExpectDestroy => "EXP_DESTROY",
        }
    }
}

/// Per-packet facts the conntrack hook needs beside the packet.
#[derive(Debug, Clone, Copy)]
pub struct HookInput {
    pub hook: CtHook,
    pub now: Timestamp,
    /// Capture index, for events and entry names.
    pub packet: u64,
    /// Helper requested by a raw-table `CT --helper` template.
    pub helper: Option<HelperKind>,
    /// L4 checksum verdict from the decoder (None: unverifiable).
    pub l4_csum_ok: Option<bool>,
}

/// The connection tracking system of one network namespace (or one shard).
#[derive(Debug)]
pub struct Conntrack {
    pub sysctls: Sysctls,
    table: Table,
    pending: Option<Conn>,
    expect: Expectations,
    /// Snapshot of (state, status) before the packet, to emit UPDATE events.
    before: Option<(ConnId, Option<TcpState>, Status)>,
    trace: bool,
    events: Vec<Event>,
    scratch: Vec<ConnId>,
    exp_scratch: Vec<Expectation>,
    last_sweep: Timestamp,
}

/// How often (capture time) expired entries are reaped from memory. Lookups
/// never see an expired entry whatever this value; it bounds memory only.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

impl Conntrack {
    pub fn new(sysctls: Sysctls, trace: bool) -> Self {
        Conntrack {
            sysctls,
            table: Table::default(),
            pending: None,
            expect: Expectations::default(),
            before: None,
            trace,
            events: Vec::new(),
            scratch: Vec::new(),
            exp_scratch: Vec::new(),
            last_sweep: Timestamp(0),
        }
    }

    /// Number of confirmed entries.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Events recorded since the last call (only when tracing).
    pub fn drain_events(&mut self) -> std::vec::Drain<'_, Event> {
        self.events.drain(..)
    }

    pub fn conn(&self, r: CtRef) -> Option<&Conn> {
        match r {
            CtRef::None => None,
            CtRef::Pending => self.pending.as_ref(),
            CtRef::Table(id) => self.table.try_get(id),
        }
    }

    pub fn conn_mut(&mut self, r: CtRef) -> Option<&mut Conn> {
        match r {
            CtRef::None => None,
            CtRef::Pending => self.pending.as_mut(),
            CtRef::Table(id) => Some(self.table.get_mut(id)),
        }
    }

    pub fn table(&self) -> &Table {
        &self.table
    }

    pub fn expectations(&self) -> &Expectations {
        &self.expect
    }

    /// The live entry a packet belongs to, without touching it: the one its
    /// tuple names, or for an ICMP error the one the quoted packet names.
    /// This is what `conntrack -G` finds after the packet, also for packets
    /// conntrack called INVALID.
    pub fn peek(&self, pkt: &Packet<'_>, now: Timestamp) -> Option<&Conn> {
        let t = match pkt.l4 {
            L4::Icmp(ic) | L4::Icmpv6(ic)
                if icmp::classify(pkt.proto, ic.icmp_type) == IcmpClass::Error =>
            {
                let inner = pkt.inner()?.ok()?;
                match Tuple::from_inner(&inner) {
                    Some(t) => t.invert()?,
                    // Conntrack needs 8 bytes of a quoted ICMP header, but
                    // type, code and id sit in the first 6: enough to name
                    // the entry the error is about, as `conntrack -G` can.
                    None if inner.icmp.is_none() && !inner.non_first_fragment => {
                        let q = ic
                            .body
                            .get(inner.l4_offset as usize..inner.l4_offset as usize + 6)?;
                        let quoted = Tuple {
                            src: inner.src,
                            dst: inner.dst,
                            sport: u16::from_be_bytes([q[4], q[5]]),
                            dport: u16::from(q[0]) << 8 | u16::from(q[1]),
                            proto: inner.proto,
                        };
                        if !quoted.is_icmp() {
                            return None;
                        }
                        quoted.invert()?
                    }
                    None => return None,
                }
            }
            _ => Tuple::from_packet(pkt)?,
        };
        let (id, _) = self.table.find(&t)?;
        let c = self.table.get(id);
        (c.expires > now).then_some(c)
    }

    /// `nf_ct_set_closing`: a REJECT with a TCP reset closes the confirmed
    /// TCP entry of the rejected packet (state CLOSE, CLOSE's timeout).
    pub fn set_closing(&mut self, r: CtRef, now: Timestamp) {
        let CtRef::Table(id) = r else { return };
        let close = Sysctls::secs(self.sysctls.tcp_timeout_close);
        let c = self.table.get_mut(id);
        if let ProtoState::Tcp(t) = &mut c.proto {
            let old = t.state;
            t.state = TcpState::Close;
            if old != TcpState::Close && !c.status.has(Status::FIXED_TIMEOUT) {
                c.expires = now.add(close);
                self.table.rearm(id);
            }
        }
    }

    /// The hash under which a lookup of this flow will search the table,
    /// for [`Conntrack::prefetch`].
    #[inline]
    pub fn flow_hash(flow: &crate::wire::hint::FlowHint) -> u64 {
        Table::hash_of(&Tuple {
            src: flow.src,
            dst: flow.dst,
            sport: flow.sport,
            dport: flow.dport,
            proto: flow.proto,
        })
    }

    /// Starts loading, ahead of time, what a lookup of the flow with this
    /// hash will read: the index bucket (`entry` false), or some packets
    /// later the entry itself. Only a hint to the CPU; no effect on any
    /// result.
    #[inline]
    pub fn prefetch(&self, hash: u64, entry: bool) {
        self.table.prefetch(hash, entry);
    }

    /// True when an entry with this tuple (either direction) is alive.
    pub fn is_tracked(&self, t: &Tuple, now: Timestamp) -> bool {
        self.table
            .find(t)
            .is_some_and(|(id, _)| self.table.get(id).expires > now)
    }

    fn event(&mut self, kind: EventKind, c: &Conn, packet: u64, now: Timestamp) {
        if !self.trace {
            return;
        }
        self.events.push(Event {
            packet,
            time: now,
            kind,
            conn_uid: c.uid,
            orig: c.tuple[0],
            reply: c.tuple[1],
            tcp_state: c.tcp_state(),
            status: c.status,
            timeout: if kind == EventKind::Destroy {
                0
            } else {
                c.timeout_secs(now)
            },
            helper: c.helper,
        });
    }

    fn destroy(&mut self, id: ConnId, packet: u64, now: Timestamp) {
        let c = self.table.remove(id);
        for e in self.expect.remove_master(id, c.uid) {
            self.expect_event(EventKind::ExpectDestroy, &e, packet, now);
        }
        self.event(EventKind::Destroy, &c, packet, now);
    }

    fn expect_event(&mut self, kind: EventKind, e: &Expectation, packet: u64, now: Timestamp) {
        if !self.trace {
            return;
        }
        self.events.push(Event {
            packet,
            time: now,
            kind,
            conn_uid: e.master_uid,
            orig: e.tuple,
            reply: e.tuple,
            tcp_state: None,
            status: Status::default(),
            timeout: e.expires.since(now).as_secs(),
            helper: Some(e.helper),
        });
    }

    /// Reaps expired entries and expectations (the kernel's gc worker). Only
    /// memory and DESTROY events depend on this; lookups ignore expired
    /// entries on their own.
    #[inline]
    pub fn sweep(&mut self, now: Timestamp, packet: u64) {
        // Asked at every frame; due about once a second of capture time.
        if now.since(self.last_sweep) >= SWEEP_EVERY {
            self.sweep_now(now, packet);
        }
    }

    #[cold]
    #[inline(never)]
    fn sweep_now(&mut self, now: Timestamp, packet: u64) {
        self.last_sweep = now;
        let mut ids = std::mem::take(&mut self.scratch);
        self.table.expired(now, &mut ids);
        for &id in &ids {
            self.destroy(id, packet, now);
        }
        self.scratch = ids;
        for e in self.expect.expire(now) {
            self.expect_event(EventKind::ExpectDestroy, &e, packet, now);
        }
    }

    /// Looks a tuple up as `____nf_conntrack_find` does: an entry whose timer
    /// ran out is reaped on the spot and not found.
    fn lookup(&mut self, t: &Tuple, now: Timestamp, packet: u64) -> Option<(ConnId, Dir)> {
        let (id, dir) = self.table.find(t)?;
        if self.table.get(id).expires <= now {
            self.destroy(id, packet, now);
            return None;
        }
        Some((id, dir))
    }

    /// The conntrack hook (`nf_conntrack_in`) for one packet: find or create
    /// the entry, run the protocol tracker, classify the packet.
    pub fn packet_in(&mut self, pkt: &Packet<'_>, inp: &HookInput) -> CtResult {
        debug_assert!(
            self.pending.is_none(),
            "previous packet not confirmed or discarded"
        );
        self.pending = None;
        self.before = None;
        let verify = inp.hook == CtHook::Prerouting && self.sysctls.checksum;

        // ICMP errors and neighbour discovery are settled before the normal path.
        if let L4::Icmp(ic) | L4::Icmpv6(ic) = pkt.l4 {
            match icmp::classify(pkt.proto, ic.icmp_type) {
                IcmpClass::Untracked => {
                    if verify && inp.l4_csum_ok == Some(false) {
                        return CtResult::invalid(Some(Reason::Text(icmp::bad_checksum_reason(
                            pkt.proto,
                        ))));
                    }
                    return CtResult {
                        state: CtState::Untracked,
                        dir: None,
                        conn: CtRef::None,
                        reason: None,
                    };
                }
                class => {
                    if verify && inp.l4_csum_ok == Some(false) {
                        return CtResult::invalid(Some(Reason::Text(icmp::bad_checksum_reason(
                            pkt.proto,
                        ))));
                    }
                    if pkt.proto == ipproto::ICMPV6
                        && ic.icmp_type == 137
                        && let Some(r) = self.icmpv6_redirect(pkt, inp)
                    {
                        return r;
                    }
                    match class {
                        IcmpClass::UnknownType => {
                            return CtResult::invalid(Some(Reason::Text("invalid icmp type")));
                        }
                        IcmpClass::Error => return self.icmp_error(pkt, inp),
                        _ => {}
                    }
                }
            }
        }
        let tuple = match Tuple::from_packet(pkt) {
            Some(t) => t,
            None => return CtResult::invalid(malformed_reason(pkt)),
        };
        let mut repeated = false;
        loop {
            let (conn, dir, state, is_new) = match self.lookup(&tuple, inp.now, inp.packet) {
                Some((id, dir)) => {
                    let c = self.table.get(id);
                    let state = if dir == Dir::Reply || c.status.has(Status::SEEN_REPLY) {
                        CtState::Established
                    } else if c.status.has(Status::EXPECTED) {
                        CtState::Related
                    } else {
                        CtState::New
                    };
                    self.before = Some((id, c.tcp_state(), c.status));
                    (CtRef::Table(id), dir, state, false)
                }
                None => {
                    let Some(reply) = tuple.invert() else {
                        return CtResult::invalid(None);
                    };
                    let state = self.init_conn(tuple, reply, pkt, inp);
                    (CtRef::Pending, Dir::Original, state, true)
                }
            };
            let verdict = self.run_tracker(conn, pkt, dir, is_new, verify, inp);
            match verdict {
                Tracked::Accept { refresh, note } => {
                    let c = self.conn_mut(conn).expect("entry");
                    let mut shortened = false;
                    if let Some(t) = refresh {
                        let at = inp.now.add(t);
                        shortened = at < c.expires;
                        c.expires = at;
                    }
                    if dir == Dir::Reply {
                        c.status.set(Status::SEEN_REPLY);
                    }
                    // A timer that moved later needs nothing from the gc heap.
                    if shortened && let CtRef::Table(id) = conn {
                        self.table.rearm(id);
                    }
                    return CtResult {
                        state,
                        dir: Some(dir),
                        conn,
                        reason: note,
                    };
                }
                Tracked::AcceptAndDelete => {
                    if dir == Dir::Reply
                        && let Some(c) = self.conn_mut(conn)
                    {
                        c.status.set(Status::SEEN_REPLY);
                    }
                    match conn {
                        CtRef::Table(id) => {
                            self.before = None;
                            self.destroy(id, inp.packet, inp.now);
                        }
                        _ => self.pending = None,
                    }
                    return CtResult {
                        state,
                        dir: Some(dir),
                        conn: CtRef::None,
                        reason: None,
                    };
                }
                Tracked::Invalid { reason, timeout } => {
                    match conn {
                        CtRef::Pending => self.pending = None,
                        CtRef::Table(id) => {
                            if let Some(t) = timeout {
                                self.table.get_mut(id).expires = inp.now.add(t);
                                self.table.rearm(id);
                            }
                        }
                        CtRef::None => {}
                    }
                    return CtResult::invalid(reason);
                }
                Tracked::Repeat => {
                    if let CtRef::Table(id) = conn {
                        self.before = None;
                        self.destroy(id, inp.packet, inp.now);
                    }
                    if repeated {
                        return CtResult::invalid(None);
                    }
                    repeated = true;
                }
            }
        }
    }

    /// Creates the unconfirmed entry for a packet with no entry
    /// (`init_conntrack`), consuming a matching expectation.
    fn init_conn(
        &mut self,
        tuple: Tuple,
        reply: Tuple,
        pkt: &Packet<'_>,
        inp: &HookInput,
    ) -> CtState {
        let proto = match pkt.l4 {
            // Filled by the TCP tracker on its first call (tcp_new).
            L4::Tcp(_) => ProtoState::Generic,
            L4::Udp(_) if pkt.proto == ipproto::UDPLITE => ProtoState::UdpLite,
            L4::Udp(_) => ProtoState::Udp(UdpConn::new(inp.now)),
            L4::Icmp(_) | L4::Icmpv6(_) => ProtoState::Icmp,
            _ => ProtoState::Generic,
        };
        let mut conn = Conn {
            uid: inp.packet,
            tuple: [tuple, reply],
            status: Status::default(),
            expires: inp.now,
            timer: inp.now,
            proto,
            mark: 0,
            master: None,
            helper: None,
            help: expect::HelpState::default(),
        };
        let mut state = CtState::New;
        let masters = &self.table;
        let master_alive = |id: ConnId, uid: u64| {
            masters
                .try_get(id)
                .is_some_and(|c| c.uid == uid && c.expires > inp.now)
        };
        if let Some(exp) = self.expect.take_match(&tuple, inp.now, master_alive) {
            self.expect_event(EventKind::ExpectMatch, &exp, inp.packet, inp.now);
            conn.status.set(Status::EXPECTED);
            conn.master = Some(exp.master_uid);
            conn.mark = self.table.get(exp.master).mark;
            state = CtState::Related;
        } else if let Some(h) = inp.helper {
            conn.helper = Some(h);
            conn.status.set(Status::HELPER);
        }
        self.pending = Some(conn);
        state
    }

    fn run_tracker(
        &mut self,
        conn: CtRef,
        pkt: &Packet<'_>,
        dir: Dir,
        is_new: bool,
        verify: bool,
        inp: &HookInput,
    ) -> Tracked {
        let sys = &self.sysctls;
        let c = match conn {
            CtRef::Pending => self.pending.as_mut().expect("pending"),
            CtRef::Table(id) => self.table.get_mut(id),
            CtRef::None => unreachable!(),
        };
        let timeout_left = c.expires.since(inp.now);
        let invalid = |reason: Option<Reason>| Tracked::Invalid {
            reason,
            timeout: None,
        };
        match pkt.l4 {
            L4::Tcp(tcp) => {
                if let Err(r) = TcpConn::check_packet(&tcp, inp.l4_csum_ok, verify) {
                    return invalid(Some(Reason::Tcp(r)));
                }
                if is_new {
                    match TcpConn::new(&tcp, sys) {
                        Ok(t) => c.proto = ProtoState::Tcp(t),
                        Err(r) => return invalid(r.map(Reason::Tcp)),
                    }
                }
                match &mut c.proto {
                    ProtoState::Tcp(t) => {
                        t.packet(&tcp, dir, &mut c.status, timeout_left, sys).into()
                    }
                    _ => invalid(None),
                }
            }
            L4::Udp(u) => {
                let lite = pkt.proto == ipproto::UDPLITE;
                let udp_len = pkt.ip_len.saturating_sub(pkt.l4_offset);
                if let Err(r) =
                    UdpConn::check(lite, u.length, u.checksum, udp_len, inp.l4_csum_ok, verify)
                {
                    return invalid(Some(Reason::Text(r)));
                }
                match &c.proto {
                    ProtoState::Udp(st) => st.packet(false, &mut c.status, inp.now, sys).into(),
                    ProtoState::UdpLite => UdpConn::new(inp.now)
                        .packet(true, &mut c.status, inp.now, sys)
                        .into(),
                    _ => invalid(None),
                }
            }
            L4::Icmp(_) | L4::Icmpv6(_) => {
                icmp::packet(pkt.proto, c.tuple[0].icmp_type(), sys).into()
            }
            _ => Tracked::Accept {
                refresh: Some(Sysctls::secs(sys.generic_timeout)),
                note: None,
            },
        }
    }

    /// ICMPv6 redirects (type 137) are checked like errors when they carry
    /// the redirected packet (`nf_conntrack_icmpv6_redirect`). None: the
    /// message goes the normal tuple path (and, having no reply type, ends
    /// INVALID there without a log line).
    fn icmpv6_redirect(&mut self, pkt: &Packet<'_>, inp: &HookInput) -> Option<CtResult> {
        let L4::Icmpv6(ic) = pkt.l4 else { return None };
        let (whole, opt) = pkt.redirect6()?;
        if !whole {
            return Some(CtResult::invalid(Some(Reason::Text("short redirect"))));
        }
        if ic.code != 0 {
            return None;
        }
        let link_local = matches!(pkt.src, IpAddr::V6(s) if s.segments()[0] & 0xffc0 == 0xfe80);
        if pkt.ttl != 255 || !link_local {
            return Some(CtResult::invalid(Some(Reason::Text(
                "invalid saddr or hoplimit for redirect",
            ))));
        }
        match opt {
            None | Some((_, 0)) => Some(CtResult::invalid(Some(Reason::Text(
                "redirect without options",
            )))),
            // Option 4: Redirected Header, the quoted packet.
            Some((4, _)) => Some(self.related_lookup(pkt.redirect6_inner(), pkt, inp)),
            Some(_) => None,
        }
    }

    /// RELATED lookup for an ICMP(v6) error (`nf_conntrack_inet_error`).
    fn icmp_error(&mut self, pkt: &Packet<'_>, inp: &HookInput) -> CtResult {
        self.related_lookup(pkt.inner(), pkt, inp)
    }

    fn related_lookup(
        &mut self,
        inner: Option<Result<crate::wire::InnerPacket, crate::wire::InnerError>>,
        pkt: &Packet<'_>,
        inp: &HookInput,
    ) -> CtResult {
        let Some(Ok(inner)) = inner else {
            return CtResult::invalid(None);
        };
        let Some(orig) = Tuple::from_inner(&inner) else {
            return CtResult::invalid(None);
        };
        // The quoted packet travelled the other way: look up its inverse.
        let Some(t) = orig.invert() else {
            return CtResult::invalid(None);
        };
        let Some((id, dir)) = self.lookup(&t, inp.now, inp.packet) else {
            return CtResult::invalid(None);
        };
        let ct_dst = self.table.get(id).tuple[dir.index()].dst;
        if ct_dst != pkt.dst {
            return CtResult::invalid(Some(Reason::OuterDaddr {
                outer: pkt.dst,
                inner: ct_dst,
            }));
        }
        self.before = Some((
            id,
            self.table.get(id).tcp_state(),
            self.table.get(id).status,
        ));
        CtResult {
            state: CtState::Related,
            dir: Some(dir),
            conn: CtRef::Table(id),
            reason: None,
        }
    }

    /// The confirm hook (`nf_confirm`, end of POSTROUTING or INPUT) for a
    /// packet the ruleset accepted: runs the connection's helper, inserts a
    /// new entry, registers expectations, emits events. Err when the helper
    /// drops the packet (then nothing is confirmed).
    pub fn confirm(
        &mut self,
        res: &CtResult,
        pkt: &Packet<'_>,
        inp: &HookInput,
    ) -> Result<CtRef, &'static str> {
        let mut exps = std::mem::take(&mut self.exp_scratch);
        exps.clear();
        // Helpers skip RELATED_REPLY packets (ICMP errors travelling back).
        let helper_runs = res.dir.is_some()
            && !(res.state == CtState::Related
                && res.dir == Some(Dir::Reply)
                && res.conn != CtRef::Pending);
        if helper_runs
            && let Some(c) = self.conn_mut(res.conn)
            && let Some(kind) = c.helper
        {
            let mut cx = helper::HelpCtx {
                conn: c,
                dir: res.dir.unwrap_or(Dir::Original),
                state: res.state,
                pkt,
                now: inp.now,
            };
            if let helper::HelpVerdict::Drop(why) = helper::help(kind, &mut cx, &mut exps) {
                self.exp_scratch = exps;
                self.discard(res, inp);
                return Err(why);
            }
        }
        let r = match res.conn {
            CtRef::Pending => {
                let mut c = self.pending.take().expect("pending entry");
                c.status.set(Status::CONFIRMED);
                let id = self.table.insert(c);
                let c = self.table.get(id).clone();
                self.event(EventKind::New, &c, inp.packet, inp.now);
                CtRef::Table(id)
            }
            CtRef::Table(id) => {
                self.emit_update(id, inp);
                res.conn
            }
            CtRef::None => {
                self.before = None;
                res.conn
            }
        };
        if let CtRef::Table(id) = r {
            let uid = self.table.get(id).uid;
            let mut failed = false;
            for mut e in exps.drain(..) {
                e.master = id;
                e.master_uid = uid;
                // The kernel drops the packet when the expectation cannot be
                // inserted; the entry stays confirmed.
                failed |= self.expect(e, inp).is_err();
            }
            if failed {
                self.exp_scratch = exps;
                return Err("cannot add expectation");
            }
        }
        self.exp_scratch = exps;
        Ok(r)
    }

    /// The packet was dropped before confirmation: a new entry vanishes
    /// without trace; changes to an existing entry stay (they were made at
    /// the conntrack hook, as in the kernel).
    pub fn discard(&mut self, res: &CtResult, inp: &HookInput) {
        self.pending = None;
        if let CtRef::Table(id) = res.conn {
            self.emit_update(id, inp);
        }
    }

    fn emit_update(&mut self, id: ConnId, inp: &HookInput) {
        if let Some((bid, st, status)) = self.before.take()
            && bid == id
            && self.trace
            && let Some(c) = self.table.try_get(id)
            && (c.tcp_state() != st || c.status != status)
        {
            let c = c.clone();
            self.event(EventKind::Update, &c, inp.packet, inp.now);
        }
    }

    /// Registers an expectation created by a helper for master `master`.
    pub fn expect(&mut self, e: Expectation, inp: &HookInput) -> Result<(), expect::ExpectError> {
        let evicted = self
            .expect
            .insert(e.clone(), self.sysctls.expect_max as usize)?;
        for old in evicted {
            self.expect_event(EventKind::ExpectDestroy, &old, inp.packet, inp.now);
        }
        self.expect_event(EventKind::ExpectNew, &e, inp.packet, inp.now);
        Ok(())
    }
}

/// A tracker's verdict in the core's terms (both `L4Verdict` and the TCP
/// tracker's richer `TcpVerdict` map onto it).
enum Tracked {
    Accept {
        refresh: Option<Duration>,
        note: Option<Reason>,
    },
    AcceptAndDelete,
    Invalid {
        reason: Option<Reason>,
        timeout: Option<Duration>,
    },
    Repeat,
}

impl From<L4Verdict> for Tracked {
    fn from(v: L4Verdict) -> Tracked {
        let text = |s: &'static str| (!s.is_empty()).then_some(Reason::Text(s));
        match v {
            L4Verdict::Accept { refresh, note } => Tracked::Accept {
                refresh,
                note: note.and_then(text),
            },
            L4Verdict::AcceptAndDelete => Tracked::AcceptAndDelete,
            L4Verdict::Invalid { reason, timeout } => Tracked::Invalid {
                reason: text(reason),
                timeout,
            },
            L4Verdict::Repeat => Tracked::Repeat,
        }
    }
}

impl From<TcpVerdict> for Tracked {
    fn from(v: TcpVerdict) -> Tracked {
        match v {
            TcpVerdict::Accept { refresh, note } => Tracked::Accept {
                refresh,
                note: note.map(Reason::Tcp),
            },
            TcpVerdict::AcceptAndDelete => Tracked::AcceptAndDelete,
            // When the timer was cut, the kernel logs the timeout line, not
            // the window complaint.
            TcpVerdict::Invalid {
                reason,
                timeout,
                timeout_note,
            } => Tracked::Invalid {
                reason: timeout_note.or(reason).map(Reason::Tcp),
                timeout,
            },
            TcpVerdict::Repeat => Tracked::Repeat,
        }
    }
}

/// Reason for a packet whose L4 header could not be read.
fn malformed_reason(pkt: &Packet<'_>) -> Option<Reason> {
    match pkt.proto {
        // tcp_error logs nothing for a header under 20 bytes, and "truncated
        // packet" when the data offset points past the datagram.
        ipproto::TCP => (pkt.l4_len() >= 20).then_some(Reason::Tcp(TcpReason::Truncated)),
        ipproto::UDP | ipproto::UDPLITE | ipproto::ICMP | ipproto::ICMPV6 => {
            Some(Reason::Text("short packet"))
        }
        _ => None,
    }
}
