//! A replay gives the same rows and conntrack trace whether the capture is
//! mapped (workers read frames in place) or streamed (`--no-mmap`: frames
//! copied into the batches), for one worker and for several; and a capture
//! piped into `ctsim replay /dev/stdin` gives the rows the file gives.

use ctsim::conntrack::Event;
use ctsim::netfilter::Topology;
use ctsim::pipeline::{self, EngineConfig, InputOptions, ReplayOptions, Sink};
use ctsim::report::trace::TraceWriter;
use ctsim::report::{Row, RowWriter};
use ctsim::rules::{self, Ruleset};
use ctsim::synth::bench::{BenchConfig, generate};
use ctsim::wire::Family;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

mod common;
use common::buffer::Shared;

struct Collect {
    rows: RowWriter<Shared>,
    trace: TraceWriter<Shared>,
}

impl Sink for Collect {
    fn row(&mut self, row: &Row) -> io::Result<()> {
        self.rows.write(row)
    }
    fn events(&mut self, events: &mut dyn Iterator<Item = Event>) -> io::Result<()> {
        for e in events {
            self.trace.write(&e)?;
        }
        Ok(())
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn ruleset(path: &Path) -> Ruleset {
    let text = std::fs::read_to_string(path).unwrap();
    let file = rules::parse_rules(&text, path, Family::Ipv4).unwrap();
    Ruleset::compile(&file).unwrap()
}

fn config() -> EngineConfig {
    let locals = ["10.0.1.1", "10.0.2.1"].map(String::from);
    let ifaces = ["lan0=10.0.1.0/24", "wan0=10.0.2.0/24"].map(String::from);
    EngineConfig {
        topology: Topology::new(&locals, &ifaces).unwrap(),
        trace: true,
        ..EngineConfig::default()
    }
}

/// Rows, trace, and the outcome; `progress` counts the reports.
fn run(capture: &Path, rules: &Ruleset, jobs: usize, no_mmap: bool) -> (Vec<u8>, Vec<u8>, String) {
    let (rows, trace) = (Shared::default(), Shared::default());
    let mut sink = Collect {
        rows: RowWriter::new(rows.clone()).unwrap(),
        trace: TraceWriter::new(trace.clone()).unwrap(),
    };
    let last = AtomicU64::new(0);
    let progress = |frames: u64, bytes: u64| {
        // Reports only go forward, and bytes stay inside the capture.
        assert!(frames >= last.swap(frames, Ordering::Relaxed));
        assert!(bytes <= std::fs::metadata(capture).unwrap().len());
    };
    let input = InputOptions {
        no_mmap,
        progress: Some(&progress),
    };
    let res = pipeline::replay_input(
        capture,
        rules,
        &config(),
        &ReplayOptions { jobs },
        &input,
        &mut sink,
    );
    sink.rows.flush().unwrap();
    sink.trace.flush().unwrap();
    let outcome = match res {
        Ok(s) => format!("{} frames, {} entries", s.frames, s.conntrack_entries),
        Err(e) => e.to_string(),
    };
    drop(sink);
    (rows.0.take(), trace.0.take(), outcome)
}

fn assert_same_every_way(capture: &Path, rules: &Ruleset) {
    let base = run(capture, rules, 1, false);
    // 4 workers read a mapped pcap file in turns; fewer, each for itself.
    for (jobs, no_mmap) in [
        (1, true),
        (2, false),
        (2, true),
        (3, true),
        (4, false),
        (5, true),
    ] {
        let other = run(capture, rules, jobs, no_mmap);
        let what = format!("{} --jobs {jobs} no_mmap={no_mmap}", capture.display());
        assert!(base.0 == other.0, "rows differ: {what}");
        assert!(base.1 == other.1, "traces differ: {what}");
        assert_eq!(base.2, other.2, "{what}");
    }
}

#[test]
fn mapped_and_streamed_replays_agree() {
    let rules = ruleset(&root().join("benches/stateful-20.rules"));
    let dir = tempfile::tempdir().unwrap();
    let mixed = dir.path().join("mixed.pcap");
    let cfg = BenchConfig {
        packets: 30_000,
        flows: 300,
        seed: 11,
        ..BenchConfig::default()
    };
    generate(
        &cfg,
        io::BufWriter::new(std::fs::File::create(&mixed).unwrap()),
    )
    .unwrap();
    let mut captures = vec![mixed];
    for d in ["captures", "captures/crafted", "tests/data/malformed"] {
        let mut v: Vec<PathBuf> = std::fs::read_dir(root().join(d))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng"))
            .collect();
        v.sort();
        captures.extend(v);
    }
    for c in &captures {
        assert_same_every_way(c, &rules);
    }
}

/// `cat FILE | ctsim replay /dev/stdin`: the same rows as from the file,
/// on one worker and on three (a pipe is read once, by a reader thread that
/// hands frames to the workers; a file is read by every worker itself).
#[test]
fn a_capture_piped_into_stdin_replays_like_the_file() {
    let mut files = vec![
        root().join("captures/ftp-active.pcap"),
        root().join("captures/crafted/truncated_record.pcap"),
    ];
    let shared = root().join("../shared/captures/tcp/sanders_tcp-handshake.pcapng");
    if shared.is_file() {
        files.push(shared);
    } else {
        eprintln!("SKIPPED the pcapng case: {} not found", shared.display());
    }
    for (f, jobs) in files
        .iter()
        .flat_map(|f| ["1", "3"].map(|j| (f.clone(), j)))
    {
        let cmd = |capture: &str, stdin: Stdio| {
            Command::new(env!("CARGO_BIN_EXE_ctsim"))
                .current_dir(root())
                .args(["replay", capture, "--rules", "rulesets/ftp.rules", "-q"])
                .args(["--jobs", jobs])
                .stdin(stdin)
                .output()
                .unwrap()
        };
        let from_file = cmd(f.to_str().unwrap(), Stdio::null());
        let mut child = Command::new(env!("CARGO_BIN_EXE_ctsim"))
            .current_dir(root())
            .args([
                "replay",
                "/dev/stdin",
                "--rules",
                "rulesets/ftp.rules",
                "-q",
                "--jobs",
                jobs,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let bytes = std::fs::read(&f).unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let feeder = std::thread::spawn(move || {
            let _ = stdin.write_all(&bytes);
        });
        let from_pipe = child.wait_with_output().unwrap();
        feeder.join().unwrap();
        assert!(
            from_file.stdout.len() > 200,
            "{}: {}",
            f.display(),
            String::from_utf8_lossy(&from_file.stderr)
        );
        assert!(
            from_file.stdout == from_pipe.stdout,
            "{} --jobs {jobs}: rows differ; piped stderr: {}",
            f.display(),
            String::from_utf8_lossy(&from_pipe.stderr)
        );
        assert_eq!(
            from_file.status.code(),
            from_pipe.status.code(),
            "{}",
            f.display()
        );
    }
}
