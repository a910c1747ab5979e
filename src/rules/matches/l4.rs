//! Transport-header matches: `tcp`, `udp`, `icmp`, `icmp6`, `multiport`.
//!
//! Ports and flags are read from the packet's first fragment only; a
//! packet whose transport header is missing (non-first fragment, truncated
//! header) never matches, whatever the inversion. iptables-nft runs
//! `tcp`/`udp` as native payload comparisons, which behave this way; the
//! xtables modules would additionally drop ("hotdrop") a truncated header,
//! which ctsim does not model because the conntrack layer has already
//! declared such packets INVALID.

use super::{Fail, Match, MatchExt, Opt, ParseCtx, dup, parse_port_range, parse_uint};
use crate::rules::error::RuleErrorKind;
use crate::rules::eval::EvalCtx;
use crate::wire::ipproto;

/// A port range with inversion; `None` in the owning match: not given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
    pub inv: bool,
}

impl PortRange {
    #[inline]
    fn test(&self, p: u16) -> bool {
        (p >= self.lo && p <= self.hi) != self.inv
    }
    fn describe(&self, single: &str, multi: &str) -> String {
        let inv = if self.inv { "!" } else { "" };
        if self.lo == self.hi {
            format!(" {single}:{inv}{}", self.lo)
        } else {
            format!(" {multi}:{inv}{}:{}", self.lo, self.hi)
        }
    }
}

/// The `--sport`/`--dport` pair of a tcp or udp match. iptables-nft
/// (1.8.9, the one the kernel oracle runs) translates `! --sport A
/// ! --dport B` with single ports into one 4-byte "not equal" compare over
/// both port fields, so the rule matches unless *both* ports are equal — not
/// when each differs, as xt_tcp would. We model what the kernel executes.
#[inline]
fn ports_match(sport: Option<PortRange>, dport: Option<PortRange>, sp: u16, dp: u16) -> bool {
    match (sport, dport) {
        (Some(s), Some(d)) if s.inv && d.inv && s.lo == s.hi && d.lo == d.hi => {
            !(sp == s.lo && dp == d.lo)
        }
        _ => sport.is_none_or(|r| r.test(sp)) && dport.is_none_or(|r| r.test(dp)),
    }
}

fn need_proto(pc: &ParseCtx, proto: u8, what: &str, needs: &'static str) -> Result<(), Fail> {
    if pc.proto != proto || pc.proto_inv {
        return Err(Fail::new(RuleErrorKind::NeedsProtocol {
            option: what.to_string(),
            needs,
        }));
    }
    Ok(())
}

// --- tcp ------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TcpMatch {
    pub sport: Option<PortRange>,
    pub dport: Option<PortRange>,
    /// (mask, compare, inverted)
    pub flags: Option<(u8, u8, bool)>,
    /// (option kind, inverted)
    pub option: Option<(u8, bool)>,
}

impl TcpMatch {
    #[inline]
    pub fn matches(&self, ctx: &EvalCtx) -> bool {
        if ctx.non_first_fragment || ctx.proto != ipproto::TCP {
            return false;
        }
        let (Some(sp), Some(dp), Some(fl)) = (ctx.sport, ctx.dport, ctx.tcp_flags) else {
            return false;
        };
        if !ports_match(self.sport, self.dport, sp, dp) {
            return false;
        }
        if let Some((mask, cmp, inv)) = self.flags
            && (fl & mask == cmp) == inv
        {
            return false;
        }
        if let Some((kind, inv)) = self.option
            && has_tcp_option(ctx.tcp_options, kind) == inv
        {
            return false;
        }
        true
    }

    pub(crate) fn describe(&self) -> String {
        let mut s = String::from(" tcp");
        if let Some(r) = &self.sport {
            s += &r.describe("spt", "spts");
        }
        if let Some(r) = &self.dport {
            s += &r.describe("dpt", "dpts");
        }
        if let Some((k, inv)) = self.option {
            s += &format!(" option={}{k}", if inv { "!" } else { "" });
        }
        if let Some((m, c, inv)) = self.flags {
            s += &format!(" flags:{}0x{m:02X}/0x{c:02X}", if inv { "!" } else { "" });
        }
        s
    }
}

