//! Rate limits: `limit` and `hashlimit`, on the capture clock.
//!
//! `-m limit` is what iptables-nft turns into the native nf_tables `limit`
//! expression: a token bucket counted in nanoseconds. The rate given as
//! `N/unit` is first scaled the xtables way (`avg = 10000 * unit / N`) and
//! then converted back to (rate, unit) for nf_tables; one packet costs
//! `unit_ns / rate` tokens and the bucket holds `burst` packets' worth
//! (burst 0 becomes 5). The bucket starts full.
//!
//! `-m hashlimit` stays an xtables match (revision 3) and runs on jiffies:
//! HZ = 250 on the reference machine, so the capture clock is cut into 4 ms
//! ticks counted from the Unix epoch. The kernel's jiffies have another
//! origin; only the phase of the 4 ms grid can differ. Entries expire after
//! `--hashlimit-htable-expire` ms and are removed by a garbage collector
//! every `--hashlimit-htable-gcinterval` ms; ctsim runs that collector on a
//! grid starting at the first packet the table sees. Byte-rate mode and
//! `--hashlimit-rate-match` are not simulated (refused at parse time).

use rustc_hash::FxHashMap;

use super::{Fail, Match, MatchExt, Opt, ParseCtx, dup, parse_uint};
use crate::rules::error::RuleErrorKind;
use crate::rules::eval::EvalCtx;
use crate::time::Timestamp;
use crate::wire::{Family, ipproto};

/// Kernel tick rate on the reference machine (`CONFIG_HZ=250`).
pub const HZ: u64 = 250;

/// Jiffies for a capture time (4 ms ticks since the epoch).
#[inline]
pub fn jiffies(t: Timestamp) -> u64 {
    t.0 / (1_000_000_000 / HZ)
}

/// `N/unit`: unit an unambiguous prefix of second/minute/hour/day (any
/// case), default second. Returns (N, seconds per unit).
fn parse_rate(option: &str, s: &str) -> Result<(u64, u64), Fail> {
    let (n, unit) = match s.split_once('/') {
        Some((n, u)) => (n, Some(u)),
        None => (s, None),
    };
    let bad = || Fail::bad(option, s, "a rate N/second, N/minute, N/hour or N/day");
    let r: u64 = n.parse().map_err(|_| bad())?;
    if r == 0 {
        return Err(bad());
    }
    let mult = match unit {
        None => 1,
        Some(u) => {
            let u = u.to_ascii_lowercase();
            if u.is_empty() {
                return Err(bad());
            }
            if "second".starts_with(&u) {
                1
            } else if "minute".starts_with(&u) {
                60
            } else if "hour".starts_with(&u) {
                3600
            } else if "day".starts_with(&u) {
                86400
            } else {
                return Err(bad());
            }
        }
    };
    Ok((r, mult))
}

// --- limit ----------------------------------------------------------------------

const XT_LIMIT_SCALE: u64 = 10000;

/// nf_tables `limit` parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitMatch {
    /// Nanoseconds of credit one packet costs.
    pub cost: u64,
    /// Bucket size in nanoseconds of credit.
    pub tokens_max: u64,
    /// For listing: the xtables `avg` and burst.
    pub avg: u64,
    pub burst: u32,
    pub slot: usize,
}

/// The bucket of one `-m limit` rule.
#[derive(Debug, Clone, Default)]
pub struct LimitState {
    pub tokens: u64,
    /// Time of the last packet that reached the match; None before the first.
    pub last: Option<u64>,
}

impl LimitMatch {
    /// The (rate, unit seconds) iptables-nft hands to nf_tables for an
    /// xtables `avg`: the largest unit in which the rate is still a whole
    /// enough number.
    pub fn nft_rate(avg: u64) -> (u64, u64) {
        let mult = [
            XT_LIMIT_SCALE * 24 * 60 * 60,
            XT_LIMIT_SCALE * 60 * 60,
            XT_LIMIT_SCALE * 60,
            XT_LIMIT_SCALE,
        ];
        let mut i = 1;
        while i < mult.len() {
            if avg > mult[i] || mult[i] / avg < mult[i] % avg {
                break;
            }
            i += 1;
        }
        (mult[i - 1] / avg, mult[i - 1] / XT_LIMIT_SCALE)
    }

