//! The per-packet CSV row, shared by `ctsim replay` and `ctsim kernel` so
//! both write byte-identical columns.

use crate::conntrack::proto::tcp::TcpState;
use crate::conntrack::{CtState, Dir, Reason, Status};
use crate::netfilter::HookTrail;
use crate::time::Timestamp;
use crate::wire::{L4, Packet, ipproto, tcpflag};
use std::fmt::Write as _;
use std::io::{self, Write};
use std::net::IpAddr;

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
}

/// Flush to the inner writer past this many buffered bytes.
const FLUSH_AT: usize = 1 << 16;

impl<W: Write> RowWriter<W> {
    pub fn new(w: W) -> io::Result<Self> {
        let mut buf = Vec::with_capacity(FLUSH_AT + 1024);
        buf.extend_from_slice(HEADER.as_bytes());
        buf.push(b'\n');
        Ok(RowWriter { out: w, buf })
    }

    pub fn write(&mut self, r: &Row) -> io::Result<()> {
        write_row(r, &mut self.buf);
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

/// Appends one CSV line (with its newline) for `r` to `out`.
pub fn write_row(r: &Row, out: &mut Vec<u8>) {
    let mut ib = itoa::Buffer::new();
    let mut h = Head::new();
    put_u64(&mut h, r.packet);
    h.push(b',');
    write_time(r.time, &mut h);
    h.push(b',');
    match &r.pkt {
        Some(p) => {
            match p.proto {
                ipproto::TCP => h.extend_from_slice(b"tcp"),
                ipproto::UDP => h.extend_from_slice(b"udp"),
                ipproto::ICMP => h.extend_from_slice(b"icmp"),
                ipproto::ICMPV6 => h.extend_from_slice(b"icmpv6"),
                n => h.extend_from_slice(ib.format(n).as_bytes()),
            }
            h.push(b',');
            write_ip(p.src, &mut h);
            h.push(b',');
            if let Some(sp) = p.sport {
                put_u64(&mut h, u64::from(sp));
            }
            h.push(b',');
            write_ip(p.dst, &mut h);
            h.push(b',');
            if let Some(dp) = p.dport {
                put_u64(&mut h, u64::from(dp));
            }
            h.push(b',');
            match p.flags {
                RowFlags::None => {}
                RowFlags::Tcp(b) => {
                    for (bit, c) in TCP_FLAG_LETTERS {
                        if b & bit != 0 {
                            h.push(c);
                        }
                    }
                }
                RowFlags::Icmp(t, c) => {
                    put_u64(&mut h, u64::from(t));
                    h.push(b'/');
                    put_u64(&mut h, u64::from(c));
                }
            }
            h.push(b',');
            put_u64(&mut h, u64::from(p.length));
            h.push(b',');
        }
        None => h.extend_from_slice(b",,,,,,,"),
    }
    out.extend_from_slice(h.text());
    if let Some(key) = TailKey::of(r) {
        TAILS.with_borrow_mut(|c| c.write(key, r, out));
    } else {
        write_tail(r, out);
    }
}

/// Everything a row's tail (`chains` … `notes`) is made of, for rows whose
/// tail is one of the few that repeat: no INVALID reason and no decode
/// detail (whose text would have to be compared). The rule label is held
/// by the key, so its address cannot be reused while the key is cached.
#[derive(Clone, PartialEq, Eq)]
struct TailKey {
    chains: HookTrail,
    ctstate: Option<CtState>,
    ctdir: Option<Dir>,
    ctstatus: Option<Status>,
    tcp_state: Option<TcpState>,
    verdict: RowVerdict,
    rule: Option<std::sync::Arc<str>>,
    notes: Notes,
}

impl TailKey {
    fn of(r: &Row) -> Option<TailKey> {
        if r.reason.is_some() || r.reason2.is_some() || r.detail.is_some() {
            return None;
        }
        Some(TailKey {
            chains: r.chains,
            ctstate: r.ctstate,
            ctdir: r.ctdir,
            ctstatus: r.ctstatus,
            tcp_state: r.tcp_state,
            verdict: r.verdict,
            rule: r.rule.clone(),
            notes: r.notes,
        })
    }

    fn slot(&self) -> usize {
        let rule = self.rule.as_ref().map_or(0, |a| a.as_ptr() as u64);
        let mut h = 0u64;
        for v in [
            u64::from(self.ctstatus.map_or(u32::MAX, |s| s.0)),
            self.ctstate.map_or(15, |s| s as u64),
            self.ctdir.map_or(3, |d| d as u64),
            self.tcp_state.map_or(31, |s| s as u64),
            self.verdict as u64,
            self.chains.iter().fold(0, |a, h| a * 8 + h as u64 + 1),
            u64::from(self.notes.0),
            rule,
        ] {
            h = (h ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
        (h >> 58) as usize % TAIL_SLOTS
    }
}

const TAIL_SLOTS: usize = 64;

/// Recently written tails, by key: a replay's rows mostly repeat a handful
/// of tails, and copying one is far cheaper than writing it field by field.
#[derive(Default)]
struct TailCache {
    slots: Vec<Option<(TailKey, Vec<u8>)>>,
}

impl TailCache {
    fn write(&mut self, key: TailKey, r: &Row, out: &mut Vec<u8>) {
        if self.slots.is_empty() {
            self.slots.resize_with(TAIL_SLOTS, || None);
        }
        let slot = &mut self.slots[key.slot()];
        if let Some((k, text)) = slot
            && *k == key
        {
            out.extend_from_slice(text);
            return;
        }
        let start = out.len();
        write_tail(r, out);
        let text = out[start..].to_vec();
        *slot = Some((key, text));
    }
}

thread_local! {
    static TAILS: std::cell::RefCell<TailCache> = std::cell::RefCell::default();
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

/// `seconds.microseconds`, as `Timestamp`'s `Display`.
fn write_time(t: Timestamp, out: &mut impl Put) {
    put_u64(out, t.secs());
    out.push(b'.');
    let mut us = t.subsec_nanos() / 1000;
    let mut a = [0u8; 8];
    for d in a[..6].iter_mut().rev() {
        *d = b'0' + (us % 10) as u8;
        us /= 10;
    }
    put_first(out, &a, 6);
}

/// Appends the first `len` bytes of `a`. Copying the whole fixed-size array
/// compiles to a vector store or two, where copying a slice of variable
/// length is a call to `memcpy`, which dominates for fields of a few bytes;
/// the surplus is cut off again.
#[inline(always)]
fn put_first<const N: usize>(out: &mut impl Put, a: &[u8; N], len: usize) {
    out.put_first(a, len);
}

/// Where row text goes: the output buffer, or a row's [`Head`].
trait Put {
    fn push(&mut self, b: u8);
    fn extend_from_slice(&mut self, s: &[u8]);
    /// Appends the first `len` bytes of `a`; see [`put_first`].
    fn put_first<const N: usize>(&mut self, a: &[u8; N], len: usize);
}

impl Put for Vec<u8> {
    #[inline(always)]
    fn push(&mut self, b: u8) {
        Vec::push(self, b);
    }
    #[inline(always)]
    fn extend_from_slice(&mut self, s: &[u8]) {
        Vec::extend_from_slice(self, s);
    }
    #[inline(always)]
    fn put_first<const N: usize>(&mut self, a: &[u8; N], len: usize) {
        let keep = self.len() + len.min(N);
        Vec::extend_from_slice(self, a);
        self.truncate(keep);
    }
}

/// Longest text of a row's leading columns (packet … length): 20 + 17 + 3
/// + 2 × 39 (IPv6) + 2 × 5 + 8 + 10 digits and separators stay under 200.
const HEAD_MAX: usize = 256;

/// The leading, bounded-size columns of a row, assembled on the stack and
/// copied to the output at once: a stack cursor needs no capacity check
/// and no `memcpy` call per field. A write past the end (impossible by
/// [`HEAD_MAX`]) is dropped rather than panicking.
struct Head {
    a: [u8; HEAD_MAX],
    n: usize,
}

impl Head {
    fn new() -> Head {
        Head {
            a: [0; HEAD_MAX],
            n: 0,
        }
    }
    fn text(&self) -> &[u8] {
        &self.a[..self.n.min(HEAD_MAX)]
    }
}

impl Put for Head {
    #[inline(always)]
    fn push(&mut self, b: u8) {
        if let Some(d) = self.a.get_mut(self.n) {
            *d = b;
            self.n += 1;
        }
    }
    #[inline(always)]
    fn extend_from_slice(&mut self, s: &[u8]) {
        if let Some(d) = self.a.get_mut(self.n..self.n + s.len()) {
            d.copy_from_slice(s);
            self.n += s.len();
        }
    }
    #[inline(always)]
    fn put_first<const N: usize>(&mut self, a: &[u8; N], len: usize) {
        if let Some(d) = self.a.get_mut(self.n..self.n + N) {
            d.copy_from_slice(a);
            self.n += len.min(N);
        }
    }
}

/// "00" to "99", for writing decimals two digits at a time.
const PAIRS: &[u8; 200] = b"\
0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// `v` in decimal, written in place (see [`put_first`]).
#[inline]
fn put_u64(out: &mut impl Put, mut v: u64) {
    let n = v.checked_ilog10().unwrap_or(0) as usize + 1;
    let mut a = [0u8; 20];
    let mut i = n;
    while v >= 100 {
        let r = (v % 100) as usize * 2;
        v /= 100;
        i -= 2;
        a[i..i + 2].copy_from_slice(&PAIRS[r..r + 2]);
    }
    if v >= 10 {
        let r = v as usize * 2;
        a[..2].copy_from_slice(&PAIRS[r..r + 2]);
    } else {
        a[0] = b'0' + v as u8;
    }
    put_first(out, &a, n);
}

/// Every octet as text with a trailing dot, and the text's length with it.
const OCTETS: [([u8; 4], u8); 256] = {
    let mut t = [([0u8; 4], 0u8); 256];
    let mut o = 0;
    while o < 256 {
        let (h, te, u) = ((o / 100) as u8, (o / 10 % 10) as u8, (o % 10) as u8);
        t[o] = if o >= 100 {
            ([b'0' + h, b'0' + te, b'0' + u, b'.'], 4)
        } else if o >= 10 {
            ([b'0' + te, b'0' + u, b'.', 0], 3)
        } else {
            ([b'0' + u, b'.', 0, 0], 2)
        };
        o += 1;
    }
    t
};

fn write_ip(a: IpAddr, out: &mut impl Put) {
    match a {
        IpAddr::V4(v) => {
            let [a, b, c, d] = v.octets();
            for o in [a, b, c] {
                let (text, len) = &OCTETS[usize::from(o)];
                put_first(out, text, usize::from(*len));
            }
            // The last octet without its dot.
            let (text, len) = &OCTETS[usize::from(d)];
            put_first(out, text, usize::from(*len) - 1);
        }
        IpAddr::V6(v) => write_ipv6(v, out),
    }
}

/// An IPv6 address as std's `Display` writes it (RFC 5952: lowercase hex
/// without leading zeros, the longest run of two or more zero groups, the
/// first of equal ones, as `::`; IPv4-mapped addresses as `::ffff:a.b.c.d`),
/// without the formatting machinery, which costs more than the whole rest
/// of a row.
fn write_ipv6(v: std::net::Ipv6Addr, out: &mut impl Put) {
    if let Some(v4) = v.to_ipv4_mapped() {
        out.extend_from_slice(b"::ffff:");
        return write_ip(IpAddr::V4(v4), out);
    }
    let seg = v.segments();
    let (mut best, mut best_len, mut cur, mut cur_len) = (0, 0, 0, 0);
    for (i, &g) in seg.iter().enumerate() {
        if g == 0 {
            if cur_len == 0 {
                cur = i;
            }
            cur_len += 1;
            if cur_len > best_len {
                (best, best_len) = (cur, cur_len);
            }
        } else {
            cur_len = 0;
        }
    }
    fn groups(gs: &[u16], out: &mut impl Put) {
        for (i, &g) in gs.iter().enumerate() {
            if i > 0 {
                out.push(b':');
            }
            put_hex16(out, g);
        }
    }
    if best_len > 1 {
        groups(&seg[..best], out);
        out.extend_from_slice(b"::");
        groups(&seg[best + best_len..], out);
    } else {
        groups(&seg, out);
    }
}

/// A 16-bit group in lowercase hex without leading zeros.
#[inline]
fn put_hex16(out: &mut impl Put, g: u16) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let n = match g {
        0..=0xf => 1,
        0x10..=0xff => 2,
        0x100..=0xfff => 3,
        _ => 4,
    };
    let mut a = [0u8; 4];
    for (i, d) in a[..n].iter_mut().enumerate() {
        *d = HEX[usize::from((g >> (4 * (n - 1 - i))) & 0xf)];
    }
    put_first(out, &a, n);
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

    #[test]
    fn numbers_addresses_and_times_match_std_formatting() {
        let mut edge = vec![0u64, 1, 9, 10, 99, 100, 65535, u64::MAX, u64::MAX / 10];
        edge.extend((1..20).flat_map(|k| {
            let p = 10u64.pow(k);
            [p - 1, p, p + 1, p + p / 2]
        }));
        for v in edge {
            let mut out = b"x".to_vec();
            put_u64(&mut out, v);
            assert_eq!(out, format!("x{v}").into_bytes());
        }
        for o in 0..=255u8 {
            let ip = IpAddr::from([o, 255 - o, o / 7, 10]);
            let mut out = Vec::new();
            write_ip(ip, &mut out);
            assert_eq!(out, ip.to_string().into_bytes());
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
            let mut out = Vec::new();
            write_ip(IpAddr::V6(v6), &mut out);
            assert_eq!(out, v6.to_string().into_bytes(), "{v6:?}");
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
            let mut out = Vec::new();
            write_ip(IpAddr::V6(v6), &mut out);
            assert_eq!(out, v6.to_string().into_bytes());
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
            let mut out = Vec::new();
            write_time(t, &mut out);
            let want = format!("{}.{:06}", t.secs(), t.subsec_nanos() / 1000);
            assert_eq!(out, want.into_bytes());
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
}
