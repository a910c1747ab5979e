//! From link-layer bytes to a [`Packet`]: the checks the kernel's IP receive
//! path makes before netfilter, the IPv6 extension-header walk conntrack
//! does, and the L4 header views.
//!
//! The fixed IPv4/IPv6 headers are read in place at their fixed offsets,
//! after the length, version and IHL checks etherparse's header slices would
//! make (they run for every packet; the slices added nothing but cost). The
//! rest is written out here because the kernel's rules differ from
//! etherparse's where it matters to a firewall: lengths are judged against
//! what the frame carried *on the wire* (a capture cut by the snap length is
//! not a malformed packet), the IPv6 walk stops exactly where
//! `ipv6_skip_exthdr` stops (etherparse also skips mobility/HIP/shim6 headers
//! and errors on cut ones), and TCP options are read like conntrack's
//! `tcp_options`/`tcp_sack` (unknown kinds skipped by length, a partial option
//! ends the scan), where etherparse's option iterator stops at the first
//! unknown kind.

use super::error::{DecodeError, IpHeaderProblem, NotIp};
use super::{Family, Fragment, Icmp, L4, Packet, PktType, Tcp, TcpOptions, Udp, checksum, ipproto};
use crate::capture::{Frame, Linktype};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Link-layer facts that travel with an IP datagram: what [`decode_ip`]
/// needs besides the bytes (for instance to re-decode a reassembled
/// datagram with the facts of its first fragment).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkInfo {
    pub src_mac: Option<[u8; 6]>,
    /// The class the link layer gave (destination MAC, cooked-capture packet
    /// type); `None`: derive it from the destination address.
    pub pkttype: Option<PktType>,
    /// Bytes of the datagram on the wire, from the IP header on (link padding
    /// included). `None`: the buffer is the whole datagram.
    pub wire_len: Option<u32>,
}

/// Decodes a captured frame.
///
/// Untagged Ethernet carrying IPv4 without options or fragmentation, or
/// IPv6 straight to its transport, with a well-formed TCP, UDP or
/// ICMP/ICMPv6 header: nearly every frame. Those are read by `ethernet_ipv4`
/// and `ethernet_ipv6`, which build the packet in the caller's slot in one
/// pass (the general path's layers return it by value, a copy each); any
/// other shape, including every error, takes the general path.
#[inline]
pub fn decode<'a>(frame: &Frame<'a>) -> Result<Packet<'a>, DecodeError> {
    if frame.linktype == Linktype::ETHERNET
        && let Some(e) = frame.data.first_chunk::<14>()
    {
        match [e[12], e[13]] {
            [0x08, 0x00] => return ethernet_ipv4(frame),
            [0x86, 0xdd] => return ethernet_ipv6(frame),
            _ => {}
        }
    }
    decode_general(frame)
}

/// The IPv4 shape [`decode`] reads in one pass; everything else, and any
/// check that fails, goes to [`decode_general`], which gives the same result
/// for the shapes read here (the tests compare the two).
fn ethernet_ipv4<'a>(frame: &Frame<'a>) -> Result<Packet<'a>, DecodeError> {
    let d = frame.data;
    let Some(f) = d.first_chunk::<34>() else {
        return decode_general(frame);
    };
    let on_wire = (frame.orig_len as usize).max(d.len()) - 14;
    let total = usize::from(u16::from_be_bytes([f[16], f[17]]));
    // Version 4 and IHL 5; the datagram fits the frame; neither MF nor a
    // fragment offset.
    if f[14] != 0x45 || total < 20 || total > on_wire || (f[20] & 0x3f) | f[21] != 0 {
        return decode_general(frame);
    }
    let ip = &d[14..];
    let captured = ip.len().min(total);
    let data = &ip[..captured];
    let h: &[u8; 20] = f[14..].try_into().expect("20 bytes");
    let proto = h[9];
    let Some(l4) = l4_common(proto == ipproto::ICMP, proto, &data[20..], total - 20) else {
        return decode_general(frame);
    };
    let dst = Ipv4Addr::new(h[16], h[17], h[18], h[19]);
    Ok(Packet {
        family: Family::Ipv4,
        src: IpAddr::V4(Ipv4Addr::new(h[12], h[13], h[14], h[15])),
        dst: IpAddr::V4(dst),
        proto,
        ttl: h[8],
        tos: h[1],
        ip_len: total as u32,
        l4_offset: 20,
        frag: None,
        ip: data,
        truncated: captured < total,
        ipv4_csum_ok: checksum::verifies_20(h),
        src_mac: Some([f[6], f[7], f[8], f[9], f[10], f[11]]),
        pkttype: super::link::pkttype_from_mac([f[0], f[1], f[2], f[3], f[4], f[5]]),
        l4,
    })
}

