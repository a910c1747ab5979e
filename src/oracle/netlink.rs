//! A small netfilter netlink client: just what the oracle needs.
//!
//! One socket type ([`NlSocket`]) over `NETLINK_NETFILTER`, a message builder,
//! an attribute iterator, and the three conversations the oracle has with the
//! kernel: NFLOG configuration (bind a group, copy mode, queue threshold),
//! decoding of NFLOG packets and nf_tables trace events, and a ctnetlink GET of
//! one tuple. Message layouts follow the UAPI headers
//! (`linux/netfilter/nfnetlink*.h`, `nf_tables.h`); numbers are named here.
//! It is not a general netlink library: no dumps, no multipart replies.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use super::capture::{Tuple, TupleL4};
use crate::wire::ipproto;

const NETLINK_NETFILTER: libc::c_int = 12;
const SOL_NETLINK: libc::c_int = 270;
const NETLINK_ADD_MEMBERSHIP: libc::c_int = 1;

const NLMSG_HDRLEN: usize = 16;
const NFGEN_HDRLEN: usize = 4;
const NLMSG_NOOP: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLA_F_NESTED: u16 = 0x8000;
const NLA_TYPE_MASK: u16 = 0x3fff;

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const NFNL_SUBSYS_ULOG: u16 = 4;
const NFNL_SUBSYS_NFTABLES: u16 = 10;

/// Multicast group of nf_tables trace events (`NFNLGRP_NFTRACE`).
pub(crate) const NFNLGRP_NFTRACE: u32 = 9;

// nfnetlink_log
const NFULNL_MSG_PACKET: u16 = 0;
const NFULNL_MSG_CONFIG: u16 = 1;
const NFULA_PAYLOAD: u16 = 9;
const NFULA_PREFIX: u16 = 10;
const NFULA_CFG_CMD: u16 = 1;
const NFULA_CFG_MODE: u16 = 2;
const NFULA_CFG_TIMEOUT: u16 = 4;
const NFULA_CFG_QTHRESH: u16 = 5;
const NFULNL_CFG_CMD_BIND: u8 = 1;
const NFULNL_COPY_PACKET: u8 = 2;

// nf_tables trace
const NFT_MSG_TRACE: u16 = 17;
const NFTA_TRACE_TABLE: u16 = 1;
const NFTA_TRACE_CHAIN: u16 = 2;
const NFTA_TRACE_RULE_HANDLE: u16 = 3;
const NFTA_TRACE_TYPE: u16 = 4;
const NFTA_TRACE_VERDICT: u16 = 5;
const NFTA_TRACE_NFPROTO: u16 = 15;
const NFTA_TRACE_POLICY: u16 = 16;
const NFTA_VERDICT_CODE: u16 = 1;

