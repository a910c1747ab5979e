//! Packet builders: IPv4/IPv6 datagrams carrying TCP, UDP, ICMP or ICMPv6,
//! and the link-layer framing around them.
//!
//! A [`Pkt`] describes one datagram field by field and is turned into bytes by
//! [`Pkt::build`] / [`Pkt::build_into`], with every length and checksum
//! computed, unless a fault was asked for ([`Pkt::bad_ip_checksum`],
//! [`Pkt::bad_l4_checksum`], [`Pkt::udp_length`], arbitrary TCP flags). Faults
//! are the point of the crafted captures, which is why these builders are our
//! own rather than etherparse's `PacketBuilder`: that one always writes
//! consistent packets, and it cannot emit fragments or a header-only
//! serialisation for the benchmark's zero-copy payloads.
//!
//! Also here: IPv4/IPv6 fragmentation of a built datagram ([`fragment`]),
//! quoting a datagram in an ICMP error ([`quote`]), Ethernet and ARP frames.
//!
//! Not covered: IPv4 options, IPv6 extension headers other than the fragment
//! header, VLAN tags, and any link type but Ethernet and raw IP.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::synth::SynthError;
use crate::synth::csum::{Sum, checksum};
use crate::wire::{Family, ipproto, tcpflag};

/// Source and destination address of one datagram, of one family by
/// construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpPair {
    V4 { src: Ipv4Addr, dst: Ipv4Addr },
    V6 { src: Ipv6Addr, dst: Ipv6Addr },
}

impl IpPair {
    /// Pairs two addresses; they must be of the same family.
    pub fn new(src: IpAddr, dst: IpAddr) -> Result<Self, SynthError> {
        match (src, dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => Ok(IpPair::V4 { src, dst }),
            (IpAddr::V6(src), IpAddr::V6(dst)) => Ok(IpPair::V6 { src, dst }),
            _ => Err(SynthError::FamilyMismatch { src, dst }),
        }
    }

    pub fn family(&self) -> Family {
        match self {
            IpPair::V4 { .. } => Family::Ipv4,
            IpPair::V6 { .. } => Family::Ipv6,
        }
    }

    pub fn src(&self) -> IpAddr {
        match *self {
            IpPair::V4 { src, .. } => src.into(),
            IpPair::V6 { src, .. } => src.into(),
        }
    }

    pub fn dst(&self) -> IpAddr {
        match *self {
            IpPair::V4 { dst, .. } => dst.into(),
            IpPair::V6 { dst, .. } => dst.into(),
        }
    }

    /// The same pair seen from the other end.
    pub fn reversed(&self) -> Self {
        match *self {
            IpPair::V4 { src, dst } => IpPair::V4 { src: dst, dst: src },
            IpPair::V6 { src, dst } => IpPair::V6 { src: dst, dst: src },
        }
    }

    /// Pseudo-header sum for the TCP/UDP/ICMPv6 checksum (RFC 793 / RFC 8200
    /// section 8.1): addresses, protocol and upper-layer length.
    fn pseudo_sum(&self, proto: u8, l4_len: u32) -> Sum {
        match self {
            IpPair::V4 { src, dst } => Sum::new()
                .add_bytes(&src.octets())
                .add_bytes(&dst.octets())
                .add_u16(proto as u16)
                .add_u32(l4_len),
            IpPair::V6 { src, dst } => Sum::new()
                .add_bytes(&src.octets())
                .add_bytes(&dst.octets())
                .add_u32(l4_len)
                .add_u16(proto as u16),
        }
    }
}

impl From<(Ipv4Addr, Ipv4Addr)> for IpPair {
    fn from((src, dst): (Ipv4Addr, Ipv4Addr)) -> Self {
        IpPair::V4 { src, dst }
    }
}

impl From<(Ipv6Addr, Ipv6Addr)> for IpPair {
    fn from((src, dst): (Ipv6Addr, Ipv6Addr)) -> Self {
        IpPair::V6 { src, dst }
    }
}

/// Encoded TCP options, at most the 40 bytes a header can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpOpts {
    buf: [u8; 40],
    len: u8,
    /// Set when an option did not fit; reported by `build`.
    overflow: bool,
}

impl Default for TcpOpts {
    fn default() -> Self {
        TcpOpts {
            buf: [0; 40],
            len: 0,
            overflow: false,
        }
    }
}

impl TcpOpts {
    fn push(&mut self, bytes: &[u8]) {
        let at = self.len as usize;
        if at + bytes.len() > self.buf.len() {
            self.overflow = true;
            return;
        }
        self.buf[at..at + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len() as u8;
    }

    /// The options as encoded so far (without the padding `build` adds).
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }

    /// Length once padded to a multiple of four.
    fn padded_len(&self) -> usize {
        (self.len as usize).div_ceil(4) * 4
    }
}

/// The L4 part of a [`Pkt`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4Spec {
    Tcp {
        sport: u16,
        dport: u16,
        seq: u32,
        ack: u32,
        flags: u8,
        window: u16,
        urgent: u16,
        opts: TcpOpts,
    },
    Udp {
        sport: u16,
        dport: u16,
    },
    /// ICMP for an IPv4 pair, ICMPv6 for an IPv6 pair. `rest` is the second
    /// 32-bit word (id + sequence, the MTU of packet-too-big, a pointer, …).
    Icmp {
        icmp_type: u8,
        code: u8,
        rest: [u8; 4],
    },
    /// No L4 header of ours: the payload follows the IP header as is.
    Raw {
        proto: u8,
    },
}

/// Deliberate damage, all off by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    pub bad_ip_checksum: bool,
    pub bad_l4_checksum: bool,
    /// UDP over IPv4 only: send checksum 0 ("none computed").
    pub no_udp_checksum: bool,
    /// Write this into the UDP length field instead of the true length.
    pub udp_length: Option<u16>,
}

