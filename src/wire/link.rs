//! Link layers: find where the IP header starts, which family the link says
//! it is, and the facts `-m mac` / `-m pkttype` use.
//!
//! VLAN tags are read with etherparse's header slices. The Ethernet header
//! is read in place at its fixed offsets (it runs for nearly every frame,
//! and a slice type buys nothing for 14 bytes). Linux cooked capture (SLL,
//! SLL2) and BSD loopback are read by hand too: etherparse has no SLL2, and
//! its SLL slice refuses packet and protocol types it does not know, which
//! a capture may legitimately hold.

use super::error::{DecodeError, NotIp};
use super::{Family, PktType};
use crate::capture::Linktype;
use etherparse::SingleVlanHeaderSlice;

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const ETH_P_QINQ1: u16 = 0x9100;
const ETH_P_QINQ2: u16 = 0x9200;
const MAX_VLAN_TAGS: usize = 8;

/// What the link layer told about the packet.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Link {
    /// Offset of the IP header in the frame.
    pub offset: usize,
    /// The family the link layer announces; `None` for raw IP, where the
    /// version nibble decides.
    pub family: Option<Family>,
    pub src_mac: Option<[u8; 6]>,
    /// From the destination MAC or the cooked header's packet type; `None`
    /// when the link layer does not say.
    pub pkttype: Option<PktType>,
}

#[inline]
pub(crate) fn parse(linktype: Linktype, data: &[u8]) -> Result<Link, DecodeError> {
    match linktype {
        Linktype::ETHERNET => ethernet(data),
        Linktype::LINUX_SLL => sll(data),
        Linktype::LINUX_SLL2 => sll2(data),
        Linktype::RAW => Ok(Link {
            offset: 0,
            family: None,
            src_mac: None,
            pkttype: None,
        }),
        Linktype::IPV4 => Ok(Link {
            offset: 0,
            family: Some(Family::Ipv4),
            src_mac: None,
            pkttype: None,
        }),
        Linktype::IPV6 => Ok(Link {
            offset: 0,
            family: Some(Family::Ipv6),
            src_mac: None,
            pkttype: None,
        }),
        Linktype::NULL | Linktype::LOOP => bsd_loopback(data),
        other => Err(DecodeError::UnsupportedLinktype { linktype: other }),
    }
}

/// The kernel's `eth_type_trans` classification. Unicast frames are taken to
/// be addressed to the simulated host: ctsim does not know its MAC, so it
/// never concludes OTHERHOST (which `ip_rcv` would drop).
pub(crate) fn pkttype_from_mac(dst: [u8; 6]) -> PktType {
    if dst == [0xff; 6] {
        PktType::Broadcast
    } else if dst[0] & 1 != 0 {
        PktType::Multicast
    } else {
        PktType::Host
    }
}

#[inline]
fn ethernet(data: &[u8]) -> Result<Link, DecodeError> {
    let Some(h) = data.first_chunk::<14>() else {
        return Err(DecodeError::LinkTruncated {
            layer: "Ethernet",
            needed: 14,
            have: data.len(),
        });
    };
    let src_mac = Some([h[6], h[7], h[8], h[9], h[10], h[11]]);
    let pkttype = Some(pkttype_from_mac([h[0], h[1], h[2], h[3], h[4], h[5]]));
    let ethertype = u16::from_be_bytes([h[12], h[13]]);
    // Untagged IP, the common case, needs neither the tag walk nor the
    // classification of other types.
    let family = match ethertype {
        ETH_P_IP => Family::Ipv4,
        ETH_P_IPV6 => Family::Ipv6,
        _ => {
            let (offset, ethertype) = skip_vlan_tags(data, 14, ethertype)?;
            return ip_by_ethertype(ethertype, offset, src_mac, pkttype);
        }
    };
    Ok(Link {
        offset: 14,
        family: Some(family),
        src_mac,
        pkttype,
    })
}

/// Follows 802.1Q, 802.1ad and the old QinQ tag types; the simulated host is
/// assumed to see the untagged packet (tags stripped by its VLAN device).
fn skip_vlan_tags(
    data: &[u8],
    mut offset: usize,
    mut ethertype: u16,
) -> Result<(usize, u16), DecodeError> {
    let mut tags = 0;
    while matches!(
        ethertype,
        ETH_P_8021Q | ETH_P_8021AD | ETH_P_QINQ1 | ETH_P_QINQ2
    ) {
        if tags == MAX_VLAN_TAGS {
            return Err(DecodeError::NotIp {
                what: NotIp::TooManyVlanTags,
            });
        }
        let rest = &data[offset..];
        let tag =
            SingleVlanHeaderSlice::from_slice(rest).map_err(|_| DecodeError::LinkTruncated {
                layer: "VLAN tag",
                needed: 4,
                have: rest.len(),
            })?;
        ethertype = tag.ether_type().0;
        offset += 4;
        tags += 1;
    }
    Ok((offset, ethertype))
}