/// The IPv6 shape [`decode`] reads in one pass: the fixed header's next
/// header is TCP, UDP or ICMPv6 (no extension headers, no jumbogram).
fn ethernet_ipv6<'a>(frame: &Frame<'a>) -> Result<Packet<'a>, DecodeError> {
    let d = frame.data;
    let Some(f) = d.first_chunk::<54>() else {
        return decode_general(frame);
    };
    let h: &[u8; 40] = f[14..].try_into().expect("40 bytes");
    let on_wire = (frame.orig_len as usize).max(d.len()) - 14;
    let ip_len = 40 + usize::from(u16::from_be_bytes([h[4], h[5]]));
    let next = h[6];
    // Multicast source, or multicast destination of scope 0: ip6_rcv_core
    // drops them (the general path reports which).
    if h[0] >> 4 != 6
        || !matches!(next, ipproto::TCP | ipproto::UDP | ipproto::ICMPV6)
        || ip_len > on_wire
        || h[8] == 0xff
        || (h[24] == 0xff && h[25] & 0x0f == 0)
    {
        return decode_general(frame);
    }
    let ip = &d[14..];
    let captured = ip.len().min(ip_len);
    let data = &ip[..captured];
    let Some(l4) = l4_common(next == ipproto::ICMPV6, next, &data[40..], ip_len - 40) else {
        return decode_general(frame);
    };
    let addr = |at: usize| {
        let a: [u8; 16] = h[at..at + 16].try_into().expect("16 bytes");
        Ipv6Addr::from(a)
    };
    Ok(Packet {
        family: Family::Ipv6,
        src: IpAddr::V6(addr(8)),
        dst: IpAddr::V6(addr(24)),
        proto: next,
        ttl: h[7],
        tos: (h[0] << 4) | (h[1] >> 4),
        ip_len: ip_len as u32,
        l4_offset: 40,
        frag: None,
        ip: data,
        truncated: captured < ip_len,
        ipv4_csum_ok: true,
        src_mac: Some([f[6], f[7], f[8], f[9], f[10], f[11]]),
        pkttype: super::link::pkttype_from_mac([f[0], f[1], f[2], f[3], f[4], f[5]]),
        l4,
    })
}

/// The L4 view for [`ethernet_ipv4`] and [`ethernet_ipv6`]: TCP, UDP, or
/// (`icmp`: the family's ICMP) ICMP with the whole header in the datagram
/// and in the capture, as [`l4`] reads them. `None` for anything else
/// (malformed, cut by the snap length, another protocol).
#[inline(always)]
fn l4_common(icmp: bool, proto: u8, seg: &[u8], l4_len: usize) -> Option<L4<'_>> {
    if proto == ipproto::TCP {
        if l4_len < 20 || seg.len() < 20 {
            return None;
        }
        let hl = usize::from(seg[12] >> 4) * 4;
        if hl < 20 || hl > l4_len || hl > seg.len() {
            return None;
        }
        return Some(L4::Tcp(tcp_header(
            seg,
            hl,
            l4_len,
            &seg[20..hl],
            &seg[hl..],
        )));
    }
    if l4_len < 8 || seg.len() < 8 {
        return None;
    }
    if proto == ipproto::UDP {
        let length = u16::from_be_bytes([seg[4], seg[5]]);
        let end = if (8..=seg.len()).contains(&usize::from(length)) {
            usize::from(length)
        } else {
            seg.len()
        };
        return Some(L4::Udp(Udp {
            sport: u16::from_be_bytes([seg[0], seg[1]]),
            dport: u16::from_be_bytes([seg[2], seg[3]]),
            length,
            checksum: u16::from_be_bytes([seg[6], seg[7]]),
            payload: &seg[8..end],
        }));
    }
    if !icmp {
        return None;
    }
    let i = Icmp {
        icmp_type: seg[0],
        code: seg[1],
        id: u16::from_be_bytes([seg[4], seg[5]]),
        seq: u16::from_be_bytes([seg[6], seg[7]]),
        body: &seg[8..],
    };
    Some(if proto == ipproto::ICMP {
        L4::Icmp(i)
    } else {
        L4::Icmpv6(i)
    })
}

