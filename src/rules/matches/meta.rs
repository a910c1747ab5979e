//! Packet metadata matches: `mark`, `connmark`, `comment`, `length`,
//! `ttl`/`hl`, `pkttype`, `addrtype`, `mac`.

use super::{Fail, Match, MatchExt, Opt, ParseCtx, dup, lookup_name, parse_mark, parse_uint};
use crate::rules::Hook;
use crate::rules::eval::EvalCtx;
use crate::wire::PktType;

// --- mark / connmark -----------------------------------------------------------

/// `(value & mask) == mark`, inverted with `!`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarkMatch {
    pub value: u32,
    pub mask: u32,
    pub inv: bool,
}

impl MarkMatch {
    #[inline]
    pub fn test(&self, mark: u32) -> bool {
        (mark & self.mask == self.value) != self.inv
    }
    pub(crate) fn describe(&self) -> String {
        let inv = if self.inv { "!" } else { "" };
        if self.mask == u32::MAX {
            format!("{inv}0x{:x}", self.value)
        } else {
            format!("{inv}0x{:x}/0x{:x}", self.value, self.mask)
        }
    }
}

pub(crate) struct MarkExt {
    conn: bool,
    m: Option<MarkMatch>,
}

impl MarkExt {
    pub(crate) fn new(conn: bool) -> Self {
        MarkExt { conn, m: None }
    }
}

impl MatchExt for MarkExt {
    fn name(&self) -> &'static str {
        if self.conn { "connmark" } else { "mark" }
    }
    fn options(&self) -> &'static [Opt] {
        const O: &[Opt] = &[Opt::inv("mark")];
        O
    }
    fn parse(&mut self, _o: usize, inv: bool, arg: &str, _pc: &ParseCtx) -> Result<(), Fail> {
        if self.m.is_some() {
            return Err(dup("--mark"));
        }
        let (value, mask) = parse_mark("--mark", arg)?;
        self.m = Some(MarkMatch { value, mask, inv });
        Ok(())
    }
    fn finish(&mut self, _pc: &ParseCtx) -> Result<Match, Fail> {
        let Some(m) = self.m else {
            return Err(Fail::invalid(format!(
                "{}: option \"--mark\" must be specified",
                self.name()
            )));
        };
        Ok(if self.conn {
            Match::Connmark(m)
        } else {
            Match::Mark(m)
        })
    }
}

// --- comment ------------------------------------------------------------------

#[derive(Default)]
pub(crate) struct CommentExt {
    c: Option<String>,
}

impl MatchExt for CommentExt {
    fn name(&self) -> &'static str {
        "comment"
    }
    fn options(&self) -> &'static [Opt] {
        const O: &[Opt] = &[Opt::text("comment")];
        O
    }
    fn parse(&mut self, _o: usize, _inv: bool, arg: &str, _pc: &ParseCtx) -> Result<(), Fail> {
        if self.c.is_some() {
            return Err(Fail::invalid(
                "comment: option \"--comment\" can only be used once.",
            ));
        }
        if arg.len() > 255 {
            return Err(Fail::bad("--comment", arg, "at most 255 characters"));
        }
        self.c = Some(arg.to_string());
        Ok(())
    }
    fn finish(&mut self, _pc: &ParseCtx) -> Result<Match, Fail> {
        match self.c.take() {
            Some(c) => Ok(Match::Comment(c)),
            None => Err(Fail::invalid(
                "comment: option \"--comment\" must be specified",
            )),
        }
    }
}

// --- length -------------------------------------------------------------------

/// Layer-3 length: IPv4 total length, IPv6 payload length + 40.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LengthMatch {
    pub min: u16,
    pub max: u16,
    pub inv: bool,
}

impl LengthMatch {
    #[inline]
    pub fn matches(&self, ctx: &EvalCtx) -> bool {
        (ctx.ip_len >= self.min as u32 && ctx.ip_len <= self.max as u32) != self.inv
    }
    pub(crate) fn describe(&self) -> String {
        let inv = if self.inv { "!" } else { "" };
        if self.min == self.max {
            format!(" length {inv}{}", self.min)
        } else {
            format!(" length {inv}{}:{}", self.min, self.max)
        }
    }
}

#[derive(Default)]
pub(crate) struct LengthExt {
    m: Option<LengthMatch>,
}

