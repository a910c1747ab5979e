//! `-m recent`: lists of recently seen addresses, on jiffies.
//!
//! One list per `--name`, shared by every rule naming it in either family
//! (the kernel keeps the tables per network namespace, by name only).
//! Entries hold the jiffies of the last packets that `--set` or a matching
//! `--update` recorded, in a ring whose size is the next power of two above
//! the largest `--hitcount` of the rules sharing the list (32 when none is
//! larger; the module parameter `ip_pkt_list_tot` is 0 on the reference
//! machine). A list keeps at most `ip_list_tot` = 100 addresses; a new one
//! pushes out the least recently updated.
//!
//! Time is in jiffies of the capture clock (see [`super::limit::jiffies`]).

use super::limit::{HZ, jiffies};
use super::{Fail, Match, MatchExt, Opt, ParseCtx, parse_addr, parse_uint};
use crate::rules::eval::EvalCtx;
use crate::wire::Family;

/// `ip_list_tot` on the reference machine.
pub const IP_LIST_TOT: usize = 100;

pub mod check {
    pub const CHECK: u8 = 1;
    pub const SET: u8 = 2;
    pub const UPDATE: u8 = 4;
    pub const REMOVE: u8 = 8;
    pub const TTL: u8 = 16;
    pub const REAP: u8 = 32;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentMatch {
    pub name: String,
    pub check_set: u8,
    pub inv: bool,
    pub seconds: u32,
    pub hit_count: u32,
    /// Use the destination address (`--rdest`).
    pub dest: bool,
    pub mask: u128,
    pub slot: usize,
}

#[derive(Debug, Clone)]
struct Entry {
    addr: u128,
    family: Family,
    ttl: u8,
    index: usize,
    nstamps: usize,
    stamps: Vec<u64>,
    /// Position in least-recently-updated order (smaller = older).
    lru: u64,
}

/// One named list.
#[derive(Debug, Clone)]
pub struct RecentTable {
    entries: Vec<Entry>,
    lru_clock: u64,
    /// Ring size minus one (a power of two minus one).
    pub(crate) nstamps_mask: usize,
}

impl RecentTable {
    pub(crate) fn new(nstamps_mask: usize) -> Self {
        RecentTable {
            entries: Vec::new(),
            lru_clock: 0,
            nstamps_mask,
        }
    }

    /// Ring size the kernel picks for a rule's hit count.
    pub(crate) fn mask_for(hit_count: u32) -> usize {
        if hit_count > 0 {
            (hit_count as usize).next_power_of_two() - 1
        } else {
            31
        }
    }

    fn find(&self, addr: u128, family: Family, ttl: u8) -> Option<usize> {
        self.entries.iter().position(|e| {
            e.family == family && e.addr == addr && (ttl == e.ttl || ttl == 0 || e.ttl == 0)
        })
    }

    fn oldest(&self) -> Option<usize> {
        (0..self.entries.len()).min_by_key(|&i| self.entries[i].lru)
    }

    fn touch(&mut self, i: usize) {
        self.lru_clock += 1;
        self.entries[i].lru = self.lru_clock;
    }

    fn update(&mut self, i: usize, now: u64) {
        let mask = self.nstamps_mask;
        let e = &mut self.entries[i];
        e.index &= mask;
        e.stamps[e.index] = now;
        e.index += 1;
        if e.index > e.nstamps {
            e.nstamps = e.index;
        }
        self.touch(i);
    }

    /// Number of addresses in the list.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl RecentMatch {
    pub fn matches(&self, ctx: &EvalCtx, t: &mut RecentTable) -> bool {
        let now = jiffies(ctx.now);
        let a = super::addr_bits(if self.dest { ctx.dst } else { ctx.src }) & self.mask;
        let mut ttl = ctx.ttl;
        // The TTL as it was before the router decremented it.
        if ctx.out_iface.is_some() && !ctx.locally_generated {
            ttl = ttl.wrapping_add(1);
        }
        let mut ret = self.inv;
        let look_ttl = if self.check_set & check::TTL != 0 {
            ttl
        } else {
            0
        };
        let Some(i) = t.find(a, ctx.family, look_ttl) else {
            if self.check_set & check::SET == 0 {
                return ret;
            }
            if t.entries.len() >= IP_LIST_TOT
                && let Some(o) = t.oldest()
            {
                t.entries.swap_remove(o);
            }
            let mut stamps = vec![0; t.nstamps_mask + 1];
            stamps[0] = now;
            t.entries.push(Entry {
                addr: a,
                family: ctx.family,
                ttl,
                index: 1,
                nstamps: 1,
                stamps,
                lru: 0,
            });
            let last = t.entries.len() - 1;
            t.touch(last);
            return !ret;
        };
        if self.check_set & check::SET != 0 {
            ret = !ret;
        } else if self.check_set & check::REMOVE != 0 {
            t.entries.swap_remove(i);
            return !ret;
        } else if self.check_set & (check::CHECK | check::UPDATE) != 0 {
            let horizon = now as i128 - self.seconds as i128 * HZ as i128;
            let e = &t.entries[i];
            let mut hits = 0;
            for &s in &e.stamps[..e.nstamps] {
                if self.seconds != 0 && horizon > s as i128 {
                    continue;
                }
                hits += 1;
                if self.hit_count == 0 || hits >= self.hit_count {
                    ret = !ret;
                    break;
                }
            }
            if self.check_set & check::REAP != 0 {
                let updating = self.check_set & check::UPDATE != 0 && ret;
                if let Some(o) = t.oldest() {
                    let oe = &t.entries[o];
                    let last = oe.stamps[(oe.index + oe.stamps.len() - 1) % oe.stamps.len()];
                    if !(o == i && updating) && horizon > last as i128 {
                        t.entries.swap_remove(o);
                        if o == i {
                            return ret;
                        }
                    }
                }
            }
        }
        if (self.check_set & check::SET != 0 || (self.check_set & check::UPDATE != 0 && ret))
            && let Some(i) = t.find(a, ctx.family, look_ttl)
        {
            t.update(i, now);
            t.entries[i].ttl = ttl;
        }
        ret
    }