/// One IP datagram, described field by field. Built with the constructors
/// ([`Pkt::tcp`], [`Pkt::udp`], [`Pkt::icmp`], …) and the chained setters.
/// Setters for another protocol's fields (say `seq` on a UDP packet) do
/// nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pkt<'a> {
    pub ips: IpPair,
    /// IPv4 TTL or IPv6 hop limit.
    pub ttl: u8,
    /// IPv4 TOS / IPv6 traffic class.
    pub tos: u8,
    /// IPv4 identification.
    pub ip_id: u16,
    pub dont_fragment: bool,
    /// IPv6 flow label (20 bits).
    pub flow_label: u32,
    pub l4: L4Spec,
    pub payload: &'a [u8],
    pub faults: Faults,
}

/// Default TTL/hop limit, as Linux sends.
pub const DEFAULT_TTL: u8 = 64;

impl<'a> Pkt<'a> {
    fn with_l4(ips: IpPair, l4: L4Spec) -> Self {
        Pkt {
            ips,
            ttl: DEFAULT_TTL,
            tos: 0,
            ip_id: 0,
            dont_fragment: true,
            flow_label: 0,
            l4,
            payload: &[],
            faults: Faults::default(),
        }
    }

    /// A TCP segment with the given flags; seq/ack/window default to 0/0/64240.
    pub fn tcp(ips: impl Into<IpPair>, sport: u16, dport: u16, flags: u8) -> Self {
        Self::with_l4(
            ips.into(),
            L4Spec::Tcp {
                sport,
                dport,
                seq: 0,
                ack: 0,
                flags,
                window: 64240,
                urgent: 0,
                opts: TcpOpts::default(),
            },
        )
    }

    pub fn udp(ips: impl Into<IpPair>, sport: u16, dport: u16) -> Self {
        Self::with_l4(ips.into(), L4Spec::Udp { sport, dport })
    }

    /// ICMP (IPv4) or ICMPv6 (IPv6), by the pair's family.
    pub fn icmp(ips: impl Into<IpPair>, icmp_type: u8, code: u8, rest: [u8; 4]) -> Self {
        Self::with_l4(
            ips.into(),
            L4Spec::Icmp {
                icmp_type,
                code,
                rest,
            },
        )
    }

    /// Echo request (type 8, or 128 for IPv6).
    pub fn echo_request(ips: impl Into<IpPair>, id: u16, seq: u16) -> Self {
        let ips = ips.into();
        let t = match ips.family() {
            Family::Ipv4 => icmp::ECHO_REQUEST,
            Family::Ipv6 => icmp6::ECHO_REQUEST,
        };
        Self::icmp(ips, t, 0, id_seq(id, seq))
    }

    /// Echo reply (type 0, or 129 for IPv6).
    pub fn echo_reply(ips: impl Into<IpPair>, id: u16, seq: u16) -> Self {
        let ips = ips.into();
        let t = match ips.family() {
            Family::Ipv4 => icmp::ECHO_REPLY,
            Family::Ipv6 => icmp6::ECHO_REPLY,
        };
        Self::icmp(ips, t, 0, id_seq(id, seq))
    }

    /// An ICMP error quoting `original` (a datagram built earlier), trimmed by
    /// [`quote`] to what a Linux host would include.
    pub fn icmp_error(
        ips: impl Into<IpPair>,
        icmp_type: u8,
        code: u8,
        rest: [u8; 4],
        original: &'a [u8],
    ) -> Self {
        let ips = ips.into();
        let q = quote(ips.family(), original);
        Self::icmp(ips, icmp_type, code, rest).payload(q)
    }

    /// A datagram of another protocol (generic conntrack tracker).
    pub fn raw(ips: impl Into<IpPair>, proto: u8) -> Self {
        Self::with_l4(ips.into(), L4Spec::Raw { proto })
    }

    pub fn payload(mut self, p: &'a [u8]) -> Self {
        self.payload = p;
        self
    }
    pub fn ttl(mut self, ttl: u8) -> Self {
        self.ttl = ttl;
        self
    }
    pub fn tos(mut self, tos: u8) -> Self {
        self.tos = tos;
        self
    }
    pub fn ip_id(mut self, id: u16) -> Self {
        self.ip_id = id;
        self
    }
    pub fn dont_fragment(mut self, df: bool) -> Self {
        self.dont_fragment = df;
        self
    }
    pub fn flow_label(mut self, label: u32) -> Self {
        self.flow_label = label & 0xf_ffff;
        self
    }

    fn tcp_mut(
        &mut self,
    ) -> Option<(
        &mut u32,
        &mut u32,
        &mut u8,
        &mut u16,
        &mut u16,
        &mut TcpOpts,
    )> {
        match &mut self.l4 {
            L4Spec::Tcp {
                seq,
                ack,
                flags,
                window,
                urgent,
                opts,
                ..
            } => Some((seq, ack, flags, window, urgent, opts)),
            _ => None,
        }
    }

