//! Packet decoding: typed, borrowed views over captured bytes.
//!
//! Turns a [`Frame`](crate::capture::Frame)'s link-layer bytes into a [`Packet`]:
//! the IP header fields netfilter looks at, and a view of the L4 header. Nothing
//! here allocates or copies packet bytes; everything borrows the frame. Headers
//! are read in place at their fixed offsets (see [`decode`](decode()) for why
//! the variable parts follow the kernel rather than `etherparse`, which is
//! left with VLAN tags and the ICMP quotes). This layer knows nothing of conntrack or
//! rules; it only says what is in the bytes, including what is missing
//! (truncation by the snap length, headers too short to parse).
//!
//! Three outcomes for a frame:
//! * `Err(DecodeError)`: the IP hooks never see it (not IP, dropped by the
//!   kernel's IP receive path, unsupported link type), or the capture cut a
//!   header the simulation needs (`DecodeError::Truncated`).
//! * `Ok(Packet)` with [`L4::Malformed`]: netfilter sees it, conntrack's
//!   tracker will call it INVALID.
//! * `Ok(Packet)` otherwise. `ipv4_csum_ok == false` still decodes: the
//!   kernel drops such a packet in `ip_rcv`, the caller reports it.
//!
//! Snap-length policy: a packet cut by the snap length decodes as long as
//! the IP header (with the IPv6 extension headers conntrack walks) and the
//! fixed part of the TCP (20 bytes), UDP or ICMP (8 bytes) header are
//! captured; `truncated` is then set, TCP options are read as far as they
//! go, and checksums cannot be verified. Below that, decoding fails with
//! `DecodeError::Truncated`, because neither the tuple nor the flags are
//! known.

mod checksum;
mod decode;
mod error;
pub mod hint;
mod icmp;
mod link;

pub use decode::{LinkInfo, decode, decode_ip};
pub use error::{DecodeError, IpHeaderProblem, NotIp};
pub use icmp::{InnerError, InnerPacket};

pub(crate) use decode::{WalkEnd, walk_ext_headers};

/// The checksum to store in an IPv4 header whose checksum field is zero.
pub fn ipv4_header_checksum(header: &[u8]) -> u16 {
    checksum::compute(header)
}

use std::net::IpAddr;

/// Address family of an IP packet (netfilter's NFPROTO_IPV4 / NFPROTO_IPV6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    Ipv4,
    Ipv6,
}

/// IP protocol numbers used across the crate.
pub mod ipproto {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ICMPV6: u8 = 58;
    pub const UDPLITE: u8 = 136;
    pub const SCTP: u8 = 132;
    pub const GRE: u8 = 47;
}

/// TCP flag bits as in the TCP header's 13th byte.
pub mod tcpflag {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;
}

/// How the link layer classified the packet (the kernel's `skb->pkt_type`),
/// derived from the destination MAC where there is one, else from the
/// destination address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PktType {
    Host,
    Broadcast,
    Multicast,
    OtherHost,
}

/// Fragment information of an IPv4 fragment or an IPv6 packet with a
/// fragment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragment {
    /// IPv4 identification (16 bits) or IPv6 fragment identification.
    pub id: u32,
    /// Offset of this fragment's data in bytes.
    pub offset: u32,
    /// More-fragments flag.
    pub more: bool,
}

impl Fragment {
    /// An IPv6 fragment header with offset 0 and M=0 ("atomic fragment",
    /// RFC 6946) carries a whole datagram.
    pub fn is_atomic(&self) -> bool {
        self.offset == 0 && !self.more
    }
}

/// A decoded IP packet, borrowing the frame.
#[derive(Debug, Clone)]
pub struct Packet<'a> {
    pub family: Family,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// Upper-layer protocol: IPv4 protocol field, or for IPv6 the next header
    /// after the extension headers conntrack skips (`ipv6_skip_exthdr`:
    /// hop-by-hop, routing, destination options, fragment, AH). For a
    /// non-first IPv6 fragment: the fragment header's next header (what
    /// ip6tables' `-p` sees).
    pub proto: u8,
    /// IPv4 TTL or IPv6 hop limit.
    pub ttl: u8,
    /// IPv4 TOS / IPv6 traffic class.
    pub tos: u8,
    /// Datagram length according to the IP header (IPv4 total length,
    /// IPv6 40 + payload length). This is what `-m length` matches.
    pub ip_len: u32,
    /// Offset of the L4 header from the start of `ip` (IP header plus any
    /// IPv6 extension headers).
    pub l4_offset: u32,
    /// Present for IPv4 fragments (MF set or offset ≠ 0) and for every IPv6
    /// packet with a fragment header.
    pub frag: Option<Fragment>,
    /// The datagram from the IP header on, as captured, trimmed to `ip_len`
    /// (link-layer padding removed). Shorter than `ip_len` when truncated.
    pub ip: &'a [u8],
    /// True when the capture holds fewer bytes than `ip_len`.
    pub truncated: bool,
    /// IPv4 header checksum verified (always true for IPv6). The kernel drops
    /// a bad one in `ip_rcv` before netfilter sees the packet.
    pub ipv4_csum_ok: bool,
    /// Link-layer facts used by `-m mac` and `-m pkttype`.
    pub src_mac: Option<[u8; 6]>,
    pub pkttype: PktType,
    /// The L4 header, as far as it could be parsed.
    pub l4: L4<'a>,
}

