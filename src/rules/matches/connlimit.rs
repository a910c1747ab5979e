//! `-m connlimit`: the number of connections per (masked) address, as
//! `nf_conncount` keeps it.
//!
//! The count is not a query of the conntrack table: each connlimit rule
//! keeps, per key (the packet's masked source or destination address), a
//! list of the connections whose packets it has seen. Each evaluation walks
//! that list, dropping connections that are gone from the conntrack table
//! or closed (TCP TIME_WAIT/CLOSE), stops early if the packet's own
//! connection is already listed, and otherwise appends it. The caller
//! supplies the conntrack table's answer through
//! [`ConnLiveness`](crate::rules::ConnLiveness) in `EvalCtx::conns`; without
//! it every listed connection counts as live.
//!
//! Two kernel details are kept: a connection listed less than two jiffies
//! ago that the table does not know yet is assumed to be on its way in
//! (still unconfirmed), and when the list was last changed in the same
//! jiffy the walk is skipped and the connection appended without the
//! duplicate check (the kernel's "reduce unnecessary GC" shortcut), so two
//! packets of one connection within 4 ms count twice.

use rustc_hash::FxHashMap;

use super::limit::jiffies;
use super::{Fail, Match, MatchExt, Opt, ParseCtx, parse_uint};
use crate::rules::eval::{ConnTuple, EvalCtx, Liveness};
use crate::wire::Family;

/// Evictions per walk before the kernel stops collecting.
const GC_MAX_NODES: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnlimitMatch {
    pub limit: u32,
    /// `--connlimit-upto`: match when the count is at most `limit`.
    pub upto: bool,
    pub prefix: u8,
    pub daddr: bool,
    pub slot: usize,
}

#[derive(Debug, Clone)]
struct Listed {
    tuple: ConnTuple,
    added: u64,
}

#[derive(Debug, Clone, Default)]
struct ConnList {
    conns: Vec<Listed>,
    last_gc: Option<u64>,
}

/// Per-rule connection lists, by key.
#[derive(Debug, Clone, Default)]
pub struct ConnlimitState {
    lists: FxHashMap<u128, ConnList>,
}

impl ConnlimitMatch {
    pub fn matches(&self, ctx: &EvalCtx, st: &mut ConnlimitState) -> bool {
        let now = jiffies(ctx.now);
        let bits: u32 = if ctx.family == Family::Ipv4 { 32 } else { 128 };
        let full: u128 = if bits == 32 {
            u32::MAX as u128
        } else {
            u128::MAX
        };
        let mask = if self.prefix == 0 {
            0
        } else {
            (full >> (bits - self.prefix as u32)) << (bits - self.prefix as u32) & full
        };
        let key = super::addr_bits(if self.daddr { ctx.dst } else { ctx.src }) & mask;
        let tuple = match ctx.ct.as_ref().filter(|c| c.has_entry()) {
            Some(ct) => ConnTuple {
                proto: ct.l4proto,
                src: ct.orig.src,
                dst: ct.orig.dst,
                sport: ct.orig.sport,
                dport: ct.orig.dport,
            },
            None => ConnTuple {
                proto: ctx.proto,
                src: ctx.src,
                dst: ctx.dst,
                sport: ctx.sport.unwrap_or(0),
                dport: ctx.dport.unwrap_or(0),
            },
        };
        let list = st.lists.entry(key).or_default();
        let mut already = false;
        if list.last_gc != Some(now) {
            let mut collected = 0;
            let mut i = 0;
            while i < list.conns.len() {
                if collected > GC_MAX_NODES {
                    break;
                }
                let c = &list.conns[i];
                let live = ctx
                    .conns
                    .map_or(Liveness::Live, |l| l.liveness(ctx.family, &c.tuple));
                match live {
                    Liveness::Gone => {
                        if now.saturating_sub(c.added) <= 1 {
                            if c.tuple == tuple {
                                already = true;
                                break;
                            }
                            i += 1;
                        } else {
                            list.conns.remove(i);
                            collected += 1;
                        }
                    }
                    Liveness::Live | Liveness::Closed if c.tuple == tuple => {
                        already = true;
                        break;
                    }
                    Liveness::Closed => {
                        list.conns.remove(i);
                        collected += 1;
                    }
                    Liveness::Live => i += 1,
                }
            }
        }
        if !already {
            list.conns.push(Listed { tuple, added: now });
            list.last_gc = Some(now);
        }
        let count = list.conns.len() as u32;
        if count == 0 {
            return false;
        }
        (count > self.limit) != self.upto
    }

    pub(crate) fn describe(&self) -> String {
        format!(
            " #conn {}/{} {} {}",
            if self.daddr { "dst" } else { "src" },
            self.prefix,
            if self.upto { "<=" } else { ">" },
            self.limit
        )
    }
}

#[derive(Default)]
pub(crate) struct ConnlimitExt {
    limit: Option<(u32, bool)>,
    prefix: Option<u8>,
    daddr: Option<bool>,
}

const CL_OPTS: &[Opt] = &[
    Opt::inv("connlimit-upto"),
    Opt::inv("connlimit-above"),
    Opt::arg("connlimit-mask"),
    Opt::flag("connlimit-saddr"),
    Opt::flag("connlimit-daddr"),
];

impl MatchExt for ConnlimitExt {
    fn name(&self) -> &'static str {
        "connlimit"
    }
    fn options(&self) -> &'static [Opt] {
        CL_OPTS
    }
    fn parse(&mut self, opt: usize, inv: bool, arg: &str, pc: &ParseCtx) -> Result<(), Fail> {
        match opt {
            0 | 1 => {
                if self.limit.is_some() {
                    return Err(Fail::invalid(
                        "connlimit: option \"--connlimit-upto\" cannot be used together with \"--connlimit-above\".",
                    ));
                }
                let n = parse_uint(&format!("--{}", CL_OPTS[opt].name), arg, 0, u32::MAX as u64)?
                    as u32;
                self.limit = Some((n, (opt == 0) != inv));
            }
            2 => {
                let max = if pc.family == Family::Ipv4 { 32 } else { 128 };
                self.prefix = Some(parse_uint("--connlimit-mask", arg, 0, max)? as u8);
            }
            3 => self.daddr = Some(false),
            _ => self.daddr = Some(true),
        }
        Ok(())
    }
    fn finish(&mut self, pc: &ParseCtx) -> Result<Match, Fail> {
        let Some((limit, upto)) = self.limit else {
            return Err(Fail::invalid(
                "connlimit: option \"--connlimit-above\" or \"--connlimit-upto\" must be specified",
            ));
        };
        let full = if pc.family == Family::Ipv4 { 32 } else { 128 };
        Ok(Match::Connlimit(ConnlimitMatch {
            limit,
            upto,
            prefix: self.prefix.unwrap_or(full),
            daddr: self.daddr.unwrap_or(false),
            slot: 0,
        }))
    }
}
