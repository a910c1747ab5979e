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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conntrack::{Conn, ProtoState, Status};
    use crate::time::Timestamp;
    use crate::wire::{Family, Packet, PktType, Tcp, TcpOptions, tcpflag};

    const NOW: Timestamp = Timestamp(5_000_000_000);

    /// One FTP control connection, client port 40000 to server port 21, as
    /// the helper sees it after the handshake (ESTABLISHED both ways).
    struct Session {
        conn: Conn,
        seq: [u32; 2],
    }

    impl Session {
        fn new(client: &str, server: &str) -> Session {
            let (c, s): (IpAddr, IpAddr) = (client.parse().unwrap(), server.parse().unwrap());
            let t = |src, dst, sport, dport| Tuple {
                src,
                dst,
                sport,
                dport,
                proto: ipproto::TCP,
            };
            Session {
                conn: Conn {
                    uid: 1,
                    tuple: [t(c, s, 40000, 21), t(s, c, 21, 40000)],
                    status: Status(Status::CONFIRMED | Status::SEEN_REPLY | Status::HELPER),
                    expires: NOW,
                    timer: NOW,
                    proto: ProtoState::Generic,
                    mark: 0,
                    master: None,
                    helper: Some(HelperKind::Ftp),
                    help: HelpState::default(),
                },
                seq: [1000, 90_000],
            }
        }

        /// Sends a whole segment; sequence numbers advance when it passes.
        fn send(&mut self, dir: Dir, payload: &[u8]) -> (HelpVerdict, Vec<Expectation>) {
            self.send_cut(dir, payload, payload.len() as u32, CtState::Established)
        }

        /// Sends a segment of `len` bytes of which the capture holds `payload`.
        fn send_cut(
            &mut self,
            dir: Dir,
            payload: &[u8],
            len: u32,
            state: CtState,
        ) -> (HelpVerdict, Vec<Expectation>) {
            let t = self.conn.tuple[dir.index()];
            let pkt = Packet {
                family: match t.src {
                    IpAddr::V4(_) => Family::Ipv4,
                    IpAddr::V6(_) => Family::Ipv6,
                },
                src: t.src,
                dst: t.dst,
                proto: ipproto::TCP,
                ttl: 64,
                tos: 0,
                ip_len: 40 + len,
                l4_offset: 20,
                frag: None,
                ip: &[],
                truncated: (payload.len() as u32) < len,
                ipv4_csum_ok: true,
                src_mac: None,
                pkttype: PktType::Host,
                l4: L4::Tcp(Tcp {
                    sport: t.sport,
                    dport: t.dport,
                    seq: self.seq[dir.index()],
                    ack: 0,
                    flags: tcpflag::ACK | tcpflag::PSH,
                    window: 1000,
                    header_len: 20,
                    payload_len: len,
                    opts: TcpOptions::default(),
                    options: &[],
                    payload,
                }),
            };
            let mut out = Vec::new();
            let mut cx = HelpCtx {
                conn: &mut self.conn,
                dir,
                state,
                pkt: &pkt,
                now: NOW,
            };
            let v = help(&mut cx, &mut out);
            if v == HelpVerdict::Accept {
                self.seq[dir.index()] = self.seq[dir.index()].wrapping_add(len);
            }
            (v, out)
        }

        /// The greeting, USER and its reply: after them both directions
        /// are at a remembered line start.
        fn logged_in(client: &str, server: &str) -> Session {
            let mut s = Session::new(client, server);
            for (dir, line) in [
                (Dir::Reply, &b"220 ready\r\n"[..]),
                (Dir::Original, b"USER a\r\n"),
                (Dir::Reply, b"331 pass\r\n"),
            ] {
                assert_eq!(s.send(dir, line), (HelpVerdict::Accept, vec![]));
            }
            s
        }
    }

    /// An expectation as `conntrack -L expect` showed it: `src=` any port
    /// to `dst=` `dport=`, TCP, helper ftp, 300 s.
    fn exp(src: &str, dst: &str, dport: u16) -> Expectation {
        let src: IpAddr = src.parse().unwrap();
        Expectation {
            tuple: Tuple {
                src,
                dst: dst.parse().unwrap(),
                sport: 0,
                dport,
                proto: ipproto::TCP,
            },
            any_sport: true,
            src: Some(src),
            master: 0,
            master_uid: 0,
            helper: HelperKind::Ftp,
            expires: NOW.add(Duration::from_secs(300)),
        }
    }

    const C: &str = "10.0.1.2";
    const S: &str = "10.0.2.2";
    const ACCEPT: HelpVerdict = HelpVerdict::Accept;

    fn drop(pattern: &'static str) -> (HelpVerdict, Vec<Expectation>) {
        (HelpVerdict::Drop(pattern), vec![])
    }

    const PARTIAL_PORT: &str = "partial matching of `PORT'";
    const PARTIAL_EPRT: &str = "partial matching of `EPRT'";
    const PARTIAL_227: &str = "partial matching of `227 '";
    const PARTIAL_229: &str = "partial matching of `229 '";

    /// Client command after the login exchange (tests/helper_kernel_check).
    fn client_cmd(line: &[u8]) -> (HelpVerdict, Vec<Expectation>) {
        Session::logged_in(C, S).send(Dir::Original, line)
    }

    /// Server reply to PASV/EPSV after the login exchange.
    fn server_reply(line: &[u8]) -> (HelpVerdict, Vec<Expectation>) {
        let mut s = Session::logged_in(C, S);
        assert_eq!(s.send(Dir::Original, b"PASV\r\n"), (ACCEPT, vec![]));
        s.send(Dir::Reply, line)
    }

    #[test]
    fn first_line_is_never_parsed_kernel() {
        let mut s = Session::new(C, S);
        assert_eq!(
            s.send(Dir::Original, b"PORT 10,0,1,2,4,1\r\n"),
            (ACCEPT, vec![])
        );
        assert_eq!(s.send(Dir::Reply, b"200 ok\r\n"), (ACCEPT, vec![]));
        assert_eq!(
            s.send(Dir::Original, b"PORT 10,0,1,2,4,2\r\n"),
            (ACCEPT, vec![exp(S, C, 1026)])
        );
    }

    #[test]
    fn port_kernel() {
        let want = (ACCEPT, vec![exp(S, C, 1025)]);
        assert_eq!(client_cmd(b"PORT 10,0,1,2,4,1\r\n"), want);
        assert_eq!(client_cmd(b"port 10,0,1,2,4,1\r\n"), want);
        // 260 << 8 | 1 cut to 16 bits.
        assert_eq!(client_cmd(b"PORT 10,0,1,2,260,1\r\n"), want);
    }

    #[test]
    fn port_foreign_address_passes_without_expectation_kernel() {
        assert_eq!(client_cmd(b"PORT 10,0,1,3,4,1\r\n"), (ACCEPT, vec![]));
    }

    #[test]
    fn command_after_another_line_in_segment_is_unseen_kernel() {
        assert_eq!(
            client_cmd(b"NOOP\r\nPORT 10,0,1,2,4,1\r\n"),
            (ACCEPT, vec![])
        );
    }

    #[test]
    fn later_command_line_is_parsed_kernel() {
        let mut s = Session::logged_in(C, S);
        assert_eq!(s.send(Dir::Original, b"NOOP\r\n"), (ACCEPT, vec![]));
        assert_eq!(s.send(Dir::Reply, b"200 ok\r\n"), (ACCEPT, vec![]));
        assert_eq!(
            s.send(Dir::Original, b"PORT 10,0,1,2,4,3\r\n"),
            (ACCEPT, vec![exp(S, C, 1027)])
        );
    }

    #[test]
    fn malformed_or_incomplete_port_is_dropped_kernel() {
        for line in [
            &b"PORT 10,0,1,2,4,1\n"[..],
            b"PORT 10,0,",
            b"PO",
            b"PORT\r\n",
            b"PORT abc\r\n",
        ] {
            assert_eq!(client_cmd(line), drop(PARTIAL_PORT), "{line:?}");
        }
    }

    #[test]
    fn pasv_kernel() {
        let want = (ACCEPT, vec![exp(C, S, 1025)]);
        assert_eq!(
            server_reply(b"227 Entering Passive Mode (10,0,2,2,4,1).\r\n"),
            want
        );
        assert_eq!(
            server_reply(b"227 Entering Passive Mode 10,0,2,2,4,1\r\n"),
            want
        );
        assert_eq!(
            server_reply(b"227 Entering Passive Mode (10,0,2,9,4,1)\r\n"),
            (ACCEPT, vec![])
        );
    }

    #[test]
    fn pasv_without_numbers_or_end_is_dropped_kernel() {
        assert_eq!(server_reply(b"227 no numbers\r\n"), drop(PARTIAL_227));
        assert_eq!(server_reply(b"227 =10,0,2,2,4,1"), drop(PARTIAL_227));
    }

    #[test]
    fn epsv_kernel() {
        assert_eq!(
            server_reply(b"229 Entering Extended Passive Mode (|||6446|)\r\n"),
            (ACCEPT, vec![exp(C, S, 6446)])
        );
        assert_eq!(server_reply(b"229 x (|||0|)\r\n"), drop(PARTIAL_229));
        assert_eq!(server_reply(b"229 x (111123|)\r\n"), drop(PARTIAL_229));
    }

    #[test]
    fn eprt_kernel() {
        let want = (ACCEPT, vec![exp(S, C, 6275)]);
        assert_eq!(client_cmd(b"EPRT |1|10.0.1.2|6275|\r\n"), want);
        assert_eq!(client_cmd(b"EPRT !1!10.0.1.2!6275!\r\n"), want);
        assert_eq!(client_cmd(b"EPRT |1|10.0.1.2|0|\r\n"), drop(PARTIAL_EPRT));
        assert_eq!(
            client_cmd(b"EPRT |2|10.0.1.2|6275|\r\n"),
            drop(PARTIAL_EPRT)
        );
    }

    #[test]
    fn ipv6_kernel() {
        let (c6, s6) = ("fd01::2", "fd02::2");
        let cmd = |line: &[u8]| Session::logged_in(c6, s6).send(Dir::Original, line);
        assert_eq!(
            cmd(b"EPRT |2|fd01::2|6275|\r\n"),
            (ACCEPT, vec![exp(s6, c6, 6275)])
        );
        assert_eq!(cmd(b"EPRT |2|fd01::3|6275|\r\n"), (ACCEPT, vec![]));
        // The four numbers overwrite the first four bytes of fd01::2 (fd 01
        // 00 00), which they equal: the kernel expected port 1025.
        assert_eq!(
            cmd(b"PORT 253,1,0,0,4,1\r\n"),
            (ACCEPT, vec![exp(s6, c6, 1025)])
        );
        let mut s = Session::logged_in(c6, s6);
        assert_eq!(s.send(Dir::Original, b"EPSV\r\n"), (ACCEPT, vec![]));
        assert_eq!(
            s.send(Dir::Reply, b"229 ok (|||7000|)\r\n"),
            (ACCEPT, vec![exp(c6, s6, 7000)])
        );
    }

    #[test]
    fn prefix_of_second_pattern_names_it() {
        assert_eq!(client_cmd(b"EP"), drop(PARTIAL_EPRT));
        assert_eq!(client_cmd(b"E"), drop(PARTIAL_EPRT));
        assert_eq!(client_cmd(b"P"), drop(PARTIAL_PORT));
        assert_eq!(server_reply(b"22"), drop(PARTIAL_227));
        assert_eq!(server_reply(b"229 "), drop(PARTIAL_229));
        assert_eq!(server_reply(b"229 x"), drop(PARTIAL_229));
        assert_eq!(client_cmd(b"EPSV\r\n"), (ACCEPT, vec![]));
    }

    #[test]
    fn commands_only_count_in_their_direction() {
        // A server cannot send PORT, nor a client a 227 reply.
        let mut s = Session::logged_in(C, S);
        assert_eq!(
            s.send(Dir::Reply, b"PORT 10,0,2,2,4,1\r\n"),
            (ACCEPT, vec![])
        );
        assert_eq!(
            s.send(Dir::Original, b"227 (10,0,1,2,4,1)\r\n"),
            (ACCEPT, vec![])
        );
    }

    #[test]
    fn only_established_packets_are_parsed() {
        let mut s = Session::logged_in(C, S);
        let line = b"PORT 10,0,1,2,4,1\r\n";
        for st in [CtState::New, CtState::Related] {
            assert_eq!(
                s.send_cut(Dir::Original, line, line.len() as u32, st),
                (ACCEPT, vec![])
            );
        }
    }

    #[test]
    fn eprt_and_epsv_edge_cases() {
        // Empty fields count as 0; oversized numbers spill into the bytes
        // above (10 << 24 | 256 << 8 | 1... here 0,0,1,2 after 10*2^24).
        assert_eq!(
            client_cmd(b"PORT 10,0,1,2,,255\r\n"),
            (ACCEPT, vec![exp(S, C, 255)])
        );
        assert_eq!(
            client_cmd(b"PORT 10,0,0,258,4,1\r\n"),
            (ACCEPT, vec![exp(S, C, 1025)])
        );
        // Too many numbers: the seventh has nowhere to go.
        assert_eq!(client_cmd(b"PORT 10,0,1,2,4,1,7\r\n"), drop(PARTIAL_PORT));
        // PORT port 0 is not refused.
        assert_eq!(
            client_cmd(b"PORT 10,0,1,2,0,0\r\n"),
            (ACCEPT, vec![exp(S, C, 0)])
        );
        // EPRT port wraps at 16 bits: 65536 is 0, refused; 66561 is 1025.
        assert_eq!(
            client_cmd(b"EPRT |1|10.0.1.2|65536|\r\n"),
            drop(PARTIAL_EPRT)
        );
        assert_eq!(
            client_cmd(b"EPRT |1|10.0.1.2|66561|\r\n"),
            (ACCEPT, vec![exp(S, C, 1025)])
        );
        // A space is not a delimiter; nor is a missing closing one.
        assert_eq!(
            client_cmd(b"EPRT  1 10.0.1.2 6275 \r\n"),
            drop(PARTIAL_EPRT)
        );
        assert_eq!(client_cmd(b"EPRT |1|10.0.1.2|6275\r\n"), drop(PARTIAL_EPRT));
        assert_eq!(client_cmd(b"EPRT |1|\r\n"), drop(PARTIAL_EPRT));
        // EPSV's terminator is never checked.
        assert_eq!(
            server_reply(b"229 (|||6446|\r\n"),
            (ACCEPT, vec![exp(C, S, 6446)])
        );
        assert_eq!(server_reply(b"229 (||6446|)\r\n"), drop(PARTIAL_229));
    }

    #[test]
    fn ipv6_eprt_forms() {
        let (c6, s6) = ("2001:db8::10", "2001:db8:1::1");
        let cmd = |line: &[u8]| Session::logged_in(c6, s6).send(Dir::Original, line);
        assert_eq!(
            cmd(b"EPRT |2|2001:DB8:0:0:0:0:0:10|5282|\r\n"),
            (ACCEPT, vec![exp(s6, c6, 5282)])
        );
        assert_eq!(cmd(b"EPRT |2|2001:db8::10::|5282|\r\n"), drop(PARTIAL_EPRT));
        assert_eq!(cmd(b"EPRT |1|10.0.1.2|5282|\r\n"), drop(PARTIAL_EPRT));
        assert_eq!(cmd(b"EPRT |2|2001:db8::10\r\n"), drop(PARTIAL_EPRT));
    }

    #[test]
    fn split_command_is_dropped_until_sent_whole() {
        // The kernel dropped "PORT 10,0," (rig). The sender then retransmits;
        // a retransmission carrying the whole line at the same sequence
        // number is parsed.
        let mut s = Session::logged_in(C, S);
        assert_eq!(s.send(Dir::Original, b"PORT 10,0,"), drop(PARTIAL_PORT));
        assert_eq!(
            s.send(Dir::Original, b"PORT 10,0,1,2,4,1\r\n"),
            (ACCEPT, vec![exp(S, C, 1025)])
        );
    }

    #[test]
    fn segment_not_ending_in_newline_hides_the_next_line() {
        let mut s = Session::logged_in(C, S);
        assert_eq!(s.send(Dir::Original, b"NOOP"), (ACCEPT, vec![]));
        assert_eq!(
            s.send(Dir::Original, b"\r\nPORT 10,0,1,2,4,1\r\n"),
            (ACCEPT, vec![])
        );
        assert_eq!(
            s.send(Dir::Original, b"PORT 10,0,1,2,4,2\r\n"),
            (ACCEPT, vec![exp(S, C, 1026)])
        );
    }

    #[test]
    fn line_starts_keep_two_newest() {
        let mut h = HelpState::default();
        let d = Dir::Original;
        remember_line_start(&mut h, d, 100);
        remember_line_start(&mut h, d, 200);
        remember_line_start(&mut h, d, 200);
        assert_eq!(h.seq_after_nl[0], [100, 200]);
        // Older than both: kept out.
        remember_line_start(&mut h, d, 50);
        assert_eq!(h.seq_after_nl[0], [100, 200]);
        // Newer: replaces the older.
        remember_line_start(&mut h, d, 300);
        assert_eq!(h.seq_after_nl[0], [300, 200]);
        // Across the 32-bit wrap: 5 comes after 0xffff_fff0 and replaces it.
        h.seq_after_nl[0] = [0xffff_fff8, 0xffff_fff0];
        remember_line_start(&mut h, d, 5);
        assert_eq!(h.seq_after_nl[0], [0xffff_fff8, 5]);
        assert!(at_line_start(&h, d, 5));
        assert!(!at_line_start(&h, Dir::Reply, 5));
    }

    #[test]
    fn retransmitted_line_is_parsed_again() {
        // Two remembered starts let a retransmission of the previous
        // segment be seen as a line start too.
        let mut s = Session::logged_in(C, S);
        let at = s.seq[0];
        assert_eq!(
            s.send(Dir::Original, b"PORT 10,0,1,2,4,1\r\n"),
            (ACCEPT, vec![exp(S, C, 1025)])
        );
        s.seq[0] = at;
        assert_eq!(
            s.send(Dir::Original, b"PORT 10,0,1,2,4,1\r\n"),
            (ACCEPT, vec![exp(S, C, 1025)])
        );
    }

    #[test]
    fn snap_length_cut_payload() {
        let line = b"PORT 10,0,1,2,4,1\r\n";
        let full = line.len() as u32;
        // The command ends inside the captured bytes: decided as the kernel.
        let mut s = Session::logged_in(C, S);
        assert_eq!(
            s.send_cut(Dir::Original, &line[..18], full, CtState::Established),
            (ACCEPT, vec![exp(S, C, 1025)])
        );
        // It does not: nothing is claimed either way.
        let mut s = Session::logged_in(C, S);
        assert_eq!(
            s.send_cut(Dir::Original, &line[..10], full, CtState::Established),
            (ACCEPT, vec![])
        );
        // Failure inside the captured bytes is still a drop.
        let mut s = Session::logged_in(C, S);
        assert_eq!(
            s.send_cut(Dir::Original, b"PORT x", 40, CtState::Established),
            drop(PARTIAL_PORT)
        );
        // Line tracking continues past a cut segment (last byte unknown).
        let mut s = Session::logged_in(C, S);
        assert_eq!(
            s.send_cut(Dir::Original, b"LIST", 40, CtState::Established),
            (ACCEPT, vec![])
        );
        assert_eq!(
            s.send(Dir::Original, b"PORT 10,0,1,2,4,1\r\n"),
            (ACCEPT, vec![exp(S, C, 1025)])
        );
        // Nothing captured at all.
        let mut s = Session::logged_in(C, S);
        assert_eq!(
            s.send_cut(Dir::Original, b"", 40, CtState::Established),
            (ACCEPT, vec![])
        );
    }

    #[test]
    fn no_payload_changes_nothing() {
        let mut s = Session::logged_in(C, S);
        let before = s.conn.help.clone();
        assert_eq!(s.send(Dir::Original, b""), (ACCEPT, vec![]));
        assert_eq!(s.conn.help, before);
    }
    /// Builds an IPv4/TCP datagram (checksums left zero: the hook is told
    /// they are unverifiable).
    fn tcp4(
        src: [u8; 4],
        dst: [u8; 4],
        ports: (u16, u16),
        seq: u32,
        ack: u32,
        flags: u8,
        data: &[u8],
    ) -> Vec<u8> {
        let mut b = vec![0u8; 40];
        b[0] = 0x45;
        b[2..4].copy_from_slice(&((40 + data.len()) as u16).to_be_bytes());
        b[8] = 64;
        b[9] = ipproto::TCP;
        b[12..16].copy_from_slice(&src);
        b[16..20].copy_from_slice(&dst);
        let sum = (0..10).fold(0u32, |a, i| {
            a + u32::from(u16::from_be_bytes([b[2 * i], b[2 * i + 1]]))
        });
        let sum = !((sum & 0xffff) + (sum >> 16)) as u16;
        b[10..12].copy_from_slice(&sum.to_be_bytes());
        b[20..22].copy_from_slice(&ports.0.to_be_bytes());
        b[22..24].copy_from_slice(&ports.1.to_be_bytes());
        b[24..28].copy_from_slice(&seq.to_be_bytes());
        b[28..32].copy_from_slice(&ack.to_be_bytes());
        b[32] = 5 << 4;
        b[33] = flags;
        b[34..36].copy_from_slice(&65535u16.to_be_bytes());
        b.extend_from_slice(data);
        b
    }

    #[test]
    fn data_connection_is_related_through_conntrack() {
        use crate::conntrack::{Conntrack, CtHook, HookInput, Sysctls};
        use crate::wire::{LinkInfo, decode_ip};
        let (c, s) = ([10, 0, 1, 2], [10, 0, 2, 2]);
        let mut ct = Conntrack::new(Sysctls::default(), false);
        let (a, p, sy) = (tcpflag::ACK, tcpflag::PSH, tcpflag::SYN);
        // (from client, seq, ack, flags, payload, state conntrack gives)
        type Step = (bool, u32, u32, u8, &'static [u8], CtState);
        let steps: [Step; 6] = [
            (true, 1000, 0, sy, b"", CtState::New),
            (false, 9000, 1001, sy | a, b"", CtState::Established),
            (true, 1001, 9001, a, b"", CtState::Established),
            (
                false,
                9001,
                1001,
                a | p,
                b"220 hi\r\n",
                CtState::Established,
            ),
            (true, 1001, 9009, a | p, b"USER a\r\n", CtState::Established),
            (
                true,
                1009,
                9009,
                a | p,
                b"PORT 10,0,1,2,4,1\r\n",
                CtState::Established,
            ),
        ];
        for (i, (from_client, seq, ack, flags, data, want)) in steps.into_iter().enumerate() {
            let bytes = if from_client {
                tcp4(c, s, (40000, 21), seq, ack, flags, data)
            } else {
                tcp4(s, c, (21, 40000), seq, ack, flags, data)
            };
            let pkt = decode_ip(&bytes, LinkInfo::default()).unwrap();
            let inp = HookInput {
                hook: CtHook::Prerouting,
                now: NOW,
                packet: i as u64,
                helper: Some(HelperKind::Ftp),
                l4_csum_ok: None,
            };
            let res = ct.packet_in(&pkt, &inp);
            assert_eq!(res.state, want, "packet {i}");
            ct.confirm(&res, &pkt, &inp).unwrap();
        }
        let exps: Vec<_> = ct.expectations().iter().cloned().collect();
        assert_eq!(exps.len(), 1);
        assert_eq!(exps[0].tuple.dport, 1025);
        // The server's data SYN from port 20 is RELATED.
        let bytes = tcp4(s, c, (20, 1025), 5000, 0, sy, b"");
        let pkt = decode_ip(&bytes, LinkInfo::default()).unwrap();
        let inp = HookInput {
            hook: CtHook::Prerouting,
            now: NOW,
            packet: 9,
            helper: None,
            l4_csum_ok: None,
        };
        let res = ct.packet_in(&pkt, &inp);
        assert_eq!(res.state, CtState::Related);
        ct.confirm(&res, &pkt, &inp).unwrap();
        assert!(ct.expectations().is_empty());
    }
}