/// The L4 part of a packet.
#[derive(Debug, Clone, Copy)]
pub enum L4<'a> {
    Tcp(Tcp<'a>),
    Udp(Udp<'a>),
    Icmp(Icmp<'a>),
    Icmpv6(Icmp<'a>),
    /// Any other protocol (conntrack's generic tracker), or a non-first
    /// fragment whose L4 header is in another fragment.
    Other,
    /// The protocol's header is cut short (in the datagram itself, not by the
    /// snap length): the kernel's trackers call such packets INVALID. TCP:
    /// fewer than 20 bytes, data offset below 5 or past the segment; UDP,
    /// ICMP, ICMPv6: fewer than 8 bytes. Also IPv6 packets whose
    /// extension-header chain ends without an upper layer (No Next Header, or
    /// a header the datagram does not hold): `ipv6_skip_exthdr` fails and
    /// conntrack calls them INVALID; `proto` then names where the walk ended.
    Malformed,
}

/// TCP header fields conntrack and the tcp match use.
#[derive(Debug, Clone, Copy)]
pub struct Tcp<'a> {
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    /// The flags byte (FIN..CWR).
    pub flags: u8,
    /// Raw (unscaled) window.
    pub window: u16,
    /// Header length in bytes (data offset × 4).
    pub header_len: u8,
    /// Payload length implied by the IP header (not by the captured length).
    pub payload_len: u32,
    /// Parsed options.
    pub opts: TcpOptions,
    /// Raw option bytes (for `--tcp-option`).
    pub options: &'a [u8],
    /// Payload as captured (may be shorter than `payload_len`).
    pub payload: &'a [u8],
}

/// TCP options the window tracker needs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpOptions {
    pub mss: Option<u16>,
    /// Window scale shift as sent (not clamped).
    pub wscale: Option<u8>,
    pub sack_perm: bool,
    /// Highest right edge among the SACK blocks, compared modulo 2^32 as the
    /// kernel's `tcp_sack` does: the scan starts from the segment's ACK
    /// number, so this is the ACK number when no block lies beyond it. Only
    /// the first well-formed SACK option counts. None without SACK blocks.
    pub sack_max: Option<u32>,
    pub timestamp: Option<(u32, u32)>,
}

/// UDP header fields.
#[derive(Debug, Clone, Copy)]
pub struct Udp<'a> {
    pub sport: u16,
    pub dport: u16,
    /// The UDP length field, as sent. Conntrack's `udp_error` calls a packet
    /// INVALID when it exceeds [`Packet::l4_len`] or is below 8; decoding
    /// does not.
    pub length: u16,
    pub checksum: u16,
    /// Payload as captured, limited by the length field when that is
    /// consistent.
    pub payload: &'a [u8],
}

/// ICMP or ICMPv6 header fields.
#[derive(Debug, Clone, Copy)]
pub struct Icmp<'a> {
    pub icmp_type: u8,
    pub code: u8,
    /// Identifier (bytes 4..6) — meaningful for echo-like messages.
    pub id: u16,
    pub seq: u16,
    /// Bytes after the 8-byte ICMP header: for error messages the quoted
    /// ("embedded") packet, as captured.
    pub body: &'a [u8],
}

