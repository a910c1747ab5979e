//! Targets (`-j NAME`): the built-in verdicts and the extension targets
//! ctsim simulates (REJECT, LOG, NFLOG, MARK, CONNMARK, CT, NOTRACK), plus
//! the NAT targets, which are parsed and checked but not simulated.

use crate::rules::error::{Fail, RuleErrorKind, closest};
use crate::rules::matches::{
    Opt, ParseCtx, dup, parse_addr, parse_mark, parse_port_range, parse_uint,
};
use crate::rules::{Hook, TableId};
use crate::wire::{Family, ipproto};

/// What `-j`/`-g` named, as parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// No `-j`: the rule only counts.
    None,
    Accept,
    Drop,
    Return,
    /// `-j CHAIN`
    Jump(String),
    /// `-g CHAIN`
    Goto(String),
    Reject(RejectWith),
    Log(LogTarget),
    Nflog(NflogTarget),
    /// `mark = (mark & !mask) ^ value`
    Mark {
        value: u32,
        mask: u32,
    },
    Connmark(ConnmarkOp),
    Ct(CtTarget),
    /// NAT (SNAT/DNAT/MASQUERADE/REDIRECT): kept for reporting, not simulated.
    Nat {
        name: &'static str,
        args: String,
    },
}

/// `--reject-with`: what REJECT sends back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectWith {
    IcmpNetUnreachable,
    IcmpHostUnreachable,
    IcmpProtoUnreachable,
    IcmpPortUnreachable,
    IcmpNetProhibited,
    IcmpHostProhibited,
    IcmpAdminProhibited,
    TcpReset,
    Icmp6NoRoute,
    Icmp6AdmProhibited,
    Icmp6AddrUnreachable,
    Icmp6PortUnreachable,
    Icmp6PolicyFail,
    Icmp6RejectRoute,
}

const REJECT4: &[(&str, &str, RejectWith)] = &[
    (
        "icmp-net-unreachable",
        "net-unreach",
        RejectWith::IcmpNetUnreachable,
    ),
    (
        "icmp-host-unreachable",
        "host-unreach",
        RejectWith::IcmpHostUnreachable,
    ),
    (
        "icmp-proto-unreachable",
        "proto-unreach",
        RejectWith::IcmpProtoUnreachable,
    ),
    (
        "icmp-port-unreachable",
        "port-unreach",
        RejectWith::IcmpPortUnreachable,
    ),
    (
        "icmp-net-prohibited",
        "net-prohib",
        RejectWith::IcmpNetProhibited,
    ),
    (
        "icmp-host-prohibited",
        "host-prohib",
        RejectWith::IcmpHostProhibited,
    ),
    ("tcp-reset", "tcp-rst", RejectWith::TcpReset),
    (
        "icmp-admin-prohibited",
        "admin-prohib",
        RejectWith::IcmpAdminProhibited,
    ),
];

const REJECT6: &[(&str, &str, RejectWith)] = &[
    ("icmp6-no-route", "no-route", RejectWith::Icmp6NoRoute),
    (
        "icmp6-adm-prohibited",
        "adm-prohibited",
        RejectWith::Icmp6AdmProhibited,
    ),
    (
        "icmp6-addr-unreachable",
        "addr-unreach",
        RejectWith::Icmp6AddrUnreachable,
    ),
    (
        "icmp6-port-unreachable",
        "port-unreach",
        RejectWith::Icmp6PortUnreachable,
    ),
    ("tcp-reset", "tcp-rst", RejectWith::TcpReset),
    (
        "icmp6-policy-fail",
        "policy-fail",
        RejectWith::Icmp6PolicyFail,
    ),
    (
        "icmp6-reject-route",
        "reject-route",
        RejectWith::Icmp6RejectRoute,
    ),
];

