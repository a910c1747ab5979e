//! The golden suite: ctsim's per-packet answers against the real kernel's.
//!
//! Every `tests/golden/<case>/` holds `args` (a replay's arguments, paths
//! relative to the repository root), `kernel.csv` (what `ctsim kernel`
//! recorded on a real Linux kernel, see `PROVENANCE`) and optionally
//! `kernel-args` (options only the oracle takes). This test runs
//! `ctsim replay` with the same arguments and requires the columns that
//! describe netfilter's behaviour to be identical, packet by packet. A
//! mismatch fails with a unified diff (the `similar` engine insta uses).
//! Regenerate goldens with `scripts/golden.sh regen`.

use std::path::PathBuf;
use std::process::Command;

/// The behaviour columns compared; `time`, header facts and notes are not.
const COLUMNS: &[&str] = &[
    "chains",
    "ctstate",
    "ctdir",
    "ctstatus",
    "tcp_state",
    "verdict",
    "rule",
    "reason",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `packet: col=value …` lines of the compared columns.
pub fn project(csv_text: &str) -> String {
    let mut rd = csv::Reader::from_reader(csv_text.as_bytes());
    let headers = rd.headers().expect("csv header").clone();
    let idx: Vec<usize> = COLUMNS
        .iter()
        .map(|c| {
            headers
                .iter()
                .position(|h| h == *c)
                .unwrap_or_else(|| panic!("column {c} missing"))
        })
        .collect();
    let mut out = String::new();
    for rec in rd.records() {
        let rec = rec.expect("csv record");
        out.push_str(&rec[0]);
        out.push(':');
        for (c, &i) in COLUMNS.iter().zip(&idx) {
            out.push(' ');
            out.push_str(c);
            out.push('=');
            out.push_str(&rec[i]);
        }
        out.push('\n');
    }
    out
}

fn cases() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join("tests/golden"))
        .expect("tests/golden")
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("args").is_file())
        .collect();
    v.sort();
    v
}

fn replay(args: &str, jobs: usize) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ctsim"))
        .current_dir(root())
        .arg("replay")
        .args(args.split_whitespace())
        .args(["--quiet", "--jobs", &jobs.to_string()])
        .output()
        .expect("run ctsim");
    assert!(
        out.status.success(),
        "ctsim replay {args} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 csv")
}

fn uses_shared(args: &str) -> bool {
    args.split_whitespace().any(|a| a.starts_with("../shared/"))
}

#[test]
fn ctsim_agrees_with_the_kernel_on_every_golden_packet() {
    let shared = root().join("../shared/captures").is_dir();
    if !shared {
        eprintln!(
            "\n!!! golden: ../shared/captures is absent: the corpus-* cases are SKIPPED !!!\n"
        );
    }
    let (mut n_cases, mut n_packets, mut skipped) = (0, 0, 0);
    let mut failures = Vec::new();
    for dir in cases() {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let args = std::fs::read_to_string(dir.join("args")).unwrap();
        if uses_shared(&args) && !shared {
            skipped += 1;
            continue;
        }
        let kernel = std::fs::read_to_string(dir.join("kernel.csv"))
            .unwrap_or_else(|e| panic!("{name}: kernel.csv: {e}"));
        let want = project(&kernel);
        n_cases += 1;
        n_packets += want.lines().count();
        // One worker, and shards that split the traffic: both must give
        // the kernel's answers (a shard key that separated an ICMP error
        // from the entry it names showed only with several workers).
        // 3 workers each read the capture; 4 read it in turns.
        for jobs in [1, 3, 4] {
            let got = project(&replay(args.trim(), jobs));
            if want != got {
                let diff = similar::TextDiff::from_lines(&want, &got);
                failures.push(format!(
                    "--- {name} (kernel)\n+++ {name} (ctsim --jobs {jobs})\n{}",
                    diff.unified_diff().context_radius(1)
                ));
            }
        }
    }
    eprintln!(
        "golden: {n_cases} cases, {n_packets} packets compared, {} cases differ, {skipped} skipped",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "ctsim differs from the kernel:\n{}",
        failures.join("\n")
    );
    assert!(n_cases > 0, "no golden case ran");
}

/// Cases cheap to re-run through the live kernel (no `--realtime`).
fn fresh_sample() -> Vec<PathBuf> {
    cases()
        .into_iter()
        .filter(|d| !d.join("kernel-args").exists())
        .filter(|d| {
            let n = d.file_name().unwrap().to_string_lossy().to_string();
            !n.starts_with("corpus-") || n.contains("ssh") || n.contains("ftp")
        })
        .collect()
}

fn can_use_kernel() -> Result<(), String> {
    // Root check via `id -u`, so the test needs no unsafe libc call.
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map_err(|e| e.to_string())?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Err("not root".into());
    }
    let ok = Command::new("ip")
        .args(["netns", "add", "ctsim-golden-probe"])
        .status()
        .map_err(|e| e.to_string())?;
    if !ok.success() {
        return Err("cannot create a network namespace".into());
    }
    let _ = Command::new("ip")
        .args(["netns", "del", "ctsim-golden-probe"])
        .status();
    Ok(())
}

/// The committed goldens still describe this machine's kernel: a sample is
/// re-recorded with the live kernel and must match.
#[test]
fn committed_goldens_match_the_live_kernel() {
    if let Err(why) = can_use_kernel() {
        eprintln!(
            "\n!!! golden freshness: SKIPPED, the real kernel is not usable here: {why} !!!\n"
        );
        return;
    }
    let shared = root().join("../shared/captures").is_dir();
    let mut stale = Vec::new();
    let mut n = 0;
    for dir in fresh_sample() {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let args = std::fs::read_to_string(dir.join("args")).unwrap();
        if uses_shared(&args) && !shared {
            continue;
        }
        let out = Command::new(env!("CARGO_BIN_EXE_ctsim"))
            .current_dir(root())
            .arg("kernel")
            .args(args.split_whitespace())
            .output()
            .expect("run ctsim kernel");
        assert!(
            out.status.success(),
            "{name}: ctsim kernel failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let live = project(&String::from_utf8_lossy(&out.stdout));
        let committed = project(&std::fs::read_to_string(dir.join("kernel.csv")).unwrap());
        n += 1;
        if live != committed {
            let diff = similar::TextDiff::from_lines(&committed, &live);
            stale.push(format!(
                "--- {name} (committed)\n+++ {name} (live kernel)\n{}",
                diff.unified_diff().context_radius(1)
            ));
        }
    }
    eprintln!(
        "golden freshness: {n} cases re-recorded with the live kernel, {} stale",
        stale.len()
    );
    assert!(
        stale.is_empty(),
        "stale goldens (run scripts/golden.sh regen):\n{}",
        stale.join("\n")
    );
}
