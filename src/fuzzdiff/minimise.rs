//! Shrinking a diverging case to a small reproducer, and writing it as a
//! golden case directory.
//!
//! Shrinking is delta debugging over the capture's packets (drop chunks,
//! halving the chunk size when nothing can be dropped) and then over the
//! ruleset's `-A` lines one at a time, re-running both sides for every
//! candidate and keeping it when the first divergence is still of the same
//! kind ([`Diff::same_kind`]). Kept packets keep their timestamps, so a
//! realtime case's pairwise distance from the timeouts (see
//! [`super::case`]) still holds. It stops at a wall-clock deadline with the
//! smallest case found so far.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::FuzzError;
use super::case::Case;
use super::compare::{Diff, Leniency, Outcome, rules_file_name, run_case, write_inputs};
use crate::oracle::OracleError;

/// The smallest case found and what its run gave.
#[derive(Debug, Clone)]
pub struct Shrunk {
    pub case: Case,
    pub outcome: Outcome,
    /// Both-sides runs spent.
    pub runs: usize,
}

/// Errors that end the whole fuzz run rather than one candidate.
pub(crate) fn is_fatal(e: &FuzzError) -> bool {
    matches!(
        e,
        FuzzError::Oracle(
            OracleError::NotRoot
                | OracleError::NoNetns(_)
                | OracleError::ToolMissing(_)
                | OracleError::Interrupted
        )
    )
}

struct Shrinker<'a> {
    target: &'a Diff,
    lenient: Leniency,
    deadline: Instant,
    runs: usize,
    best: Option<Outcome>,
}

impl Shrinker<'_> {
    /// Whether `cand` still diverges first the way the target does.
    fn holds(&mut self, cand: &Case) -> Result<bool, FuzzError> {
        self.runs += 1;
        match run_case(cand, self.lenient) {
            Ok(o) if o.first().is_some_and(|d| d.same_kind(self.target)) => {
                self.best = Some(o);
                Ok(true)
            }
            Ok(_) => Ok(false),
            Err(e) if is_fatal(&e) => Err(e),
            // A candidate the oracle or ctsim cannot run is not a reproducer.
            Err(_) => Ok(false),
        }
    }

    fn out_of_time(&self) -> bool {
        Instant::now() >= self.deadline
    }
}

/// Shrinks `case`, whose run `outcome` diverged first with `target`.
pub fn shrink(
    case: &Case,
    outcome: &Outcome,
    target: &Diff,
    deadline: Instant,
    lenient: Leniency,
) -> Result<Shrunk, FuzzError> {
    let mut s = Shrinker {
        target,
        lenient,
        deadline,
        runs: 0,
        best: None,
    };
    let mut cur = case.clone();
    let mut best_outcome = outcome.clone();

    // Packets after the diverging one cannot matter to it.
    let upto = (target.packet as usize).min(cur.records.len());
    if upto < cur.records.len() {
        let mut cand = cur.clone();
        cand.records.truncate(upto);
        if s.holds(&cand)? {
            cur = cand;
        }
    }
    shrink_packets(&mut s, &mut cur)?;
    shrink_rules(&mut s, &mut cur)?;
    shrink_packets(&mut s, &mut cur)?;
    if let Some(o) = s.best.take() {
        best_outcome = o;
    }
    // `best` is the last candidate that held, which is `cur`.
    Ok(Shrunk {
        case: cur,
        outcome: best_outcome,
        runs: s.runs,
    })
}

fn shrink_packets(s: &mut Shrinker<'_>, cur: &mut Case) -> Result<(), FuzzError> {
    let mut n = 2usize;
    while cur.records.len() >= 2 && !s.out_of_time() {
        let len = cur.records.len();
        let chunk = len.div_ceil(n);
        let mut reduced = false;
        let mut start = 0;
        while start < len && !s.out_of_time() {
            let end = (start + chunk).min(len);
            let mut cand = cur.clone();
            cand.records.drain(start..end);
            if !cand.records.is_empty() && s.holds(&cand)? {
                *cur = cand;
                reduced = true;
                break;
            }
            start = end;
        }
        if reduced {
            n = n.saturating_sub(1).max(2);
        } else if chunk <= 1 {
            break;
        } else {
            n = (n * 2).min(len);
        }
    }
    Ok(())
}