impl RejectWith {
    /// The `--reject-with` name iptables prints.
    pub fn name(self) -> &'static str {
        REJECT4
            .iter()
            .chain(REJECT6)
            .find(|e| e.2 == self)
            .map_or("icmp-port-unreachable", |e| e.0)
    }
    /// The default for a family.
    pub fn default_for(family: Family) -> RejectWith {
        match family {
            Family::Ipv4 => RejectWith::IcmpPortUnreachable,
            Family::Ipv6 => RejectWith::Icmp6PortUnreachable,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogTarget {
    pub level: u8,
    pub prefix: String,
    /// `--log-tcp-sequence` etc. as the LOG flags bit set.
    pub flags: u8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NflogTarget {
    pub group: u16,
    pub prefix: String,
}

/// CONNMARK operations with their masks (xt_CONNMARK revision 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnmarkOp {
    /// `ctmark = (ctmark & !ctmask) ^ value`
    Set { value: u32, ctmask: u32 },
    /// `ctmark = (ctmark & !ctmask) ^ (nfmark & nfmask)`
    Save { nfmask: u32, ctmask: u32 },
    /// `nfmark = (nfmark & !nfmask) ^ (ctmark & ctmask)`
    Restore { nfmask: u32, ctmask: u32 },
}

/// The raw-table CT target (and NOTRACK, which is `--notrack`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtTarget {
    pub notrack: bool,
    pub helper: Option<String>,
}

impl Target {
    /// Hooks the kernel lets this target run in (checked for rules placed
    /// directly in a built-in chain).
    pub fn allowed_hooks(&self) -> u8 {
        use Hook::*;
        match self {
            Target::Reject(_) => Input.bit() | Forward.bit() | Output.bit(),
            Target::Nat {
                name: "DNAT" | "REDIRECT",
                ..
            } => Prerouting.bit() | Output.bit(),
            Target::Nat { name: "SNAT", .. } => Postrouting.bit() | Input.bit(),
            Target::Nat {
                name: "MASQUERADE", ..
            } => Postrouting.bit(),
            _ => 0x1f,
        }
    }

    /// The text `iptables -L` prints in the target column.
    pub fn column(&self) -> &str {
        match self {
            Target::None => "",
            Target::Accept => "ACCEPT",
            Target::Drop => "DROP",
            Target::Return => "RETURN",
            Target::Jump(c) | Target::Goto(c) => c,
            Target::Reject(_) => "REJECT",
            Target::Log(_) => "LOG",
            Target::Nflog(_) => "NFLOG",
            Target::Mark { .. } => "MARK",
            Target::Connmark(_) => "CONNMARK",
            Target::Ct(_) => "CT",
            Target::Nat { name, .. } => name,
        }
    }

    /// The target's options as `iptables -L` prints them after the matches.
    pub fn describe(&self) -> String {
        match self {
            Target::Goto(_) => " [goto]".into(),
            Target::Reject(w) => format!(" reject-with {}", w.name()),
            Target::Log(l) => {
                let mut s = format!(" LOG flags {} level {}", l.flags, l.level);
                if !l.prefix.is_empty() {
                    s += &format!(" prefix \"{}\"", l.prefix);
                }
                s
            }
            Target::Nflog(n) => {
                let mut s = String::new();
                if !n.prefix.is_empty() {
                    s += &format!(" nflog-prefix {}", n.prefix);
                }
                if n.group != 0 {
                    s += &format!(" nflog-group {}", n.group);
                }
                s
            }
            Target::Mark { value, mask } => {
                if *mask == u32::MAX {
                    format!(" MARK set 0x{value:x}")
                } else {
                    format!(" MARK xset 0x{value:x}/0x{mask:x}")
                }
            }
            Target::Connmark(op) => match *op {
                ConnmarkOp::Set { value, ctmask } => {
                    format!(" CONNMARK xset 0x{value:x}/0x{ctmask:x}")
                }
                ConnmarkOp::Save { nfmask, ctmask } => {
                    format!(" CONNMARK save nfmask 0x{nfmask:x} ctmask ~0x{ctmask:x}")
                }
                ConnmarkOp::Restore { nfmask, ctmask } => {
                    format!(" CONNMARK restore ctmask 0x{ctmask:x} nfmask ~0x{nfmask:x}")
                }
            },
            Target::Ct(c) => {
                if c.notrack {
                    " CT notrack".into()
                } else if let Some(h) = &c.helper {
                    format!(" CT helper {h}")
                } else {
                    " CT".into()
                }
            }
            Target::Nat { args, .. } => format!(" {args}"),
            _ => String::new(),
        }
    }
}

/// A target extension being parsed.
pub(crate) trait TargetExt {
    fn options(&self) -> &'static [Opt];
    fn parse(&mut self, opt: usize, inv: bool, arg: &str, pc: &ParseCtx) -> Result<(), Fail>;
    fn finish(&mut self, pc: &ParseCtx) -> Result<Target, Fail>;
}

/// Extension targets iptables has that ctsim does not simulate.
const UNSIMULATED: &[&str] = &[
    "TRACE",
    "TCPMSS",
    "TOS",
    "DSCP",
    "TTL",
    "HL",
    "CLASSIFY",
    "NFQUEUE",
    "QUEUE",
    "AUDIT",
    "CHECKSUM",
    "SET",
    "SECMARK",
    "CONNSECMARK",
    "TEE",
    "ULOG",
    "NETMAP",
    "SYNPROXY",
    "IDLETIMER",
    "LED",
    "TPROXY",
    "HMARK",
    "RATEEST",
    "CLUSTERIP",
    "ECN",
    "DNPT",
    "SNPT",
    "TCPOPTSTRIP",
    "JOOL",
    "FLOWOFFLOAD",
];

/// Targets ctsim knows by name (for "did you mean").
pub const KNOWN: &[&str] = &[
    "ACCEPT",
    "DROP",
    "RETURN",
    "REJECT",
    "LOG",
    "NFLOG",
    "MARK",
    "CONNMARK",
    "CT",
    "NOTRACK",
    "SNAT",
    "DNAT",
    "MASQUERADE",
    "REDIRECT",
];

/// What a `-j` name is.
pub(crate) enum Loaded {
    Standard(Target),
    Ext(Box<dyn TargetExt>),
    /// Not a target: a chain name, resolved when the table is committed.
    Chain,
}

/// Looks up `-j NAME`.
pub(crate) fn load(name: &str) -> Result<Loaded, Fail> {
    Ok(match name {
        "ACCEPT" => Loaded::Standard(Target::Accept),
        "DROP" => Loaded::Standard(Target::Drop),
        "RETURN" => Loaded::Standard(Target::Return),
        "REJECT" => Loaded::Ext(Box::new(RejectExt::default())),
        "LOG" => Loaded::Ext(Box::new(LogExt::default())),
        "NFLOG" => Loaded::Ext(Box::new(NflogExt::default())),
        "MARK" => Loaded::Ext(Box::new(MarkExt::default())),
        "CONNMARK" => Loaded::Ext(Box::new(ConnmarkExt::default())),
        "CT" => Loaded::Ext(Box::new(CtExt::default())),
        "NOTRACK" => Loaded::Ext(Box::new(NotrackExt)),
        "SNAT" | "DNAT" | "MASQUERADE" | "REDIRECT" => Loaded::Ext(Box::new(NatExt::new(name))),
        n if UNSIMULATED.contains(&n) => {
            return Err(Fail::new(RuleErrorKind::UnsupportedTarget(n.to_string()))
                .hint("ctsim does not simulate this target"));
        }
        _ => Loaded::Chain,
    })
}

/// The hint for a `-j` name that is neither a target nor a chain.
pub(crate) fn unknown_target_hint(name: &str, chains: &[&str]) -> Option<String> {
    let upper = name.to_ascii_uppercase();
    let synonym = match upper.as_str() {
        "ALLOW" | "PERMIT" | "PASS" | "ACCEPTED" => Some("ACCEPT"),
        "DENY" | "BLOCK" | "DISCARD" | "DROPPED" => Some("DROP"),
        "REFUSE" | "REJECTED" => Some("REJECT"),
        _ => None,
    };
    if let Some(s) = synonym {
        return Some(format!("did you mean {s}?"));
    }
    if upper != name && KNOWN.contains(&upper.as_str()) {
        return Some(format!(
            "target names are upper case: did you mean {upper}?"
        ));
    }
    closest(name, KNOWN.iter().copied().chain(chains.iter().copied()))
        .map(|c| format!("did you mean {c}?"))
}

// --- REJECT -----------------------------------------------------------------------

#[derive(Default)]
struct RejectExt {
    with: Option<RejectWith>,
}

impl TargetExt for RejectExt {
    fn options(&self) -> &'static [Opt] {
        const O: &[Opt] = &[Opt::arg("reject-with")];
        O
    }
    fn parse(&mut self, _o: usize, _inv: bool, arg: &str, pc: &ParseCtx) -> Result<(), Fail> {
        let table = if pc.family == Family::Ipv4 {
            REJECT4
        } else {
            REJECT6
        };
        let l = arg.to_ascii_lowercase();
        let found = table
            .iter()
            .find(|(n, a, _)| n.starts_with(&l) || a.starts_with(&l));
        match found {
            Some(e) if !l.is_empty() => self.with = Some(e.2),
            _ => {
                let mut f = Fail::bad("--reject-with", arg, "a reject type");
                if let Some(c) = closest(arg, table.iter().map(|e| e.0)) {
                    f = f.hint(format!("did you mean {c}?"));
                }
                return Err(f);
            }
        }
        Ok(())
    }
    fn finish(&mut self, pc: &ParseCtx) -> Result<Target, Fail> {
        if pc.table != TableId::Filter {
            return Err(Fail::new(RuleErrorKind::NotAllowedHere {
                what: "REJECT".into(),
                place: format!("the {} table", pc.table.name()),
            })
            .hint("REJECT works in the filter table only"));
        }
        let w = self.with.unwrap_or(RejectWith::default_for(pc.family));
        if w == RejectWith::TcpReset && (pc.proto != ipproto::TCP || pc.proto_inv) {
            return Err(Fail::new(RuleErrorKind::NeedsProtocol {
                option: "--reject-with tcp-reset".into(),
                needs: "-p tcp",
            }));
        }
        Ok(Target::Reject(w))
    }
}

