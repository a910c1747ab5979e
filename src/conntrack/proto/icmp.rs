//! ICMP and ICMPv6 tracking (`nf_conntrack_proto_icmp.c`,
//! `nf_conntrack_proto_icmpv6.c` semantics).
//!
//! Queries (echo, timestamp, …) are tracked as connections keyed by id, type
//! and code. Error messages are never connections of their own: the core
//! looks up the packet they quote and makes them RELATED to it. This module
//! classifies types; the lookup itself lives in the core.

use super::L4Verdict;
use crate::conntrack::Sysctls;
use crate::wire::ipproto;

/// What conntrack does with an ICMP(v6) message before the normal tuple path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcmpClass {
    /// An error: RELATED to the connection of the quoted packet, or INVALID.
    Error,
    /// Neighbour discovery / MLD: never tracked (UNTRACKED).
    Untracked,
    /// ICMPv4 type above 18: INVALID.
    UnknownType,
    /// Query or reply: the normal tuple path.
    Query,
}

/// Classifies an ICMP (proto 1) or ICMPv6 (proto 58) type.
pub fn classify(proto: u8, icmp_type: u8) -> IcmpClass {
    if proto == ipproto::ICMP {
        match icmp_type {
            3 | 4 | 5 | 11 | 12 => IcmpClass::Error,
            t if t > 18 => IcmpClass::UnknownType,
            _ => IcmpClass::Query,
        }
    } else {
        match icmp_type {
            // MLD query/report/done, RS, RA, NS, NA, MLDv2 report,
            // multicast router advertisement/solicitation.
            130..=136 | 143 | 151 | 152 => IcmpClass::Untracked,
            t if t < 128 => IcmpClass::Error,
            _ => IcmpClass::Query,
        }
    }
}

/// Types that may create a connection.
pub fn valid_new(proto: u8, icmp_type: u8) -> bool {
    if proto == ipproto::ICMP {
        matches!(icmp_type, 8 | 13 | 15 | 17)
    } else {
        matches!(icmp_type, 128 | 139)
    }
}

/// The packet handler for queries: the original type must be one that
/// creates connections; every packet refreshes the timeout.
pub fn packet(proto: u8, orig_type: u8, sys: &Sysctls) -> L4Verdict {
    if !valid_new(proto, orig_type) {
        // The kernel logs nothing here (pr_debug only).
        return L4Verdict::Invalid {
            reason: "",
            timeout: None,
        };
    }
    let t = if proto == ipproto::ICMP {
        sys.icmp_timeout
    } else {
        sys.icmpv6_timeout
    };
    L4Verdict::Accept {
        refresh: Some(Sysctls::secs(t)),
        note: None,
    }
}

/// The kernel's message for a bad checksum.
pub fn bad_checksum_reason(proto: u8) -> &'static str {
    if proto == ipproto::ICMP {
        "bad hw icmp checksum"
    } else {
        "ICMPv6 checksum failed"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert_eq!(classify(1, 3), IcmpClass::Error);
        assert_eq!(classify(1, 11), IcmpClass::Error);
        assert_eq!(classify(1, 8), IcmpClass::Query);
        assert_eq!(classify(1, 9), IcmpClass::Query);
        assert_eq!(classify(1, 19), IcmpClass::UnknownType);
        assert_eq!(classify(58, 135), IcmpClass::Untracked);
        assert_eq!(classify(58, 1), IcmpClass::Error);
        assert_eq!(classify(58, 128), IcmpClass::Query);
        assert!(valid_new(1, 8) && !valid_new(1, 0) && valid_new(58, 128) && !valid_new(58, 129));
    }
}
