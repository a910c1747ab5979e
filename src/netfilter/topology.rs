//! Where addresses live: the firewall's own addresses (`--local`) and the
//! interfaces other addresses sit behind (`--iface NAME=CIDR`).

use crate::wire::{Family, Packet};
use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use thiserror::Error;

/// Interface name used for addresses no `--iface` covers and no capture
/// interface name names.
pub const DEFAULT_IFACE: &str = "eth0";

/// The path a packet takes through the firewall's hooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// To a local address: PREROUTING → INPUT.
    Input,
    /// Between two other addresses: PREROUTING → FORWARD → POSTROUTING.
    Forward,
    /// From a local address: OUTPUT → POSTROUTING.
    Output,
}

/// Why routing dropped a packet between PREROUTING and INPUT/FORWARD, as a
/// Linux router does (`ip_route_input`, `ip_forward`, `ip6_forward`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteDrop {
    /// Source or destination a router never accepts (0.0.0.0, 127/8,
    /// multicast or class E source, …).
    Martian,
    /// Multicast the firewall has not joined (nothing is multicast-forwarded).
    Multicast,
    /// Link-layer broadcast or multicast, or addressed to another host:
    /// routers forward only frames sent to their own MAC.
    NotForUs,
    /// TTL / hop limit would reach 0 when forwarded.
    TtlExceeded,
    /// IPv6 link-local addresses are never forwarded.
    LinkLocal,
}

impl RouteDrop {
    pub fn note(self) -> &'static str {
        match self {
            RouteDrop::Martian => "routing: martian address",
            RouteDrop::Multicast => "routing: multicast not joined",
            RouteDrop::TtlExceeded => "routing: ttl exceeded",
            RouteDrop::LinkLocal => "routing: link-local not forwarded",
            RouteDrop::NotForUs => "routing: link-layer broadcast/multicast not forwarded",
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum TopologyError {
    #[error("--iface `{0}`: expected NAME=CIDR, e.g. lan0=10.0.1.0/24")]
    IfaceSyntax(String),
    #[error("--iface `{spec}`: `{cidr}` is not an address or CIDR prefix")]
    IfaceCidr { spec: String, cidr: String },
    #[error("--iface `{0}`: interface names are at most 15 characters (IFNAMSIZ)")]
    IfaceName(String),
    #[error("--local `{0}`: not an IP address")]
    Local(String),
}

/// The firewall's view of the network.
#[derive(Debug, Clone, Default)]
pub struct Topology {
    locals: Vec<IpAddr>,
    /// Sorted most specific first.
    ifaces: Vec<(IpNet, String)>,
    /// Name of the first `--iface` given.
    first_iface: Option<String>,
}

impl Topology {
    pub fn new(locals: &[String], ifaces: &[String]) -> Result<Topology, TopologyError> {
        let mut t = Topology::default();
        for l in locals {
            let a: IpAddr = l
                .trim()
                .parse()
                .map_err(|_| TopologyError::Local(l.clone()))?;
            t.locals.push(a);
        }
        for spec in ifaces {
            let (name, cidr) = spec
                .split_once('=')
                .ok_or_else(|| TopologyError::IfaceSyntax(spec.clone()))?;
            if name.is_empty() || name.len() > 15 {
                return Err(TopologyError::IfaceName(spec.clone()));
            }
            let net: IpNet = match cidr.parse::<IpNet>() {
                Ok(n) => n.trunc(),
                Err(_) => match cidr.parse::<IpAddr>() {
                    Ok(a) => IpNet::from(a),
                    Err(_) => {
                        return Err(TopologyError::IfaceCidr {
                            spec: spec.clone(),
                            cidr: cidr.to_string(),
                        });
                    }
                },
            };
            if t.first_iface.is_none() {
                t.first_iface = Some(name.to_string());
            }
            t.ifaces.push((net, name.to_string()));
        }
        t.ifaces
            .sort_by_key(|(n, _)| std::cmp::Reverse(n.prefix_len()));
        Ok(t)
    }

    pub fn locals(&self) -> &[IpAddr] {
        &self.locals
    }

    pub fn ifaces(&self) -> &[(IpNet, String)] {
        &self.ifaces
    }

    pub fn is_local(&self, a: &IpAddr) -> bool {
        self.locals.contains(a)
    }

    /// The interface an address sits behind, if an `--iface` prefix covers it.
    pub fn iface_of(&self, a: &IpAddr) -> Option<&str> {
        self.ifaces
            .iter()
            .find(|(n, _)| n.contains(a))
            .map(|(_, name)| name.as_str())
    }

    /// The interface an address sits behind: the most specific `--iface`
    /// prefix that covers it; an address none covers sits behind the first
    /// `--iface` given (the oracle builds the same topology), or
    /// [`DEFAULT_IFACE`] when there is none.
    pub fn iface_or_default<'a>(&'a self, a: &IpAddr, fallback: Option<&'a str>) -> &'a str {
        self.iface_of(a)
            .or(fallback)
            .or(self.first_iface.as_deref())
            .unwrap_or(DEFAULT_IFACE)
    }

    /// Which hooks the packet takes.
    pub fn path(&self, pkt: &Packet<'_>) -> Path {
        if self.is_local(&pkt.src) {
            Path::Output
        } else if self.is_local(&pkt.dst)
            || is_limited_broadcast(&pkt.dst)
            || self.joined_multicast(&pkt.dst)
        {
            Path::Input
        } else {
            Path::Forward
        }
    }

    /// Multicast groups every Linux host has joined: IPv4 all-hosts
    /// 224.0.0.1 only where the firewall owns an IPv4 address; IPv6
    /// all-nodes ff02::1 and, as a router, all-routers ff02::2.
    fn joined_multicast(&self, a: &IpAddr) -> bool {
        match a {
            IpAddr::V4(v4) => {
                *v4 == Ipv4Addr::new(224, 0, 0, 1) && self.locals.iter().any(IpAddr::is_ipv4)
            }
            IpAddr::V6(v6) => {
                *v6 == Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1)
                    || *v6 == Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2)
                    || self.locals.iter().any(|l| match l {
                        IpAddr::V6(l) => is_solicited_node_of(v6, l),
                        _ => false,
                    })
            }
        }
    }

