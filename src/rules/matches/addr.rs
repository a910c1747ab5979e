//! Address-range match: `iprange`.

use super::{Fail, Match, MatchExt, Opt, ParseCtx, dup, fmt_addr_mask, parse_addr};
use crate::rules::ast::AddrMask;
use crate::rules::eval::EvalCtx;
use crate::wire::Family;

/// Inclusive address ranges; a reversed range never matches (iptables
/// warns and accepts it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IprangeMatch {
    pub src: Option<(u128, u128, bool)>,
    pub dst: Option<(u128, u128, bool)>,
}

impl IprangeMatch {
    #[inline]
    pub fn matches(&self, ctx: &EvalCtx) -> bool {
        if let Some((lo, hi, inv)) = self.src {
            let a = super::addr_bits(ctx.src);
            if (a >= lo && a <= hi) == inv {
                return false;
            }
        }
        if let Some((lo, hi, inv)) = self.dst {
            let a = super::addr_bits(ctx.dst);
            if (a >= lo && a <= hi) == inv {
                return false;
            }
        }
        true
    }
    pub(crate) fn describe(&self, family: Family) -> String {
        let full = if family == Family::Ipv4 {
            u32::MAX as u128
        } else {
            u128::MAX
        };
        let host = |a: u128| {
            fmt_addr_mask(
                Some(&AddrMask {
                    addr: a,
                    mask: full,
                }),
                family,
            )
        };
        let mut s = String::new();
        if let Some((lo, hi, inv)) = self.src {
            s += &format!(
                " source IP range {}{}-{}",
                if inv { "! " } else { "" },
                host(lo),
                host(hi)
            );
        }
        if let Some((lo, hi, inv)) = self.dst {
            s += &format!(
                " destination IP range {}{}-{}",
                if inv { "! " } else { "" },
                host(lo),
                host(hi)
            );
        }
        s
    }
}

#[derive(Default)]
pub(crate) struct IprangeExt {
    m: IprangeMatch,
}

impl MatchExt for IprangeExt {
    fn name(&self) -> &'static str {
        "iprange"
    }
    fn options(&self) -> &'static [Opt] {
        const O: &[Opt] = &[Opt::inv("src-range"), Opt::inv("dst-range")];
        O
    }
    fn parse(&mut self, opt: usize, inv: bool, arg: &str, pc: &ParseCtx) -> Result<(), Fail> {
        let name = if opt == 0 {
            "--src-range"
        } else {
            "--dst-range"
        };
        let (a, b) = arg.split_once('-').unwrap_or((arg, arg));
        let lo = parse_addr(name, a, pc.family)?;
        let hi = parse_addr(name, b, pc.family)?;
        let slot = if opt == 0 {
            &mut self.m.src
        } else {
            &mut self.m.dst
        };
        if slot.is_some() {
            return Err(dup(name));
        }
        *slot = Some((lo, hi, inv));
        Ok(())
    }
    fn finish(&mut self, _pc: &ParseCtx) -> Result<Match, Fail> {
        if self.m.src.is_none() && self.m.dst.is_none() {
            return Err(Fail::invalid(
                "iprange match: You must specify `--src-range' or `--dst-range'",
            ));
        }
        Ok(Match::Iprange(self.m))
    }
}
