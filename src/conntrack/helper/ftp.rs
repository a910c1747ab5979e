//! The FTP helper (`nf_conntrack_ftp` semantics): reads the control
//! connection and announces the data connection that `PORT`/`EPRT` (from the
//! client, ORIGINAL direction) and `227`/`229` replies (from the server, REPLY
//! direction) open, so that its first packet is RELATED.
//!
//! Like the kernel it looks only at ESTABLISHED packets with TCP payload,
//! and only at a segment that starts right after a newline its direction has
//! already carried (up to two such sequence numbers are remembered per
//! direction). The first data segment of each direction is therefore never
//! parsed, and a command is recognised only at the start of a segment. A
//! segment that starts like a command but ends before it is complete, or is
//! malformed, is dropped. An address in the command other than the sender's
//! own gives no expectation (the kernel's default `loose=0`).
//!
//! Snap length: the kernel sees the whole payload; a capture may hold less.
//! A segment is decided on the captured bytes when they settle the outcome
//! (the command ends, or fails, inside them). When the outcome depends on
//! bytes that were not captured, the packet is accepted and no expectation
//! is created, since neither a drop nor an expectation could be justified.
//! A truncated segment's last byte is unknown; it is taken to be a newline
//! (FTP sends whole lines, so this keeps line tracking going as it does on
//! the wire in the usual case).
//!
//! Not modelled: NAT mangling (`nf_nat_ftp`), the `loose=1` and `ports=`
//! module parameters, and the pick-up flag conntrackd sets after a failover.

use super::{HelpCtx, HelpVerdict};
use crate::conntrack::expect::{Expectation, HelpState};
use crate::conntrack::tuple::Tuple;
use crate::conntrack::{CtState, Dir, HelperKind};
use crate::time::Duration;
use crate::wire::{L4, ipproto};
use std::net::{IpAddr, Ipv6Addr};

/// Lifetime of an FTP expectation (the helper's policy: five minutes).
const EXPECT_TIMEOUT: Duration = Duration::from_secs(300);

/// Line starts remembered per direction.
const LINE_STARTS: usize = 2;

/// Which command grammar follows a prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grammar {
    /// `PORT h1,h2,h3,h4,p1,p2\r`
    Port,
    /// `EPRT |af|addr|port|`
    Eprt,
    /// `227 ...h1,h2,h3,h4,p1,p2` followed by any other character.
    Pasv,
    /// `229 ...(|||port|)`
    Epsv,
}

struct Pattern {
    prefix: &'static [u8],
    /// Character skipped to after the prefix; None: the grammar finds its own
    /// start (227 scans for the first digit).
    skip: Option<u8>,
    grammar: Grammar,
    /// Log text when the segment only partly matches, as the kernel's
    /// `nf_ct_helper_log` words it.
    partial: &'static str,
}

/// Patterns tried, in order, per direction (index = `Dir::index`).
const PATTERNS: [[Pattern; 2]; 2] = [
    [
        Pattern {
            prefix: b"PORT",
            skip: Some(b' '),
            grammar: Grammar::Port,
            partial: "partial matching of `PORT'",
        },
        Pattern {
            prefix: b"EPRT",
            skip: Some(b' '),
            grammar: Grammar::Eprt,
            partial: "partial matching of `EPRT'",
        },
    ],
    [
        Pattern {
            prefix: b"227 ",
            skip: None,
            grammar: Grammar::Pasv,
            partial: "partial matching of `227 '",
        },
        Pattern {
            prefix: b"229 ",
            skip: Some(b'('),
            grammar: Grammar::Epsv,
            partial: "partial matching of `229 '",
        },
    ],
];

/// Why a command could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fail {
    /// The kernel would give up here: the packet is dropped.
    Malformed,
    /// The answer lies in bytes the capture does not hold.
    Uncaptured,
}

/// A segment's payload: the captured bytes and the length the IP header
/// gives. Reading at or past `len` is the parser's own bound check.
#[derive(Clone, Copy)]
struct Data<'a> {
    bytes: &'a [u8],
    len: usize,
}

impl<'a> Data<'a> {
    fn at(&self, i: usize) -> Result<u8, Fail> {
        self.bytes.get(i).copied().ok_or(Fail::Uncaptured)
    }

    /// The payload from `off` on.
    fn from(&self, off: usize) -> Data<'a> {
        Data {
            bytes: self.bytes.get(off..).unwrap_or(&[]),
            len: self.len - off,
        }
    }
}

/// A parsed command: the address and port the sender announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Announce {
    addr: IpAddr,
    port: u16,
}