    pub fn seq(mut self, v: u32) -> Self {
        if let Some(t) = self.tcp_mut() {
            *t.0 = v;
        }
        self
    }
    /// Sets the acknowledgment number (the ACK flag is set separately).
    pub fn ack_num(mut self, v: u32) -> Self {
        if let Some(t) = self.tcp_mut() {
            *t.1 = v;
        }
        self
    }
    pub fn flags(mut self, v: u8) -> Self {
        if let Some(t) = self.tcp_mut() {
            *t.2 = v;
        }
        self
    }
    /// The raw 16-bit window field (scaling is the sender's business).
    pub fn window(mut self, v: u16) -> Self {
        if let Some(t) = self.tcp_mut() {
            *t.3 = v;
        }
        self
    }
    pub fn urgent(mut self, v: u16) -> Self {
        if let Some(t) = self.tcp_mut() {
            *t.4 = v;
        }
        self
    }
    fn opt(mut self, bytes: &[u8]) -> Self {
        if let Some(t) = self.tcp_mut() {
            t.5.push(bytes);
        }
        self
    }
    /// Removes all TCP options.
    pub fn clear_options(mut self) -> Self {
        if let Some(t) = self.tcp_mut() {
            *t.5 = TcpOpts::default();
        }
        self
    }
    pub fn mss(self, mss: u16) -> Self {
        let m = mss.to_be_bytes();
        self.opt(&[tcpopt::MSS, 4, m[0], m[1]])
    }
    /// Window scale, preceded by a NOP so it stays aligned as Linux sends it.
    pub fn wscale(self, shift: u8) -> Self {
        self.opt(&[tcpopt::NOP, tcpopt::WSCALE, 3, shift])
    }
    pub fn sack_perm(self) -> Self {
        self.opt(&[tcpopt::NOP, tcpopt::NOP, tcpopt::SACK_PERM, 2])
    }
    /// SACK blocks (left edge, right edge); at most four fit.
    pub fn sack(self, blocks: &[(u32, u32)]) -> Self {
        let mut b = [0u8; 36];
        b[0] = tcpopt::NOP;
        b[1] = tcpopt::NOP;
        b[2] = tcpopt::SACK;
        b[3] = (2 + 8 * blocks.len()) as u8;
        let mut at = 4;
        for &(l, r) in blocks.iter().take(4) {
            b[at..at + 4].copy_from_slice(&l.to_be_bytes());
            b[at + 4..at + 8].copy_from_slice(&r.to_be_bytes());
            at += 8;
        }
        if blocks.len() > 4 {
            // Report the overflow rather than silently dropping blocks.
            return self.opt(&[0u8; 41]);
        }
        self.opt(&b[..at])
    }
    /// Timestamps option (TSval, TSecr), NOP-NOP aligned.
    pub fn timestamp(self, val: u32, ecr: u32) -> Self {
        let v = val.to_be_bytes();
        let e = ecr.to_be_bytes();
        self.opt(&[
            tcpopt::NOP,
            tcpopt::NOP,
            tcpopt::TIMESTAMP,
            10,
            v[0],
            v[1],
            v[2],
            v[3],
            e[0],
            e[1],
            e[2],
            e[3],
        ])
    }
    /// Arbitrary option bytes, for malformed-option cases.
    pub fn raw_option(self, bytes: &[u8]) -> Self {
        self.opt(bytes)
    }

    pub fn bad_ip_checksum(mut self) -> Self {
        self.faults.bad_ip_checksum = true;
        self
    }
    pub fn bad_l4_checksum(mut self) -> Self {
        self.faults.bad_l4_checksum = true;
        self
    }
    pub fn no_udp_checksum(mut self) -> Self {
        self.faults.no_udp_checksum = true;
        self
    }
    pub fn udp_length(mut self, len: u16) -> Self {
        self.faults.udp_length = Some(len);
        self
    }

    /// IP protocol number of the L4 part.
    pub fn proto(&self) -> u8 {
        match self.l4 {
            L4Spec::Tcp { .. } => ipproto::TCP,
            L4Spec::Udp { .. } => ipproto::UDP,
            L4Spec::Icmp { .. } => match self.ips.family() {
                Family::Ipv4 => ipproto::ICMP,
                Family::Ipv6 => ipproto::ICMPV6,
            },
            L4Spec::Raw { proto } => proto,
        }
    }

    /// TCP flags, 0 for other protocols.
    pub fn tcp_flags(&self) -> u8 {
        match self.l4 {
            L4Spec::Tcp { flags, .. } => flags,
            _ => 0,
        }
    }

    fn l4_header_len(&self) -> usize {
        match &self.l4 {
            L4Spec::Tcp { opts, .. } => 20 + opts.padded_len(),
            L4Spec::Udp { .. } | L4Spec::Icmp { .. } => 8,
            L4Spec::Raw { .. } => 0,
        }
    }

    fn ip_header_len(&self) -> usize {
        match self.ips.family() {
            Family::Ipv4 => 20,
            Family::Ipv6 => 40,
        }
    }

    /// Total datagram length in bytes.
    pub fn len(&self) -> usize {
        self.ip_header_len() + self.l4_header_len() + self.payload.len()
    }

    /// Never true: every datagram has at least an IP header.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The datagram as a new buffer.
    pub fn build(&self) -> Result<Vec<u8>, SynthError> {
        let mut v = Vec::with_capacity(self.len());
        self.build_into(&mut v)?;
        Ok(v)
    }

    /// Appends the whole datagram to `out`.
    pub fn build_into(&self, out: &mut Vec<u8>) -> Result<(), SynthError> {
        self.build_headers_into(out)?;
        out.extend_from_slice(self.payload);
        Ok(())
    }

    /// Appends the IP and L4 headers to `out`, with lengths and checksums
    /// covering the payload, but not the payload itself: the caller writes
    /// it after the headers (the benchmark generator does, from a shared
    /// buffer, without copying it).
    pub fn build_headers_into(&self, out: &mut Vec<u8>) -> Result<(), SynthError> {
        self.headers_into(out, None)
    }

    /// As [`Pkt::build_headers_into`], with the payload's checksum sum
    /// supplied by the caller (from [`SliceSums`](crate::synth::csum::SliceSums))
    /// instead of read from the payload.
    pub fn build_headers_with_payload_sum(
        &self,
        out: &mut Vec<u8>,
        payload_sum: Sum,
    ) -> Result<(), SynthError> {
        self.headers_into(out, Some(payload_sum))
    }

