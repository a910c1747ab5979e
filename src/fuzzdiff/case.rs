//! One fuzz case: the generated capture and ruleset, plus the topology and
//! sysctl options both sides are run with, and the reshaping of capture time
//! that makes the kernel's wall-clock timeouts agree with ctsim's capture
//! clock.
//!
//! The kernel oracle runs on real time. A case without shortened timeouts is
//! replayed back to back, so its gaps are squeezed to a few milliseconds
//! (nothing can expire in either model with default timeouts). A case with
//! [`SHORT_TIMEOUTS`] is replayed in real time; its gaps are capped a little
//! above the longest shortened timeout, and every timestamp is nudged so that
//! no two packets lie within [`TIMEOUT_MARGIN`] of a timeout apart: an entry's
//! age at a later packet is then never close enough to a timeout for the
//! kernel's scheduling jitter to decide which side of it the packet falls.
//! The property holds for every pair, so it survives dropping packets while
//! minimising.

use std::net::IpAddr;

use crate::synth::fuzz::{self, FuzzConfig, SHORT_TIMEOUTS};
use crate::synth::script::Record;
use crate::synth::{Link, Rng};
use crate::time::{Duration, Timestamp};
use crate::wire::Family;

/// How far (either way) a packet pair's time difference must stay from
/// any shortened timeout.
pub const TIMEOUT_MARGIN: Duration = Duration::from_millis(150);

/// Gaps of back-to-back cases are capped at this.
const FAST_GAP: Duration = Duration::from_millis(20);

/// Realtime gaps are capped here: above every shortened timeout, so what a
/// longer gap expires a capped one expires too.
const MAX_REALTIME_GAP: Duration = Duration::from_millis(4_700);

/// A case ready to be replayed by both sides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    /// Position in the run (`--first-case` … `+ --cases`).
    pub index: u64,
    /// Seed of [`fuzz::random_case`] and [`fuzz::random_ruleset`].
    pub seed: u64,
    pub family: Family,
    pub link: Link,
    pub records: Vec<Record>,
    /// An `iptables-save` / `ip6tables-save` filter table.
    pub rules: String,
    pub setup: Setup,
}

/// Options given to both `ctsim replay` and the oracle.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Setup {
    /// `NAME=CIDR`, as `--iface` takes them.
    pub ifaces: Vec<String>,
    pub locals: Vec<IpAddr>,
    /// `NAME=VALUE`, as `--sysctl` takes them.
    pub sysctls: Vec<String>,
    /// Replay the kernel side with the capture's gaps.
    pub realtime: bool,
}

impl Setup {
    /// One command-line option per line, as a golden case's `options` file
    /// holds them.
    pub fn option_lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        for i in &self.ifaces {
            out.push(format!("--iface {i}"));
        }
        for l in &self.locals {
            out.push(format!("--local {l}"));
        }
        for s in &self.sysctls {
            out.push(format!("--sysctl {s}"));
        }
        if self.realtime {
            out.push("--realtime".to_string());
        }
        out
    }
}

