//! `ctsim` command line: wires the library's layers together, reports
//! errors with context, and sets the exit code (0 ok, 1 failure, 2 usage).

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use ctsim::conntrack::{Event, Sysctls};
use ctsim::netfilter::Topology;
use ctsim::pipeline::{self, EngineConfig, Sink};
use ctsim::report::summary::Summary;
use ctsim::report::trace::TraceWriter;
use ctsim::report::{Row, RowWriter};
use ctsim::rules::{self, Ruleset};
use ctsim::wire::Family;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "ctsim", version, about = "Replay packet captures through an exact model of Linux netfilter (conntrack + iptables)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Replay a capture through the simulated firewall; one CSV row per packet.
    Replay(ReplayArgs),
    /// Parse and check a rule file the way iptables-restore would, and list it.
    CheckRules {
        /// iptables-save output or a file of `iptables …` lines.
        file: PathBuf,
    },
}

/// Options shared by `replay` and `kernel`.
#[derive(Args, Clone)]
struct Common {
    /// The capture (pcap or pcapng).
    capture: PathBuf,
    /// IPv4 (and/or mixed) rules: iptables-save output or `iptables …` lines.
    #[arg(long)]
    rules: Option<PathBuf>,
    /// IPv6 rules in a file of their own (ip6tables-save or `ip6tables …` lines).
    #[arg(long)]
    rules6: Option<PathBuf>,
    /// One of the firewall's own addresses (repeatable).
    #[arg(long = "local", value_name = "IP")]
    locals: Vec<String>,
    /// Addresses behind interface NAME (repeatable; most specific prefix wins).
    #[arg(long = "iface", value_name = "NAME=CIDR")]
    ifaces: Vec<String>,
    /// Conntrack sysctl, e.g. nf_conntrack_tcp_loose=0 (repeatable).
    #[arg(long = "sysctl", value_name = "NAME=VALUE")]
    sysctls: Vec<String>,
    /// Per-packet CSV output (default: stdout).
    #[arg(long, short)]
    out: Option<PathBuf>,
}

#[derive(Args)]
struct ReplayArgs {
    #[command(flatten)]
    common: Common,
    /// Write the conntrack event trace (NEW/UPDATE/DESTROY, expectations) as CSV.
    #[arg(long)]
    trace: Option<PathBuf>,
    /// Attach the ftp/tftp helpers by port, as kernels before 4.7 did.
    #[arg(long)]
    auto_helpers: bool,
    /// Do not print the summary on stderr.
    #[arg(long, short)]
    quiet: bool,
}

fn load_rules(c: &Common) -> Result<(Ruleset, Vec<String>)> {
    let mut files = Vec::new();
    if let Some(p) = &c.rules {
        let text = std::fs::read_to_string(p).with_context(|| format!("reading rules {}", p.display()))?;
        files.push(rules::parse_rules(&text, p, Family::Ipv4)?);
    }
    if let Some(p) = &c.rules6 {
        let text = std::fs::read_to_string(p).with_context(|| format!("reading rules {}", p.display()))?;
        files.push(rules::parse_rules(&text, p, Family::Ipv6)?);
    }
    if files.is_empty() {
        bail!("no rules given: use --rules FILE and/or --rules6 FILE");
    }
    let notes = files.iter().flat_map(|f| f.notes.iter().map(|n| n.to_string())).collect();
    let rs = Ruleset::compile_all(&files)?;
    Ok((rs, notes))
}

fn engine_config(c: &Common) -> Result<EngineConfig> {
    let mut sysctls = Sysctls::default();
    for s in &c.sysctls {
        sysctls.apply(s)?;
    }
    let topology = Topology::new(&c.locals, &c.ifaces)?;
    Ok(EngineConfig { sysctls, topology, trace: false, auto_helpers: false })
}

struct CliSink<W: Write, T: Write> {
    rows: RowWriter<W>,
    trace: Option<TraceWriter<T>>,
    summary: Summary,
}

impl<W: Write, T: Write> Sink for CliSink<W, T> {
    fn row(&mut self, row: &Row) -> io::Result<()> {
        self.summary.add(row);
        self.rows.write(row)
    }
    fn events(&mut self, events: &mut dyn Iterator<Item = Event>) -> io::Result<()> {
        if let Some(t) = &mut self.trace {
            for e in events {
                t.write(&e)?;
            }
        } else {
            events.for_each(drop);
        }
        Ok(())
    }
}

fn open_out(p: &Option<PathBuf>) -> Result<Box<dyn Write>> {
    Ok(match p {
        Some(p) => Box::new(BufWriter::with_capacity(1 << 16, File::create(p).with_context(|| format!("creating {}", p.display()))?)),
        None => Box::new(BufWriter::with_capacity(1 << 16, io::stdout().lock())),
    })
}

fn replay(a: ReplayArgs) -> Result<()> {
    let (rules, notes) = load_rules(&a.common)?;
    for n in &notes {
        eprintln!("ctsim: note: {n}");
    }
    for w in rules.not_simulated() {
        eprintln!("ctsim: note: {w}");
    }
    let mut cfg = engine_config(&a.common)?;
    cfg.trace = a.trace.is_some();
    cfg.auto_helpers = a.auto_helpers;
    let trace = match &a.trace {
        Some(p) => Some(TraceWriter::new(BufWriter::new(File::create(p).with_context(|| format!("creating {}", p.display()))?))?),
        None => None,
    };
    let mut sink = CliSink { rows: RowWriter::new(open_out(&a.common.out)?)?, trace, summary: Summary::default() };
    let res = pipeline::replay(&a.common.capture, &rules, &cfg, &mut sink);
    sink.rows.flush()?;
    if let Some(t) = &mut sink.trace {
        t.flush()?;
    }
    let stats = res.with_context(|| format!("replaying {}", a.common.capture.display()))?;
    if !a.quiet {
        eprint!("{}", sink.summary.render());
        if stats.bad_l4_checksums > 0 && stats.bad_l4_checksums * 2 >= stats.checked_l4_checksums {
            eprintln!(
                "ctsim: warning: {} of {} packets arriving from outside have bad TCP/UDP/ICMP checksums — \
                 typical of a capture taken on a host with checksum offload. The kernel marks them INVALID; \
                 to ignore checksums as the kernel does with it off, add --sysctl nf_conntrack_checksum=0",
                stats.bad_l4_checksums, stats.checked_l4_checksums
            );
        }
    }
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Replay(a) => replay(a),
        Cmd::CheckRules { file } => check_rules(file),
    };
    if let Err(e) = r {
        // A closed pipe (`| head`) is not a failure.
        if e.chain().any(|c| c.downcast_ref::<io::Error>().is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)) {
            std::process::exit(0);
        }
        eprintln!("ctsim: error: {e}");
        for c in e.chain().skip(1) {
            eprintln!("  caused by: {c}");
        }
        std::process::exit(1);
    }
}

fn check_rules(file: PathBuf) -> Result<()> {
    let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let rf = rules::parse_rules(&text, &file, Family::Ipv4)?;
    for n in &rf.notes {
        eprintln!("ctsim: note: {n}");
    }
    let rs = Ruleset::compile_all(std::slice::from_ref(&rf))?;
    print!("{}", rs.describe());
    Ok(())
}
