//! Match extensions (`-m NAME`), one file per family of matches, in the
//! manner of the xtables `libxt_*.c` / `xt_*.c` pairs: each file parses its
//! options the way the iptables extension does and evaluates the way the
//! kernel module (or, where iptables-nft translates it, the native nf_tables
//! expression) does.
//!
//! Parsing goes through [`MatchExt`]: the rule parser loads an extension by
//! name, hands it the options that belong to it and asks it to `finish`
//! into a [`Match`]. Evaluation is [`Match::matches`] over an
//! [`EvalCtx`](super::EvalCtx); stateful matches keep their state in
//! [`SlotState`]s owned by the caller's `RuleState`.

pub mod addr;
pub mod connlimit;
pub mod ct;
pub mod l4;
pub mod limit;
pub mod meta;
pub mod recent;
pub mod statistic;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::TableId;
use super::ast::AddrMask;
use super::error::{Fail, RuleErrorKind};
use super::eval::EvalCtx;
use crate::wire::Family;

/// One option of an extension, as the getopt table lists it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Opt {
    pub name: &'static str,
    /// Takes an argument.
    pub arg: bool,
    /// May be preceded by `!`.
    pub inv: bool,
    /// Its argument is free text (may start with `-`).
    pub text: bool,
}

impl Opt {
    pub(crate) const fn flag(name: &'static str) -> Opt {
        Opt {
            name,
            arg: false,
            inv: false,
            text: false,
        }
    }
    pub(crate) const fn arg(name: &'static str) -> Opt {
        Opt {
            name,
            arg: true,
            inv: false,
            text: false,
        }
    }
    pub(crate) const fn inv(name: &'static str) -> Opt {
        Opt {
            name,
            arg: true,
            inv: true,
            text: false,
        }
    }
    pub(crate) const fn inv_flag(name: &'static str) -> Opt {
        Opt {
            name,
            arg: false,
            inv: true,
            text: false,
        }
    }
    pub(crate) const fn text(name: &'static str) -> Opt {
        Opt {
            name,
            arg: true,
            inv: false,
            text: true,
        }
    }
}

/// What an extension may know of the rule it is in while parsing.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ParseCtx {
    pub family: Family,
    /// `-p` value (0: none/all).
    pub proto: u8,
    pub proto_inv: bool,
    pub table: TableId,
}

/// A match extension being parsed.
pub(crate) trait MatchExt {
    fn name(&self) -> &'static str;
    fn options(&self) -> &'static [Opt];
    /// One option (index into `options()`); `arg` is "" for flags.
    fn parse(&mut self, opt: usize, inv: bool, arg: &str, pc: &ParseCtx) -> Result<(), Fail>;
    /// All options seen: check them together and build the match.
    fn finish(&mut self, pc: &ParseCtx) -> Result<Match, Fail>;
}

/// Names of the match extensions ctsim implements.
pub const SUPPORTED: &[&str] = &[
    "tcp",
    "udp",
    "icmp",
    "icmp6",
    "multiport",
    "state",
    "conntrack",
    "connmark",
    "mark",
    "comment",
    "length",
    "ttl",
    "hl",
    "pkttype",
    "addrtype",
    "mac",
    "iprange",
    "limit",
    "hashlimit",
    "recent",
    "connlimit",
    "statistic",
];

/// Loads a match extension by its `-m` name. `None`: not supported.
pub(crate) fn load(name: &str, family: Family) -> Option<Box<dyn MatchExt>> {
    let v6 = family == Family::Ipv6;
    Some(match name {
        "tcp" => Box::new(l4::TcpExt::default()),
        "udp" => Box::new(l4::UdpExt::default()),
        "icmp" if !v6 => Box::new(l4::IcmpExt::new(false)),
        "icmp6" if v6 => Box::new(l4::IcmpExt::new(true)),
        "multiport" => Box::new(l4::MultiportExt::default()),
        "state" => Box::new(ct::StateExt::default()),
        "conntrack" => Box::new(ct::ConntrackExt::default()),
        "connmark" => Box::new(meta::MarkExt::new(true)),
        "mark" => Box::new(meta::MarkExt::new(false)),
        "comment" => Box::new(meta::CommentExt::default()),
        "length" => Box::new(meta::LengthExt::default()),
        "ttl" if !v6 => Box::new(meta::TtlExt::new(false)),
        "hl" if v6 => Box::new(meta::TtlExt::new(true)),
        "pkttype" => Box::new(meta::PkttypeExt::default()),
        "addrtype" => Box::new(meta::AddrtypeExt::default()),
        "mac" => Box::new(meta::MacExt::default()),
        "iprange" => Box::new(addr::IprangeExt::default()),
        "limit" => Box::new(limit::LimitExt::default()),
        "hashlimit" => Box::new(limit::HashlimitExt::default()),
        "recent" => Box::new(recent::RecentExt::default()),
        "connlimit" => Box::new(connlimit::ConnlimitExt::default()),
        "statistic" => Box::new(statistic::StatisticExt::default()),
        _ => return None,
    })
}