/// Walks the TCP option bytes the way the xt_tcp module does: kinds 0 and 1
/// are one byte long, everything else carries its length in the next byte
/// (a zero length advances by one so a malformed list cannot loop).
pub fn has_tcp_option(opts: &[u8], kind: u8) -> bool {
    let mut i = 0;
    while i < opts.len() {
        if opts[i] == kind {
            return true;
        }
        if opts[i] < 2 {
            i += 1;
        } else {
            let len = opts.get(i + 1).copied().unwrap_or(1);
            i += if len == 0 { 1 } else { len as usize };
        }
    }
    false
}

const TCP_FLAGS: &[(&str, u8)] = &[
    ("FIN", 0x01),
    ("SYN", 0x02),
    ("RST", 0x04),
    ("PSH", 0x08),
    ("ACK", 0x10),
    ("URG", 0x20),
    ("ALL", 0x3f),
    ("NONE", 0),
];

fn parse_tcp_flags(s: &str) -> Result<u8, Fail> {
    let mut v = 0;
    for f in s.split(',') {
        match TCP_FLAGS.iter().find(|(n, _)| n.eq_ignore_ascii_case(f)) {
            Some((_, b)) => v |= b,
            None => {
                return Err(Fail::bad(
                    "--tcp-flags",
                    f,
                    "TCP flags FIN,SYN,RST,PSH,ACK,URG,ALL,NONE",
                )
                .hint(format!("Unknown TCP flag `{f}'")));
            }
        }
    }
    Ok(v)
}

#[derive(Default)]
pub(crate) struct TcpExt {
    m: TcpMatch,
}

const TCP_OPTS: &[Opt] = &[
    Opt::inv("source-port"),
    Opt::inv("sport"),
    Opt::inv("destination-port"),
    Opt::inv("dport"),
    Opt::inv_flag("syn"),
    Opt {
        name: "tcp-flags",
        arg: true,
        inv: true,
        text: false,
    },
    Opt::inv("tcp-option"),
];

impl MatchExt for TcpExt {
    fn name(&self) -> &'static str {
        "tcp"
    }
    fn options(&self) -> &'static [Opt] {
        TCP_OPTS
    }
    fn parse(&mut self, opt: usize, inv: bool, arg: &str, _pc: &ParseCtx) -> Result<(), Fail> {
        match opt {
            0 | 1 => {
                if self.m.sport.is_some() {
                    return Err(dup("--source-port"));
                }
                let (lo, hi) = parse_port_range("--sport", arg, ipproto::TCP)?;
                self.m.sport = Some(PortRange { lo, hi, inv });
            }
            2 | 3 => {
                if self.m.dport.is_some() {
                    return Err(dup("--destination-port"));
                }
                let (lo, hi) = parse_port_range("--dport", arg, ipproto::TCP)?;
                self.m.dport = Some(PortRange { lo, hi, inv });
            }
            4 | 5 => {
                if self.m.flags.is_some() {
                    return Err(Fail::invalid(
                        "Only one of `--syn' or `--tcp-flags' allowed",
                    ));
                }
                if opt == 4 {
                    self.m.flags = Some((0x17, 0x02, inv));
                } else {
                    let (mask, cmp) = arg.split_once('\0').unwrap_or((arg, ""));
                    if cmp.is_empty() {
                        return Err(Fail::new(RuleErrorKind::MissingArgument("--tcp-flags".into()))
                            .hint("--tcp-flags takes two arguments: the flags to examine and the flags that must be set, e.g. --tcp-flags SYN,ACK SYN"));
                    }
                    self.m.flags = Some((parse_tcp_flags(mask)?, parse_tcp_flags(cmp)?, inv));
                }
            }
            _ => {
                if self.m.option.is_some() {
                    return Err(dup("--tcp-option"));
                }
                let k = parse_uint("--tcp-option", arg, 1, 255)? as u8;
                self.m.option = Some((k, inv));
            }
        }
        Ok(())
    }
    fn finish(&mut self, pc: &ParseCtx) -> Result<Match, Fail> {
        need_proto(pc, ipproto::TCP, "-m tcp", "-p tcp")?;
        Ok(Match::Tcp(self.m.clone()))
    }
}

// --- udp ------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UdpMatch {
    pub sport: Option<PortRange>,
    pub dport: Option<PortRange>,
}

impl UdpMatch {
    #[inline]
    pub fn matches(&self, ctx: &EvalCtx) -> bool {
        if ctx.non_first_fragment || ctx.proto != ipproto::UDP {
            return false;
        }
        let (Some(sp), Some(dp)) = (ctx.sport, ctx.dport) else {
            return false;
        };
        ports_match(self.sport, self.dport, sp, dp)
    }
    pub(crate) fn describe(&self) -> String {
        let mut s = String::from(" udp");
        if let Some(r) = &self.sport {
            s += &r.describe("spt", "spts");
        }
        if let Some(r) = &self.dport {
            s += &r.describe("dpt", "dpts");
        }
        s
    }
}