fn ip_by_ethertype(
    ethertype: u16,
    offset: usize,
    src_mac: Option<[u8; 6]>,
    pkttype: Option<PktType>,
) -> Result<Link, DecodeError> {
    let family = match ethertype {
        ETH_P_IP => Family::Ipv4,
        ETH_P_IPV6 => Family::Ipv6,
        t if t < 0x0600 => {
            return Err(DecodeError::NotIp {
                what: NotIp::Llc { length: t },
            });
        }
        t => {
            return Err(DecodeError::NotIp {
                what: NotIp::Ethertype(t),
            });
        }
    };
    Ok(Link {
        offset,
        family: Some(family),
        src_mac,
        pkttype,
    })
}

/// `PACKET_*` values of the cooked headers. OUTGOING (4) packets left the
/// capturing host; for them the class comes from the destination address.
fn pkttype_from_sll(v: u16) -> Option<PktType> {
    match v {
        0 => Some(PktType::Host),
        1 => Some(PktType::Broadcast),
        2 => Some(PktType::Multicast),
        3 => Some(PktType::OtherHost),
        _ => None,
    }
}

fn mac_from_cooked(halen: usize, addr: &[u8]) -> Option<[u8; 6]> {
    (halen == 6).then(|| [addr[0], addr[1], addr[2], addr[3], addr[4], addr[5]])
}

/// LINUX_SLL: packet type, ARPHRD type, address length, 8 address bytes,
/// protocol — 16 bytes, big-endian.
fn sll(data: &[u8]) -> Result<Link, DecodeError> {
    if data.len() < 16 {
        return Err(DecodeError::LinkTruncated {
            layer: "Linux cooked (SLL)",
            needed: 16,
            have: data.len(),
        });
    }
    let pkttype = pkttype_from_sll(u16::from_be_bytes([data[0], data[1]]));
    let halen = u16::from_be_bytes([data[4], data[5]]) as usize;
    let src_mac = mac_from_cooked(halen, &data[6..14]);
    let proto = u16::from_be_bytes([data[14], data[15]]);
    let (offset, ethertype) = skip_vlan_tags(data, 16, proto)?;
    ip_by_ethertype(ethertype, offset, src_mac, pkttype)
}

/// LINUX_SLL2: protocol, reserved, interface index, ARPHRD type, packet
/// type, address length, 8 address bytes — 20 bytes.
fn sll2(data: &[u8]) -> Result<Link, DecodeError> {
    if data.len() < 20 {
        return Err(DecodeError::LinkTruncated {
            layer: "Linux cooked v2 (SLL2)",
            needed: 20,
            have: data.len(),
        });
    }
    let proto = u16::from_be_bytes([data[0], data[1]]);
    let pkttype = pkttype_from_sll(data[10] as u16);
    let src_mac = mac_from_cooked(data[11] as usize, &data[12..20]);
    let (offset, ethertype) = skip_vlan_tags(data, 20, proto)?;
    ip_by_ethertype(ethertype, offset, src_mac, pkttype)
}

/// BSD loopback (NULL: host byte order of the writer; LOOP: network order).
/// Both orders are accepted for both: the value tells which it is.
/// AF_INET is 2 everywhere; AF_INET6 is 24 (NetBSD, OpenBSD), 28 (FreeBSD),
/// 30 (macOS) — and 10 on Linux.
fn bsd_loopback(data: &[u8]) -> Result<Link, DecodeError> {
    if data.len() < 4 {
        return Err(DecodeError::LinkTruncated {
            layer: "BSD loopback",
            needed: 4,
            have: data.len(),
        });
    }
    let b = [data[0], data[1], data[2], data[3]];
    let family_of = |v: u32| match v {
        2 => Some(Family::Ipv4),
        10 | 24 | 28 | 30 => Some(Family::Ipv6),
        _ => None,
    };
    let le = u32::from_le_bytes(b);
    let be = u32::from_be_bytes(b);
    let family = family_of(le)
        .or_else(|| family_of(be))
        .ok_or(DecodeError::NotIp {
            what: NotIp::AddressFamily(le.min(be)),
        })?;
    Ok(Link {
        offset: 4,
        family: Some(family),
        src_mac: None,
        pkttype: None,
    })
}
