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
    // Untagged Ethernet, IPv4 without options or fragmentation or IPv6
    // without extension headers, TCP, UDP or UDP-Lite with the ports
    // captured: nearly every frame, read at fixed offsets in one go.
    // `flow_hint_general` gives the same for these (the tests compare the
    // two).
    if frame.linktype == Linktype::ETHERNET
        && let Some(f) = frame.data.first_chunk::<38>()
    {
        if f[12..15] == [0x08, 0x00, 0x45]
            && (f[20] & 0x3f) | f[21] == 0
            && matches!(f[23], 6 | 17 | 136)
        {
            return Some(FlowHint {
                src: IpAddr::V4(Ipv4Addr::new(f[26], f[27], f[28], f[29])),
                dst: IpAddr::V4(Ipv4Addr::new(f[30], f[31], f[32], f[33])),
                proto: f[23],
                sport: u16::from_be_bytes([f[34], f[35]]),
                dport: u16::from_be_bytes([f[36], f[37]]),
            });
        }
        if let Some(f) = frame.data.first_chunk::<58>()
            && f[12..14] == [0x86, 0xdd]
            && f[14] >> 4 == 6
            && matches!(f[20], 6 | 17 | 136)
        {
            let addr = |at: usize| {
                let a: [u8; 16] = f[at..at + 16].try_into().expect("16 bytes");
                IpAddr::V6(Ipv6Addr::from(a))
            };
            return Some(FlowHint {
                src: addr(22),
                dst: addr(38),
                proto: f[20],
                sport: u16::from_be_bytes([f[54], f[55]]),
                dport: u16::from_be_bytes([f[56], f[57]]),
            });
        }
    }
    flow_hint_general(frame)
}

/// [`flow_hint`] for every shape it knows.
fn flow_hint_general(frame: &Frame<'_>) -> Option<FlowHint> {
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

    /// The fixed-offset reading of the common shapes gives what the general
    /// reading gives, on random frames near those shapes.
    #[test]
    fn common_shapes_read_at_fixed_offsets_agree_with_the_general_reading() {
        let mut x = 0x0004_a1e7_u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut hits = 0;
        for i in 0..300_000 {
            let n = (next() % 80) as usize;
            let mut f: Vec<u8> = (0..n).map(|_| next() as u8).collect();
            let pick = |v: &[u8], r: u64| v[r as usize % v.len()];
            if n >= 15 && i % 8 != 0 {
                if i % 2 == 0 {
                    f[12..15].copy_from_slice(&[8, 0, pick(&[0x45, 0x45, 0x46, 0x55], next())]);
                    if n > 23 {
                        f[23] = pick(&[6, 17, 136, 1, 58, 47], next());
                    }
                    if n > 21 && next() % 3 != 0 {
                        f[20] &= pick(&[0x40, 0x80, 0xc0, 0x20, 0x01], next());
                        f[21] = pick(&[0, 0, 1], next());
                    }
                } else {
                    f[12..15].copy_from_slice(&[0x86, 0xdd, pick(&[0x60, 0x6f, 0x40], next())]);
                    if n > 20 {
                        f[20] = pick(&[6, 17, 136, 58, 0, 44], next());
                    }
                }
            }
            let linktype = if i % 16 == 0 {
                Linktype::RAW
            } else {
                Linktype::ETHERNET
            };
            let fr = Frame {
                index: 1,
                ts: crate::time::Timestamp(0),
                linktype,
                orig_len: f.len() as u32,
                interface: 0,
                interface_name: None,
                data: &f,
            };
            let got = flow_hint(&fr);
            assert_eq!(got, flow_hint_general(&fr), "{f:?}");
            hits += usize::from(got.is_some());
        }
        assert!(hits > 15_000, "{hits}");
    }
}
