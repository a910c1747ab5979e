//! A short fixed-seed differential fuzz: random captures and rulesets run
//! through the real kernel and through ctsim must agree on every packet.
//!
//! Needs root and network namespaces (the kernel oracle); without them the
//! test prints a loud SKIPPED line and passes. Longer runs:
//! `ctsim fuzz-kernel --seed S --cases N --keep-going` (see the README).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ctsim::fuzzdiff::{self, FuzzOptions};

fn oracle_available() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("not root".into());
    }
    if !Path::new("/proc/self/ns/net").exists() {
        return Err("no network namespaces".into());
    }
    for tool in ["ip", "nft", "iptables-restore"] {
        let found = Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success() || !o.stderr.is_empty());
        if !found {
            return Err(format!("`{tool}` not found"));
        }
    }
    Ok(())
}

#[test]
fn fixed_seed_fuzz_agrees_with_the_kernel() {
    if let Err(why) = oracle_available() {
        eprintln!("SKIPPED fuzz_kernel: the kernel oracle cannot run here: {why}");
        return;
    }
    let out = tempfile::tempdir().expect("temp dir");
    let opts = FuzzOptions {
        seed: 20_250_101,
        cases: 5,
        max_packets: 30,
        max_realtime_packets: 8,
        out: out.path().to_path_buf(),
        keep_going: true,
        // A failure names the case; `ctsim fuzz-kernel --seed 20250101
        // --first-case K --cases 1` shrinks it into a reproducer.
        minimise: false,
        minimise_time: Duration::from_secs(0),
        jobs: 2,
        command: "cargo test --test fuzz_kernel".into(),
        ..FuzzOptions::default()
    };
    let report = match fuzzdiff::run(&opts, &|line| eprintln!("{line}")) {
        Ok(r) => r,
        Err(fuzzdiff::FuzzError::Oracle(e)) if e.to_string().contains("namespaces") => {
            eprintln!("SKIPPED fuzz_kernel: {e}");
            return;
        }
        Err(e) => panic!("fuzz run failed: {e}"),
    };
    eprint!("{}", report.render());
    assert_eq!(report.cases.len(), 5);
    assert!(report.packets() > 10, "{}", report.render());
    assert!(
        report.clean(),
        "ctsim diverges from the kernel:\n{}",
        report.render()
    );
}