/// A compiled match.
#[derive(Debug, Clone, PartialEq)]
pub enum Match {
    Tcp(l4::TcpMatch),
    Udp(l4::UdpMatch),
    Icmp(l4::IcmpMatch),
    Multiport(l4::MultiportMatch),
    State(ct::StateMatch),
    Conntrack(Box<ct::ConntrackMatch>),
    Connmark(meta::MarkMatch),
    Mark(meta::MarkMatch),
    Comment(String),
    Length(meta::LengthMatch),
    Ttl(meta::TtlMatch),
    Pkttype(meta::PkttypeMatch),
    Addrtype(meta::AddrtypeMatch),
    Mac(meta::MacMatch),
    Iprange(addr::IprangeMatch),
    Limit(limit::LimitMatch),
    Hashlimit(Box<limit::HashlimitMatch>),
    Recent(Box<recent::RecentMatch>),
    Connlimit(connlimit::ConnlimitMatch),
    Statistic(statistic::StatisticMatch),
}

/// State of one stateful match instance (or one shared named table).
#[derive(Debug, Clone)]
pub enum SlotState {
    Limit(limit::LimitState),
    Hashlimit(limit::HashlimitState),
    Recent(recent::RecentTable),
    Connlimit(connlimit::ConnlimitState),
    Nth(statistic::NthState),
    Random(statistic::RandomState),
}

impl Match {
    /// Evaluates the match for the packet in `ctx`.
    #[inline]
    pub fn matches(&self, ctx: &EvalCtx, slots: &mut [SlotState]) -> bool {
        match self {
            Match::Tcp(m) => m.matches(ctx),
            Match::Udp(m) => m.matches(ctx),
            Match::Icmp(m) => m.matches(ctx),
            Match::Multiport(m) => m.matches(ctx),
            Match::State(m) => m.matches(ctx),
            Match::Conntrack(m) => m.matches(ctx),
            Match::Connmark(m) => match &ctx.ct {
                Some(ct) if ct.has_entry() => m.test(ct.ctmark),
                _ => false,
            },
            Match::Mark(m) => m.test(ctx.nfmark),
            Match::Comment(_) => true,
            Match::Length(m) => m.matches(ctx),
            Match::Ttl(m) => m.matches(ctx),
            Match::Pkttype(m) => m.matches(ctx),
            Match::Addrtype(m) => m.matches(ctx),
            Match::Mac(m) => m.matches(ctx),
            Match::Iprange(m) => m.matches(ctx),
            Match::Limit(m) => match slots.get_mut(m.slot) {
                Some(SlotState::Limit(s)) => m.matches(ctx, s),
                _ => false,
            },
            Match::Hashlimit(m) => match slots.get_mut(m.slot) {
                Some(SlotState::Hashlimit(s)) => m.matches(ctx, s),
                _ => false,
            },
            Match::Recent(m) => match slots.get_mut(m.slot) {
                Some(SlotState::Recent(s)) => m.matches(ctx, s),
                _ => false,
            },
            Match::Connlimit(m) => match slots.get_mut(m.slot) {
                Some(SlotState::Connlimit(s)) => m.matches(ctx, s),
                _ => false,
            },
            Match::Statistic(m) => m.matches(slots.get_mut(m.slot)),
        }
    }