#[derive(Default)]
pub(crate) struct UdpExt {
    m: UdpMatch,
}

const UDP_OPTS: &[Opt] = &[
    Opt::inv("source-port"),
    Opt::inv("sport"),
    Opt::inv("destination-port"),
    Opt::inv("dport"),
];

impl MatchExt for UdpExt {
    fn name(&self) -> &'static str {
        "udp"
    }
    fn options(&self) -> &'static [Opt] {
        UDP_OPTS
    }
    fn parse(&mut self, opt: usize, inv: bool, arg: &str, _pc: &ParseCtx) -> Result<(), Fail> {
        let slot = if opt < 2 {
            &mut self.m.sport
        } else {
            &mut self.m.dport
        };
        if slot.is_some() {
            return Err(dup(if opt < 2 {
                "--source-port"
            } else {
                "--destination-port"
            }));
        }
        let (lo, hi) = parse_port_range(
            if opt < 2 { "--sport" } else { "--dport" },
            arg,
            ipproto::UDP,
        )?;
        *slot = Some(PortRange { lo, hi, inv });
        Ok(())
    }
    fn finish(&mut self, pc: &ParseCtx) -> Result<Match, Fail> {
        need_proto(pc, ipproto::UDP, "-m udp", "-p udp")?;
        Ok(Match::Udp(self.m.clone()))
    }
}

// --- icmp / icmp6 -----------------------------------------------------------

/// `--icmp-type` / `--icmpv6-type`: type (0xff: any) and a code range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IcmpMatch {
    pub v6: bool,
    pub icmp_type: u8,
    pub code_lo: u8,
    pub code_hi: u8,
    pub inv: bool,
}

impl IcmpMatch {
    #[inline]
    pub fn matches(&self, ctx: &EvalCtx) -> bool {
        let proto = if self.v6 {
            ipproto::ICMPV6
        } else {
            ipproto::ICMP
        };
        if ctx.non_first_fragment || ctx.proto != proto {
            return false;
        }
        let Some((t, c)) = ctx.icmp else {
            return false;
        };
        let hit = (!self.v6 && self.icmp_type == 0xff)
            || (t == self.icmp_type && c >= self.code_lo && c <= self.code_hi);
        hit != self.inv
    }
    pub(crate) fn describe(&self) -> String {
        let inv = if self.inv { "!" } else { "" };
        let kw = if self.v6 { "ipv6-icmptype" } else { "icmptype" };
        if !self.v6 && self.icmp_type == 0xff {
            return format!(" icmp {inv}any");
        }
        let mut s = format!(" {kw} {inv}{}", self.icmp_type);
        if self.code_lo == self.code_hi {
            s += &format!(" code {}", self.code_lo);
        } else if self.code_lo != 0 || self.code_hi != 0xff {
            s += &format!(" codes {}-{}", self.code_lo, self.code_hi);
        }
        s
    }
}

/// (name, type, code min, code max)
const ICMP_NAMES: &[(&str, u8, u8, u8)] = &[
    ("any", 0xff, 0, 0xff),
    ("echo-reply", 0, 0, 0xff),
    ("pong", 0, 0, 0xff),
    ("destination-unreachable", 3, 0, 0xff),
    ("network-unreachable", 3, 0, 0),
    ("host-unreachable", 3, 1, 1),
    ("protocol-unreachable", 3, 2, 2),
    ("port-unreachable", 3, 3, 3),
    ("fragmentation-needed", 3, 4, 4),
    ("source-route-failed", 3, 5, 5),
    ("network-unknown", 3, 6, 6),
    ("host-unknown", 3, 7, 7),
    ("network-prohibited", 3, 9, 9),
    ("host-prohibited", 3, 10, 10),
    ("TOS-network-unreachable", 3, 11, 11),
    ("TOS-host-unreachable", 3, 12, 12),
    ("communication-prohibited", 3, 13, 13),
    ("host-precedence-violation", 3, 14, 14),
    ("precedence-cutoff", 3, 15, 15),
    ("source-quench", 4, 0, 0xff),
    ("redirect", 5, 0, 0xff),
    ("network-redirect", 5, 0, 0),
    ("host-redirect", 5, 1, 1),
    ("TOS-network-redirect", 5, 2, 2),
    ("TOS-host-redirect", 5, 3, 3),
    ("echo-request", 8, 0, 0xff),
    ("ping", 8, 0, 0xff),
    ("router-advertisement", 9, 0, 0xff),
    ("router-solicitation", 10, 0, 0xff),
    ("time-exceeded", 11, 0, 0xff),
    ("ttl-exceeded", 11, 0, 0xff),
    ("ttl-zero-during-transit", 11, 0, 0),
    ("ttl-zero-during-reassembly", 11, 1, 1),
    ("parameter-problem", 12, 0, 0xff),
    ("ip-header-bad", 12, 0, 0),
    ("required-option-missing", 12, 1, 1),
    ("timestamp-request", 13, 0, 0xff),
    ("timestamp-reply", 14, 0, 0xff),
    ("address-mask-request", 17, 0, 0xff),
    ("address-mask-reply", 18, 0, 0xff),
];