// --- LOG / NFLOG -------------------------------------------------------------------

#[derive(Default)]
struct LogExt {
    level: Option<u8>,
    prefix: Option<String>,
    flags: u8,
}

const LOG_LEVELS: &[&str] = &[
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

impl TargetExt for LogExt {
    fn options(&self) -> &'static [Opt] {
        const O: &[Opt] = &[
            Opt::arg("log-level"),
            Opt::text("log-prefix"),
            Opt::flag("log-tcp-sequence"),
            Opt::flag("log-tcp-options"),
            Opt::flag("log-ip-options"),
            Opt::flag("log-uid"),
            Opt::flag("log-macdecode"),
        ];
        O
    }
    fn parse(&mut self, opt: usize, _inv: bool, arg: &str, _pc: &ParseCtx) -> Result<(), Fail> {
        match opt {
            0 => {
                if self.level.is_some() {
                    return Err(dup("--log-level"));
                }
                let l = arg.to_ascii_lowercase();
                let lv = match l.as_str() {
                    "panic" => Some(0),
                    "error" => Some(3),
                    "warn" => Some(4),
                    _ => LOG_LEVELS.iter().position(|n| *n == l).map(|i| i as u8),
                }
                .or_else(|| {
                    crate::rules::matches::strtoul(arg)
                        .filter(|v| *v <= 7)
                        .map(|v| v as u8)
                });
                self.level = Some(lv.ok_or_else(|| {
                    Fail::bad(
                        "--log-level",
                        arg,
                        "a level 0-7 or emerg, alert, crit, err, warning, notice, info, debug",
                    )
                })?);
            }
            1 => {
                if self.prefix.is_some() {
                    return Err(dup("--log-prefix"));
                }
                if arg.len() > 127 {
                    return Err(Fail::bad("--log-prefix", arg, "at most 127 characters"));
                }
                self.prefix = Some(arg.to_string());
            }
            n => self.flags |= 1 << (n - 2),
        }
        Ok(())
    }
    fn finish(&mut self, _pc: &ParseCtx) -> Result<Target, Fail> {
        Ok(Target::Log(LogTarget {
            level: self.level.unwrap_or(4),
            prefix: self.prefix.take().unwrap_or_default(),
            flags: self.flags,
        }))
    }
}

