//! Runs one case through the kernel oracle and through ctsim with the same
//! capture, rules and options, and compares the rows column by column as CSV
//! text.
//!
//! Only the columns that say what netfilter did are compared ([`COMPARED`]);
//! the packet description columns are the same bytes on both sides by
//! construction, and `notes` is free text that differs by design (the oracle
//! notes suppressed local replies, ctsim notes fragments).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::FuzzError;
use super::case::Case;
use crate::conntrack::{Event, Sysctls};
use crate::netfilter::Topology;
use crate::oracle::{self, OracleConfig, row};
use crate::pipeline::{self, EngineConfig, Sink};
use crate::report::{Row, RowWriter};
use crate::rules::{self, Ruleset};
use crate::synth::pcap::TsPrecision;
use crate::synth::script::write_records;
use crate::wire::Family;

/// The compared columns, in CSV order.
pub const COMPARED: [&str; 8] = [
    "chains",
    "ctstate",
    "ctdir",
    "ctstatus",
    "tcp_state",
    "verdict",
    "rule",
    "reason",
];

/// Known, deliberate blind spots of a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Leniency {
    /// Skip `ctstatus` and `tcp_state` where both sides say INVALID: the
    /// oracle reports the entry on the packet's tuple (for an ICMP error, the
    /// quoted one) even when the packet was not attached to it, ctsim leaves
    /// them empty.
    pub invalid_entry: bool,
}

/// One cell where the two sides disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diff {
    /// 1-based packet number in the replayed capture.
    pub packet: u64,
    /// A name from [`COMPARED`], or `rows` when the row counts differ.
    pub column: &'static str,
    pub kernel: String,
    pub ctsim: String,
}

impl Diff {
    /// What identifies "the same divergence" while minimising: the column
    /// and both values, except for `rule`, whose positions shift as rules
    /// are removed.
    pub fn same_kind(&self, other: &Diff) -> bool {
        self.column == other.column
            && (self.column == "rule" || (self.kernel == other.kernel && self.ctsim == other.ctsim))
    }
}

/// Both sides' rows for one case, and where they differ.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// The kernel's rows as CSV fields ([`row::COLUMNS`] order).
    pub kernel: Vec<[String; 18]>,
    pub packets: usize,
    /// Packets whose compared columns all agree.
    pub agreeing: usize,
    pub diffs: Vec<Diff>,
}

impl Outcome {
    pub fn first(&self) -> Option<&Diff> {
        self.diffs.first()
    }

    /// The kernel's CSV, header included.
    pub fn kernel_csv(&self) -> Result<Vec<u8>, FuzzError> {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(row::COLUMNS).map_err(csv_err)?;
        for r in &self.kernel {
            w.write_record(r).map_err(csv_err)?;
        }
        w.into_inner()
            .map_err(|e| FuzzError::Csv(e.error().to_string()))
    }
}

fn csv_err(e: csv::Error) -> FuzzError {
    FuzzError::Csv(e.to_string())
}

/// A scratch directory, removed on drop.
pub(crate) struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new() -> Result<Scratch, FuzzError> {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ctsim-fuzz-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| FuzzError::io(&dir, e))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The name of the rules file of a case: `rules`, or `rules6` for IPv6 (the
/// oracle loads it with `ip6tables-restore`, as `--rules6` says).
pub fn rules_file_name(family: Family) -> &'static str {
    match family {
        Family::Ipv4 => "rules",
        Family::Ipv6 => "rules6",
    }
}

/// Writes `capture.pcap` and the rules file of `case` into `dir`; returns
/// their paths.
pub fn write_inputs(case: &Case, dir: &Path) -> Result<(PathBuf, PathBuf), FuzzError> {
    let pcap = dir.join("capture.pcap");
    let file = std::fs::File::create(&pcap).map_err(|e| FuzzError::io(&pcap, e))?;
    write_records(
        std::io::BufWriter::new(file),
        case.link,
        TsPrecision::Nano,
        &case.records,
    )
    .map_err(|e| FuzzError::Capture(e.to_string()))?;
    let rules = dir.join(rules_file_name(case.family));
    std::fs::write(&rules, &case.rules).map_err(|e| FuzzError::io(&rules, e))?;
    Ok((pcap, rules))
}

/// Runs `case` through both sides and compares.
pub fn run_case(case: &Case, lenient: Leniency) -> Result<Outcome, FuzzError> {
    let scratch = Scratch::new()?;
    let (pcap, rules) = write_inputs(case, &scratch.0)?;
    let sim = simulate(case, &pcap, &rules)?;
    let kernel = kernel_rows(case, &pcap, &rules)?;
    Ok(compare(kernel, &sim, lenient))
}

