//! The packet an ICMP or ICMPv6 error quotes: what conntrack's
//! `nf_conntrack_inet_error` reads to find the connection the error is
//! about.
//!
//! Reading is lax like etherparse's lax slices, but judged the kernel's way:
//! the quoted IP header must be whole in the datagram (otherwise the error
//! is INVALID), the L4 bytes conntrack reads (4 for ports, 8 for an inner
//! ICMP header) may be missing (reported, conntrack then fails the tuple),
//! and the IPv4 header's own fields are trusted as they are (no checksum,
//! version or total-length check — the kernel does none).

use super::decode::{WalkEnd, walk_ext_headers};
use super::{Family, ipproto};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The quoted ("embedded") packet of an ICMP error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InnerPacket {
    pub family: Family,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IPv4 protocol, or IPv6 upper-layer header after the extension headers.
    pub proto: u8,
    /// TCP, UDP, UDP-Lite, SCTP, DCCP: source and destination port (the
    /// first 4 bytes of the quoted L4 header).
    pub ports: Option<(u16, u16)>,
    /// Quoted ICMP / ICMPv6 header: type, code, identifier.
    pub icmp: Option<(u8, u8, u16)>,
    /// The quoted packet is a fragment with a non-zero offset: conntrack
    /// cannot build its tuple.
    pub non_first_fragment: bool,
    /// The datagram ends before the L4 bytes conntrack reads.
    pub l4_missing: bool,
    /// Offset of the quoted L4 header within the ICMP body.
    pub l4_offset: u32,
}

/// Why the quoted packet cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InnerError {
    /// The datagram does not hold the quoted header (or the IPv4 IHL points
    /// past the datagram, or an IPv6 extension header is cut): conntrack
    /// calls the error INVALID.
    #[error("quoted packet too short: {need} bytes needed, the datagram has {have}")]
    HeaderMissing { need: usize, have: usize },
    /// The capture's snap length cut bytes the datagram had.
    #[error("quoted packet cut by the capture's snap length: {need} bytes needed, {have} captured")]
    CutByCapture { need: usize, have: usize },
}

/// ICMPv4 error types conntrack's error handler looks into.
pub(crate) fn is_icmp_error(t: u8) -> bool {
    matches!(t, 3 | 4 | 5 | 11 | 12)
}

/// ICMPv6 error types (below 128).
pub(crate) fn is_icmpv6_error(t: u8) -> bool {
    t < 128
}

fn l4_need(proto: u8, family: Family) -> usize {
    match (proto, family) {
        (ipproto::TCP | ipproto::UDP | ipproto::UDPLITE | ipproto::SCTP | 33, _) => 4,
        (ipproto::ICMP, Family::Ipv4) | (ipproto::ICMPV6, Family::Ipv6) => 8,
        _ => 0,
    }
}

/// Parses the quoted packet from `body` (the captured bytes after the
/// 8-byte ICMP header); `in_datagram` is how many body bytes the datagram
/// really has.
pub(crate) fn parse_inner(
    body: &[u8],
    in_datagram: usize,
    family: Family,
) -> Result<InnerPacket, InnerError> {
    let check = |need: usize| {
        if need > in_datagram {
            Err(InnerError::HeaderMissing {
                need,
                have: in_datagram,
            })
        } else if need > body.len() {
            Err(InnerError::CutByCapture {
                need,
                have: body.len(),
            })
        } else {
            Ok(())
        }
    };
    let (src, dst, proto, l4_off, non_first) = match family {
        Family::Ipv4 => {
            check(20)?;
            let ihl = (body[0] & 0x0f) as usize * 4;
            let frag_off = u16::from_be_bytes([body[6], body[7]]) & 0x1fff;
            if ihl > in_datagram {
                return Err(InnerError::HeaderMissing {
                    need: ihl,
                    have: in_datagram,
                });
            }
            let src = Ipv4Addr::new(body[12], body[13], body[14], body[15]);
            let dst = Ipv4Addr::new(body[16], body[17], body[18], body[19]);
            (
                IpAddr::V4(src),
                IpAddr::V4(dst),
                body[9],
                ihl,
                frag_off != 0,
            )
        }
        Family::Ipv6 => {
            check(40)?;
            let mut s = [0u8; 16];
            let mut d = [0u8; 16];
            s.copy_from_slice(&body[8..24]);
            d.copy_from_slice(&body[24..40]);
            let avail = body.len().min(in_datagram);
            let walk = walk_ext_headers(&body[..avail], in_datagram, body[6], 40)
                .map_err(|(need, have)| InnerError::CutByCapture { need, have })?;
            match walk.end {
                WalkEnd::NoUpperLayer => {
                    return Err(InnerError::HeaderMissing {
                        need: walk.offset + 2,
                        have: in_datagram,
                    });
                }
                WalkEnd::NonFirstFragment | WalkEnd::Upper => (
                    IpAddr::V6(Ipv6Addr::from(s)),
                    IpAddr::V6(Ipv6Addr::from(d)),
                    walk.proto,
                    walk.offset,
                    walk.end == WalkEnd::NonFirstFragment,
                ),
            }
        }
    };
    let mut inner = InnerPacket {
        family,
        src,
        dst,
        proto,
        ports: None,
        icmp: None,
        non_first_fragment: non_first,
        l4_missing: false,
        l4_offset: l4_off as u32,
    };
    if non_first {
        return Ok(inner);
    }
    let need = l4_need(proto, family);
    if need == 0 {
        return Ok(inner);
    }
    if l4_off + need > in_datagram {
        inner.l4_missing = true;
        return Ok(inner);
    }
    if l4_off + need > body.len() {
        return Err(InnerError::CutByCapture {
            need: l4_off + need,
            have: body.len(),
        });
    }
    let l4 = &body[l4_off..];
    if need == 4 {
        inner.ports = Some((
            u16::from_be_bytes([l4[0], l4[1]]),
            u16::from_be_bytes([l4[2], l4[3]]),
        ));
    } else {
        inner.icmp = Some((l4[0], l4[1], u16::from_be_bytes([l4[4], l4[5]])));
    }
    Ok(inner)
}
