//! `--jobs 1`, `--jobs 2` and `--jobs 4` give byte-identical rows and
//! conntrack traces: over every capture in `captures/` and
//! `captures/crafted/` with every loadable ruleset in `rulesets/`, and over a
//! generated mixed capture with hundreds of concurrent flows, where every
//! shard really gets traffic.

use ctsim::capture::CaptureReader;
use ctsim::conntrack::Event;
use ctsim::netfilter::Topology;
use ctsim::pipeline::{self, EngineConfig, ReplayOptions, ReplayStats, Sink};
use ctsim::report::trace::TraceWriter;
use ctsim::report::{Row, RowWriter};
use ctsim::rules::{self, Ruleset};
use ctsim::synth::bench::{BenchConfig, generate};
use ctsim::wire::Family;
use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};

mod common;
use common::buffer::Shared;

struct Collect {
    rows: RowWriter<Shared>,
    trace: TraceWriter<Shared>,
    n: u64,
}

impl Sink for Collect {
    fn row(&mut self, row: &Row) -> io::Result<()> {
        self.n += 1;
        assert_eq!(row.packet, self.n, "rows out of capture order");
        self.rows.write(row)
    }
    fn events(&mut self, events: &mut dyn Iterator<Item = Event>) -> io::Result<()> {
        for e in events {
            self.trace.write(&e)?;
        }
        Ok(())
    }
}

struct Output {
    rows: Vec<u8>,
    trace: Vec<u8>,
    stats: Result<ReplayStats, String>,
}

fn run(capture: &Path, rules: &Ruleset, cfg: &EngineConfig, jobs: usize) -> Output {
    let (rows, trace) = (Shared::default(), Shared::default());
    let mut sink = Collect {
        rows: RowWriter::new(rows.clone()).unwrap(),
        trace: TraceWriter::new(trace.clone()).unwrap(),
        n: 0,
    };
    let stats = pipeline::replay_with(capture, rules, cfg, &ReplayOptions { jobs }, &mut sink)
        .map_err(|e| e.to_string());
    sink.rows.flush().unwrap();
    sink.trace.flush().unwrap();
    drop(sink);
    Output {
        rows: rows.0.take(),
        trace: trace.0.take(),
        stats,
    }
}

fn ruleset(path: &Path) -> Option<Ruleset> {
    let text = std::fs::read_to_string(path).ok()?;
    let fam = if path.extension().is_some_and(|e| e == "v6") {
        Family::Ipv6
    } else {
        Family::Ipv4
    };
    let file = rules::parse_rules(&text, path, fam).ok()?;
    Ruleset::compile(&file).ok()
}

fn files(dir: &str, ext: &[&str]) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| ext.contains(&e))
        })
        .collect();
    v.sort();
    v
}

fn config(trace: bool) -> EngineConfig {
    let locals = ["10.0.1.1", "10.0.2.1", "fd00:1::1", "fd00:2::1"].map(String::from);
    let ifaces = [
        "lan0=10.0.1.0/24",
        "wan0=10.0.2.0/24",
        "lan0=fd00:1::/64",
        "wan0=fd00:2::/64",
    ]
    .map(String::from);
    EngineConfig {
        topology: Topology::new(&locals, &ifaces).unwrap(),
        trace,
        ..EngineConfig::default()
    }
}

fn assert_identical(capture: &Path, rules: &Ruleset, cfg: &EngineConfig) {
    let one = run(capture, rules, cfg, 1);
    for jobs in [2, 4] {
        let n = run(capture, rules, cfg, jobs);
        let what = format!("{} with --jobs {jobs}", capture.display());
        assert!(one.rows == n.rows, "rows differ: {what}");
        assert!(one.trace == n.trace, "traces differ: {what}");
        match (&one.stats, &n.stats) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a.frames, b.frames, "{what}");
                assert_eq!(a.conntrack_entries, b.conntrack_entries, "{what}");
                assert_eq!(a.bad_l4_checksums, b.bad_l4_checksums, "{what}");
                assert_eq!(a.checked_l4_checksums, b.checked_l4_checksums, "{what}");
            }
            (Err(a), Err(b)) => assert_eq!(a, b, "{what}"),
            (a, b) => panic!("{what}: {a:?} vs {b:?}"),
        }
    }
}