const ICMP6_NAMES: &[(&str, u8, u8, u8)] = &[
    ("destination-unreachable", 1, 0, 0xff),
    ("no-route", 1, 0, 0),
    ("communication-prohibited", 1, 1, 1),
    ("beyond-scope", 1, 2, 2),
    ("address-unreachable", 1, 3, 3),
    ("port-unreachable", 1, 4, 4),
    ("failed-policy", 1, 5, 5),
    ("reject-route", 1, 6, 6),
    ("packet-too-big", 2, 0, 0xff),
    ("time-exceeded", 3, 0, 0xff),
    ("ttl-exceeded", 3, 0, 0xff),
    ("ttl-zero-during-transit", 3, 0, 0),
    ("ttl-zero-during-reassembly", 3, 1, 1),
    ("parameter-problem", 4, 0, 0xff),
    ("bad-header", 4, 0, 0),
    ("unknown-header-type", 4, 1, 1),
    ("unknown-option", 4, 2, 2),
    ("echo-request", 128, 0, 0xff),
    ("ping", 128, 0, 0xff),
    ("echo-reply", 129, 0, 0xff),
    ("pong", 129, 0, 0xff),
    ("mld-listener-query", 130, 0, 0xff),
    ("mld-listener-report", 131, 0, 0xff),
    ("mld-listener-done", 132, 0, 0xff),
    ("mld-listener-reduction", 132, 0, 0xff),
    ("router-solicitation", 133, 0, 0xff),
    ("router-advertisement", 134, 0, 0xff),
    ("neighbour-solicitation", 135, 0, 0xff),
    ("neighbor-solicitation", 135, 0, 0xff),
    ("neighbour-advertisement", 136, 0, 0xff),
    ("neighbor-advertisement", 136, 0, 0xff),
    ("redirect", 137, 0, 0xff),
];

/// Names match by unambiguous case-insensitive prefix, as libxt_icmp does;
/// numbers are `type[/code]`.
fn parse_icmp_type(s: &str, v6: bool) -> Result<(u8, u8, u8), Fail> {
    let opt = if v6 { "--icmpv6-type" } else { "--icmp-type" };
    let table = if v6 { ICMP6_NAMES } else { ICMP_NAMES };
    let lower = s.to_ascii_lowercase();
    let mut found: Option<&(&str, u8, u8, u8)> = None;
    for e in table {
        let name = e.0.to_ascii_lowercase();
        if name == lower {
            found = Some(e);
            break;
        }
        if name.starts_with(&lower) {
            if let Some(prev) = found
                && (prev.1, prev.2, prev.3) != (e.1, e.2, e.3)
            {
                return Err(Fail::bad(opt, s, "an ICMP type name").hint(format!(
                    "ambiguous ICMP type `{s}': `{}' or `{}'?",
                    prev.0, e.0
                )));
            }
            found = found.or(Some(e));
        }
    }
    if let Some(e) = found {
        return Ok((e.1, e.2, e.3));
    }
    let (t, c) = match s.split_once('/') {
        Some((t, c)) => (t, Some(c)),
        None => (s, None),
    };
    let t = super::strtoul(t).filter(|v| *v <= 255).ok_or_else(|| {
        Fail::bad(opt, s, "an ICMP type name or number[/code]")
            .hint(format!("Unknown ICMP type `{s}'"))
    })? as u8;
    match c {
        None => Ok((t, 0, 0xff)),
        Some(c) => {
            let c = super::strtoul(c).filter(|v| *v <= 255).ok_or_else(|| {
                Fail::bad(opt, s, "an ICMP code 0-255").hint(format!("Invalid ICMP code `{c}'"))
            })? as u8;
            Ok((t, c, c))
        }
    }
}

