//! Capture reading and just enough IP decoding for the oracle.
//!
//! The oracle injects the captured IP bytes unchanged, so it needs far less
//! than the model's decoder: the link layer stripped, addresses to pick the
//! side a packet comes from, the fields printed in a row, the datagram id of
//! fragments, and the conntrack tuple to ask ctnetlink about afterwards.
//!
//! TODO(wire): replace the reader and the link/IP parsing here with
//! `crate::capture::CaptureReader` and `crate::wire::decode` once they land on
//! main; only `IpPacket`'s derived fields (tuple, side) would stay here.
//!
//! Packets are copied out of the reader (the oracle needs the whole capture
//! before it builds the namespaces: every address gets a route).

use std::fs::File;
use std::io::BufReader;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use pcap_parser::pcapng::Block;
use pcap_parser::{PcapBlockOwned, PcapError, create_reader};

use super::OracleError;
use crate::time::Timestamp;
use crate::wire::{Family, Fragment, ipproto};

/// One capture record, as the oracle needs it.
#[derive(Debug, Clone)]
pub(crate) struct CapturedPacket {
    pub index: u64,
    pub ts: Timestamp,
    /// Source MAC from an Ethernet or cooked header.
    pub src_mac: Option<[u8; 6]>,
    /// Destination MAC when the frame was group-addressed (broadcast or
    /// multicast); unicast frames are re-addressed to the firewall.
    pub group_dst_mac: Option<[u8; 6]>,
    pub ip: Result<IpPacket, &'static str>,
}

/// An IPv4 or IPv6 datagram with the fields the oracle uses.
#[derive(Debug, Clone)]
pub(crate) struct IpPacket {
    /// From the IP header on, trimmed to the header's length (link padding
    /// removed) and zero-padded when the snap length cut it.
    pub bytes: Vec<u8>,
    /// Zero bytes appended because the capture was cut short.
    pub padded: u32,
    pub family: Family,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// Upper-layer protocol (after IPv6 extension headers).
    pub proto: u8,
    /// Length according to the IP header.
    pub ip_len: u32,
    pub frag: Option<Fragment>,
    pub l4: L4Info,
    /// IPv6 extension headers walked, in order (`hbh`, `rh`, `frag`, …).
    pub ext: Vec<&'static str>,
}

/// L4 fields, where visible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum L4Info {
    /// No L4 header visible: a non-first fragment, a protocol without
    /// ports, or a header cut short.
    None,
    Ports {
        sport: u16,
        dport: u16,
        tcp_flags: Option<u8>,
    },
    Icmp {
        icmp_type: u8,
        code: u8,
        id: u16,
        /// For error messages: the tuple of the quoted packet.
        embedded: Option<Tuple>,
    },
}

/// A conntrack tuple (as ctnetlink takes it), without zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Tuple {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub l4: TupleL4,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum TupleL4 {
    None,
    Ports(u16, u16),
    Icmp { id: u16, icmp_type: u8, code: u8 },
}

impl IpPacket {
    /// The tuple conntrack files this packet under, given the L4 info of the
    /// datagram (for fragments: the first fragment's).
    pub fn tuple_with(&self, l4: L4Info) -> Option<Tuple> {
        let l4 = match l4 {
            L4Info::Ports { sport, dport, .. } => TupleL4::Ports(sport, dport),
            L4Info::Icmp {
                embedded: Some(t), ..
            } => return Some(t),
            L4Info::Icmp {
                icmp_type,
                code,
                id,
                ..
            } => TupleL4::Icmp {
                id,
                icmp_type,
                code,
            },
            L4Info::None if super::row::has_ports(self.proto) => return None,
            L4Info::None => TupleL4::None,
        };
        Some(Tuple {
            src: self.src,
            dst: self.dst,
            proto: self.proto,
            l4,
        })
    }