    /// Routing's verdict for a packet that passed PREROUTING. `same_iface`:
    /// a forwarded packet leaves by the interface it came in on.
    pub fn route_drop(&self, pkt: &Packet<'_>, path: Path, same_iface: bool) -> Option<RouteDrop> {
        if path == Path::Output {
            return None;
        }
        match (pkt.src, pkt.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                if s.is_multicast()
                    || s.is_loopback()
                    || s.octets()[0] >= 240 && !s.is_broadcast()
                    || s.is_broadcast()
                {
                    return Some(RouteDrop::Martian);
                }
                if d.is_loopback() || d.is_unspecified() || d.octets()[0] == 0 {
                    return Some(RouteDrop::Martian);
                }
                if s.is_unspecified() && !(d.is_broadcast() || d.is_multicast()) {
                    return Some(RouteDrop::Martian);
                }
                if d.is_multicast() && path == Path::Forward {
                    return Some(RouteDrop::Multicast);
                }
                if d.octets()[0] >= 240 && !d.is_broadcast() {
                    return Some(RouteDrop::Martian);
                }
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                if s.is_multicast() || d.is_loopback() || d.is_unspecified() || s.is_loopback() {
                    return Some(RouteDrop::Martian);
                }
                if d.is_multicast() && path == Path::Forward {
                    return Some(RouteDrop::Multicast);
                }
                // ip6_forward refuses to move a link-local packet to another
                // link ("beyond scope"); on its own link it forwards it.
                if path == Path::Forward && !same_iface && (is_link_local(&s) || is_link_local(&d))
                {
                    return Some(RouteDrop::LinkLocal);
                }
            }
            _ => {}
        }
        // ip_forward / ip6_forward drop anything not sent to the router's
        // own MAC (a broadcast frame to a subnet broadcast address, say).
        if path == Path::Forward && pkt.pkttype != crate::wire::PktType::Host {
            return Some(RouteDrop::NotForUs);
        }
        if path == Path::Forward && pkt.ttl <= 1 {
            return Some(RouteDrop::TtlExceeded);
        }
        None
    }

    /// Addresses whose family the capture uses, for the oracle.
    pub fn has_family(&self, f: Family) -> bool {
        self.locals.iter().any(|a| {
            matches!(
                (a, f),
                (IpAddr::V4(_), Family::Ipv4) | (IpAddr::V6(_), Family::Ipv6)
            )
        })
    }
}

fn is_limited_broadcast(a: &IpAddr) -> bool {
    matches!(a, IpAddr::V4(v) if v.is_broadcast())
}

fn is_link_local(a: &Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

fn is_solicited_node_of(group: &Ipv6Addr, addr: &Ipv6Addr) -> bool {
    let g = group.octets();
    let a = addr.octets();
    g[..13] == [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff] && g[13..] == a[13..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn most_specific_iface_wins() {
        let t = Topology::new(
            &["10.0.1.1".into()],
            &[
                "wan0=0.0.0.0/0".into(),
                "lan0=10.0.1.0/24".into(),
                "dmz0=10.0.1.128/25".into(),
            ],
        )
        .unwrap();
        assert_eq!(t.iface_of(&"10.0.1.5".parse().unwrap()), Some("lan0"));
        assert_eq!(t.iface_of(&"10.0.1.200".parse().unwrap()), Some("dmz0"));
        assert_eq!(t.iface_of(&"8.8.8.8".parse().unwrap()), Some("wan0"));
        assert!(t.is_local(&"10.0.1.1".parse().unwrap()));
        assert!(Topology::new(&[], &["lan0".into()]).is_err());
        assert!(Topology::new(&[], &["lan0=10.0.0.0/33".into()]).is_err());
        assert!(Topology::new(&["nope".into()], &[]).is_err());
    }

    #[test]
    fn solicited_node() {
        let a: Ipv6Addr = "fd00::1:2:3".parse().unwrap();
        let g: Ipv6Addr = "ff02::1:ff02:3".parse().unwrap();
        assert!(is_solicited_node_of(&g, &a));
    }
}