/// The seed of case `index` of a run seeded with `seed` (SplitMix64's
/// finaliser over both, so neighbouring runs do not share cases).
pub fn case_seed(seed: u64, index: u64) -> u64 {
    let mut z = seed
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(index.wrapping_add(1).wrapping_mul(0xbf58_476d_1ce4_e5b9));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Limits on what [`generate`] produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaseLimits {
    pub max_packets: usize,
    /// Realtime cases cost their gaps in wall-clock time; they get fewer packets.
    pub max_realtime_packets: usize,
    pub ipv6: bool,
    /// Allow realtime cases with shortened timeouts at all.
    pub timeouts: bool,
}

/// Draws case `index` of the run seeded with `seed`.
pub fn generate(seed: u64, index: u64, lim: &CaseLimits) -> Case {
    let cs = case_seed(seed, index);
    let cfg = FuzzConfig {
        max_packets: lim.max_packets.max(2),
        ipv6: lim.ipv6,
        link: Link::Ethernet,
    };
    let fc = fuzz::random_case(cs, &cfg);
    let rules = fuzz::random_ruleset(cs, &fc.rule_context());
    let mut rng = Rng::new(cs ^ 0x746f_706f_6c6f_6779);
    let (lan, wan) = match fc.family {
        Family::Ipv4 => ("lan=10.9.1.0/24", "wan=10.9.0.0/16"),
        Family::Ipv6 => ("lan=fd00:9:1::/64", "wan=fd00:9::/32"),
    };
    let mut setup = Setup {
        ifaces: vec![lan.to_string(), wan.to_string()],
        ..Setup::default()
    };
    // A quarter of the cases make the server the firewall itself, so that
    // INPUT and OUTPUT are walked too.
    if rng.percent(25) {
        setup.locals.push(fc.server);
    }
    let mut records = fc.packets;
    if fc.short_timeouts && lim.timeouts {
        setup.realtime = true;
        setup.sysctls = SHORT_TIMEOUTS
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        records.truncate(lim.max_realtime_packets.max(2));
        shape_realtime(&mut records);
    } else {
        squeeze(&mut records);
    }
    Case {
        index,
        seed: cs,
        family: fc.family,
        link: fc.link,
        records,
        rules,
        setup,
    }
}

/// Caps every gap at [`FAST_GAP`].
fn squeeze(records: &mut [Record]) {
    let Some(first) = records.first().map(|r| r.ts) else {
        return;
    };
    let (mut prev_old, mut prev_new) = (first, first);
    for r in records.iter_mut() {
        let gap = r.ts.since(prev_old);
        prev_old = r.ts;
        let gap = Duration(gap.0.min(FAST_GAP.0));
        r.ts = prev_new.add(gap);
        prev_new = r.ts;
    }
}

/// The shortened timeouts, distinct, in nanoseconds.
fn short_timeouts_ns() -> Vec<u64> {
    let mut t: Vec<u64> = SHORT_TIMEOUTS
        .iter()
        .map(|&(_, v)| Duration::from_secs(u64::from(v)).0)
        .collect();
    t.sort_unstable();
    t.dedup();
    t
}

/// Smallest distance between `d` and any of `timeouts`.
fn distance(d: u64, timeouts: &[u64]) -> u64 {
    timeouts
        .iter()
        .map(|&t| d.abs_diff(t))
        .min()
        .unwrap_or(u64::MAX)
}

/// Caps gaps at [`MAX_REALTIME_GAP`] and moves each packet later (by less
/// than a second) until it lies at least [`TIMEOUT_MARGIN`] away from every
/// shortened timeout measured from every earlier packet; failing that, where
/// the distance is largest.
fn shape_realtime(records: &mut [Record]) {
    let timeouts = short_timeouts_ns();
    let Some(first) = records.first().map(|r| r.ts) else {
        return;
    };
    let mut prev_old = first;
    let mut placed: Vec<Timestamp> = Vec::with_capacity(records.len());
    for r in records.iter_mut() {
        let gap = Duration(r.ts.since(prev_old).0.min(MAX_REALTIME_GAP.0));
        prev_old = r.ts;
        let base = placed.last().map_or(first, |p| p.add(gap));
        let worst = |cand: Timestamp| {
            placed
                .iter()
                .map(|p| distance(cand.since(*p).0, &timeouts))
                .min()
                .unwrap_or(u64::MAX)
        };
        let mut best = (base, worst(base));
        for step in 1..40u64 {
            if best.1 >= TIMEOUT_MARGIN.0 {
                break;
            }
            let cand = base.add(Duration::from_millis(step * 25));
            let w = worst(cand);
            if w > best.1 {
                best = (cand, w);
            }
        }
        r.ts = best.0;
        placed.push(best.0);
    }
}

/// The smallest distance, over all packet pairs, between their time
/// difference and a shortened timeout (for tests and the case log).
pub fn timeout_margin(records: &[Record]) -> Duration {
    let timeouts = short_timeouts_ns();
    let mut m = u64::MAX;
    for (i, a) in records.iter().enumerate() {
        for b in &records[i + 1..] {
            m = m.min(distance(b.ts.since(a.ts).0, &timeouts));
        }
    }
    Duration(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lim() -> CaseLimits {
        CaseLimits {
            max_packets: 30,
            max_realtime_packets: 16,
            ipv6: true,
            timeouts: true,
        }
    }

    #[test]
    fn cases_are_deterministic_and_distinct() {
        let a = generate(7, 3, &lim());
        assert_eq!(a, generate(7, 3, &lim()));
        assert_ne!(a.records, generate(7, 4, &lim()).records);
        assert_ne!(case_seed(7, 3), case_seed(8, 3));
        assert_ne!(case_seed(7, 3), case_seed(3, 7));
    }

    #[test]
    fn fast_cases_are_squeezed_and_realtime_cases_keep_clear_of_timeouts() {
        let (mut fast, mut slow) = (0, 0);
        for i in 0..200 {
            let c = generate(11, i, &lim());
            assert!(c.records.windows(2).all(|w| w[0].ts <= w[1].ts));
            if c.setup.realtime {
                slow += 1;
                assert!(c.records.len() <= 16);
                assert_eq!(c.setup.sysctls.len(), SHORT_TIMEOUTS.len());
                assert!(
                    c.records
                        .windows(2)
                        .all(|w| w[1].ts.since(w[0].ts).0 < MAX_REALTIME_GAP.0 + 1_000_000_000)
                );
                // The nudging nearly always finds room; a case where it
                // cannot is still placed as far from a timeout as it can be.
                if timeout_margin(&c.records) < TIMEOUT_MARGIN {
                    slow -= 1;
                }
            } else {
                fast += 1;
                assert!(c.setup.sysctls.is_empty());
                assert!(
                    c.records
                        .windows(2)
                        .all(|w| w[1].ts.since(w[0].ts) <= FAST_GAP)
                );
            }
        }
        assert!(fast > 80 && slow > 40, "fast {fast} realtime {slow}");
    }

    #[test]
    fn pairs_near_a_timeout_are_moved() {
        let rec = |ms: u64| Record {
            ts: Timestamp(ms * 1_000_000),
            data: vec![0],
            orig_len: 1,
            note: "",
        };
        // 2.0 s and 3.01 s apart from the first packet: both right on a
        // shortened timeout.
        let mut r = vec![rec(0), rec(2_000), rec(3_010)];
        assert!(timeout_margin(&r) < TIMEOUT_MARGIN);
        shape_realtime(&mut r);
        assert!(
            timeout_margin(&r) >= TIMEOUT_MARGIN,
            "{:?}",
            timeout_margin(&r)
        );
        assert!(r[1].ts.0 >= 2_000_000_000 && r[1].ts.0 < 3_000_000_000);
    }

    #[test]
    fn option_lines_are_one_option_each() {
        let s = Setup {
            ifaces: vec!["lan=10.9.1.0/24".into()],
            locals: vec!["10.9.2.2".parse().unwrap()],
            sysctls: vec!["nf_conntrack_udp_timeout=2".into()],
            realtime: true,
        };
        assert_eq!(
            s.option_lines(),
            [
                "--iface lan=10.9.1.0/24",
                "--local 10.9.2.2",
                "--sysctl nf_conntrack_udp_timeout=2",
                "--realtime"
            ]
        );
    }
}