// ctnetlink
const IPCTNL_MSG_CT_NEW: u16 = 0;
const IPCTNL_MSG_CT_GET: u16 = 1;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_STATUS: u16 = 3;
const CTA_PROTOINFO: u16 = 4;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;
const CTA_PROTO_ICMP_ID: u16 = 4;
const CTA_PROTO_ICMPV6_ID: u16 = 7;
const CTA_PROTOINFO_TCP: u16 = 1;
const CTA_PROTOINFO_TCP_STATE: u16 = 1;

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// A `NETLINK_NETFILTER` socket, bound in the network namespace of the thread
/// that opened it.
pub(crate) struct NlSocket {
    fd: OwnedFd,
    buf: Vec<u8>,
    seq: u32,
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn setsockopt<T>(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, val: &T) -> io::Result<()> {
    // SAFETY: `val` points to a live T of the size passed.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (val as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    })
    .map(drop)
}

impl NlSocket {
    pub fn open() -> io::Result<Self> {
        // SAFETY: plain socket(2) call; the fd is owned right away.
        let fd = cvt(unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                NETLINK_NETFILTER,
            )
        })?;
        // SAFETY: fd is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_nl is plain data; zeroed is a valid value.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: sa is a valid sockaddr_nl of the given length.
        cvt(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        })?;
        Ok(NlSocket {
            fd,
            buf: vec![0; 1 << 18],
            seq: 1,
        })
    }

    /// Receive buffer size; forced past `rmem_max` (we are root) so a burst
    /// of trace events never overruns.
    pub fn set_rcvbuf(&self, bytes: i32) -> io::Result<()> {
        setsockopt(&self.fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &bytes)
            .or_else(|_| setsockopt(&self.fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &bytes))
    }

    pub fn join_group(&self, group: u32) -> io::Result<()> {
        setsockopt(&self.fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &group)
    }

    pub fn set_timeout(&self, d: Duration) -> io::Result<()> {
        let tv = libc::timeval {
            tv_sec: d.as_secs() as libc::time_t,
            tv_usec: d.subsec_micros() as libc::suseconds_t,
        };
        setsockopt(&self.fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv)
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    pub fn send(&self, msg: &[u8]) -> io::Result<()> {
        // SAFETY: sockaddr_nl zeroed = the kernel (pid 0), a valid address.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: msg and sa are valid for the lengths given.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&sa as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Receives one datagram (possibly several messages) into the internal
    /// buffer. Times out with `WouldBlock`/`TimedOut` per [`Self::set_timeout`].
    pub fn recv(&mut self) -> io::Result<&[u8]> {
        // SAFETY: buf is a valid writable region of its length.
        let n = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                self.buf.as_mut_ptr().cast(),
                self.buf.len(),
                0,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(&self.buf[..n as usize])
    }

    /// Sends a request that asks for an ACK and waits for it, skipping any
    /// unrelated messages (there are none during setup).
    pub fn request_ack(&mut self, msg: &mut MsgBuf) -> io::Result<()> {
        let seq = self.next_seq();
        msg.set_seq(seq);
        self.send(msg.finish())?;
        loop {
            let data = self.recv()?;
            let mut result = None;
            for m in Messages(data) {
                if m.kind == NLMSG_ERROR && m.seq == seq {
                    result = Some(nlmsg_error_code(m.payload));
                }
            }
            match result {
                Some(0) => return Ok(()),
                Some(e) => return Err(io::Error::from_raw_os_error(-e)),
                None => continue,
            }
        }
    }
}

fn nlmsg_error_code(payload: &[u8]) -> i32 {
    payload.get(..4).map_or(-libc::EIO, |b| {
        i32::from_ne_bytes(b.try_into().unwrap_or_default())
    })
}

/// Builder of one nfnetlink message (netlink header + `nfgenmsg` + attributes).
pub(crate) struct MsgBuf {
    b: Vec<u8>,
    nests: Vec<usize>,
}

impl MsgBuf {
    pub fn new(subsys: u16, msg: u16, flags: u16, family: u8, res_id: u16) -> Self {
        let mut b = Vec::with_capacity(128);
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(&((subsys << 8) | msg).to_ne_bytes());
        b.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes()); // seq
        b.extend_from_slice(&0u32.to_ne_bytes()); // pid
        b.push(family);
        b.push(0); // NFNETLINK_V0
        b.extend_from_slice(&res_id.to_be_bytes());
        MsgBuf {
            b,
            nests: Vec::new(),
        }
    }

    fn set_seq(&mut self, seq: u32) {
        self.b[8..12].copy_from_slice(&seq.to_ne_bytes());
    }

    pub fn attr(&mut self, ty: u16, data: &[u8]) -> &mut Self {
        let len = 4 + data.len();
        self.b.extend_from_slice(&(len as u16).to_ne_bytes());
        self.b.extend_from_slice(&ty.to_ne_bytes());
        self.b.extend_from_slice(data);
        self.b.resize(align4(self.b.len()), 0);
        self
    }

    pub fn begin(&mut self, ty: u16) -> &mut Self {
        self.nests.push(self.b.len());
        self.b.extend_from_slice(&0u16.to_ne_bytes());
        self.b.extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        self
    }

    pub fn end(&mut self) -> &mut Self {
        if let Some(at) = self.nests.pop() {
            let len = (self.b.len() - at) as u16;
            self.b[at..at + 2].copy_from_slice(&len.to_ne_bytes());
        }
        self
    }

    pub fn finish(&mut self) -> &[u8] {
        let len = self.b.len() as u32;
        self.b[..4].copy_from_slice(&len.to_ne_bytes());
        &self.b
    }
}

