//! Why a frame did not decode into a [`Packet`](super::Packet).
//!
//! Each variant says what the kernel would do with such a frame: a packet
//! that is not IP never reaches the IP hooks; a bad IP header is dropped by
//! `ip_rcv`/`ipv6_rcv` before PREROUTING; a frame cut by the capture's snap
//! length below the headers netfilter needs cannot be judged at all.

use crate::capture::Linktype;
use std::fmt;
use thiserror::Error;

/// A decoding failure. Cheap to build (no allocation): decoding runs once per
/// packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error(
        "link type {linktype} is not supported; supported: {}",
        Linktype::supported_list()
    )]
    UnsupportedLinktype { linktype: Linktype },
    /// ARP, LLDP, LLC, … — netfilter's IP hooks never see it.
    #[error("not IP: {what}")]
    NotIp { what: NotIp },
    /// The link-layer header itself is cut short.
    #[error("{layer} header cut short: {needed} bytes needed, {have} captured")]
    LinkTruncated {
        layer: &'static str,
        needed: usize,
        have: usize,
    },
    /// The kernel's IP receive path drops this before netfilter.
    #[error("{family} header rejected by the kernel before netfilter: {why}")]
    BadIpHeader {
        family: &'static str,
        why: IpHeaderProblem,
    },
    /// The snap length cut a header the simulation needs (the IP header, an
    /// IPv6 extension header, or the fixed part of the TCP/UDP/ICMP header),
    /// although the packet on the wire had it.
    #[error("{layer} cut by the capture's snap length: {needed} bytes needed, {have} captured")]
    Truncated {
        layer: &'static str,
        needed: usize,
        have: usize,
    },
}

/// What a non-IP frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotIp {
    /// An Ethernet II / SLL protocol type.
    Ethertype(u16),
    /// An IEEE 802.3 frame whose type field is a length (LLC, STP, …).
    Llc { length: u16 },
    /// A BSD loopback address family other than INET/INET6.
    AddressFamily(u32),
    /// More stacked VLAN tags than the decoder follows.
    TooManyVlanTags,
    /// A raw-IP link type whose first nibble is neither 4 nor 6.
    RawVersion(u8),
}

impl fmt::Display for NotIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            NotIp::Ethertype(t) => match ethertype_name(t) {
                Some(n) => write!(f, "{n} (ethertype 0x{t:04x})"),
                None => write!(f, "ethertype 0x{t:04x}"),
            },
            NotIp::Llc { length } => write!(f, "IEEE 802.3/LLC frame (length field {length})"),
            NotIp::AddressFamily(a) => write!(f, "loopback address family {a}"),
            NotIp::TooManyVlanTags => f.write_str("more than 8 stacked VLAN tags"),
            NotIp::RawVersion(v) => write!(f, "raw packet with IP version {v}"),
        }
    }
}

fn ethertype_name(t: u16) -> Option<&'static str> {
    Some(match t {
        0x0806 => "ARP",
        0x8035 => "RARP",
        0x88cc => "LLDP",
        0x8847 | 0x8848 => "MPLS",
        0x8863 => "PPPoE discovery",
        0x8864 => "PPPoE session",
        0x888e => "EAPOL",
        0x88e5 => "MACsec",
        0x88f7 => "PTP",
        0x8809 => "slow protocols (LACP)",
        0x9000 => "loopback test",
        0x22f0 => "AVTP",
        0x8100 | 0x88a8 | 0x9100 => "VLAN",
        0x0004 => "802.2 LLC (SLL)",
        _ => return None,
    })
}

/// Why an IP header is rejected by `ip_rcv` / `ipv6_rcv`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpHeaderProblem {
    /// The frame carries fewer bytes than a minimal header.
    ShorterThanHeader { on_wire: u32, minimum: u32 },
    /// The version field disagrees with the link layer's protocol type.
    Version { expected: u8, found: u8 },
    /// IPv4 IHL below 5.
    Ihl { ihl: u8 },
    /// IPv4 total length below the header length.
    TotalLengthBelowHeader { total: u16, header: u16 },
    /// The length field claims more bytes than the frame carried on the wire.
    LongerThanFrame { ip_len: u32, on_wire: u32 },
    /// IPv6 source address is multicast (RFC 4291 2.7).
    MulticastSource,
    /// IPv6 multicast destination with the reserved scope 0.
    MulticastScopeZero,
    /// IPv6 hop-by-hop options header runs past the datagram or holds an
    /// option that runs past the header.
    HopByHop,
}

impl fmt::Display for IpHeaderProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            IpHeaderProblem::ShorterThanHeader { on_wire, minimum } => {
                write!(
                    f,
                    "only {on_wire} bytes, less than the {minimum}-byte header"
                )
            }
            IpHeaderProblem::Version { expected, found } => {
                write!(f, "version {found} where the link layer says IPv{expected}")
            }
            IpHeaderProblem::Ihl { ihl } => {
                write!(f, "header length {ihl} (in 32-bit words) is below 5")
            }
            IpHeaderProblem::TotalLengthBelowHeader { total, header } => {
                write!(
                    f,
                    "total length {total} is below the header length {header}"
                )
            }
            IpHeaderProblem::LongerThanFrame { ip_len, on_wire } => {
                write!(
                    f,
                    "length {ip_len} exceeds the {on_wire} bytes the frame carried"
                )
            }
            IpHeaderProblem::MulticastSource => f.write_str("multicast source address"),
            IpHeaderProblem::MulticastScopeZero => {
                f.write_str("multicast destination with reserved scope 0")
            }
            IpHeaderProblem::HopByHop => f.write_str("malformed hop-by-hop options header"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_what_and_why() {
        let e = DecodeError::UnsupportedLinktype {
            linktype: Linktype::NFLOG,
        };
        assert_eq!(
            e.to_string(),
            "link type 239 (NFLOG) is not supported; supported: 0 (NULL), 1 (ETHERNET), 101 (RAW), 108 (LOOP), 113 (LINUX_SLL), 228 (IPV4), 229 (IPV6), 276 (LINUX_SLL2)"
        );
        let e = DecodeError::NotIp {
            what: NotIp::Ethertype(0x0806),
        };
        assert_eq!(e.to_string(), "not IP: ARP (ethertype 0x0806)");
        let e = DecodeError::BadIpHeader {
            family: "IPv4",
            why: IpHeaderProblem::Ihl { ihl: 3 },
        };
        assert_eq!(
            e.to_string(),
            "IPv4 header rejected by the kernel before netfilter: header length 3 (in 32-bit words) is below 5"
        );
    }
}