impl MatchExt for LengthExt {
    fn name(&self) -> &'static str {
        "length"
    }
    fn options(&self) -> &'static [Opt] {
        const O: &[Opt] = &[Opt::inv("length")];
        O
    }
    fn parse(&mut self, _o: usize, inv: bool, arg: &str, _pc: &ParseCtx) -> Result<(), Fail> {
        if self.m.is_some() {
            return Err(dup("--length"));
        }
        let (a, b) = match arg.split_once(':') {
            Some((a, b)) => (a, b),
            None => (arg, arg),
        };
        let min = if a.is_empty() {
            0
        } else {
            parse_uint("--length", a, 0, 65535)? as u16
        };
        let max = if b.is_empty() {
            65535
        } else {
            parse_uint("--length", b, 0, 65535)? as u16
        };
        self.m = Some(LengthMatch { min, max, inv });
        Ok(())
    }
    fn finish(&mut self, _pc: &ParseCtx) -> Result<Match, Fail> {
        match self.m {
            Some(m) => Ok(Match::Length(m)),
            None => Err(Fail::invalid(
                "length: option \"--length\" must be specified",
            )),
        }
    }
}

// --- ttl / hl -------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtlOp {
    Eq,
    Ne,
    Lt,
    Gt,
}

/// IPv4 TTL (`-m ttl`) or IPv6 hop limit (`-m hl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtlMatch {
    pub hl: bool,
    pub op: TtlOp,
    pub value: u8,
}

impl TtlMatch {
    #[inline]
    pub fn matches(&self, ctx: &EvalCtx) -> bool {
        let t = ctx.ttl;
        match self.op {
            TtlOp::Eq => t == self.value,
            TtlOp::Ne => t != self.value,
            TtlOp::Lt => t < self.value,
            TtlOp::Gt => t > self.value,
        }
    }
    pub(crate) fn describe(&self) -> String {
        let (kw, op) = match self.op {
            TtlOp::Eq => ("match", "=="),
            TtlOp::Ne => ("match", "!="),
            TtlOp::Lt => ("match", "<"),
            TtlOp::Gt => ("match", ">"),
        };
        format!(
            " {} {kw} {}{op} {}",
            if self.hl { "HL" } else { "TTL" },
            if self.hl { "HL " } else { "TTL " },
            self.value
        )
    }
}

pub(crate) struct TtlExt {
    hl: bool,
    m: Option<TtlMatch>,
}

impl TtlExt {
    pub(crate) fn new(hl: bool) -> Self {
        TtlExt { hl, m: None }
    }
}

const TTL_OPTS: &[Opt] = &[Opt::inv("ttl-eq"), Opt::arg("ttl-lt"), Opt::arg("ttl-gt")];
const HL_OPTS: &[Opt] = &[Opt::inv("hl-eq"), Opt::arg("hl-lt"), Opt::arg("hl-gt")];

impl MatchExt for TtlExt {
    fn name(&self) -> &'static str {
        if self.hl { "hl" } else { "ttl" }
    }
    fn options(&self) -> &'static [Opt] {
        if self.hl { HL_OPTS } else { TTL_OPTS }
    }
    fn parse(&mut self, opt: usize, inv: bool, arg: &str, _pc: &ParseCtx) -> Result<(), Fail> {
        let name = format!("--{}", self.options()[opt].name);
        if self.m.is_some() {
            return Err(Fail::invalid(format!(
                "{}: only one of the -eq, -lt, -gt options may be given",
                self.name()
            )));
        }
        let value = parse_uint(&name, arg, 0, 255)? as u8;
        let op = match (opt, inv) {
            (0, false) => TtlOp::Eq,
            (0, true) => TtlOp::Ne,
            (1, _) => TtlOp::Lt,
            _ => TtlOp::Gt,
        };
        self.m = Some(TtlMatch {
            hl: self.hl,
            op,
            value,
        });
        Ok(())
    }
    fn finish(&mut self, _pc: &ParseCtx) -> Result<Match, Fail> {
        match self.m {
            Some(m) => Ok(Match::Ttl(m)),
            None => Err(Fail::invalid(format!(
                "{}: one of the -eq, -lt, -gt options is required",
                self.name()
            ))),
        }
    }
}

// --- pkttype --------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PkttypeMatch {
    pub ty: PktType,
    pub inv: bool,
}

impl PkttypeMatch {
    #[inline]
    pub fn matches(&self, ctx: &EvalCtx) -> bool {
        (ctx.pkttype == self.ty) != self.inv
    }
    pub(crate) fn describe(&self) -> String {
        let n = match self.ty {
            PktType::Host => "unicast",
            PktType::Broadcast => "broadcast",
            PktType::Multicast => "multicast",
            PktType::OtherHost => "otherhost",
        };
        format!(" PKTTYPE {}= {n}", if self.inv { "!" } else { "" })
    }
}

#[derive(Default)]
pub(crate) struct PkttypeExt {
    m: Option<PkttypeMatch>,
}