/// The kernel's rows for the case.
fn kernel_rows(case: &Case, pcap: &Path, rules: &Path) -> Result<Vec<[String; 18]>, FuzzError> {
    let mut cfg = OracleConfig::new(pcap);
    match case.family {
        Family::Ipv4 => cfg.rules = Some(rules.to_path_buf()),
        Family::Ipv6 => cfg.rules6 = Some(rules.to_path_buf()),
    }
    for i in &case.setup.ifaces {
        cfg.add_iface(i)?;
    }
    cfg.locals = case.setup.locals.clone();
    cfg.sysctls = case.setup.sysctls.clone();
    cfg.realtime = case.setup.realtime;
    cfg.trace = true;
    Ok(oracle::run(&cfg)?.iter().map(|r| r.record()).collect())
}

struct CsvSink<'a> {
    rows: RowWriter<&'a mut Vec<u8>>,
}

impl Sink for CsvSink<'_> {
    fn row(&mut self, row: &Row) -> std::io::Result<()> {
        self.rows.write(row)
    }
    fn events(&mut self, events: &mut dyn Iterator<Item = Event>) -> std::io::Result<()> {
        events.for_each(drop);
        Ok(())
    }
}

/// ctsim's rows for the case, as CSV records (header first), wired the way
/// `ctsim replay` wires them.
fn simulate(case: &Case, pcap: &Path, rules: &Path) -> Result<Vec<csv::StringRecord>, FuzzError> {
    let file = rules::parse_rules(&case.rules, rules, case.family)
        .map_err(|e| FuzzError::Rules(e.to_string()))?;
    let rs = Ruleset::compile(&file).map_err(|e| FuzzError::Rules(e.to_string()))?;
    let mut sysctls = Sysctls::default();
    for s in &case.setup.sysctls {
        sysctls
            .apply(s)
            .map_err(|e| FuzzError::Setup(format!("--sysctl {s}: {e}")))?;
    }
    let locals: Vec<String> = case.setup.locals.iter().map(|a| a.to_string()).collect();
    let topology =
        Topology::new(&locals, &case.setup.ifaces).map_err(|e| FuzzError::Setup(e.to_string()))?;
    let cfg = EngineConfig {
        sysctls,
        topology,
        trace: false,
        auto_helpers: false,
    };
    let mut bytes = Vec::new();
    {
        let mut sink = CsvSink {
            rows: RowWriter::new(&mut bytes).map_err(|e| FuzzError::io(pcap, e))?,
        };
        pipeline::replay(pcap, &rs, &cfg, &mut sink)
            .map_err(|e| FuzzError::Replay(e.to_string()))?;
        sink.rows.flush().map_err(|e| FuzzError::io(pcap, e))?;
    }
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes.as_slice());
    rdr.records()
        .collect::<Result<Vec<_>, _>>()
        .map_err(csv_err)
}