#[derive(Default)]
struct NflogExt {
    group: Option<u16>,
    prefix: Option<String>,
}

impl TargetExt for NflogExt {
    fn options(&self) -> &'static [Opt] {
        const O: &[Opt] = &[
            Opt::arg("nflog-group"),
            Opt::text("nflog-prefix"),
            Opt::arg("nflog-range"),
            Opt::arg("nflog-size"),
            Opt::arg("nflog-threshold"),
        ];
        O
    }
    fn parse(&mut self, opt: usize, _inv: bool, arg: &str, _pc: &ParseCtx) -> Result<(), Fail> {
        match opt {
            0 => self.group = Some(parse_uint("--nflog-group", arg, 0, 65535)? as u16),
            1 => {
                if arg.len() > 63 {
                    return Err(Fail::bad("--nflog-prefix", arg, "at most 63 characters"));
                }
                self.prefix = Some(arg.to_string());
            }
            2 | 3 => {
                parse_uint("--nflog-size", arg, 0, u32::MAX as u64)?;
            }
            _ => {
                parse_uint("--nflog-threshold", arg, 1, 65535)?;
            }
        }
        Ok(())
    }
    fn finish(&mut self, _pc: &ParseCtx) -> Result<Target, Fail> {
        Ok(Target::Nflog(NflogTarget {
            group: self.group.unwrap_or(0),
            prefix: self.prefix.take().unwrap_or_default(),
        }))
    }
}