/// [`decode`] through the layers: link, IP, extension headers, L4.
fn decode_general<'a>(frame: &Frame<'a>) -> Result<Packet<'a>, DecodeError> {
    let link = super::link::parse(frame.linktype, frame.data)?;
    let ip = frame.data.get(link.offset..).unwrap_or(&[]);
    let on_wire = (frame.orig_len as usize)
        .max(frame.data.len())
        .saturating_sub(link.offset);
    let info = LinkInfo {
        src_mac: link.src_mac,
        pkttype: link.pkttype,
        wire_len: Some(on_wire.min(u32::MAX as usize) as u32),
    };
    decode_family(ip, link.family, info)
}

/// Decodes an IP datagram that starts at `ip[0]` (the family comes from the
/// version nibble). Used for datagrams reassembled by
/// [`crate::conntrack::defrag`].
pub fn decode_ip(ip: &[u8], link: LinkInfo) -> Result<Packet<'_>, DecodeError> {
    decode_family(ip, None, link)
}

fn family_name(f: Option<Family>) -> &'static str {
    match f {
        Some(Family::Ipv4) => "IPv4",
        Some(Family::Ipv6) => "IPv6",
        None => "IP",
    }
}

fn decode_family<'a>(
    ip: &'a [u8],
    family: Option<Family>,
    link: LinkInfo,
) -> Result<Packet<'a>, DecodeError> {
    let on_wire = link
        .wire_len
        .map_or(ip.len(), |w| (w as usize).max(ip.len()));
    let Some(&first) = ip.first() else {
        return Err(if on_wire == 0 {
            DecodeError::BadIpHeader {
                family: family_name(family),
                why: IpHeaderProblem::ShorterThanHeader {
                    on_wire: 0,
                    minimum: 20,
                },
            }
        } else {
            DecodeError::Truncated {
                layer: "IP header",
                needed: 20,
                have: 0,
            }
        });
    };
    let version = first >> 4;
    let family = match family {
        Some(f) => {
            let expected = if f == Family::Ipv4 { 4 } else { 6 };
            if version != expected {
                return Err(DecodeError::BadIpHeader {
                    family: family_name(Some(f)),
                    why: IpHeaderProblem::Version {
                        expected,
                        found: version,
                    },
                });
            }
            f
        }
        None => match version {
            4 => Family::Ipv4,
            6 => Family::Ipv6,
            v => {
                return Err(DecodeError::NotIp {
                    what: NotIp::RawVersion(v),
                });
            }
        },
    };
    match family {
        Family::Ipv4 => ipv4(ip, on_wire, link),
        Family::Ipv6 => ipv6(ip, on_wire, link),
    }
}

fn bad4(why: IpHeaderProblem) -> DecodeError {
    DecodeError::BadIpHeader {
        family: "IPv4",
        why,
    }
}

fn bad6(why: IpHeaderProblem) -> DecodeError {
    DecodeError::BadIpHeader {
        family: "IPv6",
        why,
    }
}