impl<'a> Packet<'a> {
    /// The L4 bytes as captured (header and payload).
    pub fn l4_bytes(&self) -> &'a [u8] {
        self.ip.get(self.l4_offset as usize..).unwrap_or(&[])
    }

    /// Length of the L4 part in the datagram (the kernel's `skb->len -
    /// dataoff`), whatever the capture holds.
    pub fn l4_len(&self) -> u32 {
        self.ip_len.saturating_sub(self.l4_offset)
    }

    /// A fragment in the defragmentation sense: MF set or a non-zero offset
    /// (an IPv6 atomic fragment is not).
    pub fn is_fragmented(&self) -> bool {
        self.frag.is_some_and(|f| f.more || f.offset != 0)
    }

    /// The link-layer facts, for re-decoding a datagram built from this
    /// packet (e.g. a reassembled one).
    pub fn link_info(&self) -> LinkInfo {
        LinkInfo {
            src_mac: self.src_mac,
            pkttype: Some(self.pkttype),
            wire_len: None,
        }
    }

    /// Verifies the TCP, UDP, ICMP or ICMPv6 checksum as `nf_checksum` does
    /// (pseudo-header with the header's addresses for TCP, UDP and ICMPv6;
    /// the ICMP message alone for ICMP).
    ///
    /// `None` when it cannot be verified: the capture holds fewer bytes than
    /// the datagram, the packet is a fragment (the checksum covers the whole
    /// datagram), or the L4 header is not TCP/UDP/ICMP/ICMPv6.
    ///
    /// UDP: a zero checksum over IPv4 means "none" and is `Some(true)`; over
    /// IPv6 a zero checksum is not allowed (RFC 8200) and is verified like
    /// any other value, which fails. Conntrack does not ask: its `udp_error`
    /// accepts a zero UDP checksum in both families without verifying
    /// (checked on Linux 6.18: an IPv6 UDP packet with checksum 0 became a
    /// NEW entry, not INVALID). Callers modelling conntrack must test
    /// `Udp::checksum == 0` first.
    pub fn l4_checksum_ok(&self) -> Option<bool> {
        if self.truncated || self.is_fragmented() {
            return None;
        }
        let l4 = self.l4_bytes();
        let pseudo = |proto| checksum::pseudo_header(self.src, self.dst, proto, l4.len() as u32);
        // One summation call site for every protocol: it is inlined here.
        let start = match self.l4 {
            L4::Tcp(_) => pseudo(ipproto::TCP),
            L4::Udp(u) if u.checksum == 0 && self.family == Family::Ipv4 => return Some(true),
            L4::Udp(_) => pseudo(ipproto::UDP),
            L4::Icmp(_) => 0,
            L4::Icmpv6(_) => pseudo(ipproto::ICMPV6),
            L4::Other | L4::Malformed => return None,
        };
        Some(checksum::verifies(start, l4))
    }

    /// For an ICMP error (types 3, 4, 5, 11, 12) or ICMPv6 error (types
    /// below 128): the quoted packet. `None` for any other packet.
    /// For an ICMPv6 redirect (type 137): whether the datagram holds the
    /// whole fixed message (header, target, destination: 40 bytes) and the
    /// first option's type and length, if there are two bytes of it.
    pub fn redirect6(&self) -> Option<(bool, Option<(u8, u8)>)> {
        let L4::Icmpv6(i) = self.l4 else { return None };
        if i.icmp_type != 137 {
            return None;
        }
        let msg_len = self.l4_len() as usize;
        let whole = msg_len >= 40;
        // The option header sits after the 32 bytes of addresses.
        let opt = (msg_len >= 42)
            .then(|| i.body.get(32..34).map(|b| (b[0], b[1])))
            .flatten();
        Some((whole, opt))
    }

    /// The packet quoted in an ICMPv6 redirect's Redirected Header option
    /// (option header at message offset 40, 8 bytes, then the packet).
    pub fn redirect6_inner(&self) -> Option<Result<InnerPacket, InnerError>> {
        let L4::Icmpv6(i) = self.l4 else { return None };
        let body = i.body.get(40..).unwrap_or(&[]);
        let in_datagram = self.l4_len().saturating_sub(48) as usize;
        Some(icmp::parse_inner(body, in_datagram, Family::Ipv6))
    }

    pub fn inner(&self) -> Option<Result<InnerPacket, InnerError>> {
        let (body, family) = match self.l4 {
            L4::Icmp(i) if icmp::is_icmp_error(i.icmp_type) => (i.body, Family::Ipv4),
            L4::Icmpv6(i) if icmp::is_icmpv6_error(i.icmp_type) => (i.body, Family::Ipv6),
            _ => return None,
        };
        let in_datagram = self.l4_len().saturating_sub(8) as usize;
        Some(icmp::parse_inner(body, in_datagram, family))
    }
}