impl MatchExt for PkttypeExt {
    fn name(&self) -> &'static str {
        "pkttype"
    }
    fn options(&self) -> &'static [Opt] {
        const O: &[Opt] = &[Opt::inv("pkt-type")];
        O
    }
    fn parse(&mut self, _o: usize, inv: bool, arg: &str, _pc: &ParseCtx) -> Result<(), Fail> {
        if self.m.is_some() {
            return Err(dup("--pkt-type"));
        }
        let ty = match arg.to_ascii_lowercase().as_str() {
            "unicast" | "host" => PktType::Host,
            "broadcast" => PktType::Broadcast,
            "multicast" => PktType::Multicast,
            "otherhost" => PktType::OtherHost,
            _ => {
                return Err(Fail::bad(
                    "--pkt-type",
                    arg,
                    "unicast, broadcast, multicast, host or otherhost",
                ));
            }
        };
        self.m = Some(PkttypeMatch { ty, inv });
        Ok(())
    }
    fn finish(&mut self, _pc: &ParseCtx) -> Result<Match, Fail> {
        match self.m {
            Some(m) => Ok(Match::Pkttype(m)),
            None => Err(Fail::invalid(
                "pkttype: option \"--pkt-type\" must be specified",
            )),
        }
    }
}

// --- addrtype -------------------------------------------------------------------

/// Route types, as bits of the masks `-m addrtype` uses (`1 << RTN_*`).
pub mod addrtype {
    pub const UNSPEC: u16 = 1 << 0;
    pub const UNICAST: u16 = 1 << 1;
    pub const LOCAL: u16 = 1 << 2;
    pub const BROADCAST: u16 = 1 << 3;
    pub const ANYCAST: u16 = 1 << 4;
    pub const MULTICAST: u16 = 1 << 5;
    pub const BLACKHOLE: u16 = 1 << 6;
    pub const UNREACHABLE: u16 = 1 << 7;
    pub const PROHIBIT: u16 = 1 << 8;
    pub const THROW: u16 = 1 << 9;
    pub const NAT: u16 = 1 << 10;
    pub const XRESOLVE: u16 = 1 << 11;
}

const ADDRTYPE_NAMES: &[&str] = &[
    "UNSPEC",
    "UNICAST",
    "LOCAL",
    "BROADCAST",
    "ANYCAST",
    "MULTICAST",
    "BLACKHOLE",
    "UNREACHABLE",
    "PROHIBIT",
    "THROW",
    "NAT",
    "XRESOLVE",
];

/// `--src-type`/`--dst-type` masks. The caller provides each address's
/// type in `EvalCtx::{src_type,dst_type}`; with `--limit-iface-in/out` the
/// kernel asks about the address on that interface only, which the caller
/// must reflect in the same fields (ctsim does not keep per-interface
/// address tables here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AddrtypeMatch {
    pub src: Option<(u16, bool)>,
    pub dst: Option<(u16, bool)>,
    pub limit_in: bool,
    pub limit_out: bool,
}

fn types_text(m: u16) -> String {
    let v: Vec<&str> = ADDRTYPE_NAMES
        .iter()
        .enumerate()
        .filter(|(i, _)| m & (1 << i) != 0)
        .map(|(_, n)| *n)
        .collect();
    v.join(",")
}

impl AddrtypeMatch {
    #[inline]
    pub fn matches(&self, ctx: &EvalCtx) -> bool {
        if let Some((m, inv)) = self.src
            && (ctx.src_type & m != 0) == inv
        {
            return false;
        }
        if let Some((m, inv)) = self.dst
            && (ctx.dst_type & m != 0) == inv
        {
            return false;
        }
        true
    }
    pub(crate) fn describe(&self) -> String {
        let mut s = String::new();
        if let Some((m, inv)) = self.src {
            s += &format!(
                " ADDRTYPE match src-type {}{}",
                if inv { "!" } else { "" },
                types_text(m)
            );
        }
        if let Some((m, inv)) = self.dst {
            if s.is_empty() {
                s += " ADDRTYPE match";
            }
            s += &format!(" dst-type {}{}", if inv { "!" } else { "" }, types_text(m));
        }
        if self.limit_in {
            s += " limit-in";
        }
        if self.limit_out {
            s += " limit-out";
        }
        s
    }
    /// Hooks the kernel allows this match in (`--limit-iface-*` restrict it).
    pub fn allowed_hooks(&self) -> u8 {
        let all = 0x1f;
        let mut h = all;
        if self.limit_in {
            h &= Hook::Prerouting.bit() | Hook::Input.bit() | Hook::Forward.bit();
        }
        if self.limit_out {
            h &= Hook::Postrouting.bit() | Hook::Output.bit() | Hook::Forward.bit();
        }
        h
    }
}