    /// Key identifying the datagram a fragment belongs to.
    pub fn frag_key(&self) -> Option<super::DatagramKey> {
        let f = self.frag?;
        let proto = if self.family == Family::Ipv4 {
            self.proto
        } else {
            0
        };
        Some((self.src, self.dst, proto, f.id))
    }
}

/// Reads every packet record of a pcap or pcapng file.
pub(crate) fn read_capture(path: &Path) -> Result<Vec<CapturedPacket>, OracleError> {
    let cap_err = |msg: String| OracleError::Capture {
        path: path.to_path_buf(),
        msg,
    };
    let file = File::open(path).map_err(|e| cap_err(e.to_string()))?;
    let mut reader = create_reader(1 << 20, BufReader::new(file))
        .map_err(|e| cap_err(format!("not a pcap/pcapng file ({e:?})")))?;
    // pcapng: per interface (linktype, units per second, offset seconds).
    let mut ifaces: Vec<(u16, u64, i64)> = Vec::new();
    let mut legacy: Option<(u16, bool)> = None;
    let mut out = Vec::new();
    loop {
        match reader.next() {
            Ok((offset, block)) => {
                let rec: Option<(u16, Timestamp, &[u8])> = match block {
                    PcapBlockOwned::LegacyHeader(h) => {
                        legacy = Some((h.network.0 as u16, h.is_nanosecond_precision()));
                        None
                    }
                    PcapBlockOwned::Legacy(b) => {
                        let (lt, nanos) = legacy.unwrap_or((1, false));
                        let frac = if nanos {
                            b.ts_usec as u64
                        } else {
                            b.ts_usec as u64 * 1000
                        };
                        let n = (b.caplen as usize).min(b.data.len());
                        Some((
                            lt,
                            Timestamp::from_secs_nanos(b.ts_sec as u64, frac),
                            &b.data[..n],
                        ))
                    }
                    PcapBlockOwned::NG(Block::SectionHeader(_)) => {
                        ifaces.clear();
                        None
                    }
                    PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                        let res = idb.ts_resolution().unwrap_or(1_000_000);
                        ifaces.push((idb.linktype.0 as u16, res, idb.ts_offset()));
                        None
                    }
                    PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                        let &(lt, res, off) =
                            ifaces.get(epb.if_id as usize).unwrap_or(&(1, 1_000_000, 0));
                        let raw = ((epb.ts_high as u64) << 32) | epb.ts_low as u64;
                        let secs = (raw / res) as i64 + off;
                        let frac = raw % res;
                        let nanos = (frac as u128 * 1_000_000_000 / res as u128) as u64;
                        let n = (epb.caplen as usize).min(epb.data.len());
                        Some((
                            lt,
                            Timestamp::from_secs_nanos(secs.max(0) as u64, nanos),
                            &epb.data[..n],
                        ))
                    }
                    PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                        let lt = ifaces.first().map_or(1, |i| i.0);
                        let n = (spb.origlen as usize).min(spb.data.len());
                        Some((lt, Timestamp(0), &spb.data[..n]))
                    }
                    PcapBlockOwned::NG(_) => None,
                };
                if let Some((lt, ts, data)) = rec {
                    let index = out.len() as u64 + 1;
                    out.push(decode_frame(index, ts, lt, data));
                }
                reader.consume(offset);
            }
            Err(PcapError::Eof) => break,
            Err(PcapError::Incomplete(_)) => {
                if reader.refill().is_err() {
                    return Err(cap_err("read error".into()));
                }
            }
            Err(PcapError::UnexpectedEof) => break, // a truncated last record
            Err(e) => return Err(cap_err(format!("{e:?}"))),
        }
    }
    Ok(out)
}

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn mac_at(b: &[u8], at: usize) -> Option<[u8; 6]> {
    b.get(at..at + 6)?.try_into().ok()
}