pub(crate) struct IcmpExt {
    m: IcmpMatch,
    seen: bool,
}

impl IcmpExt {
    pub(crate) fn new(v6: bool) -> Self {
        IcmpExt {
            m: IcmpMatch {
                v6,
                icmp_type: 0xff,
                code_lo: 0,
                code_hi: 0xff,
                inv: false,
            },
            seen: false,
        }
    }
}

const ICMP_OPTS: &[Opt] = &[Opt::inv("icmp-type")];
const ICMP6_OPTS: &[Opt] = &[Opt::inv("icmpv6-type")];

impl MatchExt for IcmpExt {
    fn name(&self) -> &'static str {
        if self.m.v6 { "icmp6" } else { "icmp" }
    }
    fn options(&self) -> &'static [Opt] {
        if self.m.v6 { ICMP6_OPTS } else { ICMP_OPTS }
    }
    fn parse(&mut self, _opt: usize, inv: bool, arg: &str, _pc: &ParseCtx) -> Result<(), Fail> {
        if self.seen {
            return Err(dup(if self.m.v6 {
                "--icmpv6-type"
            } else {
                "--icmp-type"
            }));
        }
        self.seen = true;
        let (t, lo, hi) = parse_icmp_type(arg, self.m.v6)?;
        self.m.icmp_type = t;
        self.m.code_lo = lo;
        self.m.code_hi = hi;
        self.m.inv = inv;
        Ok(())
    }
    fn finish(&mut self, pc: &ParseCtx) -> Result<Match, Fail> {
        if self.m.v6 {
            need_proto(pc, ipproto::ICMPV6, "-m icmp6", "-p icmpv6")?;
            if !self.seen {
                return Err(Fail::invalid(
                    "icmp6: option \"--icmpv6-type\" must be specified",
                ));
            }
        } else {
            need_proto(pc, ipproto::ICMP, "-m icmp", "-p icmp")?;
        }
        Ok(Match::Icmp(self.m.clone()))
    }
}

// --- multiport ----------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MultiportDir {
    Source,
    Destination,
    Either,
}

/// Up to 15 ports or ranges (a range takes two of the 15 slots).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultiportMatch {
    pub dir: MultiportDir,
    pub ranges: Vec<(u16, u16)>,
    pub inv: bool,
}

impl MultiportMatch {
    #[inline]
    pub fn matches(&self, ctx: &EvalCtx) -> bool {
        if ctx.non_first_fragment {
            return false;
        }
        let (Some(sp), Some(dp)) = (ctx.sport, ctx.dport) else {
            return false;
        };
        let inr = |p: u16| self.ranges.iter().any(|&(lo, hi)| p >= lo && p <= hi);
        let hit = match self.dir {
            MultiportDir::Source => inr(sp),
            MultiportDir::Destination => inr(dp),
            MultiportDir::Either => inr(sp) || inr(dp),
        };
        hit != self.inv
    }
    pub(crate) fn describe(&self) -> String {
        let kw = match self.dir {
            MultiportDir::Source => "sports",
            MultiportDir::Destination => "dports",
            MultiportDir::Either => "ports",
        };
        let list: Vec<String> = self
            .ranges
            .iter()
            .map(|&(lo, hi)| {
                if lo == hi {
                    lo.to_string()
                } else {
                    format!("{lo}:{hi}")
                }
            })
            .collect();
        format!(
            " multiport {kw} {}{}",
            if self.inv { "! " } else { "" },
            list.join(",")
        )
    }
}

#[derive(Default)]
pub(crate) struct MultiportExt {
    m: Option<MultiportMatch>,
}

const MULTIPORT_OPTS: &[Opt] = &[
    Opt::inv("source-ports"),
    Opt::inv("sports"),
    Opt::inv("destination-ports"),
    Opt::inv("dports"),
    Opt::inv("ports"),
];

const MULTIPORT_PROTOS: &[u8] = &[
    ipproto::TCP,
    ipproto::UDP,
    ipproto::UDPLITE,
    ipproto::SCTP,
    33,
];