/// The order of checks follows `ip_rcv_core`: minimal header present,
/// version and IHL, whole header present, checksum (reported, not fatal:
/// the caller decides), then the total length against the frame.
fn ipv4<'a>(ip: &'a [u8], on_wire: usize, link: LinkInfo) -> Result<Packet<'a>, DecodeError> {
    let short = |minimum: usize| {
        if on_wire < minimum {
            bad4(IpHeaderProblem::ShorterThanHeader {
                on_wire: on_wire as u32,
                minimum: minimum as u32,
            })
        } else {
            DecodeError::Truncated {
                layer: "IPv4 header",
                needed: minimum,
                have: ip.len(),
            }
        }
    };
    if ip.len() < 20 {
        return Err(short(20));
    }
    let ihl = ip[0] & 0x0f;
    if ihl < 5 {
        return Err(bad4(IpHeaderProblem::Ihl { ihl }));
    }
    let hlen = ihl as usize * 4;
    if ip.len() < hlen {
        return Err(short(hlen));
    }
    // The header is read in place: the checks above are all an
    // `Ipv4HeaderSlice` would make (the version was checked by the caller).
    let h: &[u8; 20] = ip.first_chunk().expect("checked: 20 bytes or more");
    let ipv4_csum_ok = if hlen == 20 {
        checksum::verifies_20(h)
    } else {
        checksum::verifies(0, &ip[..hlen])
    };
    let total = u16::from_be_bytes([h[2], h[3]]);
    if (total as usize) < hlen {
        return Err(bad4(IpHeaderProblem::TotalLengthBelowHeader {
            total,
            header: hlen as u16,
        }));
    }
    if total as usize > on_wire {
        return Err(bad4(IpHeaderProblem::LongerThanFrame {
            ip_len: total as u32,
            on_wire: on_wire as u32,
        }));
    }
    let captured = ip.len().min(total as usize);
    let data = &ip[..captured];
    let src = Ipv4Addr::new(h[12], h[13], h[14], h[15]);
    let dst = Ipv4Addr::new(h[16], h[17], h[18], h[19]);
    let frag_offset = u32::from(u16::from_be_bytes([h[6] & 0x1f, h[7]])) * 8;
    let more = h[6] & 0x20 != 0;
    let frag = (more || frag_offset != 0).then_some(Fragment {
        id: u32::from(u16::from_be_bytes([h[4], h[5]])),
        offset: frag_offset,
        more,
    });
    let proto = h[9];
    let l4 = if frag_offset != 0 {
        L4::Other
    } else {
        l4(Family::Ipv4, proto, data, hlen, total as usize)?
    };
    Ok(Packet {
        family: Family::Ipv4,
        src: IpAddr::V4(src),
        dst: IpAddr::V4(dst),
        proto,
        ttl: h[8],
        tos: h[1],
        ip_len: total as u32,
        l4_offset: hlen as u32,
        frag,
        ip: data,
        truncated: captured < total as usize,
        ipv4_csum_ok,
        src_mac: link.src_mac,
        pkttype: link.pkttype.unwrap_or_else(|| pkttype_v4(dst)),
        l4,
    })
}

fn pkttype_v4(dst: Ipv4Addr) -> PktType {
    if dst.is_broadcast() {
        PktType::Broadcast
    } else if dst.is_multicast() {
        PktType::Multicast
    } else {
        PktType::Host
    }
}

fn pkttype_v6(dst: Ipv6Addr) -> PktType {
    if dst.is_multicast() {
        PktType::Multicast
    } else {
        PktType::Host
    }
}

const NEXTHDR_HOP: u8 = 0;
const NEXTHDR_ROUTING: u8 = 43;
const NEXTHDR_FRAGMENT: u8 = 44;
const NEXTHDR_AUTH: u8 = 51;
const NEXTHDR_NONE: u8 = 59;
const NEXTHDR_DEST: u8 = 60;