    fn headers_into(&self, out: &mut Vec<u8>, payload_sum: Option<Sum>) -> Result<(), SynthError> {
        if let L4Spec::Tcp { opts, .. } = &self.l4
            && opts.overflow
        {
            return Err(SynthError::TcpOptionsTooLong);
        }
        let l4_len = self.l4_header_len() + self.payload.len();
        let total = self.ip_header_len() + l4_len;
        let limit = match self.ips.family() {
            Family::Ipv4 => 65535,
            Family::Ipv6 => 65535 + 40,
        };
        if total > limit {
            return Err(SynthError::TooLong { len: total });
        }
        let proto = self.proto();
        let ip_start = out.len();
        match self.ips {
            IpPair::V4 { src, dst } => {
                let flags_frag: u16 = if self.dont_fragment { 0x4000 } else { 0 };
                out.extend_from_slice(&[0x45, self.tos]);
                out.extend_from_slice(&(total as u16).to_be_bytes());
                out.extend_from_slice(&self.ip_id.to_be_bytes());
                out.extend_from_slice(&flags_frag.to_be_bytes());
                out.extend_from_slice(&[self.ttl, proto, 0, 0]);
                out.extend_from_slice(&src.octets());
                out.extend_from_slice(&dst.octets());
                let mut c = checksum(&out[ip_start..ip_start + 20]);
                if self.faults.bad_ip_checksum {
                    c = corrupt(c);
                }
                out[ip_start + 10..ip_start + 12].copy_from_slice(&c.to_be_bytes());
            }
            IpPair::V6 { src, dst } => {
                let first: u32 =
                    (6 << 28) | ((self.tos as u32) << 20) | (self.flow_label & 0xf_ffff);
                out.extend_from_slice(&first.to_be_bytes());
                out.extend_from_slice(&(l4_len as u16).to_be_bytes());
                out.extend_from_slice(&[proto, self.ttl]);
                out.extend_from_slice(&src.octets());
                out.extend_from_slice(&dst.octets());
            }
        }
        let l4_start = out.len();
        match self.l4 {
            L4Spec::Tcp {
                sport,
                dport,
                seq,
                ack,
                flags,
                window,
                urgent,
                opts,
            } => {
                let hlen = self.l4_header_len();
                out.extend_from_slice(&sport.to_be_bytes());
                out.extend_from_slice(&dport.to_be_bytes());
                out.extend_from_slice(&seq.to_be_bytes());
                out.extend_from_slice(&ack.to_be_bytes());
                out.extend_from_slice(&[((hlen / 4) as u8) << 4, flags]);
                out.extend_from_slice(&window.to_be_bytes());
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(&urgent.to_be_bytes());
                out.extend_from_slice(opts.bytes());
                // Pad with end-of-list, as stacks do.
                out.resize(l4_start + hlen, tcpopt::EOL);
            }
            L4Spec::Udp { sport, dport } => {
                let len = self.faults.udp_length.unwrap_or(l4_len as u16);
                out.extend_from_slice(&sport.to_be_bytes());
                out.extend_from_slice(&dport.to_be_bytes());
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(&[0, 0]);
            }
            L4Spec::Icmp {
                icmp_type,
                code,
                rest,
            } => {
                out.extend_from_slice(&[icmp_type, code, 0, 0]);
                out.extend_from_slice(&rest);
            }
            L4Spec::Raw { .. } => {}
        }
        let csum_at = match self.l4 {
            L4Spec::Tcp { .. } => Some(16),
            L4Spec::Udp { .. } => Some(6),
            L4Spec::Icmp { .. } => Some(2),
            L4Spec::Raw { .. } => None,
        };
        if let Some(at) = csum_at {
            let base = match (&self.l4, self.ips.family()) {
                // ICMPv4 has no pseudo-header.
                (L4Spec::Icmp { .. }, Family::Ipv4) => Sum::new(),
                _ => self.ips.pseudo_sum(proto, l4_len as u32),
            };
            let hdr = base.add_bytes(&out[l4_start..]);
            // Every L4 header has an even length, so the payload's words stay
            // aligned and a sum computed for it alone can be added as is.
            let mut c = match payload_sum {
                Some(ps) => hdr.add_sum(ps),
                None => hdr.add_bytes(self.payload),
            }
            .finish();
            if let L4Spec::Udp { .. } = self.l4 {
                // UDP sends an all-ones checksum for a computed zero (RFC 768).
                if c == 0 {
                    c = 0xffff;
                }
                if self.faults.no_udp_checksum {
                    c = 0;
                }
            }
            if self.faults.bad_l4_checksum {
                c = corrupt(c);
            }
            out[l4_start + at..l4_start + at + 2].copy_from_slice(&c.to_be_bytes());
        }
        Ok(())
    }
}

/// A checksum that is certainly wrong, and for UDP not the "no checksum" 0.
fn corrupt(c: u16) -> u16 {
    let bad = c ^ 0x0101;
    if bad == 0 || bad == 0xffff {
        0x1234
    } else {
        bad
    }
}

fn id_seq(id: u16, seq: u16) -> [u8; 4] {
    let i = id.to_be_bytes();
    let s = seq.to_be_bytes();
    [i[0], i[1], s[0], s[1]]
}

/// The second word of a packet-too-big / fragmentation-needed message: the
/// next-hop MTU (ICMPv6: 32 bits; ICMPv4 type 3 code 4: the low 16 bits).
pub fn mtu_word(family: Family, mtu: u32) -> [u8; 4] {
    match family {
        Family::Ipv4 => [0, 0, (mtu >> 8) as u8, mtu as u8],
        Family::Ipv6 => mtu.to_be_bytes(),
    }
}

/// How much of `original` a Linux host quotes in an ICMP error: as much as
/// keeps the error within 576 bytes (IPv4, RFC 1812 4.3.2.3) or the minimum
/// MTU of 1280 (IPv6, RFC 4443 2.4(c)).
pub fn quote(family: Family, original: &[u8]) -> &[u8] {
    let room = match family {
        Family::Ipv4 => 576 - 20 - 8,
        Family::Ipv6 => 1280 - 40 - 8,
    };
    &original[..original.len().min(room)]
}