    /// Whether evaluation changes state that later packets see.
    pub fn is_stateful(&self) -> bool {
        matches!(
            self,
            Match::Limit(_)
                | Match::Hashlimit(_)
                | Match::Recent(_)
                | Match::Connlimit(_)
                | Match::Statistic(_)
        )
    }

    /// The text `iptables -L -n` prints for the match (with a leading space).
    pub fn describe(&self, family: Family) -> String {
        match self {
            Match::Tcp(m) => m.describe(),
            Match::Udp(m) => m.describe(),
            Match::Icmp(m) => m.describe(),
            Match::Multiport(m) => m.describe(),
            Match::State(m) => m.describe(),
            Match::Conntrack(m) => m.describe(family),
            Match::Connmark(m) => format!(" connmark match {}", m.describe()),
            Match::Mark(m) => format!(" mark match {}", m.describe()),
            Match::Comment(c) => format!(" /* {c} */"),
            Match::Length(m) => m.describe(),
            Match::Ttl(m) => m.describe(),
            Match::Pkttype(m) => m.describe(),
            Match::Addrtype(m) => m.describe(),
            Match::Mac(m) => m.describe(),
            Match::Iprange(m) => m.describe(family),
            Match::Limit(m) => m.describe(),
            Match::Hashlimit(m) => m.describe(),
            Match::Recent(m) => m.describe(),
            Match::Connlimit(m) => m.describe(),
            Match::Statistic(m) => m.describe(),
        }
    }
}

// ---------------------------------------------------------------------------
// Value parsers shared by the extensions (the xtables helpers' semantics).

