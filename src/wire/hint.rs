//! A cheap guess at a frame's conntrack tuple, for prefetching only.
//!
//! The pipeline looks a few packets ahead and asks the connection table to
//! start loading what those packets will read. That needs the tuple before
//! the packet is decoded, so this reads the common shapes only (Ethernet
//! with up to one VLAN tag or raw IP; IPv4 without fragmentation, IPv6
//! straight to TCP/UDP/ICMPv6) and gives up on everything else. A wrong or
//! missing hint costs a cache miss, never a different result: nothing here
//! feeds a decision.

use crate::capture::{Frame, Linktype};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Addresses, protocol and the two tuple "ports" (for ICMP echo: the id and
/// `type << 8 | code`), as conntrack would key the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowHint {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
}

#[inline]
fn be16(d: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*d.get(at)?, *d.get(at + 1)?]))
}

/// The hint for `frame`, or None when its shape is not a common one.
#[inline]
pub fn flow_hint(frame: &Frame<'_>) -> Option<FlowHint> {
    let d = frame.data;
    let ip = match frame.linktype {
        Linktype::ETHERNET => {
            let mut et = be16(d, 12)?;
            let mut off = 14;
            if et == 0x8100 {
                et = be16(d, 16)?;
                off = 18;
            }
            match et {
                0x0800 | 0x86dd => d.get(off..)?,
                _ => return None,
            }
        }
        Linktype::RAW | Linktype::IPV4 | Linktype::IPV6 => d,
        _ => return None,
    };
    let (src, dst, proto, l4) = match ip.first()? >> 4 {
        4 => {
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            // More fragments set or a fragment offset: defrag decides.
            if ihl < 20 || be16(ip, 6)? & 0x3fff != 0 {
                return None;
            }
            let a: [u8; 4] = ip.get(12..16)?.try_into().ok()?;
            let b: [u8; 4] = ip.get(16..20)?.try_into().ok()?;
            (
                IpAddr::V4(Ipv4Addr::from(a)),
                IpAddr::V4(Ipv4Addr::from(b)),
                ip[9],
                ip.get(ihl..)?,
            )
        }
        // Only a next header that is the transport itself; extension
        // headers are left to the decoder.
        6 if matches!(ip.get(6), Some(6 | 17 | 58 | 136)) => {
            let a: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
            let b: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
            (
                IpAddr::V6(Ipv6Addr::from(a)),
                IpAddr::V6(Ipv6Addr::from(b)),
                ip[6],
                ip.get(40..)?,
            )
        }
        _ => return None,
    };
    let (sport, dport) = match proto {
        6 | 17 | 136 => (be16(l4, 0)?, be16(l4, 2)?),
        // Echo-style queries and replies only; errors are keyed by the
        // packet they quote, which is not worth finding here.
        1 | 58 => {
            let (t, c) = (*l4.first()?, *l4.get(1)?);
            if !matches!(
                t,
                0 | 8 | 13 | 14 | 15 | 16 | 17 | 18 | 128 | 129 | 139 | 140
            ) {
                return None;
            }
            (be16(l4, 4)?, u16::from(t) << 8 | u16::from(c))
        }
        _ => (0, 0),
    };
    Some(FlowHint {
        src,
        dst,
        proto,
        sport,
        dport,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conntrack::Tuple;

    /// On every frame of the repo's captures, a hint, when given, is the
    /// tuple the decoder and conntrack build.
    #[test]
    fn hints_agree_with_the_decoder() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/captures");
        let mut checked = 0;
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        if let Ok(rd) = std::fs::read_dir(format!("{dir}/crafted")) {
            paths.extend(rd.flatten().map(|e| e.path()));
        }
        for p in paths
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng"))
        {
            let mut r = crate::capture::CaptureReader::open(p).unwrap();
            while let Ok(Some(f)) = r.next_frame() {
                let Some(h) = flow_hint(&f) else { continue };
                let Ok(pkt) = crate::wire::decode(&f) else {
                    continue;
                };
                let Some(t) = Tuple::from_packet(&pkt) else {
                    continue;
                };
                assert_eq!(
                    (h.src, h.dst, h.proto, h.sport, h.dport),
                    (t.src, t.dst, t.proto, t.sport, t.dport),
                    "{} frame {}",
                    p.display(),
                    f.index
                );
                checked += 1;
            }
        }
        assert!(checked > 500, "only {checked} frames checked");
    }
}