    fn new(avg: u64, burst: u32) -> Self {
        let (rate, unit) = Self::nft_rate(avg);
        let nsecs = unit * 1_000_000_000;
        let cost = nsecs / rate.max(1);
        let b = if burst == 0 { 5 } else { burst as u64 };
        LimitMatch {
            cost,
            tokens_max: cost.saturating_mul(b),
            avg,
            burst,
            slot: 0,
        }
    }

    #[inline]
    pub fn matches(&self, ctx: &EvalCtx, st: &mut LimitState) -> bool {
        let now = ctx.now.0;
        let tokens = match st.last {
            None => self.tokens_max,
            Some(last) => st
                .tokens
                .saturating_add(now.saturating_sub(last))
                .min(self.tokens_max),
        };
        st.last = Some(now);
        if tokens >= self.cost {
            st.tokens = tokens - self.cost;
            true
        } else {
            st.tokens = tokens;
            false
        }
    }

    pub(crate) fn describe(&self) -> String {
        let (r, u) = Self::nft_rate(self.avg);
        let unit = match u {
            1 => "sec",
            60 => "min",
            3600 => "hour",
            _ => "day",
        };
        format!(
            " limit: avg {r}/{unit} burst {}",
            if self.burst == 0 { 5 } else { self.burst }
        )
    }
}

#[derive(Default)]
pub(crate) struct LimitExt {
    avg: Option<u64>,
    burst: Option<u32>,
}

impl MatchExt for LimitExt {
    fn name(&self) -> &'static str {
        "limit"
    }
    fn options(&self) -> &'static [Opt] {
        const O: &[Opt] = &[Opt::arg("limit"), Opt::arg("limit-burst")];
        O
    }
    fn parse(&mut self, opt: usize, _inv: bool, arg: &str, _pc: &ParseCtx) -> Result<(), Fail> {
        if opt == 0 {
            if self.avg.is_some() {
                return Err(dup("--limit"));
            }
            let (r, mult) = parse_rate("--limit", arg)?;
            let avg = XT_LIMIT_SCALE * mult / r;
            if avg == 0 {
                return Err(Fail::bad("--limit", arg, "a rate of at most 10000/second")
                    .hint("Rate too fast"));
            }
            self.avg = Some(avg);
        } else {
            if self.burst.is_some() {
                return Err(dup("--limit-burst"));
            }
            self.burst = Some(parse_uint("--limit-burst", arg, 0, 10000)? as u32);
        }
        Ok(())
    }
    fn finish(&mut self, _pc: &ParseCtx) -> Result<Match, Fail> {
        let avg = self.avg.unwrap_or(XT_LIMIT_SCALE * 3600 / 3);
        Ok(Match::Limit(LimitMatch::new(avg, self.burst.unwrap_or(5))))
    }
}

// --- hashlimit --------------------------------------------------------------------

const HL_SCALE_V2: u64 = 1_000_000;
/// The largest power of two not above `u64::MAX / (HZ * 86400)`.
const HL_CREDITS_PER_JIFFY: u64 = {
    let max = u64::MAX / (HZ * 60 * 60 * 24);
    1u64 << (63 - max.leading_zeros())
};

fn hl_user2credits(user: u64) -> u64 {
    let hz_cpj = HZ * HL_CREDITS_PER_JIFFY;
    if HL_SCALE_V2 >= hz_cpj {
        user / (HL_SCALE_V2 / hz_cpj)
    } else {
        user.wrapping_mul(hz_cpj / HL_SCALE_V2)
    }
}

pub mod hlmode {
    pub const SRCIP: u8 = 1 << 0;
    pub const SRCPORT: u8 = 1 << 1;
    pub const DSTIP: u8 = 1 << 2;
    pub const DSTPORT: u8 = 1 << 3;
}

