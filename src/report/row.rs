//! The per-packet CSV row, shared by `ctsim replay` and `ctsim kernel` so
//! both write byte-identical columns.

use crate::conntrack::proto::tcp::TcpState;
use crate::conntrack::{CtState, Dir, Reason, Status};
use crate::netfilter::HookTrail;
use crate::time::Timestamp;
use crate::wire::{L4, Packet, ipproto, tcpflag};
use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::net::IpAddr;
use std::sync::Arc;

/// The leading columns, in order.
pub const HEADER: &str = "packet,time,proto,src,sport,dst,dport,flags,length,chains,ctstate,ctdir,ctstatus,tcp_state,verdict,rule,reason,notes";

/// What happened to the packet in the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowVerdict {
    Accept,
    Drop,
    Reject,
    /// Not an IPv4/IPv6 packet: netfilter's IP hooks never see it.
    NotIp,
    /// A fragment whose datagram never completed: held by defrag, never
    /// reaching a rule.
    Defrag,
}

impl RowVerdict {
    pub fn name(self) -> &'static str {
        match self {
            RowVerdict::Accept => "ACCEPT",
            RowVerdict::Drop => "DROP",
            RowVerdict::Reject => "REJECT",
            RowVerdict::NotIp => "NOTIP",
            RowVerdict::Defrag => "DEFRAG",
        }
    }
}

/// The `flags` column: TCP flags or ICMP type/code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowFlags {
    None,
    Tcp(u8),
    Icmp(u8, u8),
}

/// Header facts shown in a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowPacket {
    pub proto: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub flags: RowFlags,
    pub length: u32,
}

impl RowPacket {
    pub fn of(pkt: &Packet<'_>) -> RowPacket {
        let (sport, dport, flags) = match pkt.l4 {
            L4::Tcp(t) => (Some(t.sport), Some(t.dport), RowFlags::Tcp(t.flags)),
            L4::Udp(u) => (Some(u.sport), Some(u.dport), RowFlags::None),
            L4::Icmp(i) | L4::Icmpv6(i) => (None, None, RowFlags::Icmp(i.icmp_type, i.code)),
            _ => (None, None, RowFlags::None),
        };
        RowPacket {
            proto: pkt.proto,
            src: pkt.src,
            dst: pkt.dst,
            sport,
            dport,
            flags,
            length: pkt.ip_len,
        }
    }
}

/// Free-form facts about a row, as bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Notes(pub u32);

impl Notes {
    pub const FRAGMENT: u32 = 1 << 0;
    pub const TRUNCATED: u32 = 1 << 1;
    pub const BAD_IP_CSUM: u32 = 1 << 2;
    pub const ROUTE_MARTIAN: u32 = 1 << 3;
    pub const ROUTE_MULTICAST: u32 = 1 << 4;
    pub const ROUTE_TTL: u32 = 1 << 5;
    pub const ROUTE_LINKLOCAL: u32 = 1 << 6;
    pub const DECODE_ERROR: u32 = 1 << 7;
    pub const LOGGED: u32 = 1 << 8;
    pub const NOT_SIMULATED_NAT: u32 = 1 << 9;
    pub const DEFRAG_DROPPED: u32 = 1 << 10;
    pub const ROUTE_NOT_FOR_US: u32 = 1 << 11;
    pub const IPV6_RCV: u32 = 1 << 12;

    const NAMES: &'static [(u32, &'static str)] = &[
        (Notes::FRAGMENT, "fragment"),
        (Notes::TRUNCATED, "truncated"),
        (Notes::BAD_IP_CSUM, "ip_rcv: bad IPv4 header checksum"),
        (Notes::ROUTE_MARTIAN, "routing: martian address"),
        (Notes::ROUTE_MULTICAST, "routing: multicast not joined"),
        (Notes::ROUTE_TTL, "routing: ttl exceeded"),
        (Notes::ROUTE_LINKLOCAL, "routing: link-local not forwarded"),
        (Notes::DECODE_ERROR, "ip_rcv: malformed IP header"),
        (Notes::LOGGED, "logged"),
        (Notes::NOT_SIMULATED_NAT, "nat not simulated"),
        (Notes::DEFRAG_DROPPED, "defrag: queue dropped"),
        (
            Notes::ROUTE_NOT_FOR_US,
            "routing: link-layer broadcast/multicast not forwarded",
        ),
        (
            Notes::IPV6_RCV,
            "ipv6_rcv: loopback or multicast source from a wire",
        ),
    ];

    pub fn set(&mut self, bit: u32) {
        self.0 |= bit;
    }
    pub fn has(self, bit: u32) -> bool {
        self.0 & bit != 0
    }
}

/// One output row, as typed values.
#[derive(Debug, Clone)]
pub struct Row {
    pub packet: u64,
    pub time: Timestamp,
    pub pkt: Option<RowPacket>,
    pub chains: HookTrail,
    pub ctstate: Option<CtState>,
    pub ctdir: Option<Dir>,
    /// Status of the entry after the packet; None when no entry exists then.
    pub ctstatus: Option<Status>,
    pub tcp_state: Option<TcpState>,
    pub verdict: RowVerdict,
    /// The deciding rule, already rendered (`filter:INPUT:3`); rendering
    /// needs the ruleset's names, so the engine does it once per rule and
    /// hands out shared strings.
    pub rule: Option<std::sync::Arc<str>>,
    pub reason: Option<Reason>,
    /// A second log line for the same packet (a packet from the firewall to
    /// itself meets conntrack twice: at OUTPUT and again on `lo`).
    pub reason2: Option<Reason>,
    pub notes: Notes,
    /// Non-IP frames and decode failures: what was found.
    pub detail: Option<&'static str>,
}

impl Row {
    pub fn new(packet: u64, time: Timestamp) -> Row {
        Row {
            packet,
            time,
            pkt: None,
            chains: HookTrail::default(),
            ctstate: None,
            ctdir: None,
            ctstatus: None,
            tcp_state: None,
            verdict: RowVerdict::Drop,
            rule: None,
            reason: None,
            reason2: None,
            notes: Notes::default(),
            detail: None,
        }
    }
}

/// Writes the `flags` column text.
pub fn write_flags(f: RowFlags, out: &mut String) {
    match f {
        RowFlags::None => {}
        RowFlags::Tcp(b) => {
            for (bit, c) in [
                (tcpflag::SYN, 'S'),
                (tcpflag::FIN, 'F'),
                (tcpflag::RST, 'R'),
                (tcpflag::PSH, 'P'),
                (tcpflag::URG, 'U'),
                (tcpflag::ECE, 'E'),
                (tcpflag::CWR, 'W'),
                (tcpflag::ACK, '.'),
            ] {
                if b & bit != 0 {
                    out.push(c);
                }
            }
        }
        RowFlags::Icmp(t, c) => {
            let _ = write!(out, "{t}/{c}");
        }
    }
}

/// The `proto` column text.
pub fn proto_text(p: u8, out: &mut String) {
    match p {
        ipproto::TCP => out.push_str("tcp"),
        ipproto::UDP => out.push_str("udp"),
        ipproto::ICMP => out.push_str("icmp"),
        ipproto::ICMPV6 => out.push_str("icmpv6"),
        n => {
            let _ = write!(out, "{n}");
        }
    }
}

/// Buffered CSV writer for rows: formats straight into a byte buffer, with
/// no allocation or `format!` per row, and quotes a field only where the
/// CSV rules require it (as the `csv` crate's default style does).
pub struct RowWriter<W: Write> {
    out: W,
    buf: Vec<u8>,
    fmt: RowFormatter,
}

/// Flush to the inner writer past this many buffered bytes.
const FLUSH_AT: usize = 1 << 16;

impl<W: Write> RowWriter<W> {
    pub fn new(w: W) -> io::Result<Self> {
        let mut buf = Vec::with_capacity(FLUSH_AT + 1024);
        buf.extend_from_slice(HEADER.as_bytes());
        buf.push(b'\n');
        Ok(RowWriter {
            out: w,
            buf,
            fmt: RowFormatter::new(),
        })
    }