/// `strtoul(s, &end, 0)` that must consume the whole string: `0x` hex,
/// leading `0` octal, else decimal. No sign, no spaces.
pub(crate) fn strtoul(s: &str) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let (digits, radix) = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (h, 16)
    } else if s.len() > 1 && s.starts_with('0') {
        (&s[1..], 8)
    } else {
        (s, 10)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// An unsigned number in `[min, max]`, as `xtables_strtoui`.
pub(crate) fn parse_uint(option: &str, s: &str, min: u64, max: u64) -> Result<u64, Fail> {
    match strtoul(s) {
        Some(v) if v >= min && v <= max => Ok(v),
        _ => Err(Fail::bad(option, s, "a number in range")
            .hint(format!("{option} takes a number from {min} to {max}"))),
    }
}

/// `value[/mask]` marks; mask defaults to all ones.
pub(crate) fn parse_mark(option: &str, s: &str) -> Result<(u32, u32), Fail> {
    let (v, m) = match s.split_once('/') {
        Some((v, m)) => (v, Some(m)),
        None => (s, None),
    };
    let v = parse_uint(option, v, 0, u32::MAX as u64)? as u32;
    let m = match m {
        Some(m) => parse_uint(option, m, 0, u32::MAX as u64)? as u32,
        None => u32::MAX,
    };
    Ok((v, m))
}

/// A port number or service name.
pub(crate) fn parse_port(option: &str, s: &str, proto: u8) -> Result<u16, Fail> {
    if let Some(p) = strtoul(s) {
        if p <= 65535 {
            return Ok(p as u16);
        }
    } else if let Some(p) = super::services::port_by_name(s, Some(proto).filter(|p| *p != 0)) {
        return Ok(p);
    }
    let mut f = Fail::bad(option, s, "a port number (0-65535) or service name");
    if s.contains('-') && s.split('-').all(|p| strtoul(p).is_some()) {
        f = f.hint(format!(
            "port ranges are written with a colon: {}",
            s.replace('-', ":")
        ));
    } else if strtoul(s).is_none() && s.chars().any(|c| c.is_ascii_alphabetic()) {
        f = f.hint("ctsim knows the common /etc/services names only; write the port number");
    }
    Err(f)
}

/// `a:b`, `a:` (to 65535), `:b` (from 0), or a single port.
pub(crate) fn parse_port_range(option: &str, s: &str, proto: u8) -> Result<(u16, u16), Fail> {
    let (lo, hi) = match s.split_once(':') {
        None => {
            let p = parse_port(option, s, proto)?;
            return Ok((p, p));
        }
        Some((a, b)) => (
            if a.is_empty() {
                0
            } else {
                parse_port(option, a, proto)?
            },
            if b.is_empty() {
                65535
            } else {
                parse_port(option, b, proto)?
            },
        ),
    };
    if lo > hi {
        return Err(Fail::bad(option, s, "a port range with min <= max")
            .hint("invalid portrange (min > max)"));
    }
    Ok((lo, hi))
}

/// An address of the family (IPv4 also in the short forms `10.1` = 10.1.0.0
/// that xtables accepts), or `localhost`.
pub(crate) fn parse_addr(option: &str, s: &str, family: Family) -> Result<u128, Fail> {
    match family {
        Family::Ipv4 => {
            if s == "localhost" {
                return Ok(0x7f00_0001);
            }
            let parts: Vec<&str> = s.split('.').collect();
            if parts.len() <= 4
                && parts
                    .iter()
                    .all(|p| !p.is_empty() && p.len() <= 3 && p.chars().all(|c| c.is_ascii_digit()))
            {
                let mut v: u32 = 0;
                for (i, p) in parts.iter().enumerate() {
                    let b: u32 = p.parse().unwrap_or(256);
                    if b > 255 {
                        return Err(host_fail(option, s));
                    }
                    v |= b << (24 - 8 * i);
                }
                return Ok(v as u128);
            }
            Err(host_fail(option, s))
        }
        Family::Ipv6 => {
            if s == "localhost" || s == "ip6-localhost" {
                return Ok(1);
            }
            s.parse::<Ipv6Addr>()
                .map(u128::from)
                .map_err(|_| host_fail(option, s))
        }
    }
}

fn host_fail(option: &str, s: &str) -> Fail {
    let f = Fail::bad(option, s, "a numeric address");
    if s.chars().any(|c| c.is_ascii_alphabetic()) && !s.contains(':') {
        f.hint("ctsim does not resolve host names; write the address")
    } else {
        f
    }
}

/// `addr[/len|/mask]`; the address comes back masked.
pub(crate) fn parse_addr_mask(option: &str, s: &str, family: Family) -> Result<AddrMask, Fail> {
    let bits: u32 = if family == Family::Ipv4 { 32 } else { 128 };
    let full: u128 = if bits == 32 {
        u32::MAX as u128
    } else {
        u128::MAX
    };
    let (a, m) = match s.split_once('/') {
        Some((a, m)) => (a, Some(m)),
        None => (s, None),
    };
    let addr = parse_addr(option, a, family)?;
    let mask = match m {
        None => full,
        Some(m) => {
            let len =
                if (family == Family::Ipv4 && m.contains('.'))
                    || (family == Family::Ipv6 && m.contains(':'))
                {
                    None
                } else {
                    match strtoul(m) {
                        Some(l) if l <= bits as u64 => Some(l as u32),
                        _ => {
                            return Err(Fail::bad(option, s, "a prefix length or mask").hint(
                                format!("invalid mask `{m}': the prefix length is 0 to {bits}"),
                            ));
                        }
                    }
                };
            match len {
                Some(0) => 0,
                Some(l) => (full >> (bits - l)) << (bits - l) & full,
                None => parse_addr(option, m, family)
                    .map_err(|_| Fail::bad(option, s, "a prefix length or mask"))?,
            }
        }
    };
    Ok(AddrMask {
        addr: addr & mask,
        mask,
    })
}

/// Address as the caller gives it, widened to the u128 the masks use.
#[inline]
pub(crate) fn addr_bits(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v) => u32::from(v) as u128,
        IpAddr::V6(v) => u128::from(v),
    }
}

/// An address of the family from its bits.
pub(crate) fn bits_addr(bits: u128, family: Family) -> IpAddr {
    match family {
        Family::Ipv4 => IpAddr::V4(Ipv4Addr::from(bits as u32)),
        Family::Ipv6 => IpAddr::V6(Ipv6Addr::from(bits)),
    }
}

/// `iptables -n` address text: `0.0.0.0/0`, `10.0.0.0/8`, host without /32,
/// non-prefix masks in dotted form.
pub(crate) fn fmt_addr_mask(am: Option<&AddrMask>, family: Family) -> String {
    let (bits, full): (u32, u128) = match family {
        Family::Ipv4 => (32, u32::MAX as u128),
        Family::Ipv6 => (128, u128::MAX),
    };
    let am = am.copied().unwrap_or_default();
    let a = bits_addr(am.addr, family);
    if am.mask == full {
        return a.to_string();
    }
    let ones = am.mask.count_ones();
    let prefix = if ones == 0 {
        0
    } else {
        (full >> (bits - ones)) << (bits - ones) & full
    };
    if prefix == am.mask {
        format!("{a}/{ones}")
    } else {
        format!("{a}/{}", bits_addr(am.mask, family))
    }
}