/// `ip6_rcv_core`'s device-independent checks (version, length against the
/// frame, multicast source, scope-0 multicast destination, hop-by-hop
/// structure), then the extension-header walk.
///
/// Not checked here, because they depend on the receiving device: loopback
/// addresses arriving on a non-loopback device, interface-local multicast.
fn ipv6<'a>(ip: &'a [u8], on_wire: usize, link: LinkInfo) -> Result<Packet<'a>, DecodeError> {
    if ip.len() < 40 {
        return Err(if on_wire < 40 {
            bad6(IpHeaderProblem::ShorterThanHeader {
                on_wire: on_wire as u32,
                minimum: 40,
            })
        } else {
            DecodeError::Truncated {
                layer: "IPv6 header",
                needed: 40,
                have: ip.len(),
            }
        });
    }
    // Read in place: the length check above and the caller's version check
    // are all an `Ipv6HeaderSlice` would make.
    let h: &[u8; 40] = ip.first_chunk().expect("checked: 40 bytes or more");
    let payload = usize::from(u16::from_be_bytes([h[4], h[5]]));
    let next = h[6];
    // A zero payload length with a hop-by-hop header announces a jumbogram
    // (RFC 2675): the frame is the datagram.
    let ip_len = if payload == 0 && next == NEXTHDR_HOP {
        on_wire
    } else {
        40 + payload
    };
    if ip_len > on_wire {
        return Err(bad6(IpHeaderProblem::LongerThanFrame {
            ip_len: ip_len as u32,
            on_wire: on_wire as u32,
        }));
    }
    let addr = |at: usize| {
        let a: [u8; 16] = h[at..at + 16].try_into().expect("16 bytes");
        Ipv6Addr::from(a)
    };
    let src = addr(8);
    let dst = addr(24);
    if src.is_multicast() {
        return Err(bad6(IpHeaderProblem::MulticastSource));
    }
    if dst.is_multicast() && dst.octets()[1] & 0x0f == 0 {
        return Err(bad6(IpHeaderProblem::MulticastScopeZero));
    }
    let captured = ip.len().min(ip_len);
    let data = &ip[..captured];
    if next == NEXTHDR_HOP {
        check_hop_by_hop(data, ip_len)?;
    }
    let walk = walk_ext_headers(data, ip_len, next, 40).map_err(|(needed, have)| {
        DecodeError::Truncated {
            layer: "IPv6 extension header",
            needed,
            have,
        }
    })?;
    let l4 = match walk.end {
        WalkEnd::Upper => l4(Family::Ipv6, walk.proto, data, walk.offset, ip_len)?,
        WalkEnd::NonFirstFragment => L4::Other,
        WalkEnd::NoUpperLayer => L4::Malformed,
    };
    Ok(Packet {
        family: Family::Ipv6,
        src: IpAddr::V6(src),
        dst: IpAddr::V6(dst),
        proto: walk.proto,
        ttl: h[7],
        tos: (h[0] << 4) | (h[1] >> 4),
        ip_len: ip_len.min(u32::MAX as usize) as u32,
        l4_offset: walk.offset as u32,
        frag: walk.frag,
        ip: data,
        truncated: captured < ip_len,
        ipv4_csum_ok: true,
        src_mac: link.src_mac,
        pkttype: link.pkttype.unwrap_or_else(|| pkttype_v6(dst)),
        l4,
    })
}