/// One netlink message inside a datagram.
pub(crate) struct Msg<'a> {
    pub kind: u16,
    pub seq: u32,
    /// After the netlink header (for nfnetlink: starting with `nfgenmsg`).
    pub payload: &'a [u8],
}

/// Iterator over the messages of a datagram; stops at anything malformed.
pub(crate) struct Messages<'a>(pub &'a [u8]);

impl<'a> Iterator for Messages<'a> {
    type Item = Msg<'a>;
    fn next(&mut self) -> Option<Msg<'a>> {
        let d = self.0;
        if d.len() < NLMSG_HDRLEN {
            return None;
        }
        let len = u32::from_ne_bytes(d[0..4].try_into().ok()?) as usize;
        if len < NLMSG_HDRLEN || len > d.len() {
            self.0 = &[];
            return None;
        }
        let kind = u16::from_ne_bytes(d[4..6].try_into().ok()?);
        let seq = u32::from_ne_bytes(d[8..12].try_into().ok()?);
        let payload = &d[NLMSG_HDRLEN..len];
        self.0 = &d[align4(len).min(d.len())..];
        Some(Msg { kind, seq, payload })
    }
}

/// Iterator over netlink attributes: (type without flag bits, data).
pub(crate) struct Attrs<'a>(pub &'a [u8]);

impl<'a> Iterator for Attrs<'a> {
    type Item = (u16, &'a [u8]);
    fn next(&mut self) -> Option<(u16, &'a [u8])> {
        let d = self.0;
        if d.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([d[0], d[1]]) as usize;
        let ty = u16::from_ne_bytes([d[2], d[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > d.len() {
            self.0 = &[];
            return None;
        }
        self.0 = &d[align4(len).min(d.len())..];
        Some((ty, &d[4..len]))
    }
}

fn be32(d: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(d.get(..4)?.try_into().ok()?))
}

/// A decoded message from the event socket.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Event<'a> {
    /// An NFLOG packet: its group, prefix (without the NUL), payload start.
    Log {
        group: u16,
        prefix: &'a [u8],
        payload: &'a [u8],
    },
    Trace(Trace<'a>),
    /// `NLMSG_ERROR` (e.g. an overrun notice) with its errno.
    Error(i32),
    Other,
}

/// One nf_tables trace event.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Trace<'a> {
    pub nfproto: u8,
    pub table: &'a [u8],
    pub chain: &'a [u8],
    pub handle: Option<u64>,
    /// `NFT_TRACETYPE_*`: 1 policy, 2 return, 3 rule.
    pub kind: u32,
    /// The rule's verdict code (`NF_*` or negative `NFT_*`).
    pub verdict: Option<i32>,
    /// The base chain's policy, for policy events.
    pub policy: Option<u32>,
}

pub(crate) const TRACE_POLICY: u32 = 1;
pub(crate) const TRACE_RULE: u32 = 3;

fn cstr(d: &[u8]) -> &[u8] {
    d.iter().position(|&c| c == 0).map_or(d, |n| &d[..n])
}

pub(crate) fn decode_event<'a>(m: &Msg<'a>) -> Event<'a> {
    if m.kind == NLMSG_ERROR {
        return Event::Error(nlmsg_error_code(m.payload));
    }
    if m.kind == NLMSG_NOOP || m.kind == NLMSG_DONE || m.payload.len() < NFGEN_HDRLEN {
        return Event::Other;
    }
    let subsys = m.kind >> 8;
    let msg = m.kind & 0xff;
    let attrs = Attrs(&m.payload[NFGEN_HDRLEN..]);
    match (subsys, msg) {
        (NFNL_SUBSYS_ULOG, NFULNL_MSG_PACKET) => {
            let group = u16::from_be_bytes([m.payload[2], m.payload[3]]);
            let (mut prefix, mut payload): (&[u8], &[u8]) = (&[], &[]);
            for (ty, d) in attrs {
                match ty {
                    NFULA_PREFIX => prefix = cstr(d),
                    NFULA_PAYLOAD => payload = d,
                    _ => {}
                }
            }
            Event::Log {
                group,
                prefix,
                payload,
            }
        }
        (NFNL_SUBSYS_NFTABLES, NFT_MSG_TRACE) => {
            let mut t = Trace {
                nfproto: m.payload[0],
                ..Trace::default()
            };
            for (ty, d) in attrs {
                match ty {
                    NFTA_TRACE_TABLE => t.table = cstr(d),
                    NFTA_TRACE_CHAIN => t.chain = cstr(d),
                    NFTA_TRACE_RULE_HANDLE => {
                        t.handle = d
                            .get(..8)
                            .map(|b| u64::from_be_bytes(b.try_into().unwrap_or_default()))
                    }
                    NFTA_TRACE_TYPE => t.kind = be32(d).unwrap_or(0),
                    NFTA_TRACE_VERDICT => {
                        for (vt, vd) in Attrs(d) {
                            if vt == NFTA_VERDICT_CODE {
                                t.verdict = be32(vd).map(|v| v as i32);
                            }
                        }
                    }
                    NFTA_TRACE_NFPROTO => t.nfproto = be32(d).unwrap_or(0) as u8,
                    NFTA_TRACE_POLICY => t.policy = be32(d),
                    _ => {}
                }
            }
            Event::Trace(t)
        }
        _ => Event::Other,
    }
}