/// Requires an option's argument to be one of `names` (case-insensitive
/// where `nocase`), returning its index.
pub(crate) fn lookup_name(names: &[&str], s: &str, nocase: bool) -> Option<usize> {
    names.iter().position(|n| {
        if nocase {
            n.eq_ignore_ascii_case(s)
        } else {
            *n == s
        }
    })
}

pub(crate) fn dup(opt: &str) -> Fail {
    Fail::new(RuleErrorKind::Duplicate(opt.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strtoul_is_base_zero() {
        assert_eq!(strtoul("22"), Some(22));
        assert_eq!(strtoul("0x16"), Some(22));
        assert_eq!(strtoul("026"), Some(22));
        assert_eq!(strtoul("0"), Some(0));
        assert_eq!(strtoul("08"), None);
        assert_eq!(strtoul("1-2"), None);
        assert_eq!(strtoul(""), None);
    }

    #[test]
    fn addresses_and_masks() {
        let f = Family::Ipv4;
        assert_eq!(parse_addr("-s", "10.1", f).unwrap(), 0x0a01_0000);
        assert_eq!(parse_addr("-s", "10", f).unwrap(), 0x0a00_0000);
        assert!(parse_addr("-s", "1.2.3.256", f).is_err());
        let am = parse_addr_mask("-s", "10.1.2.3/8", f).unwrap();
        assert_eq!(
            am,
            AddrMask {
                addr: 0x0a00_0000,
                mask: 0xff00_0000
            }
        );
        let am = parse_addr_mask("-s", "1.2.3.4/255.255.0.255", f).unwrap();
        assert_eq!(am.mask, 0xffff_00ff);
        assert_eq!(fmt_addr_mask(Some(&am), f), "1.2.0.4/255.255.0.255");
        assert!(parse_addr_mask("-s", "1.2.3.4/33", f).is_err());
        assert!(parse_addr_mask("-s", "1.2.3.4/", f).is_err());
        assert!(parse_addr_mask("-s", "1.2.3.4/08", f).is_err());
        assert_eq!(
            parse_addr_mask("-s", "1.2.3.4/0x8", f).unwrap().mask,
            0xff00_0000
        );
        assert_eq!(
            parse_addr_mask("-s", "0/0", f).unwrap(),
            AddrMask { addr: 0, mask: 0 }
        );
        assert_eq!(fmt_addr_mask(None, f), "0.0.0.0/0");
        let e = parse_addr_mask("-s", "example.com", f).unwrap_err();
        assert!(e.hint.unwrap().contains("host names"));
        let v6 = parse_addr_mask("-s", "2001:db8::1/32", Family::Ipv6).unwrap();
        assert_eq!(fmt_addr_mask(Some(&v6), Family::Ipv6), "2001:db8::/32");
    }

    #[test]
    fn ports_and_ranges() {
        assert_eq!(parse_port_range("--dport", "22", 6).unwrap(), (22, 22));
        assert_eq!(parse_port_range("--dport", "ssh", 6).unwrap(), (22, 22));
        assert_eq!(parse_port_range("--dport", ":80", 6).unwrap(), (0, 80));
        assert_eq!(parse_port_range("--dport", "80:", 6).unwrap(), (80, 65535));
        assert!(parse_port_range("--dport", "22:21", 6).is_err());
        assert!(parse_port_range("--dport", "65536", 6).is_err());
        let e = parse_port_range("--dport", "1-2", 6).unwrap_err();
        assert!(e.hint.unwrap().contains("1:2"));
    }

    #[test]
    fn marks() {
        assert_eq!(parse_mark("--mark", "0x10/0xf0").unwrap(), (0x10, 0xf0));
        assert_eq!(parse_mark("--mark", "1").unwrap(), (1, u32::MAX));
        assert!(parse_mark("--mark", "4294967296").is_err());
    }
}