// --- MARK / CONNMARK ---------------------------------------------------------------

#[derive(Default)]
struct MarkExt {
    op: Option<(u32, u32)>,
}

impl TargetExt for MarkExt {
    fn options(&self) -> &'static [Opt] {
        const O: &[Opt] = &[
            Opt::arg("set-xmark"),
            Opt::arg("set-mark"),
            Opt::arg("and-mark"),
            Opt::arg("or-mark"),
            Opt::arg("xor-mark"),
        ];
        O
    }
    fn parse(&mut self, opt: usize, _inv: bool, arg: &str, _pc: &ParseCtx) -> Result<(), Fail> {
        if self.op.is_some() {
            return Err(Fail::invalid(
                "MARK target: only one action (--set-xmark, --set-mark, --and-mark, --or-mark, --xor-mark) may be given",
            ));
        }
        let name = format!("--{}", self.options()[opt].name);
        self.op = Some(match opt {
            0 => parse_mark(&name, arg)?,
            1 => {
                let (v, m) = parse_mark(&name, arg)?;
                (v, v | m)
            }
            _ => {
                let v = parse_uint(&name, arg, 0, u32::MAX as u64)? as u32;
                match opt {
                    2 => (0, !v),
                    3 => (v, v),
                    _ => (v, 0),
                }
            }
        });
        Ok(())
    }
    fn finish(&mut self, _pc: &ParseCtx) -> Result<Target, Fail> {
        let Some((value, mask)) = self.op else {
            return Err(Fail::invalid(
                "MARK target: one of --set-xmark, --set-mark, --and-mark, --or-mark, --xor-mark is required",
            ));
        };
        Ok(Target::Mark { value, mask })
    }
}

#[derive(Default)]
struct ConnmarkExt {
    /// 0 set, 1 save, 2 restore
    kind: Option<(u8, u32, u32)>,
    nfmask: Option<u32>,
    ctmask: Option<u32>,
}