/// Table parameters: the first rule naming a table decides them for every
/// rule sharing the name (the kernel keeps one table per name and family).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashlimitCfg {
    pub mode: u8,
    pub srcmask: u8,
    pub dstmask: u8,
    pub cost: u64,
    pub credit_cap: u64,
    /// Entry lifetime and collector interval, in jiffies.
    pub expire: u64,
    pub gc_interval: u64,
    pub max: u32,
    pub avg: u64,
    pub burst: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashlimitMatch {
    pub name: String,
    pub cfg: HashlimitCfg,
    /// `--hashlimit-above`: match when over the rate.
    pub above: bool,
    pub slot: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct HlKey {
    src: u128,
    dst: u128,
    sport: u16,
    dport: u16,
}

#[derive(Debug, Clone)]
struct HlEntry {
    expires: u64,
    prev: u64,
    credit: u64,
}

/// One named hashlimit table.
#[derive(Debug, Clone, Default)]
pub struct HashlimitState {
    entries: FxHashMap<HlKey, HlEntry>,
    /// Start of the collector's grid (first packet), jiffies.
    gc_origin: Option<u64>,
    /// The table's configuration (set at compile time).
    pub(crate) cfg: Option<HashlimitCfg>,
}

fn mask_bits(a: u128, len: u8, family: Family) -> u128 {
    let bits: u32 = if family == Family::Ipv4 { 32 } else { 128 };
    if len == 0 {
        return 0;
    }
    let full: u128 = if bits == 32 {
        u32::MAX as u128
    } else {
        u128::MAX
    };
    let m = (full >> (bits - len as u32)) << (bits - len as u32) & full;
    a & m
}

impl HashlimitState {
    pub(crate) fn with_cfg(cfg: HashlimitCfg) -> Self {
        HashlimitState {
            cfg: Some(cfg),
            ..Default::default()
        }
    }
    /// Number of live entries (buckets) in the table.
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl HashlimitMatch {
    pub fn matches(&self, ctx: &EvalCtx, st: &mut HashlimitState) -> bool {
        let cfg = st.cfg.clone().unwrap_or_else(|| self.cfg.clone());
        let now = jiffies(ctx.now);
        let origin = *st.gc_origin.get_or_insert(now);
        let key = self.key(ctx, &cfg);
        // An entry past its lifetime is gone once a collector run fell in
        // [expires, now]; until then it is still found and reused.
        if let Some(e) = st.entries.get(&key)
            && cfg.gc_interval > 0
            && e.expires <= now
        {
            let k = (e.expires.saturating_sub(origin)).div_ceil(cfg.gc_interval);
            let tick = origin + k * cfg.gc_interval;
            if tick <= now {
                st.entries.remove(&key);
            }
        }
        let expire_at = now + cfg.expire;
        let e = match st.entries.get_mut(&key) {
            Some(e) => {
                e.expires = expire_at;
                let delta = now.saturating_sub(e.prev);
                if delta > 0 {
                    e.prev = now;
                    e.credit = e
                        .credit
                        .saturating_add(delta.saturating_mul(HL_CREDITS_PER_JIFFY))
                        .min(cfg.credit_cap);
                }
                e
            }
            None => {
                if cfg.max > 0 && st.entries.len() >= cfg.max as usize {
                    // The kernel drops the packet here ("max count reached").
                    return false;
                }
                st.entries.entry(key).or_insert(HlEntry {
                    expires: expire_at,
                    prev: now,
                    credit: cfg.credit_cap,
                })
            }
        };
        if e.credit >= cfg.cost {
            e.credit -= cfg.cost;
            !self.above
        } else {
            self.above
        }
    }

    fn key(&self, ctx: &EvalCtx, cfg: &HashlimitCfg) -> HlKey {
        let mut k = HlKey {
            src: 0,
            dst: 0,
            sport: 0,
            dport: 0,
        };
        if cfg.mode & hlmode::SRCIP != 0 {
            k.src = mask_bits(super::addr_bits(ctx.src), cfg.srcmask, ctx.family);
        }
        if cfg.mode & hlmode::DSTIP != 0 {
            k.dst = mask_bits(super::addr_bits(ctx.dst), cfg.dstmask, ctx.family);
        }
        let has_ports = matches!(
            ctx.proto,
            ipproto::TCP | ipproto::UDP | ipproto::UDPLITE | ipproto::SCTP | 33
        );
        if has_ports && !ctx.non_first_fragment {
            if cfg.mode & hlmode::SRCPORT != 0 {
                k.sport = ctx.sport.unwrap_or(0);
            }
            if cfg.mode & hlmode::DSTPORT != 0 {
                k.dport = ctx.dport.unwrap_or(0);
            }
        }
        k
    }

    pub(crate) fn describe(&self) -> String {
        let (r, u) = LimitMatch::nft_rate((self.cfg.avg / 100).max(1));
        let unit = match u {
            1 => "sec",
            60 => "min",
            3600 => "hour",
            _ => "day",
        };
        format!(
            " limit: {} {r}/{unit} burst {} name {}",
            if self.above { "above" } else { "up to" },
            self.cfg.burst,
            self.name
        )
    }
}

#[derive(Default)]
pub(crate) struct HashlimitExt {
    name: Option<String>,
    avg: Option<(u64, bool)>,
    burst: Option<u32>,
    mode: Option<u8>,
    srcmask: Option<u8>,
    dstmask: Option<u8>,
    expire_ms: Option<u64>,
    gc_ms: Option<u64>,
    max: Option<u32>,
}

const HL_OPTS: &[Opt] = &[
    Opt::inv("hashlimit"),
    Opt::inv("hashlimit-upto"),
    Opt::arg("hashlimit-above"),
    Opt::arg("hashlimit-burst"),
    Opt::arg("hashlimit-mode"),
    Opt::arg("hashlimit-name"),
    Opt::arg("hashlimit-srcmask"),
    Opt::arg("hashlimit-dstmask"),
    Opt::arg("hashlimit-htable-size"),
    Opt::arg("hashlimit-htable-max"),
    Opt::arg("hashlimit-htable-gcinterval"),
    Opt::arg("hashlimit-htable-expire"),
    Opt::flag("hashlimit-rate-match"),
    Opt::arg("hashlimit-rate-interval"),
];

fn ms_to_jiffies(ms: u64) -> u64 {
    (ms * HZ).div_ceil(1000)
}

impl MatchExt for HashlimitExt {
    fn name(&self) -> &'static str {
        "hashlimit"
    }
    fn options(&self) -> &'static [Opt] {
        HL_OPTS
    }
    fn parse(&mut self, opt: usize, inv: bool, arg: &str, pc: &ParseCtx) -> Result<(), Fail> {
        let name = format!("--{}", HL_OPTS[opt].name);
        match opt {
            0..=2 => {
                if self.avg.is_some() {
                    return Err(Fail::invalid(
                        "hashlimit: only one of --hashlimit-upto and --hashlimit-above",
                    ));
                }
                let lower = arg.to_ascii_lowercase();
                if lower.contains("b/") || lower.ends_with('b') {
                    return Err(Fail::new(RuleErrorKind::UnsupportedOption(format!(
                        "{name} {arg}"
                    )))
                    .hint("byte-rate hashlimit is not simulated by ctsim"));
                }
                let (r, mult) = parse_rate(&name, arg)?;
                let avg = HL_SCALE_V2 * mult / r;
                if avg == 0 {
                    return Err(Fail::bad(&name, arg, "a rate of at most 1000000/second")
                        .hint("Rate too fast"));
                }
                self.avg = Some((avg, (opt == 2) != inv));
            }
            3 => {
                if self.burst.is_some() {
                    return Err(dup(&name));
                }
                self.burst = Some(parse_uint(&name, arg, 1, 10000)? as u32);
            }
            4 => {
                let mut m = 0;
                for w in arg.split(',') {
                    m |= match w {
                        "srcip" => hlmode::SRCIP,
                        "srcport" => hlmode::SRCPORT,
                        "dstip" => hlmode::DSTIP,
                        "dstport" => hlmode::DSTPORT,
                        _ => return Err(Fail::bad(&name, w, "srcip, srcport, dstip or dstport")),
                    };
                }
                self.mode = Some(m);
            }
            5 => {
                if arg.is_empty() || arg.len() > 254 {
                    return Err(Fail::bad(&name, arg, "a name of 1 to 254 characters"));
                }
                self.name = Some(arg.to_string());
            }
            6 | 7 => {
                let max = if pc.family == Family::Ipv4 { 32 } else { 128 };
                let v = parse_uint(&name, arg, 0, max)? as u8;
                if opt == 6 {
                    self.srcmask = Some(v);
                } else {
                    self.dstmask = Some(v);
                }
            }
            8 => {
                parse_uint(&name, arg, 0, u32::MAX as u64)?;
            }
            9 => self.max = Some(parse_uint(&name, arg, 0, u32::MAX as u64)? as u32),
            10 => self.gc_ms = Some(parse_uint(&name, arg, 1, u32::MAX as u64)?),
            11 => self.expire_ms = Some(parse_uint(&name, arg, 1, u32::MAX as u64)?),
            _ => {
                return Err(Fail::new(RuleErrorKind::UnsupportedOption(name))
                    .hint("hashlimit rate-match mode is not simulated by ctsim"));
            }
        }
        Ok(())
    }
    fn finish(&mut self, pc: &ParseCtx) -> Result<Match, Fail> {
        let Some(name) = self.name.clone() else {
            return Err(Fail::invalid(
                "hashlimit: option \"--hashlimit-name\" must be specified",
            ));
        };
        let Some((avg, above)) = self.avg else {
            return Err(Fail::invalid(
                "hashlimit: option \"--hashlimit-upto\" or \"--hashlimit-above\" must be specified",
            ));
        };
        let burst = self.burst.unwrap_or(5);
        let full = if pc.family == Family::Ipv4 { 32 } else { 128 };
        let cfg = HashlimitCfg {
            mode: self.mode.unwrap_or(0),
            srcmask: self.srcmask.unwrap_or(full),
            dstmask: self.dstmask.unwrap_or(full),
            cost: hl_user2credits(avg),
            credit_cap: hl_user2credits(avg.saturating_mul(burst as u64)),
            expire: ms_to_jiffies(self.expire_ms.unwrap_or(10_000)),
            gc_interval: ms_to_jiffies(self.gc_ms.unwrap_or(1000)),
            // size defaults to 8192 buckets on machines with more than 1 GiB
            // of memory; max defaults to 8 × size.
            max: self.max.filter(|m| *m != 0).unwrap_or(8 * 8192),
            avg,
            burst,
        };
        Ok(Match::Hashlimit(Box::new(HashlimitMatch {
            name,
            cfg,
            above,
            slot: 0,
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nft_rate_conversion() {
        // 10/minute: avg 60000 → 10 per 60 s
        assert_eq!(LimitMatch::nft_rate(60000), (10, 60));
        // 3/second: avg 3333 → 3 per second
        assert_eq!(LimitMatch::nft_rate(10000 / 3), (3, 1));
        // 3/hour (the default): avg 12_000_000 → 3 per hour
        assert_eq!(LimitMatch::nft_rate(12_000_000), (3, 3600));
        // 1/day
        assert_eq!(LimitMatch::nft_rate(864_000_000), (1, 86400));
    }

    #[test]
    fn rates_parse_like_xtables() {
        assert_eq!(parse_rate("--limit", "5/m").unwrap(), (5, 60));
        assert_eq!(parse_rate("--limit", "5/mi").unwrap(), (5, 60));
        assert_eq!(parse_rate("--limit", "5").unwrap(), (5, 1));
        assert_eq!(parse_rate("--limit", "5/SEC").unwrap(), (5, 1));
        assert!(parse_rate("--limit", "5/week").is_err());
        assert!(parse_rate("--limit", "0/s").is_err());
    }

    #[test]
    fn hashlimit_credit_units() {
        // HZ=250: 2^39 credits per jiffy; 137438953 credits per µs-scaled unit
        assert_eq!(HL_CREDITS_PER_JIFFY, 1 << 39);
        assert_eq!(hl_user2credits(1), 137_438_953);
    }
}