/// Strips the link layer and decodes the IP part of one record.
pub(crate) fn decode_frame(
    index: u64,
    ts: Timestamp,
    linktype: u16,
    data: &[u8],
) -> CapturedPacket {
    let mut pkt = CapturedPacket {
        index,
        ts,
        src_mac: None,
        group_dst_mac: None,
        ip: Err("not-ip"),
    };
    let (ethertype, l3): (Option<u16>, &[u8]) = match linktype {
        // Ethernet, with any number of VLAN / QinQ tags.
        1 => {
            let (Some(dst), Some(src)) = (mac_at(data, 0), mac_at(data, 6)) else {
                pkt.ip = Err("short-frame");
                return pkt;
            };
            pkt.src_mac = Some(src);
            if dst[0] & 1 != 0 {
                pkt.group_dst_mac = Some(dst);
            }
            let mut at = 12;
            let mut et = be16(data, at);
            while matches!(et, Some(0x8100 | 0x88a8 | 0x9100)) {
                at += 4;
                et = be16(data, at);
            }
            (et, data.get(at + 2..).unwrap_or(&[]))
        }
        // Linux cooked v1.
        113 => {
            let pkttype = be16(data, 0);
            let hatype = be16(data, 2);
            if hatype == Some(1) && be16(data, 4) == Some(6) {
                pkt.src_mac = mac_at(data, 6);
            }
            if pkttype == Some(1) {
                pkt.group_dst_mac = Some([0xff; 6]);
            }
            (be16(data, 14), data.get(16..).unwrap_or(&[]))
        }
        // Linux cooked v2.
        276 => {
            let hatype = be16(data, 8);
            if hatype == Some(1) && data.get(11) == Some(&6) {
                pkt.src_mac = mac_at(data, 12);
            }
            if data.get(10) == Some(&1) {
                pkt.group_dst_mac = Some([0xff; 6]);
            }
            (be16(data, 0), data.get(20..).unwrap_or(&[]))
        }
        // Raw IP.
        101 | 228 | 229 | 12 | 14 => (None, data),
        // BSD loopback: a 4-byte address family in either byte order.
        0 | 108 => {
            let fam = data.get(..4).map(|b| {
                let le = u32::from_le_bytes(b.try_into().unwrap_or_default());
                let be = u32::from_be_bytes(b.try_into().unwrap_or_default());
                le.min(be)
            });
            let et = match fam {
                Some(2) => Some(ETH_P_IP),
                Some(24 | 28 | 30) => Some(ETH_P_IPV6),
                _ => Some(0),
            };
            (et, data.get(4..).unwrap_or(&[]))
        }
        _ => {
            pkt.ip = Err("unsupported-linktype");
            return pkt;
        }
    };
    let version = l3.first().map(|b| b >> 4);
    pkt.ip = match (ethertype, version) {
        (Some(ETH_P_IP) | None, Some(4)) => decode_ipv4(l3),
        (Some(ETH_P_IPV6) | None, Some(6)) => decode_ipv6(l3),
        (Some(ETH_P_IP | ETH_P_IPV6), _) => Err("bad-ip-version"),
        _ => Err("not-ip"),
    };
    if let (Ok(ip), None) = (&pkt.ip, pkt.group_dst_mac) {
        pkt.group_dst_mac = multicast_mac(ip.dst);
    }
    pkt
}

/// The Ethernet group address an IP multicast / broadcast destination maps to.
pub(crate) fn multicast_mac(dst: IpAddr) -> Option<[u8; 6]> {
    match dst {
        IpAddr::V4(a) if a.is_broadcast() => Some([0xff; 6]),
        IpAddr::V4(a) if a.is_multicast() => {
            let o = a.octets();
            Some([0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]])
        }
        IpAddr::V6(a) if a.is_multicast() => {
            let o = a.octets();
            Some([0x33, 0x33, o[12], o[13], o[14], o[15]])
        }
        _ => None,
    }
}