impl MatchExt for MultiportExt {
    fn name(&self) -> &'static str {
        "multiport"
    }
    fn options(&self) -> &'static [Opt] {
        MULTIPORT_OPTS
    }
    fn parse(&mut self, opt: usize, inv: bool, arg: &str, pc: &ParseCtx) -> Result<(), Fail> {
        if self.m.is_some() {
            return Err(Fail::invalid(
                "multiport: only one of --source-ports, --destination-ports and --ports may be given",
            ));
        }
        if pc.proto == 0 || pc.proto_inv {
            return Err(Fail::new(RuleErrorKind::NeedsProtocol {
                option: "-m multiport".into(),
                needs: "-p tcp, -p udp, -p udplite, -p sctp or -p dccp",
            }));
        }
        let dir = match opt {
            0 | 1 => MultiportDir::Source,
            2 | 3 => MultiportDir::Destination,
            _ => MultiportDir::Either,
        };
        let mut ranges = Vec::new();
        let mut slots = 0;
        for part in arg.split(',') {
            let (lo, hi) = parse_port_range("--dports", part, pc.proto)?;
            slots += if part.contains(':') { 2 } else { 1 };
            ranges.push((lo, hi));
        }
        if slots > 15 {
            return Err(
                Fail::bad("--dports", arg, "at most 15 ports (a range counts as two)")
                    .hint("too many ports specified; split the list over two rules"),
            );
        }
        self.m = Some(MultiportMatch { dir, ranges, inv });
        Ok(())
    }
    fn finish(&mut self, pc: &ParseCtx) -> Result<Match, Fail> {
        let Some(m) = self.m.take() else {
            return Err(Fail::invalid(
                "multiport: one of --sports, --dports or --ports is required",
            ));
        };
        if !MULTIPORT_PROTOS.contains(&pc.proto) || pc.proto_inv {
            return Err(Fail::new(RuleErrorKind::NeedsProtocol {
                option: "-m multiport".into(),
                needs: "-p tcp, -p udp, -p udplite, -p sctp or -p dccp",
            }));
        }
        Ok(Match::Multiport(m))
    }
}

#[cfg(test)]
mod nft_quirk_tests {
    use super::*;

    // Observed on iptables v1.8.9 (nf_tables) with `nft --debug=netlink`:
    // `! --sport 123 ! --dport 123` becomes `cmp neq` over 4 bytes; ranges
    // stay separate compares.
    #[test]
    fn both_inverted_single_ports_compare_as_one_field() {
        let inv = |p| {
            Some(PortRange {
                lo: p,
                hi: p,
                inv: true,
            })
        };
        assert!(!ports_match(inv(123), inv(123), 123, 123));
        assert!(ports_match(inv(123), inv(123), 40004, 123));
        assert!(ports_match(inv(123), inv(123), 123, 40004));
        let range = Some(PortRange {
            lo: 1,
            hi: 5,
            inv: true,
        });
        assert!(!ports_match(range, inv(123), 40004, 123));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_option_walk() {
        // MSS(4 bytes), NOP, WS(3 bytes), SACK-permitted(2 bytes)
        let opts = [2, 4, 5, 0xb4, 1, 3, 3, 7, 4, 2];
        assert!(has_tcp_option(&opts, 2));
        assert!(has_tcp_option(&opts, 3));
        assert!(has_tcp_option(&opts, 4));
        assert!(!has_tcp_option(&opts, 8));
        // zero length must not loop
        assert!(!has_tcp_option(&[5, 0, 5, 0], 8));
    }

    #[test]
    fn tcp_flag_names() {
        assert_eq!(parse_tcp_flags("SYN,ACK").unwrap(), 0x12);
        assert_eq!(parse_tcp_flags("ALL").unwrap(), 0x3f);
        assert_eq!(parse_tcp_flags("syn").unwrap(), 0x02);
        assert!(parse_tcp_flags("ECE").is_err());
    }

    #[test]
    fn icmp_names_prefix_and_numbers() {
        assert_eq!(
            parse_icmp_type("echo-request", false).unwrap(),
            (8, 0, 0xff)
        );
        assert_eq!(parse_icmp_type("echo-req", false).unwrap(), (8, 0, 0xff));
        assert_eq!(parse_icmp_type("3/4", false).unwrap(), (3, 4, 4));
        assert_eq!(parse_icmp_type("any", false).unwrap(), (0xff, 0, 0xff));
        assert!(parse_icmp_type("300", false).is_err());
        assert!(parse_icmp_type("echo", false).is_err()); // echo-reply or echo-request
        assert_eq!(
            parse_icmp_type("neighbor-solicitation", true).unwrap(),
            (135, 0, 0xff)
        );
    }
}