#[test]
fn repo_captures_identical_for_every_job_count() {
    let rulesets: Vec<(PathBuf, Ruleset)> = files("rulesets", &["rules", "v6"])
        .into_iter()
        .filter_map(|p| ruleset(&p).map(|r| (p, r)))
        .collect();
    assert!(rulesets.len() >= 6, "rulesets missing");
    let mut captures = files("captures", &["pcap", "pcapng"]);
    captures.extend(files("captures/crafted", &["pcap", "pcapng"]));
    assert!(captures.len() >= 40, "captures missing");
    let cfg = config(true);
    for c in &captures {
        for (_, rs) in &rulesets {
            assert_identical(c, rs, &cfg);
        }
    }
}

#[test]
fn generated_mixed_capture_identical_for_every_job_count() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mixed.pcap");
    let cfg = BenchConfig {
        packets: 40_000,
        flows: 400,
        seed: 7,
        ..BenchConfig::default()
    };
    let f = io::BufWriter::new(std::fs::File::create(&path).unwrap());
    generate(&cfg, f).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rs = ruleset(&root.join("benches/stateful-20.rules")).unwrap();
    assert!(!rs.needs_global_state());
    let engine = config(true);
    assert_identical(&path, &rs, &engine);
    let out = run(&path, &rs, &engine, 4);
    let stats = out.stats.unwrap();
    assert_eq!(stats.shards, 4);
    assert_eq!(stats.frames, 40_000);
    assert!(!out.trace.is_empty());
}

#[test]
fn global_rule_state_runs_on_one_worker() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("limit.rules");
    std::fs::write(
        &rules,
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         -A FORWARD -p icmp -m limit --limit 1/second --limit-burst 2 -j ACCEPT\n\
         -A FORWARD -p icmp -j DROP\nCOMMIT\n",
    )
    .unwrap();
    let rs = ruleset(&rules).unwrap();
    let capture = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/ping.pcap");
    let out = run(&capture, &rs, &config(false), 4);
    let stats = out.stats.unwrap();
    assert_eq!(stats.shards, 1);
    assert!(stats.single_shard.unwrap().contains("limit"));
    assert_identical(&capture, &rs, &config(false));
}

/// An ICMP error lands in the shard of the connection it quotes.
#[test]
fn icmp_errors_share_the_quoted_connections_key() {
    use ctsim::pipeline::shard::frame_key;
    use ctsim::wire::{self, L4};
    for name in [
        "captures/udp-unreachable.pcap",
        "captures/traceroute.pcap",
        "captures/crafted/icmp_port_unreachable.pcap",
        "captures/crafted/icmpv6_errors.pcap",
    ] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
        let mut r = CaptureReader::open(&path).unwrap();
        let mut flow_keys = HashSet::new();
        let mut errors = Vec::new();
        while let Some(f) = r.next_frame().unwrap() {
            let Ok(p) = wire::decode(&f) else { continue };
            match p.l4 {
                L4::Icmp(i) | L4::Icmpv6(i) if p.inner().is_some_and(|x| x.is_ok()) => {
                    let _ = i;
                    errors.push(frame_key(&f));
                }
                L4::Tcp(_) | L4::Udp(_) => {
                    flow_keys.insert(frame_key(&f));
                }
                _ => {}
            }
        }
        assert!(!errors.is_empty(), "{name}: no ICMP errors");
        let quoted = errors.iter().filter(|k| flow_keys.contains(k)).count();
        assert!(quoted > 0, "{name}: no error keyed with its connection");
    }
}