/// The hop-by-hop header must lie inside the datagram and its options must
/// not run past it (`ipv6_parse_hopopts` drops the packet otherwise).
fn check_hop_by_hop(data: &[u8], ip_len: usize) -> Result<(), DecodeError> {
    let bad = || bad6(IpHeaderProblem::HopByHop);
    if ip_len < 42 {
        return Err(bad());
    }
    let cut = |needed| DecodeError::Truncated {
        layer: "IPv6 hop-by-hop header",
        needed,
        have: data.len(),
    };
    let len = (*data.get(41).ok_or_else(|| cut(42))? as usize + 1) * 8;
    if 40 + len > ip_len {
        return Err(bad());
    }
    let opts = data.get(42..40 + len).ok_or_else(|| cut(40 + len))?;
    let mut i = 0;
    while i < opts.len() {
        match opts[i] {
            0 => i += 1,
            _ => {
                let Some(&olen) = opts.get(i + 1) else {
                    return Err(bad());
                };
                i += 2 + olen as usize;
                if i > opts.len() {
                    return Err(bad());
                }
            }
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WalkEnd {
    /// Reached an upper-layer header at `offset`.
    Upper,
    /// A fragment header with a non-zero offset: the upper-layer header is in
    /// another fragment. `proto` is the fragment header's next header.
    NonFirstFragment,
    /// No Next Header, or an extension header the datagram does not hold:
    /// `ipv6_skip_exthdr` fails and conntrack calls the packet INVALID.
    NoUpperLayer,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct ExtWalk {
    pub proto: u8,
    pub offset: usize,
    pub frag: Option<Fragment>,
    /// Offset of the fragment header, if any.
    pub frag_hdr: Option<usize>,
    /// Offset of the byte that names the header at `frag_hdr` (6 for the
    /// fixed header's next-header field).
    pub frag_prev_nexthdr: usize,
    pub end: WalkEnd,
}

/// Walks IPv6 extension headers as `ipv6_skip_exthdr` does: hop-by-hop,
/// routing, destination options, fragment and AH are skipped; anything else
/// (ESP included) is the upper layer. `limit` is the datagram length; an
/// error `(needed, have)` means the capture cut a header the datagram has.
pub(crate) fn walk_ext_headers(
    data: &[u8],
    limit: usize,
    mut nh: u8,
    start: usize,
) -> Result<ExtWalk, (usize, usize)> {
    let mut off = start;
    let mut w = ExtWalk {
        proto: nh,
        offset: start,
        frag: None,
        frag_hdr: None,
        frag_prev_nexthdr: 6,
        end: WalkEnd::Upper,
    };
    let mut prev_nexthdr = 6;
    loop {
        match nh {
            NEXTHDR_HOP | NEXTHDR_ROUTING | NEXTHDR_FRAGMENT | NEXTHDR_AUTH | NEXTHDR_DEST => {
                let need = if nh == NEXTHDR_FRAGMENT { 8 } else { 2 };
                if off + need > limit {
                    return Ok(ExtWalk {
                        proto: nh,
                        offset: off,
                        end: WalkEnd::NoUpperLayer,
                        ..w
                    });
                }
                if off + need > data.len() {
                    return Err((off + need, data.len()));
                }
                let hdrlen = match nh {
                    NEXTHDR_FRAGMENT => {
                        let fo = u16::from_be_bytes([data[off + 2], data[off + 3]]);
                        let id = u32::from_be_bytes([
                            data[off + 4],
                            data[off + 5],
                            data[off + 6],
                            data[off + 7],
                        ]);
                        w.frag = Some(Fragment {
                            id,
                            offset: (fo & !7) as u32,
                            more: fo & 1 != 0,
                        });
                        w.frag_hdr = Some(off);
                        w.frag_prev_nexthdr = prev_nexthdr;
                        if fo & !7 != 0 {
                            return Ok(ExtWalk {
                                proto: data[off],
                                offset: off + 8,
                                end: WalkEnd::NonFirstFragment,
                                ..w
                            });
                        }
                        8
                    }
                    NEXTHDR_AUTH => (data[off + 1] as usize + 2) * 4,
                    _ => (data[off + 1] as usize + 1) * 8,
                };
                prev_nexthdr = off;
                nh = data[off];
                off += hdrlen;
            }
            NEXTHDR_NONE => {
                return Ok(ExtWalk {
                    proto: nh,
                    offset: off,
                    end: WalkEnd::NoUpperLayer,
                    ..w
                });
            }
            _ => {
                return Ok(ExtWalk {
                    proto: nh,
                    offset: off,
                    end: WalkEnd::Upper,
                    ..w
                });
            }
        }
    }
}

/// The L4 view of the datagram `data` (captured bytes, at most `ip_len`)
/// whose L4 header starts at `off`.
fn l4(
    family: Family,
    proto: u8,
    data: &[u8],
    off: usize,
    ip_len: usize,
) -> Result<L4<'_>, DecodeError> {
    let l4_len = ip_len.saturating_sub(off);
    let seg = data.get(off..).unwrap_or(&[]);
    match (proto, family) {
        (ipproto::TCP, _) => tcp(seg, l4_len),
        (ipproto::UDP, _) => udp(seg, l4_len),
        (ipproto::ICMP, Family::Ipv4) => {
            icmp(seg, l4_len).map(|i| i.map_or(L4::Malformed, L4::Icmp))
        }
        (ipproto::ICMPV6, Family::Ipv6) => {
            icmp(seg, l4_len).map(|i| i.map_or(L4::Malformed, L4::Icmpv6))
        }
        _ => Ok(L4::Other),
    }
}

fn cut(layer: &'static str, needed: usize, have: usize) -> DecodeError {
    DecodeError::Truncated {
        layer,
        needed,
        have,
    }
}

/// `tcp_error`'s structural checks: a header shorter than 20 bytes, a data
/// offset below 5, or one pointing past the segment is malformed.
fn tcp(seg: &[u8], l4_len: usize) -> Result<L4<'_>, DecodeError> {
    if l4_len < 20 {
        return Ok(L4::Malformed);
    }
    if seg.len() < 20 {
        return Err(cut("TCP header", 20, seg.len()));
    }
    let hl = (seg[12] >> 4) as usize * 4;
    if hl < 20 || hl > l4_len {
        return Ok(L4::Malformed);
    }
    let options = &seg[20..hl.min(seg.len())];
    Ok(L4::Tcp(tcp_header(
        seg,
        hl,
        l4_len,
        options,
        seg.get(hl..).unwrap_or(&[]),
    )))
}

/// The TCP header of `seg` (at least its 20 fixed bytes), whose header
/// length `hl` (from the data offset) lies within `l4_len`, with the
/// option and payload bytes as the caller found them captured.
#[inline(always)]
fn tcp_header<'a>(
    seg: &'a [u8],
    hl: usize,
    l4_len: usize,
    options: &'a [u8],
    payload: &'a [u8],
) -> Tcp<'a> {
    let ack = u32::from_be_bytes([seg[8], seg[9], seg[10], seg[11]]);
    Tcp {
        sport: u16::from_be_bytes([seg[0], seg[1]]),
        dport: u16::from_be_bytes([seg[2], seg[3]]),
        seq: u32::from_be_bytes([seg[4], seg[5], seg[6], seg[7]]),
        ack,
        flags: seg[13],
        window: u16::from_be_bytes([seg[14], seg[15]]),
        header_len: hl as u8,
        payload_len: (l4_len - hl) as u32,
        opts: tcp_options(options, ack),
        options,
        payload,
    }
}