fn shrink_rules(s: &mut Shrinker<'_>, cur: &mut Case) -> Result<(), FuzzError> {
    let mut i = cur.rules.lines().count();
    while i > 0 && !s.out_of_time() {
        i -= 1;
        let lines: Vec<&str> = cur.rules.lines().collect();
        if !lines.get(i).is_some_and(|l| l.starts_with("-A ")) {
            continue;
        }
        let mut text = String::with_capacity(cur.rules.len());
        for (j, l) in lines.iter().enumerate() {
            if j != i {
                text.push_str(l);
                text.push('\n');
            }
        }
        let mut cand = cur.clone();
        cand.rules = text;
        if s.holds(&cand)? {
            *cur = cand;
        }
    }
    Ok(())
}

/// Where the reproducer of `case` goes under `root`.
pub fn golden_dir(root: &Path, run_seed: u64, case: &Case) -> PathBuf {
    root.join(format!("fuzz-{run_seed}-{}", case.index))
}

/// What the `PROVENANCE` file says besides the files themselves.
#[derive(Debug, Clone)]
pub struct Provenance<'a> {
    /// The fuzz command line that found the divergence.
    pub command: &'a str,
    pub run_seed: u64,
    pub original_packets: usize,
    pub original_rules: usize,
    pub diff: &'a Diff,
    pub runs: usize,
}

/// Writes the golden case directory: `capture.pcap`, `rules` (`rules6` for
/// IPv6), `options`, `kernel.csv` and `PROVENANCE`.
pub fn write_golden(
    dir: &Path,
    case: &Case,
    outcome: &Outcome,
    p: &Provenance<'_>,
) -> Result<(), FuzzError> {
    std::fs::create_dir_all(dir).map_err(|e| FuzzError::io(dir, e))?;
    // A previous reproducer of another family may have left the other
    // rules file behind.
    for stale in ["rules", "rules6"] {
        let _ = std::fs::remove_file(dir.join(stale));
    }
    write_inputs(case, dir)?;
    let opts = case.setup.option_lines();
    let mut text = opts.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    let path = dir.join("options");
    std::fs::write(&path, text).map_err(|e| FuzzError::io(&path, e))?;
    let path = dir.join("kernel.csv");
    std::fs::write(&path, outcome.kernel_csv()?).map_err(|e| FuzzError::io(&path, e))?;
    let path = dir.join("PROVENANCE");
    std::fs::write(&path, provenance_text(case, p)).map_err(|e| FuzzError::io(&path, e))?;
    Ok(())
}

fn provenance_text(case: &Case, p: &Provenance<'_>) -> String {
    let rules_flag = match rules_file_name(case.family) {
        "rules" => "--rules rules",
        _ => "--rules6 rules6",
    };
    let opts = case.setup.option_lines().join(" ");
    let n_rules = case.rules.lines().filter(|l| l.starts_with("-A ")).count();
    let mut o = String::new();
    let _ = writeln!(o, "command: {}", p.command);
    let _ = writeln!(
        o,
        "case: {} of run seed {} (case seed {}); minimised from {} packets and {} rules to {} and {} in {} runs",
        case.index,
        p.run_seed,
        case.seed,
        p.original_packets,
        p.original_rules,
        case.records.len(),
        n_rules,
        p.runs
    );
    let _ = writeln!(
        o,
        "kernel.csv: ctsim kernel capture.pcap {rules_flag} {opts} -o kernel.csv"
    );
    let _ = writeln!(o, "kernel: {}", kernel_release());
    let _ = writeln!(o, "date: {}", utc_now());
    let _ = writeln!(
        o,
        "divergence: packet {} column {}: kernel `{}`, ctsim `{}`",
        p.diff.packet, p.diff.column, p.diff.kernel, p.diff.ctsim
    );
    o
}

/// `uname -r`.
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string())
}

/// The current time as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    utc_text(secs)
}

/// Formats seconds since the Unix epoch as a UTC date and time.
fn utc_text(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Days to a proleptic Gregorian date, counting from 0000-03-01 so that
    // the leap day ends each 4/100/400-year cycle.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc_text(0), "1970-01-01 00:00:00 UTC");
        // The capture epoch of the synthetic cases.
        assert_eq!(utc_text(1_704_067_200), "2024-01-01 00:00:00 UTC");
        // A leap day, and the day after it.
        assert_eq!(utc_text(951_782_400 + 3_723), "2000-02-29 01:02:03 UTC");
        assert_eq!(utc_text(951_868_800), "2000-03-01 00:00:00 UTC");
        assert_eq!(utc_text(4_107_542_399), "2100-02-28 23:59:59 UTC");
    }

    #[test]
    fn fatal_errors_end_the_run() {
        assert!(is_fatal(&FuzzError::Oracle(OracleError::NotRoot)));
        assert!(is_fatal(&FuzzError::Oracle(OracleError::Interrupted)));
        assert!(!is_fatal(&FuzzError::Rules("x".into())));
    }
}