pub fn help(cx: &mut HelpCtx<'_, '_>, out: &mut Vec<Expectation>) -> HelpVerdict {
    // Nothing is parsed before traffic has gone both ways, nor in RELATED.
    if cx.state != CtState::Established {
        return HelpVerdict::Accept;
    }
    let L4::Tcp(tcp) = cx.pkt.l4 else {
        return HelpVerdict::Accept;
    };
    let len = tcp.payload_len as usize;
    if len == 0 {
        return HelpVerdict::Accept;
    }
    let data = Data {
        bytes: &tcp.payload[..tcp.payload.len().min(len)],
        len,
    };
    let dir = cx.dir;
    // See the module docs for why an uncaptured last byte counts as '\n'.
    let ends_in_nl = data.bytes.get(len - 1).is_none_or(|&b| b == b'\n');
    let next_line = tcp.seq.wrapping_add(tcp.payload_len);

    if at_line_start(&cx.conn.help, dir, tcp.seq) {
        // Until the command is parsed, the announced address is the sender's
        // own: EPSV replies carry no address.
        let sender = cx.conn.tuple[dir.index()].src;
        match find_command(data, dir, sender) {
            Ok(None) | Err((Fail::Uncaptured, _)) => {}
            Err((Fail::Malformed, why)) => return HelpVerdict::Drop(why),
            Ok(Some(a)) => {
                if a.addr == sender {
                    out.push(expectation(cx, a.port));
                }
            }
        }
    }
    if ends_in_nl {
        remember_line_start(&mut cx.conn.help, dir, next_line);
    }
    HelpVerdict::Accept
}

/// The data connection the peer (tuple[!dir].src) will open to the command
/// sender (tuple[!dir].dst) on the announced port, from any source port.
fn expectation(cx: &HelpCtx<'_, '_>, port: u16) -> Expectation {
    let other = &cx.conn.tuple[cx.dir.opposite().index()];
    Expectation {
        tuple: Tuple {
            src: other.src,
            dst: other.dst,
            sport: 0,
            dport: port,
            proto: ipproto::TCP,
        },
        any_sport: true,
        src: Some(other.src),
        master: 0,
        master_uid: 0,
        helper: HelperKind::Ftp,
        expires: cx.now.add(EXPECT_TIMEOUT),
    }
}

fn at_line_start(h: &HelpState, dir: Dir, seq: u32) -> bool {
    let d = dir.index();
    h.seq_after_nl[d][..usize::from(h.seq_after_nl_count[d])].contains(&seq)
}

/// Remembers `seq` as a line start. With both slots taken it replaces the
/// older one, and only when `seq` lies after it (sequence-number order).
fn remember_line_start(h: &mut HelpState, dir: Dir, seq: u32) {
    let d = dir.index();
    let n = usize::from(h.seq_after_nl_count[d]);
    let slots = &mut h.seq_after_nl[d];
    if slots[..n].contains(&seq) {
        return;
    }
    if n < LINE_STARTS {
        slots[n] = seq;
        h.seq_after_nl_count[d] += 1;
        return;
    }
    let oldest = if seq_before(slots[0], slots[1]) { 0 } else { 1 };
    if seq_before(slots[oldest], seq) {
        slots[oldest] = seq;
    }
}

/// `a` comes before `b` in 32-bit sequence space.
fn seq_before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// Tries the direction's patterns in order; the first that matches at all
/// (fully or partly) decides. Err carries the drop text.
fn find_command(
    data: Data<'_>,
    dir: Dir,
    sender: IpAddr,
) -> Result<Option<Announce>, (Fail, &'static str)> {
    for p in &PATTERNS[dir.index()] {
        match find_pattern(data, p, sender) {
            Ok(None) => continue,
            Ok(Some(a)) => return Ok(Some(a)),
            Err(f) => return Err((f, p.partial)),
        }
    }
    Ok(None)
}

fn find_pattern(data: Data<'_>, p: &Pattern, sender: IpAddr) -> Result<Option<Announce>, Fail> {
    let plen = p.prefix.len();
    // A segment no longer than the prefix that agrees with it so far is an
    // incomplete command.
    let cmp = data.len.min(plen);
    for (i, want) in p.prefix[..cmp].iter().enumerate() {
        if !data.at(i)?.eq_ignore_ascii_case(want) {
            return Ok(None);
        }
    }
    if data.len <= plen {
        return Err(Fail::Malformed);
    }
    let mut i = plen;
    if let Some(skip) = p.skip {
        while data.at(i)? != skip {
            if i == data.len - 1 {
                return Err(Fail::Malformed);
            }
            i += 1;
        }
        i += 1;
    }
    let rest = data.from(i);
    let a = match p.grammar {
        Grammar::Port => rfc959(rest, Some(b'\r'), sender),
        Grammar::Pasv => rfc1123(rest, sender),
        Grammar::Eprt => eprt(rest, sender),
        Grammar::Epsv => epsv(rest, sender),
    }?;
    Ok(Some(a))
}

/// Reads `out.len()` decimal numbers separated by `sep`, ended by `term`
/// (None: any character other than a digit or `sep`) after the last one.
/// Digits accumulate into wrapping 32-bit values with no range check; empty
/// fields count as 0. Returns the offset of the terminator.
fn numbers(data: Data<'_>, out: &mut [u32], sep: u8, term: Option<u8>) -> Result<usize, Fail> {
    out.fill(0);
    let mut k = 0;
    let mut i = 0;
    while i < data.len && k < out.len() {
        let c = data.at(i)?;
        if c.is_ascii_digit() {
            out[k] = out[k].wrapping_mul(10).wrapping_add(u32::from(c - b'0'));
        } else if c == sep {
            k += 1;
        } else if term.is_none_or(|t| t == c) && k == out.len() - 1 {
            return Ok(i);
        } else {
            return Err(Fail::Malformed);
        }
        i += 1;
    }
    Err(Fail::Malformed)
}

