//! Conntrack matches: `state` and `conntrack`.
//!
//! Without a conntrack entry (state INVALID or UNTRACKED) only the state
//! test can match; every other `conntrack` option fails (xt_conntrack
//! returns early when the packet has no entry).

use super::{
    Fail, Match, MatchExt, Opt, ParseCtx, dup, parse_addr_mask, parse_port_range, parse_uint,
};
use crate::conntrack::{CtState, Dir, Status};
use crate::rules::ast::AddrMask;
use crate::rules::eval::{CtTupleView, EvalCtx};
use crate::wire::Family;

/// State bits as the state/conntrack matches define them.
pub mod statebit {
    pub const INVALID: u8 = 1 << 0;
    pub const ESTABLISHED: u8 = 1 << 1;
    pub const RELATED: u8 = 1 << 2;
    pub const NEW: u8 = 1 << 3;
    pub const UNTRACKED: u8 = 1 << 4;
    pub const SNAT: u8 = 1 << 5;
    pub const DNAT: u8 = 1 << 6;
}

/// The packet's state bit; no conntrack view at all means no entry.
#[inline]
fn packet_statebit(ctx: &EvalCtx) -> u8 {
    match ctx.ct.as_ref().map(|c| c.state) {
        None | Some(CtState::Invalid) => statebit::INVALID,
        Some(CtState::Untracked) => statebit::UNTRACKED,
        Some(CtState::New) => statebit::NEW,
        Some(CtState::Established) => statebit::ESTABLISHED,
        Some(CtState::Related) => statebit::RELATED,
    }
}

const STATE_NAMES: &[(&str, u8)] = &[
    ("INVALID", statebit::INVALID),
    ("NEW", statebit::NEW),
    ("ESTABLISHED", statebit::ESTABLISHED),
    ("RELATED", statebit::RELATED),
    ("UNTRACKED", statebit::UNTRACKED),
    ("SNAT", statebit::SNAT),
    ("DNAT", statebit::DNAT),
];

/// A comma list of state names. Like the xtables parsers, each word may be
/// an abbreviation (case-insensitive prefix, first name in list order wins).
fn parse_states(option: &str, s: &str, with_nat: bool) -> Result<u8, Fail> {
    let names = if with_nat {
        STATE_NAMES
    } else {
        &STATE_NAMES[..5]
    };
    let mut mask = 0;
    for w in s.split(',') {
        let up = w.to_ascii_uppercase();
        match names.iter().find(|(n, _)| n.starts_with(&up)) {
            Some((_, b)) => mask |= b,
            None => {
                let mut f = Fail::bad(
                    option,
                    w,
                    "states INVALID, NEW, ESTABLISHED, RELATED, UNTRACKED",
                );
                if let Some(c) = crate::rules::error::closest(w, names.iter().map(|(n, _)| *n)) {
                    f = f.hint(format!("did you mean {c}?"));
                }
                return Err(f);
            }
        }
    }
    Ok(mask)
}

fn states_text(mask: u8) -> String {
    // iptables prints in this order
    let order = [
        ("INVALID", statebit::INVALID),
        ("NEW", statebit::NEW),
        ("RELATED", statebit::RELATED),
        ("ESTABLISHED", statebit::ESTABLISHED),
        ("UNTRACKED", statebit::UNTRACKED),
        ("SNAT", statebit::SNAT),
        ("DNAT", statebit::DNAT),
    ];
    let v: Vec<&str> = order
        .iter()
        .filter(|(_, b)| mask & b != 0)
        .map(|(n, _)| *n)
        .collect();
    v.join(",")
}

// --- state --------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateMatch {
    pub mask: u8,
    pub inv: bool,
}

impl StateMatch {
    #[inline]
    pub fn matches(&self, ctx: &EvalCtx) -> bool {
        (self.mask & packet_statebit(ctx) != 0) != self.inv
    }
    pub(crate) fn describe(&self) -> String {
        format!(
            "{} state {}",
            if self.inv { " !" } else { "" },
            states_text(self.mask)
        )
    }
}

#[derive(Default)]
pub(crate) struct StateExt {
    m: Option<StateMatch>,
}

impl MatchExt for StateExt {
    fn name(&self) -> &'static str {
        "state"
    }
    fn options(&self) -> &'static [Opt] {
        const O: &[Opt] = &[Opt::inv("state")];
        O
    }
    fn parse(&mut self, _o: usize, inv: bool, arg: &str, _pc: &ParseCtx) -> Result<(), Fail> {
        if self.m.is_some() {
            return Err(dup("--state"));
        }
        self.m = Some(StateMatch {
            mask: parse_states("--state", arg, false)?,
            inv,
        });
        Ok(())
    }
    fn finish(&mut self, _pc: &ParseCtx) -> Result<Match, Fail> {
        match self.m.take() {
            Some(m) => Ok(Match::State(m)),
            None => Err(Fail::invalid("state: option \"--state\" must be specified")),
        }
    }
}

