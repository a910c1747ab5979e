//! The differential fuzzer behind `ctsim fuzz-kernel`: random but plausible
//! captures and rulesets ([`crate::synth::fuzz`]) replayed through the real
//! kernel ([`crate::oracle`]) and through ctsim, compared packet by packet.
//!
//! Each case gets a capture, a filter ruleset, a two-interface topology
//! (sometimes with the server as the firewall's own address) and, for a share
//! of the cases, shortened timeouts with a realtime kernel replay (see
//! [`case`] for how capture time is shaped so both clocks agree). The first
//! divergence of each kind is re-run to rule out flakiness, shrunk
//! ([`minimise`]) and written as a golden case directory
//! `fuzz-<seed>-<case>/` under [`FuzzOptions::out`].
//!
//! Longer runs, e.g. 20,000 packets: `ctsim fuzz-kernel --seed S --cases 700
//! --max-packets 40 --no-timeouts --keep-going` (about 14,000 packets in a few
//! minutes) plus a realtime batch `--cases 250 --max-packets 30 --jobs 4
//! --keep-going` (realtime cases cost their gaps in wall-clock time). The
//! summary groups every diverging cell by kind; one reproducer is written per
//! kind. Re-run one case with `--first-case K --cases 1`.
//!
//! What it does not do: judge who is right (the kernel is, by definition),
//! fix anything, or fuzz NAT, helpers, fragments or non-Ethernet links — the
//! generator does not produce them.

pub mod case;
pub mod compare;
pub mod minimise;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::oracle::OracleError;
pub use case::{Case, CaseLimits, Setup};
pub use compare::{COMPARED, Diff, Leniency, Outcome};

/// Errors of a fuzz run or of one case in it.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum FuzzError {
    #[error(transparent)]
    Oracle(#[from] OracleError),
    #[error("ctsim rejected the generated rules: {0}")]
    Rules(String),
    #[error("options: {0}")]
    Setup(String),
    #[error("ctsim replay: {0}")]
    Replay(String),
    #[error("writing the capture: {0}")]
    Capture(String),
    #[error("CSV: {0}")]
    Csv(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl FuzzError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> FuzzError {
        FuzzError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// What to fuzz and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FuzzOptions {
    pub seed: u64,
    /// Number of cases.
    pub cases: u64,
    /// Index of the first case (to re-run one case of an earlier run).
    pub first_case: u64,
    pub max_packets: usize,
    /// Packets at most in a realtime (shortened-timeout) case.
    pub max_realtime_packets: usize,
    pub ipv6: bool,
    /// Allow realtime cases with shortened timeouts.
    pub timeouts: bool,
    /// Where reproducers go (`fuzz-<seed>-<case>/` below it).
    pub out: PathBuf,
    /// Go on after a divergence (and reproduce each kind of divergence).
    pub keep_going: bool,
    /// Shrink and write reproducers.
    pub minimise: bool,
    /// Wall-clock time one shrink may take.
    pub minimise_time: Duration,
    /// Cases run at once (realtime cases mostly sleep).
    pub jobs: usize,
    /// Do not compare `ctstatus` and `tcp_state` of packets both sides call
    /// INVALID (see [`compare::Leniency`]).
    pub lenient_invalid_entry: bool,
    /// The command line, for `PROVENANCE`.
    pub command: String,
}

impl Default for FuzzOptions {
    fn default() -> Self {
        FuzzOptions {
            seed: 1,
            cases: 10,
            first_case: 0,
            max_packets: 24,
            max_realtime_packets: 12,
            ipv6: true,
            timeouts: true,
            out: PathBuf::from("tests/golden"),
            keep_going: false,
            minimise: true,
            minimise_time: Duration::from_secs(300),
            jobs: 1,
            lenient_invalid_entry: false,
            command: String::new(),
        }
    }
}

impl FuzzOptions {
    fn limits(&self) -> CaseLimits {
        CaseLimits {
            max_packets: self.max_packets,
            max_realtime_packets: self.max_realtime_packets,
            ipv6: self.ipv6,
            timeouts: self.timeouts,
        }
    }

    fn command_text(&self) -> String {
        if self.command.is_empty() {
            format!(
                "ctsim fuzz-kernel --seed {} --cases {} --first-case {} --max-packets {}",
                self.seed, self.cases, self.first_case, self.max_packets
            )
        } else {
            self.command.clone()
        }
    }
}

/// What one case gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult {
    pub index: u64,
    pub seed: u64,
    pub realtime: bool,
    pub packets: usize,
    pub agreeing: usize,
    /// The first divergence, if any, and how many cells diverged in all.
    pub first: Option<Diff>,
    pub diverging_cells: usize,
    /// Every diverging cell (later ones may be consequences of the first).
    pub diffs: Vec<Diff>,
    /// The case could not be run (not a divergence; e.g. the kernel refused
    /// the rules).
    pub error: Option<String>,
}

/// A shrunk reproducer written as a golden case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reproducer {
    pub case: u64,
    pub dir: PathBuf,
    /// The first divergence of the shrunk case.
    pub diff: Diff,
    pub packets: usize,
    pub rules: usize,
    /// Other cases whose first divergence was of the same kind.
    pub same_kind: Vec<u64>,
}