/// Builds the announced address from four numbers. Each is shifted into its
/// byte and OR-ed, so oversized values spill into the bytes above. On an
/// IPv6 connection the four bytes replace the first four of the sender's
/// address (the kernel writes them over the start of the address).
fn v4_announce(n: &[u32], sender: IpAddr) -> IpAddr {
    let v4 = (n[0] << 24) | (n[1] << 16) | (n[2] << 8) | n[3];
    match sender {
        IpAddr::V4(_) => IpAddr::V4(v4.into()),
        IpAddr::V6(s) => {
            let mut o = s.octets();
            o[..4].copy_from_slice(&v4.to_be_bytes());
            IpAddr::V6(Ipv6Addr::from(o))
        }
    }
}

/// `h1,h2,h3,h4,p1,p2` (RFC 959), as in PORT and 227.
fn rfc959(data: Data<'_>, term: Option<u8>, sender: IpAddr) -> Result<Announce, Fail> {
    let mut n = [0u32; 6];
    numbers(data, &mut n, b',', term)?;
    Ok(Announce {
        addr: v4_announce(&n, sender),
        // Cut to 16 bits; port 0 is not rejected here.
        port: ((n[4] << 8) | n[5]) as u16,
    })
}

/// 227 replies: RFC 1123 says the numbers need not be in parentheses, so
/// scan for the first digit; any character may end the last number.
fn rfc1123(data: Data<'_>, sender: IpAddr) -> Result<Announce, Fail> {
    let mut i = 0;
    while i < data.len {
        if data.at(i)?.is_ascii_digit() {
            return rfc959(data.from(i), None, sender);
        }
        i += 1;
    }
    Err(Fail::Malformed)
}

/// A delimiter of EPRT/EPSV: printable ASCII other than a digit.
fn is_delim(c: u8) -> bool {
    (33..=126).contains(&c) && !c.is_ascii_digit()
}

/// Decimal port from `start` up to `delim`; wraps at 16 bits, 0 is refused.
fn port_until(data: Data<'_>, start: usize, delim: u8) -> Result<u16, Fail> {
    let mut port: u16 = 0;
    for i in start..data.len {
        let c = data.at(i)?;
        if c == delim {
            return if port == 0 {
                Err(Fail::Malformed)
            } else {
                Ok(port)
            };
        }
        if !c.is_ascii_digit() {
            return Err(Fail::Malformed);
        }
        port = port.wrapping_mul(10).wrapping_add(u16::from(c - b'0'));
    }
    Err(Fail::Malformed)
}

/// `d1dAddrdPortd` (RFC 2428), the protocol number matching the connection.
fn eprt(data: Data<'_>, sender: IpAddr) -> Result<Announce, Fail> {
    if data.len <= 3 {
        return Err(Fail::Malformed);
    }
    let d = data.at(0)?;
    if !is_delim(d) || data.at(2)? != d {
        return Err(Fail::Malformed);
    }
    let af = data.at(1)?;
    let addr_data = data.from(3);
    let (addr, alen) = match (sender, af) {
        (IpAddr::V4(_), b'1') => {
            let mut n = [0u32; 4];
            let alen = numbers(addr_data, &mut n, b'.', Some(d))?;
            (v4_announce(&n, sender), alen)
        }
        (IpAddr::V6(_), b'2') => v6_until(addr_data, d)?,
        _ => return Err(Fail::Malformed),
    };
    let port = port_until(data, 3 + alen + 1, d)?;
    Ok(Announce { addr, port })
}

/// An IPv6 address in text form ending at `delim`; returns it and the
/// offset of the delimiter.
fn v6_until(data: Data<'_>, delim: u8) -> Result<(IpAddr, usize), Fail> {
    // The longest text form ("ffff:...:255.255.255.255") has 45 characters.
    let mut text = [0u8; 45];
    let mut i = 0;
    while i < data.len {
        let c = data.at(i)?;
        if c == delim {
            let s = std::str::from_utf8(&text[..i]).map_err(|_| Fail::Malformed)?;
            let a: Ipv6Addr = s.parse().map_err(|_| Fail::Malformed)?;
            return Ok((IpAddr::V6(a), i));
        }
        if i == text.len() || !(c.is_ascii_hexdigit() || c == b':' || c == b'.') {
            return Err(Fail::Malformed);
        }
        text[i] = c;
        i += 1;
    }
    Err(Fail::Malformed)
}

/// `(|||port|)`: three equal delimiters, then the port; the address is the
/// sender's.
fn epsv(data: Data<'_>, sender: IpAddr) -> Result<Announce, Fail> {
    if data.len <= 3 {
        return Err(Fail::Malformed);
    }
    let d = data.at(0)?;
    if !is_delim(d) || data.at(1)? != d || data.at(2)? != d {
        return Err(Fail::Malformed);
    }
    Ok(Announce {
        addr: sender,
        port: port_until(data, 3, d)?,
    })
}