    pub(crate) fn describe(&self) -> String {
        let mut s = String::from(" recent:");
        if self.inv {
            s += " !";
        }
        for (b, n) in [
            (check::SET, "SET"),
            (check::CHECK, "CHECK"),
            (check::UPDATE, "UPDATE"),
            (check::REMOVE, "REMOVE"),
        ] {
            if self.check_set & b != 0 {
                s += " ";
                s += n;
            }
        }
        if self.seconds != 0 {
            s += &format!(" seconds: {}", self.seconds);
        }
        if self.check_set & check::REAP != 0 {
            s += " reap";
        }
        if self.hit_count != 0 {
            s += &format!(" hit_count: {}", self.hit_count);
        }
        if self.check_set & check::TTL != 0 {
            s += " TTL-Match";
        }
        s += &format!(
            " name: {} side: {}",
            self.name,
            if self.dest { "dest" } else { "source" }
        );
        s
    }
}

pub(crate) struct RecentExt {
    m: RecentMatch,
    seen_mask: bool,
    given_mask: Option<String>,
}

impl Default for RecentExt {
    fn default() -> Self {
        RecentExt {
            m: RecentMatch {
                name: "DEFAULT".into(),
                check_set: 0,
                inv: false,
                seconds: 0,
                hit_count: 0,
                dest: false,
                mask: u128::MAX,
                slot: 0,
            },
            seen_mask: false,
            given_mask: None,
        }
    }
}

const RECENT_OPTS: &[Opt] = &[
    Opt::inv_flag("set"),
    Opt::inv_flag("rcheck"),
    Opt::inv_flag("update"),
    Opt::inv_flag("remove"),
    Opt::arg("seconds"),
    Opt::flag("reap"),
    Opt::arg("hitcount"),
    Opt::flag("rttl"),
    Opt::arg("name"),
    Opt::flag("rsource"),
    Opt::flag("rdest"),
    Opt::arg("mask"),
];

impl MatchExt for RecentExt {
    fn name(&self) -> &'static str {
        "recent"
    }
    fn options(&self) -> &'static [Opt] {
        RECENT_OPTS
    }
    fn parse(&mut self, opt: usize, inv: bool, arg: &str, _pc: &ParseCtx) -> Result<(), Fail> {
        let m = &mut self.m;
        match opt {
            0..=3 => {
                let bit = [check::SET, check::CHECK, check::UPDATE, check::REMOVE][opt];
                let cmds = check::SET | check::CHECK | check::UPDATE | check::REMOVE;
                if m.check_set & cmds != 0 {
                    return Err(Fail::invalid(
                        "recent: only one of `--set', `--rcheck', `--update' or `--remove' may be given",
                    ));
                }
                m.check_set |= bit;
                m.inv = inv;
            }
            4 => m.seconds = parse_uint("--seconds", arg, 0, u32::MAX as u64)? as u32,
            5 => m.check_set |= check::REAP,
            6 => m.hit_count = parse_uint("--hitcount", arg, 0, u32::MAX as u64)? as u32,
            7 => m.check_set |= check::TTL,
            8 => {
                if arg.is_empty()
                    || arg.len() >= 200
                    || arg.contains('/')
                    || arg == "."
                    || arg == ".."
                {
                    return Err(Fail::bad(
                        "--name",
                        arg,
                        "a list name of 1 to 199 characters without '/'",
                    ));
                }
                m.name = arg.to_string();
            }
            9 => m.dest = false,
            10 => m.dest = true,
            _ => {
                if self.seen_mask {
                    return Err(super::dup("--mask"));
                }
                self.seen_mask = true;
                self.given_mask = Some(arg.to_string());
            }
        }
        Ok(())
    }
    fn finish(&mut self, pc: &ParseCtx) -> Result<Match, Fail> {
        let cmds = check::SET | check::CHECK | check::UPDATE | check::REMOVE;
        let m = &mut self.m;
        if m.check_set & cmds == 0 {
            return Err(Fail::invalid(
                "recent: you must specify one of `--set', `--rcheck' `--update' or `--remove'",
            ));
        }
        if m.check_set & check::REAP != 0 && m.seconds == 0 {
            return Err(Fail::invalid(
                "recent: option \"--reap\" also requires \"--seconds\".",
            ));
        }
        if m.check_set & (check::SET | check::REMOVE) != 0
            && (m.seconds != 0 || m.hit_count != 0 || m.check_set & (check::TTL | check::REAP) != 0)
        {
            return Err(Fail::invalid(
                "recent: --seconds, --hitcount, --rttl and --reap only go with --rcheck or --update",
            ));
        }
        m.mask = match (&self.given_mask, pc.family) {
            (Some(s), f) => parse_addr("--mask", s, f)?,
            (None, Family::Ipv4) => u32::MAX as u128,
            (None, Family::Ipv6) => u128::MAX,
        };
        Ok(Match::Recent(Box::new(m.clone())))
    }
}