/// Compares the kernel's records with ctsim's CSV (header first).
fn compare(kernel: Vec<[String; 18]>, sim: &[csv::StringRecord], lenient: Leniency) -> Outcome {
    let mut out = Outcome {
        packets: kernel.len(),
        ..Outcome::default()
    };
    let header = sim.first();
    let col = |name: &str| -> (usize, Option<usize>) {
        let k = row::COLUMNS.iter().position(|c| *c == name).unwrap_or(0);
        let s = header.and_then(|h| h.iter().position(|c| c == name));
        (k, s)
    };
    let cols: Vec<(&'static str, usize, Option<usize>)> = COMPARED
        .iter()
        .map(|&n| {
            let (k, s) = col(n);
            (n, k, s)
        })
        .collect();
    let sim_rows = sim.get(1..).unwrap_or(&[]);
    for (i, k) in kernel.iter().enumerate() {
        let packet = i as u64 + 1;
        let Some(s) = sim_rows.get(i) else {
            out.diffs.push(Diff {
                packet,
                column: "rows",
                kernel: kernel.len().to_string(),
                ctsim: sim_rows.len().to_string(),
            });
            break;
        };
        let mut agree = true;
        let (ks, ss) = (cols[1].1, cols[1].2);
        let both_invalid = k[ks] == "INVALID" && ss.and_then(|i| s.get(i)) == Some("INVALID");
        for &(name, ki, si) in &cols {
            if lenient.invalid_entry && both_invalid && matches!(name, "ctstatus" | "tcp_state") {
                continue;
            }
            let sv = si.and_then(|si| s.get(si)).unwrap_or("");
            if k[ki] != sv {
                agree = false;
                out.diffs.push(Diff {
                    packet,
                    column: name,
                    kernel: k[ki].clone(),
                    ctsim: sv.to_string(),
                });
            }
        }
        if agree {
            out.agreeing += 1;
        }
    }
    if sim_rows.len() > kernel.len() {
        out.diffs.push(Diff {
            packet: kernel.len() as u64 + 1,
            column: "rows",
            kernel: kernel.len().to_string(),
            ctsim: sim_rows.len().to_string(),
        });
    }
    out.kernel = kernel;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn krow(ctstate: &str, rule: &str) -> [String; 18] {
        let mut r: [String; 18] = Default::default();
        r[0] = "1".into();
        r[9] = "PREROUTING>FORWARD>POSTROUTING".into();
        r[10] = ctstate.into();
        r[14] = "ACCEPT".into();
        r[15] = rule.into();
        r
    }

    fn sim_csv(rows: &[(&str, &str)]) -> Vec<csv::StringRecord> {
        let mut v = vec![csv::StringRecord::from(row::COLUMNS.to_vec())];
        for (st, rule) in rows {
            let mut f = vec![""; 18];
            f[0] = "1";
            f[9] = "PREROUTING>FORWARD>POSTROUTING";
            f[10] = st;
            f[14] = "ACCEPT";
            f[15] = rule;
            v.push(csv::StringRecord::from(f));
        }
        v
    }

    #[test]
    fn agreeing_and_diverging_cells() {
        let k = vec![
            krow("NEW", "filter:FORWARD:policy"),
            krow("ESTABLISHED", "filter:FORWARD:2"),
        ];
        let s = sim_csv(&[
            ("NEW", "filter:FORWARD:policy"),
            ("INVALID", "filter:FORWARD:3"),
        ]);
        let o = compare(k, &s, Leniency::default());
        assert_eq!((o.packets, o.agreeing), (2, 1));
        assert_eq!(o.diffs.len(), 2);
        assert_eq!(
            o.diffs[0],
            Diff {
                packet: 2,
                column: "ctstate",
                kernel: "ESTABLISHED".into(),
                ctsim: "INVALID".into()
            }
        );
        assert_eq!(o.diffs[1].column, "rule");
        let mut moved = o.diffs[1].clone();
        moved.kernel = "filter:FORWARD:1".into();
        assert!(o.diffs[1].same_kind(&moved));
        let mut other = o.diffs[0].clone();
        other.ctsim = "NEW".into();
        assert!(!o.diffs[0].same_kind(&other));
    }

    #[test]
    fn lenient_invalid_entry_skips_only_entry_columns_of_invalid_packets() {
        let mut k = krow("INVALID", "filter:FORWARD:policy");
        k[12] = "CONFIRMED".into();
        k[13] = "SYN_SENT".into();
        let s = sim_csv(&[("INVALID", "filter:FORWARD:policy")]);
        let strict = compare(vec![k.clone()], &s, Leniency::default());
        let cols: Vec<_> = strict.diffs.iter().map(|d| d.column).collect();
        assert_eq!(cols, ["ctstatus", "tcp_state"]);
        let lenient = Leniency {
            invalid_entry: true,
        };
        let o = compare(vec![k.clone()], &s, lenient);
        assert!(o.diffs.is_empty() && o.agreeing == 1);
        // Not INVALID on ctsim's side: compared as usual.
        let s = sim_csv(&[("NEW", "filter:FORWARD:policy")]);
        let o = compare(vec![k], &s, lenient);
        assert_eq!(o.diffs.len(), 3);
    }

    #[test]
    fn missing_and_extra_rows_are_divergences() {
        let o = compare(vec![krow("NEW", "")], &sim_csv(&[]), Leniency::default());
        assert_eq!(o.diffs[0].column, "rows");
        assert_eq!(
            (o.diffs[0].kernel.as_str(), o.diffs[0].ctsim.as_str()),
            ("1", "0")
        );
        let o = compare(vec![], &sim_csv(&[("NEW", "")]), Leniency::default());
        assert_eq!(o.diffs[0].column, "rows");
        let o = compare(
            vec![krow("NEW", "")],
            &sim_csv(&[("NEW", "")]),
            Leniency::default(),
        );
        assert!(o.diffs.is_empty());
        let csv = String::from_utf8(o.kernel_csv().unwrap()).unwrap();
        assert!(csv.starts_with("packet,time,"));
        assert_eq!(csv.lines().count(), 2);
    }
}