/// ICMPv4 type numbers used by the generators.
pub mod icmp {
    pub const ECHO_REPLY: u8 = 0;
    pub const DEST_UNREACH: u8 = 3;
    pub const REDIRECT: u8 = 5;
    pub const ECHO_REQUEST: u8 = 8;
    pub const ROUTER_ADVERT: u8 = 9;
    pub const TIME_EXCEEDED: u8 = 11;
    pub const PARAM_PROBLEM: u8 = 12;
    pub const TIMESTAMP: u8 = 13;
    pub const TIMESTAMP_REPLY: u8 = 14;
    /// Destination-unreachable codes.
    pub const NET_UNREACH: u8 = 0;
    pub const HOST_UNREACH: u8 = 1;
    pub const PORT_UNREACH: u8 = 3;
    pub const FRAG_NEEDED: u8 = 4;
    pub const ADMIN_PROHIBITED: u8 = 13;
}

/// ICMPv6 type numbers used by the generators.
pub mod icmp6 {
    pub const DEST_UNREACH: u8 = 1;
    pub const PACKET_TOO_BIG: u8 = 2;
    pub const TIME_EXCEEDED: u8 = 3;
    pub const PARAM_PROBLEM: u8 = 4;
    pub const ECHO_REQUEST: u8 = 128;
    pub const ECHO_REPLY: u8 = 129;
    pub const ROUTER_SOLICIT: u8 = 133;
    pub const ROUTER_ADVERT: u8 = 134;
    pub const NEIGHBOR_SOLICIT: u8 = 135;
    pub const NEIGHBOR_ADVERT: u8 = 136;
    /// Destination-unreachable code 4.
    pub const PORT_UNREACH: u8 = 4;
    pub const ADMIN_PROHIBITED: u8 = 1;
}

/// TCP option kinds.
pub mod tcpopt {
    pub const EOL: u8 = 0;
    pub const NOP: u8 = 1;
    pub const MSS: u8 = 2;
    pub const WSCALE: u8 = 3;
    pub const SACK_PERM: u8 = 4;
    pub const SACK: u8 = 5;
    pub const TIMESTAMP: u8 = 8;
}

/// Short names for flag combinations, so scenarios read like tcpdump.
pub mod flags {
    use super::tcpflag::*;
    pub const S: u8 = SYN;
    pub const SA: u8 = SYN | ACK;
    pub const A: u8 = ACK;
    pub const PA: u8 = PSH | ACK;
    pub const FA: u8 = FIN | ACK;
    pub const R: u8 = RST;
    pub const RA: u8 = RST | ACK;
    pub const F: u8 = FIN;
    pub const SF: u8 = SYN | FIN;
    pub const SR: u8 = SYN | RST;
    pub const NULL: u8 = 0;
    /// FIN+PSH+URG, nmap's "xmas" scan.
    pub const XMAS: u8 = FIN | PSH | URG;
    pub const U: u8 = URG;
    pub const SAU: u8 = SYN | ACK | URG;
    pub const SEC: u8 = SYN | ECE | CWR;
}

/// Fragments a datagram built by [`Pkt::build`] so that no fragment carries
/// more than `max_data` bytes of the original payload (rounded down to a
/// multiple of 8). IPv4 fragments reuse the header's identification and clear
/// DF; IPv6 fragments get a fragment header with identification `v6_id`.
pub fn fragment(datagram: &[u8], max_data: usize, v6_id: u32) -> Result<Vec<Vec<u8>>, SynthError> {
    let chunk = max_data / 8 * 8;
    if chunk == 0 {
        return Err(SynthError::FragmentSize { max_data });
    }
    match datagram.first().map(|b| b >> 4) {
        Some(4) if datagram.len() >= 20 => {
            let hl = ((datagram[0] & 0x0f) as usize) * 4;
            if hl < 20 || datagram.len() < hl {
                return Err(SynthError::NotADatagram);
            }
            let (hdr, data) = datagram.split_at(hl);
            let mut out = Vec::new();
            let mut off = 0;
            while off < data.len() || (off == 0 && data.is_empty()) {
                let end = (off + chunk).min(data.len());
                let more = end < data.len();
                let mut f = Vec::with_capacity(hl + end - off);
                f.extend_from_slice(hdr);
                f.extend_from_slice(&data[off..end]);
                let total = f.len() as u16;
                f[2..4].copy_from_slice(&total.to_be_bytes());
                let ff: u16 = ((off / 8) as u16 & 0x1fff) | if more { 0x2000 } else { 0 };
                f[6..8].copy_from_slice(&ff.to_be_bytes());
                f[10] = 0;
                f[11] = 0;
                let c = checksum(&f[..hl]);
                f[10..12].copy_from_slice(&c.to_be_bytes());
                out.push(f);
                if !more {
                    break;
                }
                off = end;
            }
            Ok(out)
        }
        Some(6) if datagram.len() >= 40 => {
            let (hdr, data) = datagram.split_at(40);
            let next = hdr[6];
            let mut out = Vec::new();
            let mut off = 0;
            loop {
                let end = (off + chunk).min(data.len());
                let more = end < data.len();
                let mut f = Vec::with_capacity(48 + end - off);
                f.extend_from_slice(hdr);
                f[6] = IPV6_FRAGMENT_HEADER;
                let plen = (8 + end - off) as u16;
                f[4..6].copy_from_slice(&plen.to_be_bytes());
                let off_m: u16 = ((off / 8) as u16) << 3 | u16::from(more);
                f.extend_from_slice(&[next, 0]);
                f.extend_from_slice(&off_m.to_be_bytes());
                f.extend_from_slice(&v6_id.to_be_bytes());
                f.extend_from_slice(&data[off..end]);
                out.push(f);
                if !more {
                    break;
                }
                off = end;
            }
            Ok(out)
        }
        _ => Err(SynthError::NotADatagram),
    }
}

/// IPv6 next-header value of the fragment header.
pub const IPV6_FRAGMENT_HEADER: u8 = 44;