impl TargetExt for ConnmarkExt {
    fn options(&self) -> &'static [Opt] {
        const O: &[Opt] = &[
            Opt::arg("set-xmark"),
            Opt::arg("set-mark"),
            Opt::arg("and-mark"),
            Opt::arg("or-mark"),
            Opt::arg("xor-mark"),
            Opt::flag("save-mark"),
            Opt::flag("restore-mark"),
            Opt::arg("mask"),
            Opt::arg("nfmask"),
            Opt::arg("ctmask"),
        ];
        O
    }
    fn parse(&mut self, opt: usize, _inv: bool, arg: &str, _pc: &ParseCtx) -> Result<(), Fail> {
        let name = format!("--{}", self.options()[opt].name);
        if opt <= 6 && self.kind.is_some() {
            return Err(Fail::invalid(
                "CONNMARK target: only one action may be given",
            ));
        }
        match opt {
            0 => {
                let (v, m) = parse_mark(&name, arg)?;
                self.kind = Some((0, v, m));
            }
            1 => {
                let (v, m) = parse_mark(&name, arg)?;
                self.kind = Some((0, v, v | m));
            }
            2..=4 => {
                let v = parse_uint(&name, arg, 0, u32::MAX as u64)? as u32;
                self.kind = Some(match opt {
                    2 => (0, 0, !v),
                    3 => (0, v, v),
                    _ => (0, v, 0),
                });
            }
            5 => self.kind = Some((1, 0, 0)),
            6 => self.kind = Some((2, 0, 0)),
            _ => {
                let v = parse_uint(&name, arg, 0, u32::MAX as u64)? as u32;
                if opt != 9 {
                    self.nfmask = Some(v);
                }
                if opt != 8 {
                    self.ctmask = Some(v);
                }
            }
        }
        Ok(())
    }
    fn finish(&mut self, _pc: &ParseCtx) -> Result<Target, Fail> {
        let Some((k, v, m)) = self.kind else {
            return Err(Fail::invalid("CONNMARK target: no operation specified"));
        };
        let nfmask = self.nfmask.unwrap_or(u32::MAX);
        let ctmask = self.ctmask.unwrap_or(u32::MAX);
        Ok(Target::Connmark(match k {
            0 => {
                if self.nfmask.is_some() || self.ctmask.is_some() {
                    return Err(Fail::invalid(
                        "CONNMARK target: --mask goes with --save-mark or --restore-mark",
                    ));
                }
                ConnmarkOp::Set {
                    value: v,
                    ctmask: m,
                }
            }
            1 => ConnmarkOp::Save { nfmask, ctmask },
            _ => ConnmarkOp::Restore { nfmask, ctmask },
        }))
    }
}

// --- CT / NOTRACK ----------------------------------------------------------------------

#[derive(Default)]
struct CtExt {
    notrack: bool,
    helper: Option<String>,
}

/// Conntrack helpers the kernel registers: (name, protocol, IPv6 too).
const HELPERS: &[(&str, u8, bool)] = &[
    ("ftp", ipproto::TCP, true),
    ("tftp", ipproto::UDP, true),
    ("irc", ipproto::TCP, false),
    ("sip", ipproto::UDP, true),
    ("sip", ipproto::TCP, true),
    ("sane", ipproto::TCP, true),
    ("amanda", ipproto::UDP, true),
    ("amanda", ipproto::TCP, true),
    ("pptp", ipproto::TCP, false),
    ("snmp", ipproto::UDP, false),
    ("netbios-ns", ipproto::UDP, false),
    ("RAS", ipproto::UDP, true),
    ("Q.931", ipproto::TCP, true),
];

fn raw_only(pc: &ParseCtx, what: &str) -> Result<(), Fail> {
    if pc.table != TableId::Raw {
        return Err(Fail::new(RuleErrorKind::NotAllowedHere {
            what: what.into(),
            place: format!("the {} table", pc.table.name()),
        })
        .hint(format!(
            "{what} works in the raw table only: -t raw -A PREROUTING … -j {what} …"
        )));
    }
    Ok(())
}