#[derive(Default)]
pub(crate) struct AddrtypeExt {
    m: AddrtypeMatch,
}

const ADDRTYPE_OPTS: &[Opt] = &[
    Opt::inv("src-type"),
    Opt::inv("dst-type"),
    Opt::flag("limit-iface-in"),
    Opt::flag("limit-iface-out"),
];

impl MatchExt for AddrtypeExt {
    fn name(&self) -> &'static str {
        "addrtype"
    }
    fn options(&self) -> &'static [Opt] {
        ADDRTYPE_OPTS
    }
    fn parse(&mut self, opt: usize, inv: bool, arg: &str, _pc: &ParseCtx) -> Result<(), Fail> {
        match opt {
            0 | 1 => {
                let mut mask = 0u16;
                for w in arg.split(',') {
                    let i = lookup_name(ADDRTYPE_NAMES, w, true).ok_or_else(|| {
                        Fail::bad(
                            if opt == 0 { "--src-type" } else { "--dst-type" },
                            w,
                            "an address type (LOCAL, UNICAST, BROADCAST, MULTICAST, …)",
                        )
                        .hint(format!("addrtype: bad type \"{w}\""))
                    })?;
                    mask |= 1 << i;
                }
                let slot = if opt == 0 {
                    &mut self.m.src
                } else {
                    &mut self.m.dst
                };
                if slot.is_some() {
                    return Err(dup(if opt == 0 { "--src-type" } else { "--dst-type" }));
                }
                *slot = Some((mask, inv));
            }
            2 => self.m.limit_in = true,
            _ => self.m.limit_out = true,
        }
        Ok(())
    }
    fn finish(&mut self, _pc: &ParseCtx) -> Result<Match, Fail> {
        if self.m.src.is_none() && self.m.dst.is_none() {
            return Err(Fail::invalid(
                "addrtype: you must specify --src-type or --dst-type",
            ));
        }
        if self.m.limit_in && self.m.limit_out {
            return Err(Fail::invalid(
                "addrtype: you can't specify both --limit-iface-in and --limit-iface-out",
            ));
        }
        Ok(Match::Addrtype(self.m))
    }
}

// --- mac ----------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MacMatch {
    pub addr: [u8; 6],
    pub inv: bool,
}

impl MacMatch {
    /// No Ethernet source (not an Ethernet device, or a locally generated
    /// packet): no match, whatever the inversion.
    #[inline]
    pub fn matches(&self, ctx: &EvalCtx) -> bool {
        match ctx.src_mac {
            Some(m) => (m == self.addr) != self.inv,
            None => false,
        }
    }
    pub(crate) fn describe(&self) -> String {
        let a = self.addr;
        format!(
            " MAC {}{:02X}:{:02X}:{:02X}:{:02X}:{:02X}:{:02X}",
            if self.inv { "! " } else { "" },
            a[0],
            a[1],
            a[2],
            a[3],
            a[4],
            a[5]
        )
    }
    pub fn allowed_hooks() -> u8 {
        Hook::Prerouting.bit() | Hook::Input.bit() | Hook::Forward.bit()
    }
}

#[derive(Default)]
pub(crate) struct MacExt {
    m: Option<MacMatch>,
}

pub(crate) fn parse_mac(s: &str) -> Option<[u8; 6]> {
    if s.len() != 17 {
        return None;
    }
    let mut out = [0u8; 6];
    for (i, p) in s.split(':').enumerate() {
        if i >= 6 || p.len() != 2 {
            return None;
        }
        out[i] = u8::from_str_radix(p, 16).ok()?;
    }
    Some(out)
}

impl MatchExt for MacExt {
    fn name(&self) -> &'static str {
        "mac"
    }
    fn options(&self) -> &'static [Opt] {
        const O: &[Opt] = &[Opt::inv("mac-source")];
        O
    }
    fn parse(&mut self, _o: usize, inv: bool, arg: &str, _pc: &ParseCtx) -> Result<(), Fail> {
        if self.m.is_some() {
            return Err(dup("--mac-source"));
        }
        let addr = parse_mac(arg)
            .ok_or_else(|| Fail::bad("--mac-source", arg, "a MAC address XX:XX:XX:XX:XX:XX"))?;
        self.m = Some(MacMatch { addr, inv });
        Ok(())
    }
    fn finish(&mut self, _pc: &ParseCtx) -> Result<Match, Fail> {
        match self.m {
            Some(m) => Ok(Match::Mac(m)),
            None => Err(Fail::invalid(
                "mac: option \"--mac-source\" must be specified",
            )),
        }
    }
}