/// Copies the datagram out, trimmed to `ip_len` and padded up to it.
fn datagram_bytes(l3: &[u8], ip_len: usize) -> (Vec<u8>, u32) {
    let mut v = l3[..l3.len().min(ip_len)].to_vec();
    let pad = ip_len.saturating_sub(v.len());
    v.resize(v.len() + pad, 0);
    (v, pad as u32)
}

fn decode_ipv4(l3: &[u8]) -> Result<IpPacket, &'static str> {
    if l3.len() < 20 {
        return Err("short-ipv4-header");
    }
    let ihl = (l3[0] & 0x0f) as usize * 4;
    let tot = be16(l3, 2).unwrap_or(0) as usize;
    let src = IpAddr::V4(Ipv4Addr::new(l3[12], l3[13], l3[14], l3[15]));
    let dst = IpAddr::V4(Ipv4Addr::new(l3[16], l3[17], l3[18], l3[19]));
    let proto = l3[9];
    let id = be16(l3, 4).unwrap_or(0) as u32;
    let fo = be16(l3, 6).unwrap_or(0);
    let offset = (fo & 0x1fff) as u32 * 8;
    let more = fo & 0x2000 != 0;
    let frag = (more || offset != 0).then_some(Fragment { id, offset, more });
    // A header the kernel will refuse (ip_rcv) is still injected as captured.
    let (bytes, padded) = if tot >= 20 && ihl >= 20 {
        datagram_bytes(l3, tot)
    } else {
        (l3.to_vec(), 0)
    };
    let l4 = if offset == 0 && ihl >= 20 && tot >= ihl {
        let end = tot.min(l3.len());
        parse_l4(proto, l3.get(ihl..end).unwrap_or(&[]), Family::Ipv4)
    } else {
        L4Info::None
    };
    Ok(IpPacket {
        bytes,
        padded,
        family: Family::Ipv4,
        src,
        dst,
        proto,
        ip_len: tot as u32,
        frag,
        l4,
        ext: Vec::new(),
    })
}

/// Walks IPv6 extension headers as conntrack does: returns (upper protocol,
/// offset of its header, fragment info, names walked). ESP and "no next
/// header" end the walk.
fn walk_ipv6(b: &[u8]) -> (u8, usize, Option<Fragment>, Vec<&'static str>) {
    let mut next = b[6];
    let mut at = 40;
    let mut frag = None;
    let mut ext = Vec::new();
    loop {
        let name = match next {
            0 => "hbh",
            43 => "rh",
            44 => "frag",
            60 => "dst",
            51 => "ah",
            135 => "mh",
            139 => "hip",
            140 => "shim6",
            _ => break,
        };
        ext.push(name);
        let (Some(&nh), Some(&len)) = (b.get(at), b.get(at + 1)) else {
            break;
        };
        let hlen = match next {
            44 => {
                let fo = be16(b, at + 2).unwrap_or(0);
                let id = b
                    .get(at + 4..at + 8)
                    .map_or(0, |x| u32::from_be_bytes(x.try_into().unwrap_or_default()));
                frag = Some(Fragment {
                    id,
                    offset: (fo & 0xfff8) as u32,
                    more: fo & 1 != 0,
                });
                8
            }
            51 => (len as usize + 2) * 4,
            _ => (len as usize + 1) * 8,
        };
        next = nh;
        at += hlen;
        if frag.is_some_and(|f| f.offset != 0) {
            break;
        }
    }
    (next, at, frag, ext)
}