const TCPOPT_EOL: u8 = 0;
const TCPOPT_NOP: u8 = 1;
const TCPOPT_MSS: u8 = 2;
const TCPOPT_WINDOW: u8 = 3;
const TCPOPT_SACK_PERM: u8 = 4;
const TCPOPT_SACK: u8 = 5;
const TCPOPT_TIMESTAMP: u8 = 8;

/// Reads the options the way conntrack's option scans do: EOL ends the scan,
/// NOP is one byte, every other option carries a length; a length below 2
/// or past the end stops the scan, unknown kinds are skipped. An option is
/// only taken when its length is the one its kind requires. Only the first
/// well-formed SACK option counts (`tcp_sack` returns after it).
///
/// Inlined so that the common layouts are written straight into the packet
/// being built.
#[inline(always)]
pub(crate) fn tcp_options(opts: &[u8], ack: u32) -> TcpOptions {
    let be32 = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    // The layouts nearly every segment carries, recognised in one go; the
    // scan below gives the same for them.
    match opts.len() {
        0 => return TcpOptions::default(),
        // NOP, NOP, timestamp: established Linux and BSD traffic.
        12 if opts[..4] == [TCPOPT_NOP, TCPOPT_NOP, TCPOPT_TIMESTAMP, 10] => {
            return TcpOptions {
                timestamp: Some((be32(&opts[4..]), be32(&opts[8..]))),
                ..TcpOptions::default()
            };
        }
        // MSS, SACK permitted, timestamp, NOP, window scale: a Linux SYN.
        20 if opts[..2] == [TCPOPT_MSS, 4]
            && opts[4..8] == [TCPOPT_SACK_PERM, 2, TCPOPT_TIMESTAMP, 10]
            && opts[16..19] == [TCPOPT_NOP, TCPOPT_WINDOW, 3] =>
        {
            return TcpOptions {
                mss: Some(u16::from_be_bytes([opts[2], opts[3]])),
                wscale: Some(opts[19]),
                sack_perm: true,
                sack_max: None,
                timestamp: Some((be32(&opts[8..]), be32(&opts[12..]))),
            };
        }
        _ => {}
    }
    tcp_options_scan(opts, ack)
}