// --- conntrack ---------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inv<T> {
    pub v: T,
    pub inv: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConntrackMatch {
    pub state: Option<Inv<u8>>,
    pub status: Option<Inv<u32>>,
    pub dir: Option<Dir>,
    pub proto: Option<Inv<u8>>,
    pub origsrc: Option<Inv<AddrMask>>,
    pub origdst: Option<Inv<AddrMask>>,
    pub replsrc: Option<Inv<AddrMask>>,
    pub repldst: Option<Inv<AddrMask>>,
    pub origsrcport: Option<Inv<(u16, u16)>>,
    pub origdstport: Option<Inv<(u16, u16)>>,
    pub replsrcport: Option<Inv<(u16, u16)>>,
    pub repldstport: Option<Inv<(u16, u16)>>,
    pub expire: Option<Inv<(u32, u32)>>,
}

fn addr_test(m: &Option<Inv<AddrMask>>, t: &CtTupleView, src: bool) -> bool {
    match m {
        None => true,
        Some(i) => {
            let a = super::addr_bits(if src { t.src } else { t.dst });
            i.v.contains(a) != i.inv
        }
    }
}

fn port_test(m: &Option<Inv<(u16, u16)>>, p: u16) -> bool {
    match m {
        None => true,
        Some(i) => (p >= i.v.0 && p <= i.v.1) != i.inv,
    }
}

impl ConntrackMatch {
    pub fn matches(&self, ctx: &EvalCtx) -> bool {
        let ct = ctx.ct.as_ref().filter(|c| c.has_entry());
        if let Some(s) = self.state {
            let mut bits = packet_statebit(ctx);
            if let Some(ct) = ct {
                if ct.status.has(Status::SRC_NAT) {
                    bits |= statebit::SNAT;
                }
                if ct.status.has(Status::DST_NAT) {
                    bits |= statebit::DNAT;
                }
            }
            if (s.v & bits != 0) == s.inv {
                return false;
            }
        }
        let Some(ct) = ct else {
            return self.state.is_some();
        };
        if let Some(d) = self.dir
            && ct.dir != d
        {
            return false;
        }
        if let Some(p) = self.proto
            && (ct.l4proto == p.v) == p.inv
        {
            return false;
        }
        if !addr_test(&self.origsrc, &ct.orig, true)
            || !addr_test(&self.origdst, &ct.orig, false)
            || !addr_test(&self.replsrc, &ct.reply, true)
            || !addr_test(&self.repldst, &ct.reply, false)
        {
            return false;
        }
        if !port_test(&self.origsrcport, ct.orig.sport)
            || !port_test(&self.origdstport, ct.orig.dport)
            || !port_test(&self.replsrcport, ct.reply.sport)
            || !port_test(&self.repldstport, ct.reply.dport)
        {
            return false;
        }
        if let Some(s) = self.status
            && (s.v & ct.status.0 != 0) == s.inv
        {
            return false;
        }
        if let Some(e) = self.expire {
            let x = ct.expires_in_secs;
            if (x >= e.v.0 && x <= e.v.1) == e.inv {
                return false;
            }
        }
        true
    }

    pub(crate) fn describe(&self, family: Family) -> String {
        let mut s = String::new();
        let inv = |b: bool| if b { " !" } else { "" };
        if let Some(i) = self.state {
            s += &format!("{} ctstate {}", inv(i.inv), states_text(i.v));
        }
        if let Some(i) = self.proto {
            s += &format!("{} ctproto {}", inv(i.inv), i.v);
        }
        for (name, a) in [
            ("ctorigsrc", &self.origsrc),
            ("ctorigdst", &self.origdst),
            ("ctreplsrc", &self.replsrc),
            ("ctrepldst", &self.repldst),
        ] {
            if let Some(i) = a {
                s += &format!(
                    "{} {name} {}",
                    inv(i.inv),
                    super::fmt_addr_mask(Some(&i.v), family)
                );
            }
        }
        for (name, p) in [
            ("ctorigsrcport", &self.origsrcport),
            ("ctorigdstport", &self.origdstport),
            ("ctreplsrcport", &self.replsrcport),
            ("ctrepldstport", &self.repldstport),
        ] {
            if let Some(i) = p {
                if i.v.0 == i.v.1 {
                    s += &format!("{} {name} {}", inv(i.inv), i.v.0);
                } else {
                    s += &format!("{} {name} {}:{}", inv(i.inv), i.v.0, i.v.1);
                }
            }
        }
        if let Some(i) = self.status {
            let t = if i.v == 0 {
                "NONE".to_string()
            } else {
                Status(i.v).names().replace('|', ",")
            };
            s += &format!("{} ctstatus {t}", inv(i.inv));
        }
        if let Some(i) = self.expire {
            s += &format!("{} ctexpire {}:{}", inv(i.inv), i.v.0, i.v.1);
        }
        if let Some(d) = self.dir {
            s += &format!(" ctdir {}", d.name());
        }
        s
    }
}

#[derive(Default)]
pub(crate) struct ConntrackExt {
    m: ConntrackMatch,
    any: bool,
}