/// The result of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FuzzReport {
    /// Every case run, in case order.
    pub cases: Vec<CaseResult>,
    pub reproducers: Vec<Reproducer>,
    /// Divergences that did not show again on a second run (case, diff).
    pub flaky: Vec<(u64, Diff)>,
}

impl FuzzReport {
    pub fn packets(&self) -> usize {
        self.cases.iter().map(|c| c.packets).sum()
    }
    pub fn agreeing(&self) -> usize {
        self.cases.iter().map(|c| c.agreeing).sum()
    }
    pub fn divergent(&self) -> impl Iterator<Item = &CaseResult> {
        self.cases.iter().filter(|c| c.first.is_some())
    }
    pub fn errors(&self) -> impl Iterator<Item = &CaseResult> {
        self.cases.iter().filter(|c| c.error.is_some())
    }
    /// True when every case ran and agreed on every packet.
    pub fn clean(&self) -> bool {
        self.divergent().next().is_none() && self.errors().next().is_none()
    }

    /// Every diverging cell of the run grouped by [`kind_key`], most cells
    /// first.
    pub fn kinds(&self) -> Vec<KindCount> {
        let mut out: Vec<KindCount> = Vec::new();
        for c in &self.cases {
            let mut seen_here: Vec<usize> = Vec::new();
            for d in &c.diffs {
                let key = kind_key(d);
                let i = match out.iter().position(|k| k.key == key) {
                    Some(i) => i,
                    None => {
                        out.push(KindCount {
                            key,
                            cells: 0,
                            cases: 0,
                            example: (c.index, d.packet),
                        });
                        out.len() - 1
                    }
                };
                out[i].cells += 1;
                if !seen_here.contains(&i) {
                    seen_here.push(i);
                    out[i].cases += 1;
                }
            }
        }
        out.sort_by(|a, b| b.cells.cmp(&a.cells).then(a.example.cmp(&b.example)));
        out
    }

    /// The summary printed at the end of a run.
    pub fn render(&self) -> String {
        let mut o = String::new();
        let realtime = self.cases.iter().filter(|c| c.realtime).count();
        let _ = writeln!(
            o,
            "fuzz-kernel: {} cases ({} realtime), {} packets compared, {} agree, {} diverge, {} cases diverge, {} cases failed to run",
            self.cases.len(),
            realtime,
            self.packets(),
            self.agreeing(),
            self.packets() - self.agreeing(),
            self.divergent().count(),
            self.errors().count()
        );
        for c in self.divergent() {
            if let Some(d) = &c.first {
                let _ = writeln!(
                    o,
                    "  case {} (seed {}{}): first divergence at packet {} in {}: kernel `{}`, ctsim `{}` ({} cells in all)",
                    c.index,
                    c.seed,
                    if c.realtime { ", realtime" } else { "" },
                    d.packet,
                    d.column,
                    d.kernel,
                    d.ctsim,
                    c.diverging_cells
                );
            }
        }
        let kinds = self.kinds();
        if !kinds.is_empty() {
            let _ = writeln!(
                o,
                "  diverging cells by kind (cells, cases, first case/packet):"
            );
            for k in &kinds {
                let _ = writeln!(
                    o,
                    "    {:>5} {:>4}  case {} packet {}  {}: kernel `{}`, ctsim `{}`",
                    k.cells, k.cases, k.example.0, k.example.1, k.key.0, k.key.1, k.key.2
                );
            }
        }
        for c in self.errors() {
            let _ = writeln!(
                o,
                "  case {} (seed {}): not run: {}",
                c.index,
                c.seed,
                c.error.as_deref().unwrap_or("")
            );
        }
        for r in &self.reproducers {
            let _ = writeln!(
                o,
                "  reproducer {} ({} packets, {} rules): packet {} {}: kernel `{}`, ctsim `{}`{}",
                r.dir.display(),
                r.packets,
                r.rules,
                r.diff.packet,
                r.diff.column,
                r.diff.kernel,
                r.diff.ctsim,
                if r.same_kind.is_empty() {
                    String::new()
                } else {
                    format!("; same kind in cases {:?}", r.same_kind)
                }
            );
        }
        for (c, d) in &self.flaky {
            let _ = writeln!(
                o,
                "  case {c}: divergence at packet {} in {} did not repeat on a second run (flaky, not minimised)",
                d.packet, d.column
            );
        }
        o
    }
}

