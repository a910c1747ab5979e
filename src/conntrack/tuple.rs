//! Conntrack tuples: the key under which a connection is found.
//!
//! A tuple is (family, source, destination, L4 protocol, source "port",
//! destination "port"). For TCP, UDP and UDP-Lite the ports are the L4 ports;
//! for ICMP/ICMPv6 the source slot holds the echo identifier and the
//! destination slot the type and code; every other protocol has zero ports, so
//! only addresses and protocol count (the kernel's generic tracker).

use crate::wire::InnerPacket;
use crate::wire::{Family, L4, Packet, ipproto};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;

/// One direction of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuple {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// Source port, or ICMP echo identifier.
    pub sport: u16,
    /// Destination port, or ICMP `type << 8 | code`.
    pub dport: u16,
    pub proto: u8,
}

impl Tuple {
    pub fn family(&self) -> Family {
        match self.src {
            IpAddr::V4(_) => Family::Ipv4,
            IpAddr::V6(_) => Family::Ipv6,
        }
    }

    pub fn is_icmp(&self) -> bool {
        self.proto == ipproto::ICMP || self.proto == ipproto::ICMPV6
    }

    /// ICMP type of an ICMP/ICMPv6 tuple.
    pub fn icmp_type(&self) -> u8 {
        (self.dport >> 8) as u8
    }

    pub fn icmp_code(&self) -> u8 {
        self.dport as u8
    }

    /// Builds the tuple of a packet as the kernel's `nf_ct_get_tuple` does.
    /// None when the L4 header needed for the tuple is missing.
    pub fn from_packet(pkt: &Packet<'_>) -> Option<Tuple> {
        let (sport, dport) = match pkt.l4 {
            L4::Tcp(t) => (t.sport, t.dport),
            L4::Udp(u) => (u.sport, u.dport),
            L4::Icmp(i) | L4::Icmpv6(i) => (i.id, u16::from(i.icmp_type) << 8 | u16::from(i.code)),
            L4::Other => match pkt.proto {
                // These protocols need their header for a tuple; `Other` means
                // it is absent (non-first fragment reaching conntrack).
                ipproto::TCP
                | ipproto::UDP
                | ipproto::UDPLITE
                | ipproto::ICMP
                | ipproto::ICMPV6 => {
                    return None;
                }
                _ => (0, 0),
            },
            L4::Malformed => return None,
        };
        Some(Tuple {
            src: pkt.src,
            dst: pkt.dst,
            sport,
            dport,
            proto: pkt.proto,
        })
    }

    /// The tuple of the packet an ICMP error quotes (`nf_ct_get_tuplepr` on
    /// the embedded header). None when conntrack cannot build it: a
    /// non-first fragment, or missing L4 bytes of a protocol with ports.
    pub fn from_inner(inner: &InnerPacket) -> Option<Tuple> {
        if inner.non_first_fragment || inner.l4_missing {
            return None;
        }
        let (sport, dport) = if let Some((t, c, id)) = inner.icmp {
            (id, u16::from(t) << 8 | u16::from(c))
        } else {
            inner.ports.unwrap_or_default()
        };
        Some(Tuple {
            src: inner.src,
            dst: inner.dst,
            sport,
            dport,
            proto: inner.proto,
        })
    }

    /// The tuple of the opposite direction (`nf_ct_invert_tuple`). None for
    /// ICMP types that have no reply type: such packets cannot be tracked.
    pub fn invert(&self) -> Option<Tuple> {
        let (sport, dport) = if self.is_icmp() {
            let reply_type = icmp_reply_type(self.proto, self.icmp_type())?;
            (
                self.sport,
                u16::from(reply_type) << 8 | u16::from(self.icmp_code()),
            )
        } else {
            (self.dport, self.sport)
        };
        Some(Tuple {
            src: self.dst,
            dst: self.src,
            sport,
            dport,
            proto: self.proto,
        })
    }

    /// The unordered address pair: equal for both directions of a
    /// connection; used as a shard key.
    pub fn addr_pair(&self) -> (IpAddr, IpAddr) {
        if self.src <= self.dst {
            (self.src, self.dst)
        } else {
            (self.dst, self.src)
        }
    }
}

/// An address as one integer, IPv6 tagged by its top bit so no IPv4 address
/// collides with an IPv6 one in the common case.
#[inline]
fn addr_word(a: &IpAddr) -> u128 {
    match a {
        IpAddr::V4(v) => u128::from(u32::from(*v)),
        IpAddr::V6(v) => u128::from(*v) ^ (1 << 127),
    }
}

/// Hashes fixed-size words instead of the derived per-field, per-byte walk
/// over `IpAddr`: tuples are the table's key and are hashed on every packet.
/// Equal tuples give equal words, as `Hash` requires.
impl Hash for Tuple {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u128(addr_word(&self.src));
        state.write_u128(addr_word(&self.dst));
        state.write_u64(
            u64::from(self.sport) << 24 | u64::from(self.dport) << 8 | u64::from(self.proto),
        );
    }
}

/// The reply type of an ICMP(v6) query/reply type, as the kernel maps them.
pub fn icmp_reply_type(proto: u8, t: u8) -> Option<u8> {
    if proto == ipproto::ICMP {
        match t {
            8 => Some(0),
            0 => Some(8),
            13 => Some(14),
            14 => Some(13),
            15 => Some(16),
            16 => Some(15),
            17 => Some(18),
            18 => Some(17),
            _ => None,
        }
    } else {
        match t {
            128 => Some(129),
            129 => Some(128),
            139 => Some(140),
            140 => Some(139),
            _ => None,
        }
    }
}

pub fn proto_name(proto: u8) -> Option<&'static str> {
    Some(match proto {
        ipproto::TCP => "tcp",
        ipproto::UDP => "udp",
        ipproto::ICMP => "icmp",
        ipproto::ICMPV6 => "icmpv6",
        ipproto::UDPLITE => "udplite",
        ipproto::SCTP => "sctp",
        ipproto::GRE => "gre",
        _ => return None,
    })
}

impl fmt::Display for Tuple {
    /// `conntrack -L` style: `src=10.0.0.1 dst=10.0.0.2 sport=1 dport=2`,
    /// or `type=8 code=0 id=7` for ICMP.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "src={} dst={}", self.src, self.dst)?;
        if self.is_icmp() {
            write!(
                f,
                " type={} code={} id={}",
                self.icmp_type(),
                self.icmp_code(),
                self.sport
            )
        } else if matches!(
            self.proto,
            ipproto::TCP | ipproto::UDP | ipproto::UDPLITE | ipproto::SCTP
        ) {
            write!(f, " sport={} dport={}", self.sport, self.dport)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invert_ports_and_icmp() {
        let t = Tuple {
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            sport: 1000,
            dport: 22,
            proto: 6,
        };
        let r = t.invert().unwrap();
        assert_eq!((r.src, r.dst, r.sport, r.dport), (t.dst, t.src, 22, 1000));
        assert_eq!(r.invert().unwrap(), t);
        let echo = Tuple {
            sport: 7,
            dport: 8 << 8 | 3,
            proto: 1,
            ..t
        };
        let reply = echo.invert().unwrap();
        assert_eq!(
            (reply.icmp_type(), reply.icmp_code(), reply.sport),
            (0, 3, 7)
        );
        let redirect = Tuple {
            dport: 5 << 8,
            ..echo
        };
        assert!(redirect.invert().is_none());
        assert_eq!(t.addr_pair(), r.addr_pair());
    }
}