fn decode_ipv6(l3: &[u8]) -> Result<IpPacket, &'static str> {
    if l3.len() < 40 {
        return Err("short-ipv6-header");
    }
    let plen = be16(l3, 4).unwrap_or(0) as usize;
    if plen == 0 && l3[6] == 0 {
        return Err("ipv6-jumbogram");
    }
    let src = IpAddr::V6(Ipv6Addr::from(
        <[u8; 16]>::try_from(&l3[8..24]).unwrap_or_default(),
    ));
    let dst = IpAddr::V6(Ipv6Addr::from(
        <[u8; 16]>::try_from(&l3[24..40]).unwrap_or_default(),
    ));
    let ip_len = 40 + plen;
    let (bytes, padded) = datagram_bytes(l3, ip_len);
    let (proto, l4_off, frag, ext) = walk_ipv6(&l3[..l3.len().min(ip_len)]);
    let l4 = if frag.is_none_or(|f| f.offset == 0) {
        let end = ip_len.min(l3.len());
        parse_l4(proto, l3.get(l4_off..end).unwrap_or(&[]), Family::Ipv6)
    } else {
        L4Info::None
    };
    Ok(IpPacket {
        bytes,
        padded,
        family: Family::Ipv6,
        src,
        dst,
        proto,
        ip_len: ip_len as u32,
        frag,
        l4,
        ext,
    })
}

fn is_icmp_error(family: Family, icmp_type: u8) -> bool {
    match family {
        Family::Ipv4 => matches!(icmp_type, 3 | 4 | 5 | 11 | 12),
        Family::Ipv6 => matches!(icmp_type, 1..=4),
    }
}

fn parse_l4(proto: u8, l4: &[u8], family: Family) -> L4Info {
    match proto {
        ipproto::ICMP | ipproto::ICMPV6 if l4.len() >= 2 => {
            let (icmp_type, code) = (l4[0], l4[1]);
            let id = be16(l4, 4).unwrap_or(0);
            let embedded = if is_icmp_error(family, icmp_type) {
                l4.get(8..).and_then(|inner| embedded_tuple(inner, family))
            } else {
                None
            };
            L4Info::Icmp {
                icmp_type,
                code,
                id,
                embedded,
            }
        }
        p if super::row::has_ports(p) && l4.len() >= 4 => L4Info::Ports {
            sport: be16(l4, 0).unwrap_or(0),
            dport: be16(l4, 2).unwrap_or(0),
            tcp_flags: if p == ipproto::TCP {
                l4.get(13).copied()
            } else {
                None
            },
        },
        _ => L4Info::None,
    }
}