impl TargetExt for CtExt {
    fn options(&self) -> &'static [Opt] {
        const O: &[Opt] = &[
            Opt::flag("notrack"),
            Opt::arg("helper"),
            Opt::arg("ctevents"),
            Opt::arg("expevents"),
            Opt::arg("zone"),
            Opt::arg("zone-orig"),
            Opt::arg("zone-reply"),
            Opt::arg("timeout"),
        ];
        O
    }
    fn parse(&mut self, opt: usize, _inv: bool, arg: &str, _pc: &ParseCtx) -> Result<(), Fail> {
        match opt {
            0 => self.notrack = true,
            1 => {
                if self.helper.is_some() {
                    return Err(dup("--helper"));
                }
                self.helper = Some(arg.to_string());
            }
            _ => {
                return Err(Fail::new(RuleErrorKind::UnsupportedOption(format!(
                    "CT --{}",
                    self.options()[opt].name
                )))
                .hint("ctsim simulates CT --notrack and CT --helper only"));
            }
        }
        Ok(())
    }
    fn finish(&mut self, pc: &ParseCtx) -> Result<Target, Fail> {
        raw_only(pc, "CT")?;
        if !self.notrack
            && let Some(h) = &self.helper
        {
            let v6 = pc.family == Family::Ipv6;
            let known = HELPERS.iter().any(|(n, _, six)| n == h && (*six || !v6));
            if !known {
                return Err(Fail::bad(
                    "--helper",
                    h,
                    "a conntrack helper name (ftp, tftp, sip, irc, …)",
                ));
            }
            if pc.proto == 0 || pc.proto_inv {
                return Err(Fail::new(RuleErrorKind::NeedsProtocol {
                    option: format!("CT --helper {h}"),
                    needs: "-p with the helper's protocol",
                }));
            }
            if !HELPERS
                .iter()
                .any(|(n, p, six)| n == h && *p == pc.proto && (*six || !v6))
            {
                return Err(Fail::new(RuleErrorKind::NeedsProtocol {
                    option: format!("CT --helper {h}"),
                    needs: "-p with the helper's protocol",
                })
                .hint(format!(
                    "the {h} helper does not work for protocol {}",
                    pc.proto
                )));
            }
        }
        Ok(Target::Ct(CtTarget {
            notrack: self.notrack,
            helper: if self.notrack {
                None
            } else {
                self.helper.clone()
            },
        }))
    }
}

struct NotrackExt;

impl TargetExt for NotrackExt {
    fn options(&self) -> &'static [Opt] {
        &[]
    }
    fn parse(&mut self, _o: usize, _inv: bool, _arg: &str, _pc: &ParseCtx) -> Result<(), Fail> {
        Ok(())
    }
    fn finish(&mut self, pc: &ParseCtx) -> Result<Target, Fail> {
        raw_only(pc, "NOTRACK")?;
        Ok(Target::Ct(CtTarget {
            notrack: true,
            helper: None,
        }))
    }
}

// --- NAT (parsed, not simulated) ---------------------------------------------------------

struct NatExt {
    name: &'static str,
    args: Vec<String>,
    ports: bool,
    to: bool,
}

impl NatExt {
    fn new(name: &str) -> Self {
        let name = match name {
            "SNAT" => "SNAT",
            "DNAT" => "DNAT",
            "MASQUERADE" => "MASQUERADE",
            _ => "REDIRECT",
        };
        NatExt {
            name,
            args: Vec::new(),
            ports: false,
            to: false,
        }
    }
}