/// Binds the socket to NFLOG `group`, copying `copy_range` bytes of each
/// packet, and flushing every message at once (queue threshold 1), so log
/// messages interleave with trace events in kernel order.
pub(crate) fn nflog_bind(sock: &mut NlSocket, group: u16, copy_range: u32) -> io::Result<()> {
    let mut m = MsgBuf::new(
        NFNL_SUBSYS_ULOG,
        NFULNL_MSG_CONFIG,
        NLM_F_ACK,
        libc::AF_UNSPEC as u8,
        group,
    );
    m.attr(NFULA_CFG_CMD, &[NFULNL_CFG_CMD_BIND]);
    sock.request_ack(&mut m)?;
    let mut m = MsgBuf::new(
        NFNL_SUBSYS_ULOG,
        NFULNL_MSG_CONFIG,
        NLM_F_ACK,
        libc::AF_UNSPEC as u8,
        group,
    );
    let mut mode = copy_range.to_be_bytes().to_vec();
    mode.extend_from_slice(&[NFULNL_COPY_PACKET, 0]);
    m.attr(NFULA_CFG_MODE, &mode);
    m.attr(NFULA_CFG_QTHRESH, &1u32.to_be_bytes());
    m.attr(NFULA_CFG_TIMEOUT, &0u32.to_be_bytes());
    sock.request_ack(&mut m)
}

/// The parts of a conntrack entry a row shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CtEntry {
    pub status: u32,
    /// TCP conntrack state number, for TCP entries.
    pub tcp_state: Option<u8>,
}

