//! Packet decoding: typed, borrowed views over captured bytes.
//!
//! Turns a [`Frame`](crate::capture::Frame)'s link-layer bytes into a [`Packet`]:
//! the IP header fields netfilter looks at, and a view of the L4 header. Nothing
//! here allocates or copies packet bytes; everything borrows the frame. Parsing
//! uses `etherparse` for the headers. This layer knows nothing of conntrack or
//! rules; it only says what is in the bytes, including what is missing
//! (truncation by the snap length, headers too short to parse).

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
    /// after the extension headers conntrack skips (`ipv6_skip_exthdr`).
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
    /// snap length): the kernel's trackers call such packets INVALID.
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
    /// kernel's `tcp_sack` does; None without SACK blocks.
    pub sack_max: Option<u32>,
    pub timestamp: Option<(u32, u32)>,
}

/// UDP header fields.
#[derive(Debug, Clone, Copy)]
pub struct Udp<'a> {
    pub sport: u16,
    pub dport: u16,
    /// The UDP length field.
    pub length: u16,
    pub checksum: u16,
    /// Payload as captured.
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