/// A MAC address for an IP address: unicast addresses get a locally
/// administered MAC derived from the address; multicast and broadcast
/// addresses get the MAC the standards map them to (RFC 1112 section 6.4,
/// RFC 2464 section 7), so a reader classifies the frame as a real NIC would.
pub fn mac_for(addr: IpAddr) -> [u8; 6] {
    match addr {
        IpAddr::V4(a) => {
            let o = a.octets();
            if a.is_broadcast() {
                [0xff; 6]
            } else if a.is_multicast() {
                [0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]]
            } else {
                [0x02, 0x00, o[0], o[1], o[2], o[3]]
            }
        }
        IpAddr::V6(a) => {
            let o = a.octets();
            if a.is_multicast() {
                [0x33, 0x33, o[12], o[13], o[14], o[15]]
            } else {
                [0x02, 0x06, o[12], o[13], o[14], o[15]]
            }
        }
    }
}

/// Ethertypes.
pub mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const ARP: u16 = 0x0806;
    pub const IPV6: u16 = 0x86dd;
}

/// Minimum Ethernet frame without FCS; shorter frames are padded on the wire
/// and a capture on the receiving side shows the padding.
pub const ETH_MIN_FRAME: usize = 60;

/// Appends an Ethernet II header to `out`; the caller appends the payload and
/// then calls [`pad_ethernet`].
pub fn ethernet_header(out: &mut Vec<u8>, dst: [u8; 6], src: [u8; 6], ethertype: u16) {
    out.extend_from_slice(&dst);
    out.extend_from_slice(&src);
    out.extend_from_slice(&ethertype.to_be_bytes());
}

/// Pads the frame starting at `frame_start` in `out` to the Ethernet minimum
/// with zero bytes.
pub fn pad_ethernet(out: &mut Vec<u8>, frame_start: usize) {
    let len = out.len() - frame_start;
    if len < ETH_MIN_FRAME {
        out.resize(frame_start + ETH_MIN_FRAME, 0);
    }
}

/// Wraps an IP datagram in an Ethernet frame, MACs from [`mac_for`].
pub fn ethernet_frame(datagram: &[u8]) -> Result<Vec<u8>, SynthError> {
    let (src, dst, et) = match datagram.first().map(|b| b >> 4) {
        Some(4) if datagram.len() >= 20 => {
            let s: [u8; 4] = datagram[12..16]
                .try_into()
                .map_err(|_| SynthError::NotADatagram)?;
            let d: [u8; 4] = datagram[16..20]
                .try_into()
                .map_err(|_| SynthError::NotADatagram)?;
            (IpAddr::from(s), IpAddr::from(d), ethertype::IPV4)
        }
        Some(6) if datagram.len() >= 40 => {
            let s: [u8; 16] = datagram[8..24]
                .try_into()
                .map_err(|_| SynthError::NotADatagram)?;
            let d: [u8; 16] = datagram[24..40]
                .try_into()
                .map_err(|_| SynthError::NotADatagram)?;
            (IpAddr::from(s), IpAddr::from(d), ethertype::IPV6)
        }
        _ => return Err(SynthError::NotADatagram),
    };
    let mut f = Vec::with_capacity(14 + datagram.len().max(46));
    ethernet_header(&mut f, mac_for(dst), mac_for(src), et);
    f.extend_from_slice(datagram);
    pad_ethernet(&mut f, 0);
    Ok(f)
}

/// ARP operation codes.
pub mod arp {
    pub const REQUEST: u16 = 1;
    pub const REPLY: u16 = 2;
}

/// An Ethernet/IPv4 ARP frame (RFC 826). A request is broadcast and carries a
/// zero target MAC; a reply is sent to the target.
pub fn arp_frame(op: u16, sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let smac = mac_for(sender.into());
    let (eth_dst, tmac) = if op == arp::REQUEST {
        ([0xff; 6], [0; 6])
    } else {
        let t = mac_for(target.into());
        (t, t)
    };
    let mut f = Vec::with_capacity(ETH_MIN_FRAME);
    ethernet_header(&mut f, eth_dst, smac, ethertype::ARP);
    f.extend_from_slice(&[0x00, 0x01, 0x08, 0x00, 6, 4]);
    f.extend_from_slice(&op.to_be_bytes());
    f.extend_from_slice(&smac);
    f.extend_from_slice(&sender.octets());
    f.extend_from_slice(&tmac);
    f.extend_from_slice(&target.octets());
    pad_ethernet(&mut f, 0);
    f
}

/// The body of a neighbour solicitation (RFC 4861 4.3): reserved word is the
/// ICMPv6 `rest`, then the target address and a source link-layer address
/// option. Returned as an owned buffer to pass to [`Pkt::payload`].
pub fn neighbor_solicit_body(target: Ipv6Addr, src_mac: [u8; 6]) -> [u8; 24] {
    let mut b = [0u8; 24];
    b[..16].copy_from_slice(&target.octets());
    b[16] = 1; // source link-layer address
    b[17] = 1; // length in units of 8 bytes
    b[18..24].copy_from_slice(&src_mac);
    b
}

/// The body of a neighbour advertisement: target address and a target
/// link-layer address option. The flags (router/solicited/override) are the
/// ICMPv6 `rest` word, see [`NA_SOLICITED_OVERRIDE`].
pub fn neighbor_advert_body(target: Ipv6Addr, target_mac: [u8; 6]) -> [u8; 24] {
    let mut b = neighbor_solicit_body(target, target_mac);
    b[16] = 2; // target link-layer address
    b
}

/// Neighbour advertisement flags word with S and O set.
pub const NA_SOLICITED_OVERRIDE: [u8; 4] = [0x60, 0, 0, 0];