/// Looks up the entry holding `tuple` in either direction (ctnetlink GET).
/// `Ok(None)` when there is none (or the tuple is one ctnetlink refuses,
/// e.g. an ICMP type without a reply type).
pub(crate) fn ct_get(sock: &mut NlSocket, t: &Tuple) -> io::Result<Option<CtEntry>> {
    let family = match t.src {
        IpAddr::V4(_) => libc::AF_INET,
        IpAddr::V6(_) => libc::AF_INET6,
    } as u8;
    let mut m = MsgBuf::new(NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_CT_GET, 0, family, 0);
    m.begin(CTA_TUPLE_ORIG).begin(CTA_TUPLE_IP);
    match (t.src, t.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            m.attr(CTA_IP_V4_SRC, &s.octets())
                .attr(CTA_IP_V4_DST, &d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            m.attr(CTA_IP_V6_SRC, &s.octets())
                .attr(CTA_IP_V6_DST, &d.octets());
        }
        _ => return Ok(None),
    }
    m.end()
        .begin(CTA_TUPLE_PROTO)
        .attr(CTA_PROTO_NUM, &[t.proto]);
    match t.l4 {
        TupleL4::Ports(s, d) => {
            m.attr(CTA_PROTO_SRC_PORT, &s.to_be_bytes())
                .attr(CTA_PROTO_DST_PORT, &d.to_be_bytes());
        }
        TupleL4::Icmp {
            id,
            icmp_type,
            code,
        } => {
            let base = if t.proto == ipproto::ICMPV6 {
                CTA_PROTO_ICMPV6_ID
            } else {
                CTA_PROTO_ICMP_ID
            };
            m.attr(base, &id.to_be_bytes())
                .attr(base + 1, &[icmp_type])
                .attr(base + 2, &[code]);
        }
        TupleL4::None => {}
    }
    m.end().end();
    let seq = sock.next_seq();
    m.set_seq(seq);
    sock.send(m.finish())?;
    loop {
        let data = sock.recv()?;
        for msg in Messages(data) {
            if msg.seq != seq {
                continue;
            }
            if msg.kind == NLMSG_ERROR {
                return match -nlmsg_error_code(msg.payload) {
                    0 | libc::ENOENT | libc::EINVAL | libc::EOPNOTSUPP => Ok(None),
                    e => Err(io::Error::from_raw_os_error(e)),
                };
            }
            if msg.kind == (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW {
                return Ok(Some(parse_ct(
                    msg.payload.get(NFGEN_HDRLEN..).unwrap_or(&[]),
                )));
            }
        }
    }
}

fn parse_ct(attrs: &[u8]) -> CtEntry {
    let mut e = CtEntry {
        status: 0,
        tcp_state: None,
    };
    for (ty, d) in Attrs(attrs) {
        match ty {
            CTA_STATUS => e.status = be32(d).unwrap_or(0),
            CTA_PROTOINFO => {
                for (pt, pd) in Attrs(d) {
                    if pt == CTA_PROTOINFO_TCP {
                        for (tt, td) in Attrs(pd) {
                            if tt == CTA_PROTOINFO_TCP_STATE {
                                e.tcp_state = td.first().copied();
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_and_parsers_agree() {
        let mut m = MsgBuf::new(NFNL_SUBSYS_ULOG, NFULNL_MSG_PACKET, 0, 2, 47471);
        m.attr(NFULA_PREFIX, b"S|FWD|NEW|ORIGINAL\0");
        m.begin(NFULA_PAYLOAD).attr(1, &[1, 2, 3]).end();
        let bytes = m.finish().to_vec();
        let msgs: Vec<_> = Messages(&bytes).collect();
        assert_eq!(msgs.len(), 1);
        match decode_event(&msgs[0]) {
            Event::Log {
                group,
                prefix,
                payload,
            } => {
                assert_eq!(group, 47471);
                assert_eq!(prefix, b"S|FWD|NEW|ORIGINAL");
                let inner: Vec<_> = Attrs(payload).collect();
                assert_eq!(inner, vec![(1, &[1u8, 2, 3][..])]);
            }
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn trace_event_decodes() {
        let mut m = MsgBuf::new(NFNL_SUBSYS_NFTABLES, NFT_MSG_TRACE, 0, 2, 0);
        m.attr(NFTA_TRACE_TABLE, b"filter\0")
            .attr(NFTA_TRACE_CHAIN, b"FORWARD\0")
            .attr(NFTA_TRACE_RULE_HANDLE, &7u64.to_be_bytes())
            .attr(NFTA_TRACE_TYPE, &TRACE_RULE.to_be_bytes())
            .begin(NFTA_TRACE_VERDICT)
            .attr(NFTA_VERDICT_CODE, &0u32.to_be_bytes())
            .end()
            .attr(NFTA_TRACE_NFPROTO, &2u32.to_be_bytes());
        let bytes = m.finish().to_vec();
        let msg = Messages(&bytes).next().unwrap();
        let Event::Trace(t) = decode_event(&msg) else {
            panic!()
        };
        assert_eq!(
            (t.table, t.chain, t.handle),
            (&b"filter"[..], &b"FORWARD"[..], Some(7))
        );
        assert_eq!((t.kind, t.verdict, t.nfproto), (TRACE_RULE, Some(0), 2));
    }

    #[test]
    fn truncated_datagram_is_not_trusted() {
        let mut m = MsgBuf::new(NFNL_SUBSYS_ULOG, NFULNL_MSG_PACKET, 0, 2, 0);
        m.attr(NFULA_PREFIX, b"x\0");
        let bytes = m.finish().to_vec();
        assert_eq!(Messages(&bytes[..bytes.len() - 2]).count(), 0);
        assert_eq!(Attrs(&[8, 0, 1, 0, 1]).count(), 0);
    }
}