const CT_OPTS: &[Opt] = &[
    Opt::inv("ctstate"),
    Opt::inv("ctproto"),
    Opt::inv("ctorigsrc"),
    Opt::inv("ctorigdst"),
    Opt::inv("ctreplsrc"),
    Opt::inv("ctrepldst"),
    Opt::inv("ctstatus"),
    Opt::inv("ctexpire"),
    Opt::inv("ctorigsrcport"),
    Opt::inv("ctorigdstport"),
    Opt::inv("ctreplsrcport"),
    Opt::inv("ctrepldstport"),
    Opt::arg("ctdir"),
];

fn set<T>(slot: &mut Option<T>, v: T, name: &str) -> Result<(), Fail> {
    if slot.is_some() {
        return Err(dup(name));
    }
    *slot = Some(v);
    Ok(())
}

impl MatchExt for ConntrackExt {
    fn name(&self) -> &'static str {
        "conntrack"
    }
    fn options(&self) -> &'static [Opt] {
        CT_OPTS
    }
    fn parse(&mut self, opt: usize, inv: bool, arg: &str, pc: &ParseCtx) -> Result<(), Fail> {
        self.any = true;
        let name = CT_OPTS[opt].name;
        let m = &mut self.m;
        let optname = format!("--{name}");
        match opt {
            0 => set(
                &mut m.state,
                Inv {
                    v: parse_states(&optname, arg, true)?,
                    inv,
                },
                &optname,
            ),
            1 => {
                let p = crate::rules::parse::parse_proto(arg)
                    .filter(|p| *p != 0)
                    .ok_or_else(|| Fail::bad(&optname, arg, "a protocol name or number 1-255"))?;
                set(&mut m.proto, Inv { v: p, inv }, &optname)
            }
            2..=5 => {
                let am = parse_addr_mask(&optname, arg, pc.family)?;
                let slot = match opt {
                    2 => &mut m.origsrc,
                    3 => &mut m.origdst,
                    4 => &mut m.replsrc,
                    _ => &mut m.repldst,
                };
                set(slot, Inv { v: am, inv }, &optname)
            }
            6 => {
                let mut v = 0u32;
                for w in arg.split(',') {
                    v |= match w.to_ascii_uppercase().as_str() {
                        "NONE" => 0,
                        "EXPECTED" => Status::EXPECTED,
                        "SEEN_REPLY" => Status::SEEN_REPLY,
                        "ASSURED" => Status::ASSURED,
                        "CONFIRMED" => Status::CONFIRMED,
                        _ => {
                            return Err(Fail::bad(
                                &optname,
                                w,
                                "NONE, EXPECTED, SEEN_REPLY, ASSURED or CONFIRMED",
                            ));
                        }
                    };
                }
                set(&mut m.status, Inv { v, inv }, &optname)
            }
            7 => {
                let (a, b) = match arg.split_once(':') {
                    Some((a, b)) => (a, b),
                    None => (arg, arg),
                };
                let lo = parse_uint(&optname, a, 0, u32::MAX as u64)? as u32;
                let hi = parse_uint(&optname, b, 0, u32::MAX as u64)? as u32;
                // A reversed range is accepted and never matches.
                set(&mut m.expire, Inv { v: (lo, hi), inv }, &optname)
            }
            8..=11 => {
                let r = parse_port_range(&optname, arg, 0)?;
                let slot = match opt {
                    8 => &mut m.origsrcport,
                    9 => &mut m.origdstport,
                    10 => &mut m.replsrcport,
                    _ => &mut m.repldstport,
                };
                set(slot, Inv { v: r, inv }, &optname)
            }
            _ => {
                let d = if arg.eq_ignore_ascii_case("ORIGINAL") {
                    Dir::Original
                } else if arg.eq_ignore_ascii_case("REPLY") {
                    Dir::Reply
                } else {
                    return Err(Fail::bad("--ctdir", arg, "ORIGINAL or REPLY"));
                };
                set(&mut m.dir, d, "--ctdir")
            }
        }
    }
    fn finish(&mut self, _pc: &ParseCtx) -> Result<Match, Fail> {
        if !self.any {
            return Err(Fail::invalid("conntrack: At least one option is required"));
        }
        Ok(Match::Conntrack(Box::new(self.m.clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_words_are_prefixes() {
        assert_eq!(
            parse_states("--state", "NEW,ESTABLISHED", false).unwrap(),
            statebit::NEW | statebit::ESTABLISHED
        );
        assert_eq!(
            parse_states("--state", "new", false).unwrap(),
            statebit::NEW
        );
        assert_eq!(
            parse_states("--state", "EST", false).unwrap(),
            statebit::ESTABLISHED
        );
        assert!(parse_states("--state", "SNAT", false).is_err());
        assert_eq!(
            parse_states("--ctstate", "SNAT", true).unwrap(),
            statebit::SNAT
        );
        let e = parse_states("--state", "ESTABLISED", false).unwrap_err();
        assert_eq!(e.hint.as_deref(), Some("did you mean ESTABLISHED?"));
    }
}