/// Diverging cells of one kind across a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindCount {
    /// Column, kernel value, ctsim value (rule positions blurred to `N`).
    pub key: (String, String, String),
    pub cells: usize,
    pub cases: usize,
    /// The first (case, packet) where it showed.
    pub example: (u64, u64),
}

/// How a divergence is grouped with others of its kind across cases: the
/// column and both values, with rule positions blurred.
fn kind_key(d: &Diff) -> (String, String, String) {
    let blur = |v: &str| -> String {
        if d.column != "rule" {
            return v.to_string();
        }
        match v.rsplit_once(':') {
            Some((head, tail)) if tail.bytes().all(|b| b.is_ascii_digit()) => format!("{head}:N"),
            _ => v.to_string(),
        }
    };
    (d.column.to_string(), blur(&d.kernel), blur(&d.ctsim))
}

/// A case's result, with the case and its run kept when it diverged.
type Finished = (CaseResult, Option<(Case, Outcome)>);

/// Runs the fuzz. `progress` gets one line per case and per reproducer.
pub fn run(opts: &FuzzOptions, progress: &(dyn Fn(&str) + Sync)) -> Result<FuzzReport, FuzzError> {
    let lim = opts.limits();
    let lenient = compare::Leniency {
        invalid_entry: opts.lenient_invalid_entry,
    };
    let next = AtomicU64::new(opts.first_case);
    let end = opts.first_case.saturating_add(opts.cases);
    let stop = AtomicBool::new(false);
    let results: Mutex<Vec<Finished>> = Mutex::new(Vec::new());
    let fatal: Mutex<Option<FuzzError>> = Mutex::new(None);

    let worker = || {
        loop {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let i = next.fetch_add(1, Ordering::SeqCst);
            if i >= end {
                break;
            }
            let case = case::generate(opts.seed, i, &lim);
            let mut res = CaseResult {
                index: i,
                seed: case.seed,
                realtime: case.setup.realtime,
                packets: 0,
                agreeing: 0,
                first: None,
                diverging_cells: 0,
                diffs: Vec::new(),
                error: None,
            };
            let mut keep = None;
            match compare::run_case(&case, lenient) {
                Ok(o) => {
                    res.packets = o.packets;
                    res.agreeing = o.agreeing;
                    res.first = o.first().cloned();
                    res.diverging_cells = o.diffs.len();
                    res.diffs = o.diffs.clone();
                    if res.first.is_some() {
                        if !opts.keep_going {
                            stop.store(true, Ordering::SeqCst);
                        }
                        keep = Some((case.clone(), o));
                    }
                }
                Err(e) if minimise::is_fatal(&e) => {
                    stop.store(true, Ordering::SeqCst);
                    let mut f = fatal.lock().unwrap_or_else(|p| p.into_inner());
                    f.get_or_insert(e);
                    break;
                }
                Err(e) => {
                    res.error = Some(e.to_string());
                    if !opts.keep_going {
                        stop.store(true, Ordering::SeqCst);
                    }
                }
            }
            progress(&case_line(&res, case.records.len()));
            results
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((res, keep));
        }
    };
    std::thread::scope(|s| {
        for _ in 0..opts.jobs.max(1) {
            s.spawn(worker);
        }
    });
    if let Some(e) = fatal.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    let mut results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    results.sort_by_key(|(r, _)| r.index);
    if !opts.keep_going {
        // Parallel workers may have run cases past the first failure; the
        // report stops there as a sequential run would.
        if let Some(pos) = results
            .iter()
            .position(|(r, _)| r.first.is_some() || r.error.is_some())
        {
            results.truncate(pos + 1);
        }
    }

    let mut report = FuzzReport::default();
    let mut seen: Vec<((String, String, String), usize)> = Vec::new();
    for (res, kept) in &results {
        let (Some(first), Some((case, outcome))) = (&res.first, kept) else {
            continue;
        };
        let key = kind_key(first);
        if let Some((_, ri)) = seen.iter().find(|(k, _)| *k == key) {
            if let Some(r) = report.reproducers.get_mut(*ri) {
                r.same_kind.push(res.index);
            }
            continue;
        }
        if !opts.minimise {
            continue;
        }
        // A second run first: a divergence that does not repeat is timing
        // noise, not a reproducer.
        let repeats = match compare::run_case(case, lenient) {
            Ok(o) => o.first().is_some_and(|d| d.same_kind(first)),
            Err(e) if minimise::is_fatal(&e) => return Err(e),
            Err(_) => false,
        };
        if !repeats {
            progress(&format!(
                "case {}: divergence did not repeat; flaky",
                res.index
            ));
            report.flaky.push((res.index, first.clone()));
            continue;
        }
        let deadline = Instant::now() + opts.minimise_time;
        let shrunk = minimise::shrink(case, outcome, first, deadline, lenient)?;
        let diff = shrunk
            .outcome
            .first()
            .cloned()
            .unwrap_or_else(|| first.clone());
        let dir = minimise::golden_dir(&opts.out, opts.seed, case);
        let command = opts.command_text();
        let prov = minimise::Provenance {
            command: &command,
            run_seed: opts.seed,
            original_packets: case.records.len(),
            original_rules: count_rules(&case.rules),
            diff: &diff,
            runs: shrunk.runs + 1,
        };
        minimise::write_golden(&dir, &shrunk.case, &shrunk.outcome, &prov)?;
        let rep = Reproducer {
            case: res.index,
            dir,
            diff,
            packets: shrunk.case.records.len(),
            rules: count_rules(&shrunk.case.rules),
            same_kind: Vec::new(),
        };
        progress(&format!(
            "case {}: reproducer {} ({} packets, {} rules, {} runs)",
            res.index,
            rep.dir.display(),
            rep.packets,
            rep.rules,
            shrunk.runs + 1
        ));
        seen.push((key, report.reproducers.len()));
        report.reproducers.push(rep);
    }
    report.cases = results.into_iter().map(|(r, _)| r).collect();
    Ok(report)
}