    pub fn write(&mut self, r: &Row) -> io::Result<()> {
        self.fmt.write(r, &mut self.buf);
        if self.buf.len() >= FLUSH_AT {
            self.out.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Writes a row already formatted by [`write_row`] (by a worker thread).
    pub fn write_formatted(&mut self, text: &[u8]) -> io::Result<()> {
        self.buf.extend_from_slice(text);
        if self.buf.len() >= FLUSH_AT {
            self.out.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.write_all(&self.buf)?;
        self.buf.clear();
        self.out.flush()
    }
}

/// Appends one CSV line (with its newline) for `r` to `out`. A plain
/// function, so worker threads can be handed it (`pipeline::RowFormat`);
/// each thread formats through a [`RowFormatter`] of its own.
pub fn write_row(r: &Row, out: &mut Vec<u8>) {
    FORMATTER.with_borrow_mut(|f| f.write(r, out));
}

thread_local! {
    static FORMATTER: RefCell<RowFormatter> = RefCell::new(RowFormatter::new());
}

/// Formats rows, reusing what repeats from one row to the next: a replay's
/// rows mostly share a handful of tails (`chains` … `notes`), count their
/// packet numbers up by one, and share the timestamp's seconds in runs.
pub struct RowFormatter {
    tails: Box<[TailSlot; TAIL_SLOTS]>,
    /// `packet,seconds` of the last row at `lead[lead_start..lead_end]`,
    /// so a row whose number counts up and whose seconds repeat copies it
    /// after a one-digit increment. The number ends at [`PACKET_END`]
    /// whatever its length, so its last digit is at a fixed place.
    lead: [u8; 2 * LEAD_CAP],
    lead_start: usize,
    lead_end: usize,
    /// The packet number that may count up from `lead`; the seconds in
    /// `lead`, or a value no timestamp has seconds for, to have it rebuilt.
    next_packet: u64,
    secs: u64,
}

/// A 20-digit packet number, a comma and 11-digit seconds.
const LEAD_CAP: usize = 32;
const PACKET_END: usize = 20;

/// No timestamp has this many seconds.
const NO_SECS: u64 = u64::MAX;

impl Default for RowFormatter {
    fn default() -> Self {
        Self::new()
    }
}

impl RowFormatter {
    pub fn new() -> RowFormatter {
        let slots: Vec<TailSlot> = (0..TAIL_SLOTS).map(|_| TailSlot::empty()).collect();
        RowFormatter {
            tails: slots
                .into_boxed_slice()
                .try_into()
                .unwrap_or_else(|_| unreachable!()),
            lead: [0; 2 * LEAD_CAP],
            lead_start: 0,
            lead_end: 0,
            next_packet: 0,
            secs: NO_SECS,
        }
    }

    /// Appends one CSV line (with its newline) for `r` to `out`.
    #[inline]
    pub fn write(&mut self, r: &Row, out: &mut Vec<u8>) {
        let mut c = Cursor::new(out, ROW_ROOM);
        // SAFETY: the cursor has room for the widest head and, after it, the
        // longest cached tail (`ROW_ROOM`); `out` is untouched until the
        // cursor is committed.
        unsafe { self.write_head(r, &mut c) };
        if let Some(k) = TailKey::of(r) {
            let i = k.slot();
            let mut slot = &self.tails[i];
            if slot.key != k {
                // Two keys that share a slot take it and its neighbour.
                slot = &self.tails[i ^ 1];
            }
            if slot.key == k {
                // SAFETY: as above; the slot's `len` is at most `TAIL_CAP`.
                unsafe {
                    c.put_tail(&slot.text, slot.len);
                    c.commit(out);
                }
                return;
            }
        }
        // SAFETY: as above.
        unsafe { c.commit(out) };
        self.write_tail_slow(r, out);
    }

    /// Writes the tail field by field, and keeps it if it may repeat.
    #[cold]
    #[inline(never)]
    fn write_tail_slow(&mut self, r: &Row, out: &mut Vec<u8>) {
        let start = out.len();
        write_tail(r, out);
        let text = &out[start..];
        if let Some(k) = TailKey::of(r)
            && text.len() <= TAIL_CAP
        {
            // The neighbour where it is free, so that two keys that share
            // a slot both stay.
            let mut i = k.slot();
            if self.tails[i].len != 0 && self.tails[i ^ 1].len == 0 {
                i ^= 1;
            }
            let slot = &mut self.tails[i];
            slot.text[..text.len()].copy_from_slice(text);
            slot.len = text.len();
            slot.key = k;
            slot.rule = r.rule.clone();
        }
    }

    /// Makes `lead` read `packet,secs`: in place where the number counts
    /// up by one (as it does row after row) and the seconds repeat.
    #[inline(always)]
    fn lead(&mut self, packet: u64, secs: u64) {
        if packet != self.next_packet || secs != self.secs || !self.count_up() {
            self.rebuild_lead(packet, secs);
        }
        self.next_packet = packet.wrapping_add(1);
        if packet == u64::MAX {
            // The next number has fewer digits, not one more.
            self.secs = NO_SECS;
        }
    }

    /// Adds one to the packet number in `lead`; false where it gains a
    /// digit (and `lead` must be rebuilt).
    #[inline(always)]
    fn count_up(&mut self) -> bool {
        let mut i = PACKET_END - 1;
        loop {
            let d = &mut self.lead[i];
            if *d < b'9' {
                *d += 1;
                return true;
            }
            *d = b'0';
            if i <= self.lead_start {
                return false;
            }
            i -= 1;
        }
    }

    #[cold]
    #[inline(never)]
    fn rebuild_lead(&mut self, packet: u64, secs: u64) {
        let (p, s) = (digits(packet), digits(secs));
        self.lead_start = PACKET_END - p.len;
        self.lead[self.lead_start..PACKET_END].copy_from_slice(&p.a[..p.len]);
        self.lead[PACKET_END] = b',';
        self.lead_end = PACKET_END + 1 + s.len;
        self.lead[PACKET_END + 1..self.lead_end].copy_from_slice(&s.a[..s.len]);
        self.secs = secs;
    }

    /// The columns from `packet` to `length`, each with its comma.
    ///
    /// # Safety
    /// `c` has room for [`HEAD_ROOM`] bytes.
    #[inline(always)]
    unsafe fn write_head(&mut self, r: &Row, c: &mut Cursor) {
        unsafe {
            self.lead(r.packet, r.time.secs());
            // `lead_start <= PACKET_END < LEAD_CAP`, so the modulo changes
            // nothing and the compiler sees the copy stay in the array.
            let lead = &self.lead[self.lead_start % LEAD_CAP..];
            let len = self.lead_end - self.lead_start;
            c.put(lead.first_chunk::<LEAD_CAP>().unwrap(), len);
            c.put(&fraction(r.time).to_le_bytes(), 8);
            let Some(p) = &r.pkt else {
                return c.put(b",,,,,,,", 7);
            };
            let proto = PROTOS[usize::from(p.proto)];
            c.put(&proto.to_le_bytes(), (proto >> 56) as usize);
            put_ip(c, p.src);
            match p.sport {
                Some(sp) => c.put_dec6_comma(u32::from(sp)),
                None => c.byte(b','),
            }
            put_ip(c, p.dst);
            match p.dport {
                Some(dp) => c.put_dec6_comma(u32::from(dp)),
                None => c.byte(b','),
            }
            match p.flags {
                RowFlags::None => c.byte(b','),
                RowFlags::Tcp(b) => {
                    let text = &TCP_FLAGS[usize::from(b)];
                    c.put(text, usize::from(text[15]));
                }
                RowFlags::Icmp(t, code) => {
                    // Octets' text, their dots made the slash and the comma.
                    let (text, len) = octet(t);
                    c.put(&text, len);
                    c.set_last(b'/');
                    let (text, len) = octet(code);
                    c.put(&text, len);
                    c.set_last(b',');
                }
            }
            c.put_dec_comma(u64::from(p.length));
        }
    }
}

/// The widest head: a 20-digit packet number, 11-digit seconds, `.`, six
/// digits, `icmpv6`, two 39-character IPv6 addresses, two 5-digit ports,
/// eight flag letters, a 10-digit length and nine commas make 159 bytes; a
/// write of a number copies 20 bytes, of which only the digits count.
const HEAD_ROOM: usize = 192;

/// Longest tail kept in the cache; longer ones are written each time.
const TAIL_CAP: usize = 192;
const _: () = assert!(TAIL_CAP.is_multiple_of(CHUNK));

/// Room reserved in the output for one row's fast path.
const ROW_ROOM: usize = HEAD_ROOM + TAIL_CAP;

const TAIL_SLOTS: usize = 1024;
const TAIL_BITS: u32 = TAIL_SLOTS.trailing_zeros();
const _: () = assert!(TAIL_SLOTS.is_power_of_two());

/// Everything a row's tail is made of, for rows whose tail is one of the
/// few that repeat: no INVALID reason and no decode detail (whose text
/// would have to be compared), and a status within its defined bits. The
/// fields take two words (so a key is compared in three word compares);
/// the rule label is known by its address, which the slot keeping the key
/// holds on to (so no other label can take that address meanwhile).
///
/// Each enum goes in as its value, or its count where there is none: the
/// value the compiler stores for none, so that reading it is a plain load.
#[derive(Clone, Copy, PartialEq, Eq)]
struct TailKey {
    /// Notes, the TCP state, whether there is a status, and the status.
    small: u64,
    /// Direction, verdict, the hook trail and the connection state, in
    /// the order the compiler lays those fields out in a `Row` (so the
    /// loads merge into one; any other order is as correct).
    fields: u64,
    rule: usize,
}

impl TailKey {
    #[inline(always)]
    fn of(r: &Row) -> Option<TailKey> {
        let status = r.ctstatus.map_or(0, |s| s.0);
        if r.reason.is_some() || r.reason2.is_some() || r.detail.is_some() || status >> 16 != 0 {
            return None;
        }
        let small = u64::from(r.notes.0)
            | u64::from(r.tcp_state.map_or(10, |t| t as u8)) << 32
            | u64::from(r.ctstatus.is_some()) << 40
            | u64::from(status) << 48;
        let fields = u64::from(r.ctdir.map_or(2, |d| d as u8))
            | u64::from(r.verdict as u8) << 8
            | r.chains.bits() << 16
            | u64::from(r.ctstate.map_or(5, |s| s as u8)) << 56;
        Some(TailKey {
            small,
            fields,
            // No label's text is at 16, just past a null allocation: that
            // the compiler finds it the address of none's, and adds 16
            // without a branch.
            rule: r
                .rule
                .as_ref()
                .map_or(16, |a| Arc::as_ptr(a).cast::<u8>() as usize),
        })
    }

    /// Spreads keys over the slots.
    #[inline(always)]
    fn slot(&self) -> usize {
        const K: u64 = 0x9e37_79b9_7f4a_7c15;
        let h = (self.small ^ self.rule as u64).wrapping_mul(K) ^ self.fields;
        (h.wrapping_mul(K) >> (64 - TAIL_BITS)) as usize
    }
}

/// A cached tail: its text, with the newline, in a fixed array so copying
/// it takes whole chunks.
struct TailSlot {
    key: TailKey,
    /// Holds the label whose address is in `key`.
    rule: Option<Arc<str>>,
    len: usize,
    text: [u8; TAIL_CAP],
}

impl TailSlot {
    fn empty() -> TailSlot {
        TailSlot {
            // No label lives at an odd address.
            key: TailKey {
                small: 0,
                fields: 0,
                rule: 1,
            },
            rule: None,
            len: 0,
            text: [0; TAIL_CAP],
        }
    }
}

/// The columns from `chains` to `notes`, and the newline.
fn write_tail(r: &Row, out: &mut Vec<u8>) {
    r.chains.write_to(out);
    out.push(b',');
    if let Some(s) = r.ctstate {
        out.extend_from_slice(s.name().as_bytes());
    }
    out.push(b',');
    if let Some(d) = r.ctdir {
        out.extend_from_slice(d.name().as_bytes());
    }
    out.push(b',');
    if let Some(s) = r.ctstatus {
        write_status(s, out);
    }
    out.push(b',');
    if let Some(t) = r.tcp_state {
        out.extend_from_slice(t.name().as_bytes());
    }
    out.push(b',');
    out.extend_from_slice(r.verdict.name().as_bytes());
    out.push(b',');
    if let Some(rule) = &r.rule {
        push_field(rule.as_bytes(), out);
    }
    out.push(b',');
    if let Some(reason) = &r.reason {
        match (reason, &r.reason2) {
            (Reason::Text(t), None) => push_field(t.as_bytes(), out),
            (first, second) => {
                let start = out.len();
                let _ = write!(out, "{first}");
                if let Some(second) = second {
                    let _ = write!(out, "; {second}");
                }
                requote_tail(out, start);
            }
        }
    }
    out.push(b',');
    let start = out.len();
    let mut first = true;
    // Most rows carry no notes.
    let names = if r.notes.0 == 0 {
        &[][..]
    } else {
        Notes::NAMES
    };
    for (bit, name) in names {
        if r.notes.has(*bit) {
            if !first {
                out.push(b';');
            }
            out.extend_from_slice(name.as_bytes());
            first = false;
        }
    }
    if let Some(d) = r.detail {
        if out.len() > start {
            out.push(b';');
        }
        out.extend_from_slice(d.as_bytes());
    }
    requote_tail(out, start);
    out.push(b'\n');
}

const TCP_FLAG_LETTERS: [(u8, u8); 8] = [
    (tcpflag::SYN, b'S'),
    (tcpflag::FIN, b'F'),
    (tcpflag::RST, b'R'),
    (tcpflag::PSH, b'P'),
    (tcpflag::URG, b'U'),
    (tcpflag::ECE, b'E'),
    (tcpflag::CWR, b'W'),
    (tcpflag::ACK, b'.'),
];

/// Status bits as `conntrack` names them (`Status::names`), without
/// allocating.
fn write_status(s: Status, out: &mut Vec<u8>) {
    for (i, name) in s.set_names().enumerate() {
        if i > 0 {
            out.push(b'|');
        }
        out.extend_from_slice(name.as_bytes());
    }
}

/// Bytes per step when copying a cached tail.
const CHUNK: usize = 32;

/// A write position in a `Vec`'s spare capacity, for the fields of a row:
/// each write is a copy of fixed size with no capacity check, where
/// pushing to the `Vec` would check capacity and call `memcpy` per field.
/// Whoever makes one reserves the room every write through it stays in;
/// in unit tests every write is checked against that room.
///
/// Copied only to be handed to a call that is not inlined and taken back
/// (a cursor whose address such a call gets lives in memory, not in
/// registers, for the whole row).
#[derive(Clone, Copy)]
struct Cursor {
    start: *mut u8,
    p: *mut u8,
    #[cfg(test)]
    room: usize,
}

impl Cursor {
    /// A cursor at the end of `out`, with `room` bytes reserved after it.
    #[inline(always)]
    fn new(out: &mut Vec<u8>, room: usize) -> Cursor {
        out.reserve(room);
        let start = out.spare_capacity_mut().as_mut_ptr().cast::<u8>();
        Cursor {
            start,
            p: start,
            #[cfg(test)]
            room,
        }
    }

    fn written(&self) -> usize {
        self.p as usize - self.start as usize
    }

    #[inline(always)]
    fn check(&self, _n: usize) {
        #[cfg(test)]
        assert!(self.written() + _n <= self.room, "row overruns its room");
    }

    /// Writes all of `a` and keeps its first `len` bytes.
    ///
    /// # Safety
    /// There is room for `N` bytes, and `len <= N`.
    #[inline(always)]
    unsafe fn put<const N: usize>(&mut self, a: &[u8; N], len: usize) {
        self.check(N);
        #[cfg(test)]
        assert!(len <= N);
        unsafe {
            std::ptr::copy_nonoverlapping(a.as_ptr(), self.p, N);
            self.p = self.p.add(len);
        }
    }

    /// # Safety
    /// There is room for one byte.
    #[inline(always)]
    unsafe fn byte(&mut self, b: u8) {
        self.check(1);
        unsafe {
            self.p.write(b);
            self.p = self.p.add(1);
        }
    }

    /// `v` in decimal.
    ///
    /// # Safety
    /// There is room for 24 bytes.
    #[inline(always)]
    unsafe fn put_dec(&mut self, v: u64) {
        unsafe {
            if v < E6 {
                self.put_dec6(v as u32);
            } else if v < E8 {
                let (text, len) = dec8(v as u32);
                self.put(&text.to_le_bytes(), len);
            } else {
                self.put_dec_long(v);
            }
        }
    }

    /// `v < 10^6` in decimal: ports, lengths, most of what a row counts.
    ///
    /// # Safety
    /// There is room for 8 bytes.
    #[inline(always)]
    unsafe fn put_dec6(&mut self, v: u32) {
        let (text, len) = dec6_then(v, 0);
        unsafe { self.put(&text.to_le_bytes(), len - 1) };
    }

    /// `v < 10^6` in decimal and a comma, in one write.
    ///
    /// # Safety
    /// There is room for 8 bytes.
    #[inline(always)]
    unsafe fn put_dec6_comma(&mut self, v: u32) {
        let (text, len) = dec6_then(v, b',');
        unsafe { self.put(&text.to_le_bytes(), len) };
    }

    /// `v` in decimal and a comma.
    ///
    /// # Safety
    /// There is room for 24 bytes.
    #[inline(always)]
    unsafe fn put_dec_comma(&mut self, v: u64) {
        unsafe {
            if v < E6 {
                self.put_dec6_comma(v as u32);
            } else {
                self.put_dec(v);
                self.byte(b',');
            }
        }
    }

    /// # Safety
    /// There is room for 24 bytes.
    #[inline(never)]
    unsafe fn put_dec_long(&mut self, v: u64) {
        unsafe {
            if v >= E8 * E8 {
                let (text, len) = dec8((v / (E8 * E8)) as u32);
                self.put(&text.to_le_bytes(), len);
                self.put(&all8((v / E8 % E8) as u32).to_le_bytes(), 8);
            } else {
                let (text, len) = dec8((v / E8) as u32);
                self.put(&text.to_le_bytes(), len);
            }
            self.put(&all8((v % E8) as u32).to_le_bytes(), 8);
        }
    }

    /// Overwrites the last byte written (a separator written with the
    /// text before it, where the column needs another).
    ///
    /// # Safety
    /// A byte was written.
    #[inline(always)]
    unsafe fn set_last(&mut self, b: u8) {
        unsafe { self.p.sub(1).write(b) };
    }

    /// Writes the first `len` bytes of `text`: most tails fit one copy of
    /// fixed size; longer ones go a [`CHUNK`] at a time.
    ///
    /// # Safety
    /// There is room for `TAIL_CAP` bytes, and `len <= TAIL_CAP`.
    #[inline(always)]
    unsafe fn put_tail(&mut self, text: &[u8; TAIL_CAP], len: usize) {
        const SHORT: usize = 128;
        const _: () = assert!(SHORT <= TAIL_CAP);
        unsafe {
            if len <= SHORT {
                self.check(SHORT);
                std::ptr::copy_nonoverlapping(text.as_ptr(), self.p, SHORT);
            } else {
                let mut i = 0;
                while i < len {
                    self.check(i + CHUNK);
                    // `i + CHUNK <= TAIL_CAP`: `i < len <= TAIL_CAP`, all
                    // multiples of CHUNK but `len`.
                    std::ptr::copy_nonoverlapping(text.as_ptr().add(i), self.p.add(i), CHUNK);
                    i += CHUNK;
                }
            }
            self.p = self.p.add(len);
        }
    }

    /// Makes what was written part of `out`.
    ///
    /// # Safety
    /// `out` is the vector the cursor was made for, unchanged since.
    #[inline(always)]
    unsafe fn commit(self, out: &mut Vec<u8>) {
        let len = out.len() + self.written();
        // The bytes up to `len` were all written through the cursor.
        unsafe { out.set_len(len) };
    }
}

const E6: u64 = 1_000_000;
const E8: u64 = 100_000_000;

/// Every number below 1000 as its three digits' values (0 to 9, not yet
/// text), the most significant in the lowest byte. Past 999 the entries
/// are never read: the length lets an index be masked instead of checked.
const THREE: [u32; 1024] = {
    let mut t = [0u32; 1024];
    let mut n = 0;
    while n < 1000 {
        t[n] = (n / 100) as u32 | ((n / 10 % 10) as u32) << 8 | ((n % 10) as u32) << 16;
        n += 1;
    }
    t
};

/// The six decimal digits of `v < 10^6` as [`digits8`] gives them: one
/// division and two loads, where the lane arithmetic takes some thirty
/// instructions.
#[inline(always)]
fn digits6(v: u32) -> u64 {
    debug_assert!(u64::from(v) < E6);
    let q = v / 1000;
    u64::from(THREE[q as usize & 1023]) | u64::from(THREE[(v % 1000) as usize]) << 24
}

/// The eight decimal digits of `v < 10^8`, the most significant in the
/// lowest byte, as values 0 to 9: computed in all eight lanes at once (a
/// division by 10^4 splits two 32-bit lanes, division by 100 and then by
/// 10 by multiplication within each lane; no lane overflows into the next).
#[inline(always)]
fn digits8(v: u32) -> u64 {
    let x = u64::from(v / 10_000) | u64::from(v % 10_000) << 32;
    // (n * 10486) >> 20 == n / 100 for n < 10^4.
    let q = (x * 10486) >> 20 & 0x0000_007f_0000_007f;
    let y = q | (x - q * 100) << 16;
    // (n * 103) >> 10 == n / 10 for n < 100.
    let q = (y * 103) >> 10 & 0x000f_000f_000f_000f;
    q | (y - q * 10) << 8
}

const ASCII_ZEROS: u64 = u64::from_le_bytes(*b"00000000");

/// All eight digits of `v < 10^8`, with leading zeros, as text.
#[inline(always)]
fn all8(v: u32) -> u64 {
    digits8(v) | ASCII_ZEROS
}

/// `v < 10^8` as text without leading zeros, and its length.
#[inline(always)]
fn dec8(v: u32) -> (u64, usize) {
    let d = digits8(v);
    // Leading zeros are the low zero bytes; the last digit always counts.
    let skip = (d | 1 << 56).trailing_zeros() as usize / 8;
    ((d | ASCII_ZEROS) >> (8 * skip), 8 - skip)
}

/// `v < 10^6` as text without leading zeros, then `end`, and the length
/// of both.
#[inline(always)]
fn dec6_then(v: u32, end: u8) -> (u64, usize) {
    let d = digits6(v);
    // Leading zeros are the low zero bytes; the last digit always counts.
    let skip = (d | 1 << 40).trailing_zeros() as usize / 8;
    let text = d | ASCII_ZEROS >> 16 | u64::from(end) << 48;
    (text >> (8 * skip), 7 - skip)
}

/// A number's decimal text, at the start of a fixed array.
#[derive(Clone, Copy)]
struct Digits {
    a: [u8; 24],
    len: usize,
}

fn digits(v: u64) -> Digits {
    let mut d = Digits { a: [0; 24], len: 0 };
    let mut c = Cursor {
        start: d.a.as_mut_ptr(),
        p: d.a.as_mut_ptr(),
        #[cfg(test)]
        room: d.a.len(),
    };
    // SAFETY: the cursor has the array's 24 bytes of room.
    unsafe { c.put_dec(v) };
    d.len = c.written();
    d
}

/// `.uuuuuu,`: the timestamp's microseconds and the column's end.
#[inline(always)]
fn fraction(t: Timestamp) -> u64 {
    let us = (t.subsec_nanos() / 1000) as u32;
    digits6(us) << 8 | u64::from_le_bytes(*b".000000,")
}

/// Every octet as text with a trailing dot in the low four bytes, and the
/// text's length in the top byte: one load for both.
const OCTETS: [u64; 256] = {
    let mut t = [0u64; 256];
    let mut o = 0;
    while o < 256 {
        let (h, te, u) = ((o / 100) as u64, (o / 10 % 10) as u64, (o % 10) as u64);
        let z = b'0' as u64;
        t[o] = if o >= 100 {
            (z + h) | (z + te) << 8 | (z + u) << 16 | (b'.' as u64) << 24 | 4 << 56
        } else if o >= 10 {
            (z + te) | (z + u) << 8 | (b'.' as u64) << 16 | 3 << 56
        } else {
            (z + u) | (b'.' as u64) << 8 | 2 << 56
        };
        o += 1;
    }
    t
};

/// An octet's text and its dot; see [`OCTETS`].
#[inline(always)]
fn octet(o: u8) -> ([u8; 4], usize) {
    let e = OCTETS[usize::from(o)];
    ((e as u32).to_le_bytes(), (e >> 56) as usize)
}

/// The `proto` column with its comma, for every protocol number, and
/// the text's length in the top byte: one load for both.
const PROTOS: [u64; 256] = {
    const fn text(s: &[u8]) -> u64 {
        let mut t = (s.len() as u64) << 56;
        let mut i = 0;
        while i < s.len() {
            t |= (s[i] as u64) << (8 * i);
            i += 1;
        }
        t
    }
    let mut t = [0u64; 256];
    let mut n = 0;
    while n < 256 {
        // The octet's dot becomes the comma.
        let o = OCTETS[n];
        let len = o >> 56;
        let dot = (b'.' as u64) << (8 * (len - 1));
        let comma = (b',' as u64) << (8 * (len - 1));
        t[n] = (o & 0xffff_ffff) ^ dot | comma | len << 56;
        n += 1;
    }
    t[ipproto::TCP as usize] = text(b"tcp,");
    t[ipproto::UDP as usize] = text(b"udp,");
    t[ipproto::ICMP as usize] = text(b"icmp,");
    t[ipproto::ICMPV6 as usize] = text(b"icmpv6,");
    t
};

/// The `flags` column with its comma for every TCP flag byte, letters in
/// the order of [`TCP_FLAG_LETTERS`], and the text's length in the last
/// byte.
const TCP_FLAGS: [[u8; 16]; 256] = {
    let mut t = [[0u8; 16]; 256];
    let mut b = 0;
    while b < 256 {
        let mut k = 0;
        let mut len = 0;
        while k < TCP_FLAG_LETTERS.len() {
            let (bit, c) = TCP_FLAG_LETTERS[k];
            if b as u8 & bit != 0 {
                t[b][len] = c;
                len += 1;
            }
            k += 1;
        }
        t[b][len] = b',';
        t[b][15] = len as u8 + 1;
        b += 1;
    }
    t
};

/// An address column with its comma.
///
/// # Safety
/// `c` has room for 44 bytes.
#[inline(always)]
unsafe fn put_ip(c: &mut Cursor, a: IpAddr) {
    unsafe {
        match a {
            IpAddr::V4(v) => put_ipv4(c, v),
            // By value: a cursor whose address is taken lives in memory
            // for the whole row.
            IpAddr::V6(v) => *c = put_ipv6(*c, v),
        }
        c.set_last(b',');
    }
}

/// The address and a dot after it, for the caller to overwrite: each
/// octet goes with its dot in one write.
///
/// # Safety
/// `c` has room for 16 bytes.
#[inline(always)]
unsafe fn put_ipv4(c: &mut Cursor, v: std::net::Ipv4Addr) {
    unsafe {
        for o in v.octets() {
            let (text, len) = octet(o);
            c.put(&text, len);
        }
    }
}

/// An IPv6 address as std's `Display` writes it (RFC 5952: lowercase hex
/// without leading zeros, the longest run of two or more zero groups, the
/// first of equal ones, as `::`; IPv4-mapped addresses as `::ffff:a.b.c.d`),
/// without the formatting machinery, which costs more than the whole rest
/// of a row; and a byte after it, for the caller to overwrite.
///
/// # Safety
/// `c` has room for 48 bytes.
#[inline(never)]
unsafe fn put_ipv6(mut c: Cursor, v: std::net::Ipv6Addr) -> Cursor {
    if let Some(v4) = v.to_ipv4_mapped() {
        unsafe {
            c.put(b"::ffff:", 7);
            put_ipv4(&mut c, v4);
        }
        return c;
    }
    let o = v.octets();
    let [run, end, colons] = ZERO_RUNS[usize::from(zero_groups(&o))];
    let (run, end) = (usize::from(run), usize::from(end));
    // Every group is written with a colon after it, and the last colon is
    // the byte for the caller.
    unsafe {
        for g in o[..2 * run].chunks_exact(2) {
            let (text, len) = hex16(g[0], g[1]);
            c.put(&text.to_le_bytes(), len);
        }
        c.put(b"::::", usize::from(colons));
        for g in o[2 * end..].chunks_exact(2) {
            let (text, len) = hex16(g[0], g[1]);
            c.put(&text.to_le_bytes(), len);
        }
    }
    c
}

/// Bit `i` set where group `i` of the address is zero: the groups are
/// compared with zero as 16-bit lanes, narrowed to a byte each, and their
/// top bits gathered (SSE2, which every x86_64 has).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn zero_groups(o: &[u8; 16]) -> u8 {
    use std::arch::x86_64::{
        _mm_cmpeq_epi16, _mm_movemask_epi8, _mm_packs_epi16, _mm_set_epi64x, _mm_setzero_si128,
    };
    let half = |i: usize| i64::from_le_bytes(std::array::from_fn(|k| o[8 * i + k]));
    // SAFETY: SSE2 is in every x86_64 target's baseline, and these touch
    // no memory.
    unsafe {
        let zero = _mm_cmpeq_epi16(_mm_set_epi64x(half(1), half(0)), _mm_setzero_si128());
        _mm_movemask_epi8(_mm_packs_epi16(zero, _mm_setzero_si128())) as u8
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn zero_groups(o: &[u8; 16]) -> u8 {
    zero_groups_portable(o)
}

/// [`zero_groups`] without vector instructions.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn zero_groups_portable(o: &[u8; 16]) -> u8 {
    (0..8).fold(0, |m, i| m | u8::from(o[2 * i] | o[2 * i + 1] == 0) << i)
}

/// For every set of zero groups (as [`zero_groups`] gives them), where its
/// longest run of at least two starts (the first of equal ones), where it
/// ends, and how many colons stand for it: one, and one more at either end
/// of the address (`::1`, `1::`, `::`). Where there is none, it starts and
/// ends at 8 and takes no colon.
const ZERO_RUNS: [[u8; 3]; 256] = {
    let mut t = [[8u8, 8, 0]; 256];
    let mut m = 0;
    while m < 256 {
        let (mut cur_len, mut best, mut i) = (0, 0, 0);
        while i < 8 {
            if m >> i & 1 == 1 {
                cur_len += 1;
                if cur_len >= 2 && cur_len > best {
                    best = cur_len;
                    let start = i + 1 - cur_len;
                    let colons = 1 + (start == 0) as u8 + (i == 7) as u8;
                    t[m] = [start, i + 1, colons];
                }
            } else {
                cur_len = 0;
            }
            i += 1;
        }
        m += 1;
    }
    t
};

/// Every byte as two lowercase hex digits.
const HEX2: [u16; 256] = {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut t = [0u16; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = HEX[b >> 4] as u16 | (HEX[b & 0xf] as u16) << 8;
        b += 1;
    }
    t
};

/// The 16-bit group `hi`, `lo` in lowercase hex without leading zeros,
/// and a colon; the text's length counts the colon.
#[inline(always)]
fn hex16(hi: u8, lo: u8) -> (u64, usize) {
    let text = u64::from(HEX2[usize::from(hi)])
        | u64::from(HEX2[usize::from(lo)]) << 16
        | u64::from(b':') << 32;
    // Leading zero nibbles; a zero group still shows one.
    let skip = (u16::from_be_bytes([hi, lo]) | 1).leading_zeros() as usize / 4;
    (text >> (8 * skip), 5 - skip)
}

fn needs_quotes(b: &[u8]) -> bool {
    b.iter().any(|&c| matches!(c, b',' | b'"' | b'\n' | b'\r'))
}

/// A free-text field, quoted where CSV requires it.
fn push_field(b: &[u8], out: &mut Vec<u8>) {
    if !needs_quotes(b) {
        out.extend_from_slice(b);
        return;
    }
    out.push(b'"');
    for &c in b {
        if c == b'"' {
            out.push(b'"');
        }
        out.push(c);
    }
    out.push(b'"');
}

/// Quotes the field written at `out[start..]` if it needs it.
fn requote_tail(out: &mut Vec<u8>, start: usize) {
    if needs_quotes(&out[start..]) {
        let text = out.split_off(start);
        push_field(&text, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tails taken from the cache are the tails written field by field,
    /// across every combination of the fields the key is made of, written
    /// in an order that revisits and evicts cached entries.
    #[test]
    fn cached_tails_equal_written_tails() {
        use crate::netfilter::Hook;
        let rules: [Option<std::sync::Arc<str>>; 3] = [
            None,
            Some("filter:FORWARD:2".into()),
            Some("filter:INPUT:policy".into()),
        ];
        let mut rows = Vec::new();
        for (i, rule) in rules.iter().enumerate() {
            for st in [
                None,
                Some(CtState::New),
                Some(CtState::Established),
                Some(CtState::Invalid),
            ] {
                for status in [
                    None,
                    Some(Status(Status::CONFIRMED)),
                    Some(Status(Status::CONFIRMED | Status::SEEN_REPLY)),
                ] {
                    for tcp in [None, Some(TcpState::SynSent), Some(TcpState::Established)] {
                        for verdict in [RowVerdict::Accept, RowVerdict::Drop] {
                            for notes in [0, Notes::LOGGED] {
                                let mut r = Row::new(rows.len() as u64 + 1, Timestamp(7));
                                r.chains.push(Hook::Prerouting);
                                if i != 1 {
                                    r.chains.push(Hook::Input);
                                }
                                (r.ctstate, r.ctstatus, r.tcp_state, r.verdict) =
                                    (st, status, tcp, verdict);
                                r.ctdir = st.map(|_| Dir::Original);
                                r.rule = rule.clone();
                                r.notes = Notes(notes);
                                rows.push(r);
                            }
                        }
                    }
                }
            }
        }
        for pass in 0..3 {
            for (k, r) in rows.iter().enumerate().filter(|(k, _)| k % (pass + 1) == 0) {
                let mut cached = Vec::new();
                write_row(r, &mut cached);
                let mut plain = Vec::new();
                write_tail(r, &mut plain);
                assert!(cached.ends_with(&plain), "row {k} pass {pass}");
                assert_eq!(cached[..cached.len() - plain.len()].last(), Some(&b','));
            }
        }
    }

    /// Runs `f` on a cursor at the end of `out`, with a row's room.
    fn via_cursor(out: &mut Vec<u8>, f: impl FnOnce(&mut Cursor)) {
        let mut c = Cursor::new(out, ROW_ROOM);
        f(&mut c);
        unsafe { c.commit(out) };
    }

    fn ip_text(ip: IpAddr) -> String {
        let mut out = Vec::new();
        via_cursor(&mut out, |c| unsafe { put_ip(c, ip) });
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn numbers_addresses_and_times_match_std_formatting() {
        let mut edge = vec![0u64, 1, 9, 10, 99, 100, 65535, u64::MAX, u64::MAX / 10];
        edge.extend((1..20).flat_map(|k| {
            let p = 10u64.pow(k);
            [p - 1, p, p + 1, p + p / 2]
        }));
        for v in edge {
            let d = digits(v);
            assert_eq!(d.a[..d.len], *v.to_string().as_bytes());
            let mut out = b"x".to_vec();
            via_cursor(&mut out, |c| unsafe { c.put_dec(v) });
            assert_eq!(out, format!("x{v}").into_bytes());
            let mut out = b"x".to_vec();
            via_cursor(&mut out, |c| unsafe { c.put_dec_comma(v) });
            assert_eq!(out, format!("x{v},").into_bytes());
        }
        let mut out = Vec::new();
        for v in 0..1_000_000u32 {
            out.clear();
            via_cursor(&mut out, |c| unsafe { c.put_dec6_comma(v) });
            assert_eq!(out, format!("{v},").into_bytes());
            if v % 997 == 0 {
                out.clear();
                via_cursor(&mut out, |c| unsafe { c.put_dec6(v) });
                assert_eq!(out, v.to_string().into_bytes());
            }
        }
        for o in 0..=255u8 {
            let ip = IpAddr::from([o, 255 - o, o / 7, 10]);
            assert_eq!(ip_text(ip), format!("{ip},"));
        }
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for i in 0..20_000u32 {
            let r = u128::from(next()) << 64 | u128::from(next());
            // Zero some groups so runs of every length and position occur.
            let mask = (0..8).fold(0u128, |m, k| {
                if next() % 3 == 0 {
                    m
                } else {
                    m | 0xffff << (16 * k)
                }
            });
            let v6 = match i % 5 {
                0 => std::net::Ipv6Addr::from(r & mask),
                // Small groups: fewer than four hex digits.
                1 => std::net::Ipv6Addr::from(r & mask & 0x00ff_000f_0fff_0001_00ff_000f_0fff_0001),
                2 => std::net::Ipv4Addr::from(r as u32).to_ipv6_mapped(),
                3 => std::net::Ipv4Addr::from(r as u32).to_ipv6_compatible(),
                _ => std::net::Ipv6Addr::from(r),
            };
            assert_eq!(ip_text(IpAddr::V6(v6)), format!("{v6},"), "{v6:?}");
        }
        for s in [
            "::",
            "::1",
            "1::",
            "1:0:0:1:0:0:0:1",
            "1:0:0:1:0:0:1:1",
            "0:1::",
        ] {
            let v6: std::net::Ipv6Addr = s.parse().unwrap();
            assert_eq!(ip_text(IpAddr::V6(v6)), format!("{v6},"));
        }
        for ns in [
            0u64,
            999,
            1_000,
            1_704_067_200_000_006_000,
            999_999_999,
            u64::MAX,
        ] {
            let t = Timestamp(ns);
            let d = digits(t.secs());
            let mut out = d.a[..d.len].to_vec();
            out.extend(fraction(t).to_le_bytes());
            assert_eq!(out, format!("{t},").into_bytes());
        }
    }
    use crate::capture::CaptureReader;
    use crate::netfilter::Hook;
    use crate::pipeline::{EngineConfig, Firewall};
    use crate::rules::Ruleset;
    use std::sync::Arc;

    /// An independent rendering of a row with the `csv` crate and `Display`,
    /// the way the columns are specified.
    fn reference(rows: &[Row]) -> Vec<u8> {
        let mut w = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(Vec::new());
        w.write_record(HEADER.split(',')).unwrap();
        for r in rows {
            let mut f: Vec<String> = vec![r.packet.to_string(), r.time.to_string()];
            match &r.pkt {
                Some(p) => {
                    let mut proto = String::new();
                    proto_text(p.proto, &mut proto);
                    let mut flags = String::new();
                    write_flags(p.flags, &mut flags);
                    f.extend([
                        proto,
                        p.src.to_string(),
                        p.sport.map(|x| x.to_string()).unwrap_or_default(),
                        p.dst.to_string(),
                        p.dport.map(|x| x.to_string()).unwrap_or_default(),
                        flags,
                        p.length.to_string(),
                    ]);
                }
                None => f.extend(std::iter::repeat_n(String::new(), 7)),
            }
            let mut chains = Vec::new();
            r.chains.write_to(&mut chains);
            f.push(String::from_utf8(chains).unwrap());
            f.push(r.ctstate.map(|s| s.name().to_string()).unwrap_or_default());
            f.push(r.ctdir.map(|s| s.name().to_string()).unwrap_or_default());
            f.push(r.ctstatus.map(|s| s.names()).unwrap_or_default());
            f.push(
                r.tcp_state
                    .map(|s| s.name().to_string())
                    .unwrap_or_default(),
            );
            f.push(r.verdict.name().to_string());
            f.push(r.rule.as_deref().unwrap_or("").to_string());
            f.push(r.reason.map(|x| x.to_string()).unwrap_or_default());
            let mut notes: Vec<&str> = Notes::NAMES
                .iter()
                .filter(|(b, _)| r.notes.has(*b))
                .map(|(_, n)| *n)
                .collect();
            notes.extend(r.detail);
            f.push(notes.join(";"));
            w.write_record(&f).unwrap();
        }
        w.into_inner().unwrap()
    }

    /// `rows` through a [`RowWriter`] and through [`write_row`] (the
    /// workers' per-thread formatter) give the csv-crate reference's text.
    fn assert_both_writers_match_the_reference(rows: &[Row]) {
        let want = String::from_utf8(reference(rows)).unwrap();
        assert_eq!(String::from_utf8(written(rows)).unwrap(), want);
        let mut through_threads = format!("{HEADER}\n").into_bytes();
        for r in rows {
            write_row(r, &mut through_threads);
        }
        assert_eq!(String::from_utf8(through_threads).unwrap(), want);
    }

    fn written(rows: &[Row]) -> Vec<u8> {
        let mut w = RowWriter::new(Vec::new()).unwrap();
        for r in rows {
            w.write(r).unwrap();
        }
        w.flush().unwrap();
        w.out
    }

    #[test]
    fn rows_of_real_captures_match_the_csv_reference() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let text =
            std::fs::read_to_string(root.join("rulesets/stateful-default-drop.rules")).unwrap();
        let file =
            crate::rules::parse_rules(&text, "x".as_ref(), crate::wire::Family::Ipv4).unwrap();
        let rs = Ruleset::compile(&file).unwrap();
        let cfg = EngineConfig::default();
        let mut rows = Vec::new();
        for dir in ["captures", "captures/crafted"] {
            for e in std::fs::read_dir(root.join(dir)).unwrap() {
                let p = e.unwrap().path();
                if p.extension().is_none_or(|x| x != "pcap") {
                    continue;
                }
                let mut fw = Firewall::new(&rs, &cfg);
                let Ok(mut r) = CaptureReader::open(&p) else {
                    continue;
                };
                while let Ok(Some(f)) = r.next_frame() {
                    fw.process(&f, None, &mut |row| rows.push(row));
                }
                fw.finish(&mut |row| rows.push(row));
            }
        }
        assert!(rows.len() > 500);
        assert_eq!(
            String::from_utf8(written(&rows)).unwrap(),
            String::from_utf8(reference(&rows)).unwrap()
        );
    }

    #[test]
    fn widest_leading_columns_fit_the_head() {
        let mut r = Row::new(u64::MAX, Timestamp(u64::MAX));
        let wide: IpAddr = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe".parse().unwrap();
        r.pkt = Some(RowPacket {
            proto: 253,
            src: wide,
            dst: wide,
            sport: Some(u16::MAX),
            dport: Some(u16::MAX),
            flags: RowFlags::Icmp(255, 255),
            length: u32::MAX,
        });
        let rows = [r];
        assert_eq!(
            String::from_utf8(written(&rows)).unwrap(),
            String::from_utf8(reference(&rows)).unwrap()
        );
    }

    #[test]
    fn fields_with_commas_and_quotes_are_quoted() {
        let mut r = Row::new(1, Timestamp::from_secs_nanos(5, 7_000));
        r.rule = Some(Arc::from("filter:\"odd,chain\":1"));
        r.reason = Some(Reason::Text("a,b"));
        r.detail = Some("x\ny");
        r.notes.set(Notes::FRAGMENT);
        r.ctstatus = Some(Status(
            Status::SEEN_REPLY | Status::CONFIRMED | Status::HELPER,
        ));
        r.chains.push(Hook::Prerouting);
        r.chains.push(Hook::Forward);
        let rows = [r];
        let got = written(&rows);
        assert_eq!(got, reference(&rows));
        let text = String::from_utf8(got).unwrap();
        assert!(text.contains("5.000007,"));
        assert!(text.contains("\"filter:\"\"odd,chain\"\":1\""));
    }

    /// Generated rows through the formatter (both the writer's own and the
    /// per-thread one) equal the reference, over every value of the small
    /// fields, addresses at the edges of their formatting, numbers at digit
    /// boundaries, and packet numbers that count up across carries; each
    /// row is written twice, so the second copy comes from the caches.
    #[test]
    fn generated_rows_match_the_csv_reference() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let addrs: Vec<IpAddr> = [
            "0.0.0.0",
            "255.255.255.255",
            "10.9.0.1",
            "1.22.133.4",
            "::",
            "::1",
            "1::",
            "::ffff:10.1.2.3",
            "::ffff:0.0.0.0",
            "::10.1.2.3",
            "fe80::1:0:0:0",
            "1:0:0:2:0:0:0:3",
            "1:0:0:2:0:0:3:4",
            "0:0:1::",
            "1:2:3:4:5:6:7:8",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "abc:de:f:1000:0:a0:b00:c",
            "fd00:9:1::c32",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        let rules: [Option<Arc<str>>; 3] = [
            None,
            Some("filter:FORWARD:2".into()),
            Some("raw:PREROUTING:1".into()),
        ];
        let states = [
            None,
            Some(CtState::New),
            Some(CtState::Established),
            Some(CtState::Related),
            Some(CtState::Invalid),
            Some(CtState::Untracked),
        ];
        let tcp_states: Vec<Option<TcpState>> = std::iter::once(None)
            .chain(TcpState::ALL.map(Some))
            .collect();
        let verdicts = [
            RowVerdict::Accept,
            RowVerdict::Drop,
            RowVerdict::Reject,
            RowVerdict::NotIp,
            RowVerdict::Defrag,
        ];
        let hooks = [
            &[][..],
            &[Hook::Prerouting],
            &[Hook::Prerouting, Hook::Input],
            &[Hook::Prerouting, Hook::Forward],
            &[Hook::Prerouting, Hook::Forward, Hook::Postrouting],
            &[
                Hook::Output,
                Hook::Postrouting,
                Hook::Prerouting,
                Hook::Input,
            ],
        ];
        let numbers = [
            0u64,
            9,
            10,
            99,
            100,
            9_999,
            10_000,
            65_535,
            99_999_999,
            100_000_000,
        ];
        let mut packet = 0u64;
        let mut rows = Vec::new();
        for i in 0..6000usize {
            // Mostly counting up, through carries; now and then a jump.
            packet = match i % 97 {
                0 => next() % 1_000_000_000_000,
                // Counts up through the largest number and wraps to 0.
                1 => u64::MAX - 1,
                4 => 99_999_999_998,
                _ => packet.wrapping_add(1),
            };
            let time = match i % 7 {
                0 => Timestamp(0),
                1 => Timestamp(u64::MAX - next() % 1000),
                2 => Timestamp::from_secs_nanos(
                    1_704_067_200 + i as u64 / 50,
                    next() % 1_000_000_000,
                ),
                _ => Timestamp(next()),
            };
            let mut r = Row::new(packet, time);
            let pick = |k: u64, n: usize| (k % n as u64) as usize;
            let k = next();
            if k % 11 != 0 {
                let proto = match pick(k >> 4, 6) {
                    0 => ipproto::TCP,
                    1 => ipproto::UDP,
                    2 => ipproto::ICMP,
                    3 => ipproto::ICMPV6,
                    _ => (k >> 8) as u8,
                };
                let num = |k: u64| -> u64 {
                    if k.is_multiple_of(2) {
                        numbers[pick(k >> 1, numbers.len())]
                    } else {
                        k >> 1
                    }
                };
                r.pkt = Some(RowPacket {
                    proto,
                    src: addrs[pick(next(), addrs.len())],
                    dst: match next() % 3 {
                        0 => IpAddr::from(std::net::Ipv6Addr::from(
                            (u128::from(next()) << 64 | u128::from(next()))
                                & 0xffff_0000_ffff_ffff_0000_0000_ffff_0000u128
                                    .rotate_left((next() % 8 * 16) as u32),
                        )),
                        1 => IpAddr::from((next() as u32).to_be_bytes()),
                        _ => addrs[pick(next(), addrs.len())],
                    },
                    sport: (k & 32 != 0).then(|| num(next()) as u16),
                    dport: (k & 64 != 0).then(|| num(next()) as u16),
                    flags: match pick(k >> 12, 3) {
                        0 => RowFlags::None,
                        1 => RowFlags::Tcp((k >> 20) as u8),
                        _ => RowFlags::Icmp((k >> 20) as u8, (k >> 28) as u8),
                    },
                    length: num(next()) as u32,
                });
            }
            let k = next();
            for &h in hooks[pick(k, hooks.len())] {
                r.chains.push(h);
            }
            r.ctstate = states[pick(k >> 3, states.len())];
            r.ctdir = [None, Some(Dir::Original), Some(Dir::Reply)][pick(k >> 6, 3)];
            r.ctstatus = match pick(k >> 8, 4) {
                0 => None,
                1 => Some(Status(0)),
                2 => Some(Status((k >> 12) as u32 & 0x3fff)),
                _ => Some(Status(Status::SEEN_REPLY | Status::CONFIRMED)),
            };
            r.tcp_state = tcp_states[pick(k >> 26, tcp_states.len())];
            r.verdict = verdicts[pick(k >> 30, verdicts.len())];
            r.rule = rules[pick(k >> 33, rules.len())].clone();
            r.notes = Notes(match pick(k >> 35, 4) {
                0 | 1 => 0,
                2 => Notes::LOGGED,
                _ => (k >> 40) as u32 & 0x1fff,
            });
            match pick(k >> 55, 16) {
                0 => r.reason = Some(Reason::Text("a reason, with a comma")),
                1 => r.detail = Some("ethertype 0x88cc"),
                _ => {}
            }
            rows.push(r);
        }
        let doubled: Vec<Row> = rows.iter().flat_map(|r| [r.clone(), r.clone()]).collect();
        assert_both_writers_match_the_reference(&doubled);
    }

    /// Packet numbers that count up within the same second, through every
    /// carry (including the one that adds a digit and the wrap past the
    /// largest number), as the cached `packet,seconds` text counts them.
    #[test]
    fn packet_numbers_counting_up_match_the_reference() {
        let mut rows = Vec::new();
        for (k, start) in [
            0u64,
            7,
            95,
            995,
            999_990,
            99_999_990,
            9_999_999_999_999_999_990,
            u64::MAX - 5,
        ]
        .into_iter()
        .enumerate()
        {
            for i in 0..24u64 {
                // The seconds change once within a run, and at its start.
                let secs = 1_704_067_200 + k as u64 + u64::from(i >= 13);
                let mut r = Row::new(
                    start.wrapping_add(i),
                    Timestamp::from_secs_nanos(secs, i * 1_000_017),
                );
                r.chains.push(Hook::Prerouting);
                rows.push(r);
            }
        }
        assert_both_writers_match_the_reference(&rows);
    }

    /// Rows whose tails differ in one field only, each next to the one it
    /// differs from and again later: a key that missed a field, or two
    /// keys given the same slot and its neighbour, would show another
    /// row's tail.
    #[test]
    fn tails_one_field_apart_stay_apart() {
        let label = |s: &str| Some(Arc::<str>::from(s));
        let mut base = Row::new(1, Timestamp::from_secs_nanos(1_704_067_200, 5_000));
        base.chains.push(Hook::Prerouting);
        base.chains.push(Hook::Forward);
        base.ctstate = Some(CtState::Established);
        base.ctdir = Some(Dir::Original);
        base.ctstatus = Some(Status(Status::SEEN_REPLY | Status::CONFIRMED));
        base.tcp_state = Some(TcpState::Established);
        base.verdict = RowVerdict::Accept;
        base.rule = label("filter:FORWARD:2");
        let mut variants: Vec<Row> = Vec::new();
        let mut vary = |f: &dyn Fn(&mut Row)| {
            let mut r = base.clone();
            f(&mut r);
            variants.push(r);
        };
        for s in [
            None,
            Some(CtState::New),
            Some(CtState::Related),
            Some(CtState::Invalid),
            Some(CtState::Untracked),
        ] {
            vary(&|r| r.ctstate = s);
        }
        for d in [None, Some(Dir::Reply)] {
            vary(&|r| r.ctdir = d);
        }
        // Every other value than the base row's (ESTABLISHED).
        for t in std::iter::once(None).chain(
            (TcpState::ALL.into_iter())
                .filter(|&s| s != TcpState::Established)
                .map(Some),
        ) {
            vary(&|r| r.tcp_state = t);
        }
        for v in [
            RowVerdict::Drop,
            RowVerdict::Reject,
            RowVerdict::NotIp,
            RowVerdict::Defrag,
        ] {
            vary(&|r| r.verdict = v);
        }
        for hooks in [
            &[][..],
            &[Hook::Prerouting],
            &[Hook::Prerouting, Hook::Input],
            &[Hook::Prerouting, Hook::Forward, Hook::Postrouting],
            &[Hook::Output, Hook::Forward],
        ] {
            vary(&|r| {
                r.chains = HookTrail::default();
                hooks.iter().for_each(|&h| r.chains.push(h));
            });
        }
        // Every status bit, none, no bits, and bits past the cached ones.
        for st in (0..32).map(|b| Some(Status(1 << b))).chain([
            None,
            Some(Status(0)),
            Some(Status(0x1_000a)),
        ]) {
            vary(&|r| r.ctstatus = st);
        }
        for n in (0..32).map(|b| 1 << b).chain([0x1fff, 0xffff_ffff]) {
            vary(&|r| r.notes = Notes(n));
        }
        // The same text at another address is another key, with the same tail.
        for rule in [None, label("filter:FORWARD:2"), label("filter:FORWARD:3")] {
            vary(&|r| r.rule = rule.clone());
        }
        let mut rows = Vec::new();
        for v in &variants {
            rows.extend([base.clone(), v.clone(), base.clone(), v.clone()]);
        }
        rows.extend(variants.iter().cloned());
        rows.extend(variants.iter().rev().cloned());
        for (i, r) in rows.iter_mut().enumerate() {
            r.packet = i as u64 + 1;
        }
        let want = String::from_utf8(reference(&rows)).unwrap();
        assert_eq!(String::from_utf8(written(&rows)).unwrap(), want);
    }

    #[test]
    fn zero_groups_match_the_portable_reckoning() {
        let mut x = 0x1234_5678_9abc_def1u64;
        for m in 0..=255u32 {
            for k in 0..8 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let mut o = [0u8; 16];
                for g in 0..8 {
                    if m >> g & 1 == 0 {
                        // A nonzero group: one bit, low or high, or any.
                        let v = match k % 3 {
                            0 => 1u16 << (x >> (4 * g) & 15),
                            1 => 0x8000 >> g,
                            _ => (x >> (8 * g)) as u16 | 1,
                        };
                        o[2 * g..2 * g + 2].copy_from_slice(&v.to_be_bytes());
                    }
                }
                assert_eq!(zero_groups(&o), m as u8, "{o:?}");
                assert_eq!(zero_groups_portable(&o), m as u8, "{o:?}");
            }
        }
    }
}