/// The tuple of the packet quoted in an ICMP error.
fn embedded_tuple(inner: &[u8], family: Family) -> Option<Tuple> {
    let (src, dst, proto, l4) = match family {
        Family::Ipv4 => {
            if inner.len() < 20 || inner[0] >> 4 != 4 {
                return None;
            }
            let ihl = (inner[0] & 0x0f) as usize * 4;
            let src = IpAddr::V4(Ipv4Addr::new(inner[12], inner[13], inner[14], inner[15]));
            let dst = IpAddr::V4(Ipv4Addr::new(inner[16], inner[17], inner[18], inner[19]));
            (src, dst, inner[9], inner.get(ihl..).unwrap_or(&[]))
        }
        Family::Ipv6 => {
            if inner.len() < 40 || inner[0] >> 4 != 6 {
                return None;
            }
            let src = IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&inner[8..24]).ok()?));
            let dst = IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&inner[24..40]).ok()?));
            let (proto, off, _, _) = walk_ipv6(inner);
            (src, dst, proto, inner.get(off..).unwrap_or(&[]))
        }
    };
    let l4 = match proto {
        ipproto::ICMP | ipproto::ICMPV6 if l4.len() >= 6 => TupleL4::Icmp {
            id: be16(l4, 4)?,
            icmp_type: l4[0],
            code: l4[1],
        },
        p if super::row::has_ports(p) => TupleL4::Ports(be16(l4, 0)?, be16(l4, 2)?),
        _ => TupleL4::None,
    };
    Some(Tuple {
        src,
        dst,
        proto,
        l4,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipv4_tcp(flags: u8, tot_extra: u16) -> Vec<u8> {
        let mut p = vec![
            0x45, 0, 0, 40, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        p.extend_from_slice(&[
            0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0,
        ]);
        let tot = 40 + tot_extra;
        p[2..4].copy_from_slice(&tot.to_be_bytes());
        p
    }

    #[test]
    fn ethernet_vlan_ipv4_tcp() {
        let mut f = vec![
            0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x81, 0x00, 0, 5, 0x08, 0x00,
        ];
        f.extend(ipv4_tcp(0x02, 0));
        f.extend([0u8; 6]); // Ethernet padding
        let p = decode_frame(1, Timestamp(0), 1, &f);
        assert_eq!(p.src_mac, Some([2, 0, 0, 0, 0, 2]));
        assert_eq!(p.group_dst_mac, None);
        let ip = p.ip.unwrap();
        assert_eq!(ip.bytes.len(), 40);
        assert_eq!(ip.proto, 6);
        assert_eq!(
            ip.l4,
            L4Info::Ports {
                sport: 40000,
                dport: 80,
                tcp_flags: Some(2)
            }
        );
        assert!(ip.frag.is_none());
    }

    #[test]
    fn truncated_is_padded_and_arp_is_not_ip() {
        let p = decode_frame(1, Timestamp(0), 101, &ipv4_tcp(0x10, 100));
        let ip = p.ip.unwrap();
        assert_eq!((ip.bytes.len(), ip.padded, ip.ip_len), (140, 100, 140));
        let mut arp = vec![0xff; 6];
        arp.extend([2, 0, 0, 0, 0, 2, 0x08, 0x06]);
        arp.extend([0u8; 28]);
        let p = decode_frame(2, Timestamp(0), 1, &arp);
        assert_eq!(p.ip.unwrap_err(), "not-ip");
        assert_eq!(p.group_dst_mac, Some([0xff; 6]));
    }

    #[test]
    fn icmp_error_embeds_the_quoted_tuple() {
        let mut p = vec![
            0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0, 10, 0, 0, 2, 10, 0, 0, 1, 3, 3, 0, 0, 0, 0, 0,
            0,
        ];
        let inner = [
            0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 0x13, 0x88, 0, 53,
            0, 8, 0, 0,
        ];
        p.extend_from_slice(&inner);
        let tot = p.len() as u16;
        p[2..4].copy_from_slice(&tot.to_be_bytes());
        let ip = decode_frame(1, Timestamp(0), 101, &p).ip.unwrap();
        let L4Info::Icmp {
            embedded: Some(t),
            icmp_type: 3,
            code: 3,
            ..
        } = ip.l4
        else {
            panic!("{:?}", ip.l4)
        };
        assert_eq!(t.proto, 17);
        assert_eq!(t.l4, TupleL4::Ports(5000, 53));
        assert_eq!(t.src, "10.0.0.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn ipv6_fragment_header() {
        let mut p = vec![0x60, 0, 0, 0, 0, 16, 44, 64];
        p.extend(
            [0x20, 0x01, 0x0d, 0xb8]
                .iter()
                .chain([0u8; 11].iter())
                .chain([1u8].iter()),
        );
        p.extend(
            [0x20, 0x01, 0x0d, 0xb8]
                .iter()
                .chain([0u8; 11].iter())
                .chain([2u8].iter()),
        );
        // fragment header: next UDP, offset 0, M=1, id 7
        p.extend([17, 0, 0, 1, 0, 0, 0, 7]);
        p.extend([0x13, 0x88, 0, 53, 0, 16, 0, 0]);
        let ip = decode_frame(1, Timestamp(0), 101, &p).ip.unwrap();
        assert_eq!(ip.proto, 17);
        assert_eq!(ip.ext, vec!["frag"]);
        assert_eq!(
            ip.frag,
            Some(Fragment {
                id: 7,
                offset: 0,
                more: true
            })
        );
        assert!(matches!(
            ip.l4,
            L4Info::Ports {
                sport: 5000,
                dport: 53,
                ..
            }
        ));
    }
}