impl TargetExt for NatExt {
    fn options(&self) -> &'static [Opt] {
        const SNAT: &[Opt] = &[
            Opt::arg("to-source"),
            Opt::flag("random"),
            Opt::flag("random-fully"),
            Opt::flag("persistent"),
        ];
        const DNAT: &[Opt] = &[
            Opt::arg("to-destination"),
            Opt::flag("random"),
            Opt::flag("persistent"),
        ];
        const PORTS: &[Opt] = &[
            Opt::arg("to-ports"),
            Opt::flag("random"),
            Opt::flag("random-fully"),
        ];
        match self.name {
            "SNAT" => SNAT,
            "DNAT" => DNAT,
            _ => PORTS,
        }
    }
    fn parse(&mut self, opt: usize, _inv: bool, arg: &str, pc: &ParseCtx) -> Result<(), Fail> {
        let name = self.options()[opt].name;
        if opt == 0 {
            self.to = true;
            let ports = if matches!(self.name, "SNAT" | "DNAT") {
                // [addr[-addr]][:port[-port]]; IPv6 addresses in brackets.
                let (addrs, ports) = if let Some(rest) = arg.strip_prefix('[') {
                    let (a, p) = rest
                        .split_once(']')
                        .ok_or_else(|| Fail::bad(name, arg, "[address]:port"))?;
                    (a, p.strip_prefix(':'))
                } else if pc.family == Family::Ipv4 {
                    match arg.split_once(':') {
                        Some((a, p)) => (a, Some(p)),
                        None => (arg, None),
                    }
                } else {
                    (arg, None)
                };
                for a in addrs.split('-').filter(|a| !a.is_empty()) {
                    parse_addr(name, a, pc.family)?;
                }
                ports
            } else {
                Some(arg)
            };
            if let Some(p) = ports {
                self.ports = true;
                let r = p.replacen('-', ":", 1);
                parse_port_range(name, &r, pc.proto)?;
            }
        }
        self.args.push(if self.options()[opt].arg {
            format!("{name}:{arg}")
        } else {
            name.to_string()
        });
        Ok(())
    }
    fn finish(&mut self, pc: &ParseCtx) -> Result<Target, Fail> {
        if pc.table != TableId::Nat {
            return Err(Fail::new(RuleErrorKind::NotAllowedHere {
                what: self.name.into(),
                place: format!("the {} table", pc.table.name()),
            }));
        }
        if matches!(self.name, "SNAT" | "DNAT") && !self.to {
            return Err(Fail::invalid(format!(
                "{}: option \"--to-{}\" must be specified",
                self.name,
                if self.name == "SNAT" {
                    "source"
                } else {
                    "destination"
                }
            )));
        }
        if self.ports
            && !matches!(
                pc.proto,
                ipproto::TCP | ipproto::UDP | ipproto::SCTP | 33 | ipproto::UDPLITE
            )
        {
            return Err(Fail::new(RuleErrorKind::NeedsProtocol {
                option: format!("{} with a port", self.name),
                needs: "-p tcp, udp, sctp or dccp",
            }));
        }
        Ok(Target::Nat {
            name: self.name,
            args: self.args.join(" "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_suggests_accept() {
        assert_eq!(
            unknown_target_hint("ALLOW", &[]).as_deref(),
            Some("did you mean ACCEPT?")
        );
        assert_eq!(
            unknown_target_hint("accept", &[]).as_deref(),
            Some("target names are upper case: did you mean ACCEPT?")
        );
        assert_eq!(
            unknown_target_hint("ssh_in", &["ssh-in"]).as_deref(),
            Some("did you mean ssh-in?")
        );
    }

    #[test]
    fn reject_names_are_prefixes() {
        let pc = ParseCtx {
            family: Family::Ipv4,
            proto: 6,
            proto_inv: false,
            table: TableId::Filter,
        };
        let mut r = RejectExt::default();
        r.parse(0, false, "icmp-host-prohib", &pc).unwrap();
        assert_eq!(
            r.finish(&pc).unwrap(),
            Target::Reject(RejectWith::IcmpHostProhibited)
        );
        let mut r = RejectExt::default();
        assert!(r.parse(0, false, "foo", &pc).is_err());
        let pc6 = ParseCtx {
            family: Family::Ipv6,
            ..pc
        };
        let mut r = RejectExt::default();
        r.parse(0, false, "icmp6-adm-prohibited", &pc6).unwrap();
        assert_eq!(
            r.finish(&pc6).unwrap(),
            Target::Reject(RejectWith::Icmp6AdmProhibited)
        );
    }
}