fn count_rules(rules: &str) -> usize {
    rules.lines().filter(|l| l.starts_with("-A ")).count()
}

fn case_line(r: &CaseResult, n: usize) -> String {
    let what = match (&r.first, &r.error) {
        (_, Some(e)) => format!("not run: {e}"),
        (Some(d), _) => format!(
            "DIVERGES at packet {} in {}: kernel `{}`, ctsim `{}`",
            d.packet, d.column, d.kernel, d.ctsim
        ),
        (None, None) => "agree".to_string(),
    };
    format!(
        "case {} (seed {}{}): {n} packets, {}",
        r.index,
        r.seed,
        if r.realtime { ", realtime" } else { "" },
        what
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diff(column: &'static str, k: &str, s: &str) -> Diff {
        Diff {
            packet: 1,
            column,
            kernel: k.into(),
            ctsim: s.into(),
        }
    }

    #[test]
    fn kinds_blur_rule_positions_only() {
        assert_eq!(
            kind_key(&diff("rule", "filter:INPUT:3", "filter:INPUT:policy")),
            kind_key(&diff("rule", "filter:INPUT:1", "filter:INPUT:policy"))
        );
        assert_ne!(
            kind_key(&diff("rule", "filter:INPUT:3", "")),
            kind_key(&diff("rule", "filter:FORWARD:3", ""))
        );
        assert_ne!(
            kind_key(&diff("ctstate", "NEW", "INVALID")),
            kind_key(&diff("ctstate", "ESTABLISHED", "INVALID"))
        );
    }

    #[test]
    fn summary_names_column_and_both_values() {
        let mut rep = FuzzReport::default();
        rep.cases.push(CaseResult {
            index: 4,
            seed: 99,
            realtime: true,
            packets: 10,
            agreeing: 9,
            first: Some(diff("tcp_state", "SYN_SENT", "NONE")),
            diverging_cells: 2,
            diffs: vec![
                diff("tcp_state", "SYN_SENT", "NONE"),
                diff("rule", "filter:INPUT:2", "filter:INPUT:policy"),
            ],
            error: None,
        });
        rep.cases.push(CaseResult {
            index: 5,
            seed: 100,
            realtime: false,
            packets: 5,
            agreeing: 5,
            first: None,
            diverging_cells: 0,
            diffs: Vec::new(),
            error: None,
        });
        assert!(!rep.clean());
        let kinds = rep.kinds();
        assert_eq!(kinds.len(), 2);
        assert_eq!(kinds[1].key.1, "filter:INPUT:N");
        assert_eq!(
            (kinds[0].cells, kinds[0].cases, kinds[0].example),
            (1, 1, (4, 1))
        );
        let s = rep.render();
        assert!(
            s.starts_with("fuzz-kernel: 2 cases (1 realtime), 15 packets compared, 14 agree, 1 diverge, 1 cases diverge"),
            "{s}"
        );
        assert!(s.contains("case 4 (seed 99, realtime): first divergence at packet 1 in tcp_state: kernel `SYN_SENT`, ctsim `NONE`"), "{s}");
        rep.cases.remove(0);
        assert!(rep.clean());
    }
}
