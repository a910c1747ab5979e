//! `-m statistic`: every n-th packet, or a random fraction.
//!
//! Random mode draws from a deterministic generator (SplitMix64) seeded per
//! rule, so a replay gives the same answer every time; the kernel uses
//! `get_random_u32()`, so only the proportion, not the choice of packets,
//! can agree with a real run.

use super::{Fail, Match, MatchExt, Opt, ParseCtx, SlotState, parse_uint};

#[derive(Debug, Clone, PartialEq)]
pub enum StatMode {
    /// Counter compared against `every - 1`; starts at `every - 1 - packet`.
    Nth { every: u32, packet: u32 },
    /// Matches when a 31-bit random value is below `probability`.
    Random { probability: u32 },
}

#[derive(Debug, Clone, PartialEq)]
pub struct StatisticMatch {
    pub mode: StatMode,
    pub inv: bool,
    pub slot: usize,
}

#[derive(Debug, Clone)]
pub struct NthState {
    pub count: u32,
}

#[derive(Debug, Clone)]
pub struct RandomState {
    pub state: u64,
}

impl RandomState {
    /// A generator seeded from the rule's slot number.
    pub fn seeded(slot: usize) -> Self {
        RandomState {
            state: 0x5eed_c75e_0000_0000 ^ slot as u64,
        }
    }
    fn next_u32(&mut self) -> u32 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) as u32
    }
}

impl StatisticMatch {
    /// The state a fresh rule starts with.
    pub fn initial_state(&self) -> SlotState {
        match self.mode {
            StatMode::Nth { every, packet } => SlotState::Nth(NthState {
                count: every - 1 - packet,
            }),
            StatMode::Random { .. } => SlotState::Random(RandomState::seeded(self.slot)),
        }
    }

    pub fn matches(&self, st: Option<&mut SlotState>) -> bool {
        let hit = match (&self.mode, st) {
            (StatMode::Nth { every, .. }, Some(SlotState::Nth(s))) => {
                s.count = if s.count == every - 1 { 0 } else { s.count + 1 };
                s.count == 0
            }
            (StatMode::Random { probability }, Some(SlotState::Random(r))) => {
                (r.next_u32() & 0x7fff_ffff) < *probability
            }
            _ => false,
        };
        hit != self.inv
    }

    pub(crate) fn describe(&self) -> String {
        match self.mode {
            StatMode::Nth { every, packet } => format!(
                " statistic mode nth {}every {every} packet {packet}",
                if self.inv { "! " } else { "" }
            ),
            StatMode::Random { probability } => format!(
                " statistic mode random {}probability {:.11}",
                if self.inv { "! " } else { "" },
                probability as f64 / 2147483648.0
            ),
        }
    }
}

#[derive(Default)]
pub(crate) struct StatisticExt {
    mode: Option<bool>,
    prob: Option<(u32, bool)>,
    every: Option<(u32, bool)>,
    packet: Option<u32>,
}

const STAT_OPTS: &[Opt] = &[
    Opt::arg("mode"),
    Opt::inv("probability"),
    Opt::inv("every"),
    Opt::arg("packet"),
];

impl MatchExt for StatisticExt {
    fn name(&self) -> &'static str {
        "statistic"
    }
    fn options(&self) -> &'static [Opt] {
        STAT_OPTS
    }
    fn parse(&mut self, opt: usize, inv: bool, arg: &str, _pc: &ParseCtx) -> Result<(), Fail> {
        match opt {
            0 => {
                self.mode = Some(match arg {
                    "random" => true,
                    "nth" => false,
                    _ => return Err(Fail::bad("--mode", arg, "random or nth")),
                })
            }
            1 => {
                let p: f64 = arg
                    .parse()
                    .ok()
                    .filter(|p: &f64| (0.0..=1.0).contains(p))
                    .ok_or_else(|| Fail::bad("--probability", arg, "a probability from 0 to 1"))?;
                self.prob = Some(((2147483648.0 * p).round() as u32, inv));
            }
            2 => self.every = Some((parse_uint("--every", arg, 1, u32::MAX as u64)? as u32, inv)),
            _ => self.packet = Some(parse_uint("--packet", arg, 0, u32::MAX as u64)? as u32),
        }
        Ok(())
    }
    fn finish(&mut self, _pc: &ParseCtx) -> Result<Match, Fail> {
        let Some(random) = self.mode else {
            return Err(Fail::invalid(
                "statistic: option \"--mode\" must be specified",
            ));
        };
        if random {
            if self.every.is_some() || self.packet.is_some() {
                return Err(Fail::invalid(
                    "statistic: --every and --packet go with --mode nth",
                ));
            }
            let Some((probability, inv)) = self.prob else {
                return Err(Fail::invalid(
                    "statistic: --mode random needs --probability",
                ));
            };
            return Ok(Match::Statistic(StatisticMatch {
                mode: StatMode::Random { probability },
                inv,
                slot: 0,
            }));
        }
        if self.prob.is_some() {
            return Err(Fail::invalid(
                "statistic: --probability goes with --mode random",
            ));
        }
        let Some((every, inv)) = self.every else {
            return Err(Fail::invalid("statistic: --mode nth needs --every"));
        };
        let Some(packet) = self.packet else {
            return Err(Fail::invalid(
                "statistic: option \"--every\" also requires \"--packet\".",
            ));
        };
        if packet > every - 1 {
            return Err(Fail::invalid("the --packet p must be 0 <= p <= n-1"));
        }
        Ok(Match::Statistic(StatisticMatch {
            mode: StatMode::Nth { every, packet },
            inv,
            slot: 0,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(m: &StatisticMatch, n: usize) -> Vec<bool> {
        let mut st = m.initial_state();
        (0..n).map(|_| m.matches(Some(&mut st))).collect()
    }

    #[test]
    fn nth_matches_packet_p_of_every_n() {
        let m = StatisticMatch {
            mode: StatMode::Nth {
                every: 3,
                packet: 0,
            },
            inv: false,
            slot: 0,
        };
        assert_eq!(run(&m, 7), [true, false, false, true, false, false, true]);
        let m = StatisticMatch {
            mode: StatMode::Nth {
                every: 3,
                packet: 2,
            },
            inv: false,
            slot: 0,
        };
        assert_eq!(run(&m, 6), [false, false, true, false, false, true]);
        let m = StatisticMatch {
            mode: StatMode::Nth {
                every: 1,
                packet: 0,
            },
            inv: true,
            slot: 0,
        };
        assert_eq!(run(&m, 3), [false, false, false]);
    }

    #[test]
    fn random_is_deterministic_and_proportional() {
        let m = StatisticMatch {
            mode: StatMode::Random {
                probability: 1 << 30,
            },
            inv: false,
            slot: 4,
        };
        let a = run(&m, 10000);
        assert_eq!(a, run(&m, 10000));
        let hits = a.iter().filter(|b| **b).count();
        assert!((4500..5500).contains(&hits), "{hits}");
    }
}