/// The general option scan behind [`tcp_options`].
fn tcp_options_scan(opts: &[u8], ack: u32) -> TcpOptions {
    let mut out = TcpOptions::default();
    let mut i = 0;
    while i < opts.len() {
        let kind = opts[i];
        match kind {
            TCPOPT_EOL => break,
            TCPOPT_NOP => {
                i += 1;
                continue;
            }
            _ => {}
        }
        let Some(&size) = opts.get(i + 1) else { break };
        let size = size as usize;
        if size < 2 || size > opts.len() - i {
            break;
        }
        let body = &opts[i + 2..i + size];
        match (kind, size) {
            (TCPOPT_MSS, 4) => out.mss = Some(u16::from_be_bytes([body[0], body[1]])),
            (TCPOPT_WINDOW, 3) => out.wscale = Some(body[0]),
            (TCPOPT_SACK_PERM, 2) => out.sack_perm = true,
            (TCPOPT_TIMESTAMP, 10) => {
                out.timestamp = Some((
                    u32::from_be_bytes([body[0], body[1], body[2], body[3]]),
                    u32::from_be_bytes([body[4], body[5], body[6], body[7]]),
                ))
            }
            (TCPOPT_SACK, s) if out.sack_max.is_none() && s >= 10 && (s - 2) % 8 == 0 => {
                let mut max = ack;
                for block in body.chunks_exact(8) {
                    let right = u32::from_be_bytes([block[4], block[5], block[6], block[7]]);
                    if (max.wrapping_sub(right) as i32) < 0 {
                        max = right;
                    }
                }
                out.sack_max = Some(max);
            }
            _ => {}
        }
        i += size;
    }
    out
}

/// `udp_error`'s first check: fewer than 8 bytes is malformed. The length
/// field is reported as is (conntrack compares it to the datagram).
fn udp(seg: &[u8], l4_len: usize) -> Result<L4<'_>, DecodeError> {
    if l4_len < 8 {
        return Ok(L4::Malformed);
    }
    if seg.len() < 8 {
        return Err(cut("UDP header", 8, seg.len()));
    }
    let length = u16::from_be_bytes([seg[4], seg[5]]);
    let end = if (8..=seg.len()).contains(&(length as usize)) {
        length as usize
    } else {
        seg.len()
    };
    Ok(L4::Udp(Udp {
        sport: u16::from_be_bytes([seg[0], seg[1]]),
        dport: u16::from_be_bytes([seg[2], seg[3]]),
        length,
        checksum: u16::from_be_bytes([seg[6], seg[7]]),
        payload: &seg[8..end],
    }))
}

/// ICMP and ICMPv6 share the 8-byte header layout; fewer bytes in the
/// datagram is malformed ("short packet").
fn icmp(seg: &[u8], l4_len: usize) -> Result<Option<Icmp<'_>>, DecodeError> {
    if l4_len < 8 {
        return Ok(None);
    }
    if seg.len() < 8 {
        return Err(cut("ICMP header", 8, seg.len()));
    }
    Ok(Some(Icmp {
        icmp_type: seg[0],
        code: seg[1],
        id: u16::from_be_bytes([seg[4], seg[5]]),
        seq: u16::from_be_bytes([seg[6], seg[7]]),
        body: &seg[8..],
    }))
}

#[cfg(test)]
#[path = "decode_tests.rs"]
mod tests;