/// The solicited-node multicast address for `addr` (RFC 4291 2.7.1).
pub fn solicited_node(addr: Ipv6Addr) -> Ipv6Addr {
    let o = addr.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | o[13] as u16,
        u16::from_be_bytes([o[14], o[15]]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{
        Icmpv4Header, Icmpv6Header, NetSlice, SlicedPacket, TcpOptionElement, TransportSlice,
    };

    const C: Ipv4Addr = Ipv4Addr::new(10, 9, 1, 2);
    const S: Ipv4Addr = Ipv4Addr::new(10, 9, 2, 2);
    const C6: Ipv6Addr = Ipv6Addr::new(0xfd00, 9, 1, 0, 0, 0, 0, 2);
    const S6: Ipv6Addr = Ipv6Addr::new(0xfd00, 9, 2, 0, 0, 0, 0, 2);

    /// RFC 1071 checksum, one word at a time, written separately from
    /// `csum.rs` so the two can check each other.
    fn naive_sum(parts: &[&[u8]]) -> u16 {
        let mut all = Vec::new();
        for p in parts {
            all.extend_from_slice(p);
        }
        let mut s: u32 = 0;
        for w in all.chunks(2) {
            s += u32::from(w[0]) << 8 | u32::from(*w.get(1).unwrap_or(&0));
        }
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    }

    /// A correct checksum field makes the one's-complement sum over the
    /// covered bytes 0xffff.
    fn verify_l4(pkt: &[u8]) -> bool {
        let v4 = pkt[0] >> 4 == 4;
        let (hl, proto, src, dst) = if v4 {
            (20, pkt[9], &pkt[12..16], &pkt[16..20])
        } else {
            (40, pkt[6], &pkt[8..24], &pkt[24..40])
        };
        let l4 = &pkt[hl..];
        let len = l4.len() as u32;
        let pseudo: Vec<u8> = if v4 {
            [src, dst, &[0, proto], &(len as u16).to_be_bytes()[..]].concat()
        } else {
            [src, dst, &len.to_be_bytes()[..], &[0, 0, 0, proto]].concat()
        };
        if v4 && proto == 1 {
            naive_sum(&[l4]) == 0xffff
        } else {
            naive_sum(&[&pseudo, l4]) == 0xffff
        }
    }

    #[test]
    fn tcp_v4_with_options_parses_and_checksums() {
        let payload = b"hello, world";
        let p = Pkt::tcp((C, S), 40000, 22, flags::SA)
            .seq(1000)
            .ack_num(2001)
            .window(502)
            .mss(1460)
            .sack_perm()
            .timestamp(11, 22)
            .wscale(7)
            .sack(&[(5, 9)])
            .payload(payload)
            .ip_id(77)
            .build()
            .unwrap();
        assert_eq!(naive_sum(&[&p[..20]]), 0xffff, "IPv4 header checksum");
        assert!(verify_l4(&p));
        let sp = SlicedPacket::from_ip(&p).unwrap();
        let Some(NetSlice::Ipv4(ip)) = &sp.net else {
            panic!("not ipv4")
        };
        assert_eq!(ip.header().source_addr(), C);
        assert_eq!(ip.header().identification(), 77);
        assert!(ip.header().dont_fragment());
        let Some(TransportSlice::Tcp(t)) = &sp.transport else {
            panic!("not tcp")
        };
        assert_eq!((t.source_port(), t.destination_port()), (40000, 22));
        assert_eq!(
            (t.sequence_number(), t.acknowledgment_number()),
            (1000, 2001)
        );
        assert!(t.syn() && t.ack() && !t.fin());
        assert_eq!(t.window_size(), 502);
        assert_eq!(t.payload(), payload);
        assert_eq!(
            t.calc_checksum_ipv4(C.octets(), S.octets()).unwrap(),
            t.checksum()
        );
        let opts: Vec<_> = t.options_iterator().map(|o| o.unwrap()).collect();
        assert!(opts.contains(&TcpOptionElement::MaximumSegmentSize(1460)));
        assert!(opts.contains(&TcpOptionElement::WindowScale(7)));
        assert!(opts.contains(&TcpOptionElement::SelectiveAcknowledgementPermitted));
        assert!(opts.contains(&TcpOptionElement::Timestamp(11, 22)));
        assert!(opts.contains(&TcpOptionElement::SelectiveAcknowledgement(
            (5, 9),
            [None, None, None]
        )));
    }

    #[test]
    fn tcp_and_udp_v6_checksums() {
        let p = Pkt::tcp((C6, S6), 1, 2, flags::PA)
            .payload(b"abc")
            .build()
            .unwrap();
        assert!(verify_l4(&p));
        let sp = SlicedPacket::from_ip(&p).unwrap();
        let Some(TransportSlice::Tcp(t)) = &sp.transport else {
            panic!()
        };
        assert_eq!(
            t.calc_checksum_ipv6(C6.octets(), S6.octets()).unwrap(),
            t.checksum()
        );

        let u = Pkt::udp((C6, S6), 5353, 53)
            .payload(b"query")
            .build()
            .unwrap();
        assert!(verify_l4(&u));
        let sp = SlicedPacket::from_ip(&u).unwrap();
        let Some(TransportSlice::Udp(us)) = &sp.transport else {
            panic!()
        };
        assert_eq!(us.length(), 13);
        assert_eq!(us.payload(), b"query");
    }

    #[test]
    fn udp_v4_and_faults() {
        let good = Pkt::udp((C, S), 1000, 53).payload(b"x").build().unwrap();
        assert!(verify_l4(&good));
        let bad = Pkt::udp((C, S), 1000, 53)
            .payload(b"x")
            .bad_l4_checksum()
            .build()
            .unwrap();
        assert!(!verify_l4(&bad));
        assert_ne!(&bad[26..28], &[0, 0]);
        let none = Pkt::udp((C, S), 1000, 53)
            .payload(b"x")
            .no_udp_checksum()
            .build()
            .unwrap();
        assert_eq!(&none[26..28], &[0, 0]);
        let long = Pkt::udp((C, S), 1000, 53)
            .payload(b"x")
            .udp_length(100)
            .build()
            .unwrap();
        assert_eq!(&long[24..26], &100u16.to_be_bytes());
        let badip = Pkt::udp((C, S), 1000, 53)
            .bad_ip_checksum()
            .build()
            .unwrap();
        assert_ne!(naive_sum(&[&badip[..20]]), 0xffff);
        assert!(verify_l4(&badip), "only the IP header is damaged");
    }

    #[test]
    fn icmp_echo_and_error_v4() {
        let req = Pkt::echo_request((C, S), 0x1234, 7)
            .payload(b"ping")
            .build()
            .unwrap();
        assert!(verify_l4(&req));
        let sp = SlicedPacket::from_ip(&req).unwrap();
        let Some(TransportSlice::Icmpv4(i)) = &sp.transport else {
            panic!()
        };
        let h: Icmpv4Header = i.header();
        assert_eq!(
            h.icmp_type,
            etherparse::Icmpv4Type::EchoRequest(etherparse::IcmpEchoHeader { id: 0x1234, seq: 7 })
        );
        assert_eq!(h.checksum, h.icmp_type.calc_checksum(i.payload()));

        let big = vec![0xab; 1000];
        let orig = Pkt::udp((C, S), 40000, 5000).payload(&big).build().unwrap();
        let err = Pkt::icmp_error(
            (S, C),
            icmp::DEST_UNREACH,
            icmp::PORT_UNREACH,
            [0; 4],
            &orig,
        )
        .build()
        .unwrap();
        assert_eq!(err.len(), 576);
        assert!(verify_l4(&err));
        assert_eq!(&err[28..48], &orig[..20]);
    }

    #[test]
    fn icmpv6_checksum_and_nd() {
        let ns_body = neighbor_solicit_body(S6, mac_for(C6.into()));
        let ns = Pkt::icmp((C6, solicited_node(S6)), icmp6::NEIGHBOR_SOLICIT, 0, [0; 4])
            .ttl(255)
            .payload(&ns_body)
            .build()
            .unwrap();
        assert!(verify_l4(&ns));
        let sp = SlicedPacket::from_ip(&ns).unwrap();
        let Some(TransportSlice::Icmpv6(i)) = &sp.transport else {
            panic!()
        };
        let h: Icmpv6Header = i.header();
        let want = h
            .icmp_type
            .calc_checksum(C6.octets(), solicited_node(S6).octets(), i.payload())
            .unwrap();
        assert_eq!(h.checksum, want);
        assert_eq!(
            solicited_node(S6),
            "ff02::1:ff00:2".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(
            mac_for(solicited_node(S6).into()),
            [0x33, 0x33, 0xff, 0, 0, 2]
        );
    }

    #[test]
    fn ipv4_fragments_reassemble() {
        let data: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        let d = Pkt::udp((C, S), 4000, 5000)
            .payload(&data)
            .ip_id(0x4242)
            .dont_fragment(false)
            .build()
            .unwrap();
        let frags = fragment(&d, 1480, 0).unwrap();
        assert_eq!(frags.len(), 3);
        let mut re = Vec::new();
        for (i, f) in frags.iter().enumerate() {
            assert_eq!(naive_sum(&[&f[..20]]), 0xffff);
            assert_eq!(u16::from_be_bytes([f[2], f[3]]) as usize, f.len());
            assert_eq!(&f[4..6], &[0x42, 0x42]);
            let ff = u16::from_be_bytes([f[6], f[7]]);
            assert_eq!((ff & 0x1fff) as usize * 8, re.len());
            assert_eq!(ff & 0x2000 != 0, i < 2);
            re.extend_from_slice(&f[20..]);
        }
        assert_eq!(re, &d[20..]);
        assert!(fragment(&d, 7, 0).is_err());
        assert!(fragment(&[0x45, 0], 8, 0).is_err());
    }

    #[test]
    fn ipv6_fragments_reassemble() {
        let data = vec![7u8; 2000];
        let d = Pkt::udp((C6, S6), 4000, 5000)
            .payload(&data)
            .build()
            .unwrap();
        let frags = fragment(&d, 1232, 0xdead_beef).unwrap();
        assert_eq!(frags.len(), 2);
        let mut re = Vec::new();
        for f in &frags {
            assert_eq!(f[6], IPV6_FRAGMENT_HEADER);
            assert_eq!(u16::from_be_bytes([f[4], f[5]]) as usize, f.len() - 40);
            assert_eq!(f[40], ipproto::UDP);
            assert_eq!(&f[44..48], &0xdead_beefu32.to_be_bytes());
            re.extend_from_slice(&f[48..]);
        }
        assert_eq!(re, &d[40..]);
        // etherparse sees the fragment header of the first fragment.
        let sp = etherparse::SlicedPacket::from_ip(&frags[1]).unwrap();
        let Some(NetSlice::Ipv6(ip)) = &sp.net else {
            panic!()
        };
        assert!(ip.is_payload_fragmented());
    }

    #[test]
    fn ethernet_and_arp_frames() {
        let d = Pkt::tcp((C, S), 1, 2, flags::S).build().unwrap();
        let f = ethernet_frame(&d).unwrap();
        assert_eq!(
            f.len(),
            60,
            "40-byte datagram padded to the Ethernet minimum"
        );
        let sp = SlicedPacket::from_ethernet(&f).unwrap();
        let Some(TransportSlice::Tcp(t)) = &sp.transport else {
            panic!()
        };
        assert!(t.syn());
        let a = arp_frame(arp::REQUEST, C, S);
        assert_eq!(a.len(), 60);
        assert_eq!(&a[12..14], &[0x08, 0x06]);
        assert_eq!(&a[..6], &[0xff; 6]);
        assert_eq!(&a[38..42], &S.octets());
    }

    #[test]
    fn errors_instead_of_panics() {
        let too_many = Pkt::tcp((C, S), 1, 2, 0)
            .timestamp(1, 2)
            .timestamp(1, 2)
            .timestamp(1, 2)
            .timestamp(1, 2);
        assert!(matches!(
            too_many.build(),
            Err(SynthError::TcpOptionsTooLong)
        ));
        let big = vec![0u8; 70000];
        assert!(matches!(
            Pkt::udp((C, S), 1, 2).payload(&big).build(),
            Err(SynthError::TooLong { .. })
        ));
        assert!(IpPair::new(C.into(), S6.into()).is_err());
        assert!(ethernet_frame(&[1, 2, 3]).is_err());
    }
}
