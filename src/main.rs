//! `ctsim` command line: wires the library's layers together, reports
//! errors with context, and sets the exit code (0 ok, 1 failure, 2 usage,
//! 77 when `ctsim kernel` cannot run on this machine).

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use ctsim::conntrack::{Event, Sysctls};
use ctsim::netfilter::Topology;
use ctsim::oracle::{self, OracleConfig, OracleError, row};
use ctsim::pipeline::{self, EngineConfig, Sink};
use ctsim::progress::ProgressBar;
use ctsim::report::summary::Summary;
use ctsim::report::trace::TraceWriter;
use ctsim::report::{Row, RowWriter};
use ctsim::rules::{self, RuleFile, Ruleset, TableId};
use ctsim::wire::Family;
use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Parser)]
#[command(
    name = "ctsim",
    version,
    about = "Replay packet captures through an exact model of Linux netfilter (conntrack + iptables)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Replay a capture through the simulated firewall; one CSV row per packet.
    Replay(ReplayArgs),
    /// Replay a capture through the real Linux netfilter in network namespaces (root).
    Kernel(KernelArgs),
    /// Differential fuzz: random captures and rules through the kernel and ctsim (root).
    FuzzKernel(FuzzArgs),
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
    /// Worker threads (shards by address pair); default: all cores. The
    /// output is the same for every value.
    #[arg(long, short = 'j', value_name = "N", default_value_t = 0)]
    jobs: usize,
    /// Read the capture with read() instead of mapping it into memory: for a
    /// capture that may be truncated while it is replayed (a mapped file
    /// that shrinks kills the process with SIGBUS).
    #[arg(long)]
    no_mmap: bool,
}

/// Reads `--rules` and `--rules6` into one rule file: IPv4 tables from
/// `--rules` (and IPv6 ones it holds, e.g. `ip6tables …` lines), IPv6 tables
/// from `--rules6` when given.
fn load_rules(c: &Common) -> Result<(Ruleset, Vec<String>)> {
    let read = |p: &PathBuf, fam| -> Result<RuleFile> {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("reading rules {}", p.display()))?;
        Ok(rules::parse_rules(&text, p, fam)?)
    };
    let mut notes = Vec::new();
    let mut file = match (&c.rules, &c.rules6) {
        (None, None) => bail!("no rules given: use --rules FILE and/or --rules6 FILE"),
        (Some(p), _) => read(p, Family::Ipv4)?,
        (None, Some(p)) => read(p, Family::Ipv6)?,
    };
    if let (Some(_), Some(p6)) = (&c.rules, &c.rules6) {
        let f6 = read(p6, Family::Ipv6)?;
        if !f6.ipv4.tables.is_empty() {
            bail!(
                "{}: --rules6 holds IPv4 tables; put them in --rules",
                p6.display()
            );
        }
        if !file.ipv6.tables.is_empty() {
            bail!(
                "IPv6 rules given twice: in {} and in --rules6 {}",
                file.file.display(),
                p6.display()
            );
        }
        file.ipv6 = f6.ipv6;
        notes.extend(
            f6.notes
                .iter()
                .map(|n| format!("{}:{}: {}", p6.display(), n.line, n.text)),
        );
    }
    notes.extend(
        file.notes
            .iter()
            .map(|n| format!("{}:{}: {}", file.file.display(), n.line, n.text)),
    );
    for fam in [Family::Ipv4, Family::Ipv6] {
        let fr = file.family(fam);
        for t in [TableId::Nat, TableId::Security] {
            if let Some(tab) = fr.table(t) {
                let n: usize = tab.chains.iter().map(|c| c.rules.len()).sum();
                notes.push(format!(
                    "{} {} table: {n} rules parsed but not simulated (ctsim models raw, mangle and filter)",
                    if fam == Family::Ipv4 { "IPv4" } else { "IPv6" },
                    t.name()
                ));
            }
        }
    }
    let rs = Ruleset::compile(&file)?;
    Ok((rs, notes))
}

fn engine_config(c: &Common) -> Result<EngineConfig> {
    let mut sysctls = Sysctls::default();
    for s in &c.sysctls {
        sysctls.apply(s)?;
    }
    if sysctls.max != Sysctls::default().max {
        // Which entry the kernel evicts when the table is full depends on its
        // randomly seeded hash; no replay can know it.
        eprintln!(
            "ctsim: warning: nf_conntrack_max={} is not simulated: the table never fills \
             (the kernel's early drop picks victims by a randomly seeded hash)",
            sysctls.max
        );
    }
    let topology = Topology::new(&c.locals, &c.ifaces)?;
    Ok(EngineConfig {
        sysctls,
        topology,
        trace: false,
        auto_helpers: false,
    })
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
    fn formatter(&self) -> Option<pipeline::RowFormat> {
        Some(ctsim::report::row::write_row)
    }
    fn formatted_rows(&mut self, text: &[u8]) -> io::Result<()> {
        self.rows.write_formatted(text)
    }
    fn tally(&mut self, summary: &Summary) {
        self.summary.merge(summary);
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
        Some(p) => Box::new(BufWriter::with_capacity(
            1 << 16,
            File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => Box::new(BufWriter::with_capacity(1 << 16, io::stdout().lock())),
    })
}

fn replay(a: ReplayArgs) -> Result<()> {
    // Fail on an unreadable capture before any output is written.
    File::open(&a.common.capture)
        .with_context(|| format!("opening capture {}", a.common.capture.display()))?;
    let (rules, notes) = load_rules(&a.common)?;
    for n in &notes {
        eprintln!("ctsim: note: {n}");
    }
    let mut cfg = engine_config(&a.common)?;
    cfg.trace = a.trace.is_some();
    cfg.auto_helpers = a.auto_helpers;
    let trace = match &a.trace {
        Some(p) => Some(TraceWriter::new(BufWriter::new(
            File::create(p).with_context(|| format!("creating {}", p.display()))?,
        ))?),
        None => None,
    };
    let mut sink = CliSink {
        rows: RowWriter::new(open_out(&a.common.out)?)?,
        trace,
        summary: Summary::default(),
    };
    let opts = pipeline::ReplayOptions { jobs: a.jobs };
    // A bar only on a terminal, and not over rows written to that terminal.
    let bar = if a.quiet || (a.common.out.is_none() && io::stdout().is_terminal()) {
        None
    } else {
        let size = std::fs::metadata(&a.common.capture)
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len());
        ProgressBar::stderr(size)
    };
    let tick = |frames, bytes| {
        if let Some(b) = &bar {
            b.update(frames, bytes);
        }
    };
    let input = pipeline::InputOptions {
        no_mmap: a.no_mmap,
        progress: bar.is_some().then_some(&tick as pipeline::Progress),
    };
    let res = pipeline::replay_input(&a.common.capture, &rules, &cfg, &opts, &input, &mut sink);
    if let Some(b) = &bar {
        b.finish();
    }
    sink.rows.flush()?;
    if let Some(t) = &mut sink.trace {
        t.flush()?;
    }
    let stats = res.with_context(|| format!("replaying {}", a.common.capture.display()))?;
    if !a.quiet {
        eprint!("{}", sink.summary.render());
        if let Some(state) = &stats.rule_state {
            for (fam, cmd) in [(Family::Ipv4, "iptables"), (Family::Ipv6, "ip6tables")] {
                if TableId::ALL.iter().any(|&t| rules.has_table(fam, t)) {
                    eprintln!("\n# {cmd} -L -v -n -x --line-numbers, after the replay");
                    eprint!("{}", rules.listing(fam, state));
                }
            }
        }
        if let Some(why) = stats.single_shard {
            eprintln!("ctsim: ran on one worker: {why}");
        }
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
        Cmd::Kernel(a) => kernel(a),
        Cmd::CheckRules { file } => check_rules(file),
        Cmd::FuzzKernel(a) => {
            let keep_going = a.keep_going;
            let opts = a.into_options();
            match ctsim::fuzzdiff::run(&opts, &|line| eprintln!("{line}")) {
                Ok(rep) => {
                    eprint!("{}", rep.render());
                    if rep.clean() || keep_going {
                        Ok(())
                    } else {
                        Err(anyhow::anyhow!("ctsim and the kernel disagree"))
                    }
                }
                Err(ctsim::fuzzdiff::FuzzError::Oracle(e)) => Err(e.into()),
                Err(e) => Err(e.into()),
            }
        }
    };
    if let Err(e) = r {
        // A closed pipe (`| head`) is not a failure.
        if e.chain().any(|c| {
            c.downcast_ref::<io::Error>()
                .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
        }) {
            std::process::exit(0);
        }
        eprintln!("ctsim: error: {e}");
        for c in e.chain().skip(1) {
            eprintln!("  caused by: {c}");
        }
        // 77: the oracle cannot run here (not root, no namespaces, tool missing).
        let code = match e.downcast_ref::<OracleError>() {
            Some(OracleError::Interrupted) => 130,
            Some(OracleError::NotRoot | OracleError::NoNetns(_) | OracleError::ToolMissing(_)) => {
                77
            }
            _ => 1,
        };
        std::process::exit(code);
    }
}

fn check_rules(file: PathBuf) -> Result<()> {
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let rf = rules::parse_rules(&text, &file, Family::Ipv4)?;
    for n in &rf.notes {
        eprintln!("ctsim: note: {}:{}: {}", file.display(), n.line, n.text);
    }
    let rs = Ruleset::compile(&rf)?;
    let st = rs.new_state();
    for fam in [Family::Ipv4, Family::Ipv6] {
        if !rf.family(fam).tables.is_empty() {
            print!("{}", rs.listing(fam, &st));
        }
    }
    Ok(())
}

#[derive(clap::Args, Debug)]
struct KernelArgs {
    /// pcap or pcapng file.
    capture: PathBuf,
    /// IPv4 rules: iptables-save output or a script of `iptables …` lines.
    #[arg(long)]
    rules: Option<PathBuf>,
    /// IPv6 rules: ip6tables-save output or `ip6tables …` lines.
    #[arg(long)]
    rules6: Option<PathBuf>,
    /// NAME=CIDR: these addresses live behind firewall interface NAME
    /// (repeatable). Default: everything behind `eth0`.
    #[arg(long = "iface", value_name = "NAME=CIDR")]
    ifaces: Vec<String>,
    /// An address owned by the firewall (repeatable).
    #[arg(long = "local", value_name = "IP")]
    locals: Vec<IpAddr>,
    /// Conntrack sysctl NAME=VALUE for the firewall namespace (repeatable).
    #[arg(long = "sysctl", value_name = "NAME=VALUE")]
    sysctls: Vec<String>,
    /// Keep the capture's inter-packet gaps.
    #[arg(long)]
    realtime: bool,
    /// Skip rule tracing (faster; the `rule` column stays empty).
    #[arg(long)]
    no_trace: bool,
    /// Write the CSV here instead of stdout.
    #[arg(long, short)]
    out: Option<PathBuf>,
}

fn kernel(args: KernelArgs) -> anyhow::Result<()> {
    let mut cfg = OracleConfig::new(&args.capture);
    cfg.rules = args.rules;
    cfg.rules6 = args.rules6;
    for spec in &args.ifaces {
        cfg.add_iface(spec)?;
    }
    cfg.locals = args.locals;
    cfg.sysctls = args.sysctls;
    cfg.realtime = args.realtime;
    cfg.trace = !args.no_trace;
    let t0 = Instant::now();
    let rows = oracle::run(&cfg)?;
    let secs = t0.elapsed().as_secs_f64();
    let sink: Box<dyn Write> = match &args.out {
        Some(p) => {
            Box::new(std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?)
        }
        None => Box::new(std::io::stdout().lock()),
    };
    let mut w = csv::Writer::from_writer(sink);
    w.write_record(row::COLUMNS)?;
    for r in &rows {
        w.write_record(r.record())?;
    }
    w.flush()?;
    eprintln!(
        "ctsim kernel: {} packets in {:.2} s ({:.0} packets/s, setup included)",
        rows.len(),
        secs,
        rows.len() as f64 / secs.max(1e-9)
    );
    Ok(())
}

/// `ctsim fuzz-kernel`: options of [`ctsim::fuzzdiff::run`].
#[derive(clap::Args, Debug)]
struct FuzzArgs {
    /// Seed of the run; case K of seed S is the same on every machine.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Number of cases.
    #[arg(long, default_value_t = 10)]
    cases: u64,
    /// Index of the first case (to re-run one case of an earlier run).
    #[arg(long, default_value_t = 0)]
    first_case: u64,
    /// Packets per case at most.
    #[arg(long, default_value_t = 24)]
    max_packets: usize,
    /// Packets per realtime (shortened-timeout) case at most.
    #[arg(long, default_value_t = 12)]
    max_realtime_packets: usize,
    /// Only IPv4 cases.
    #[arg(long)]
    no_ipv6: bool,
    /// No realtime cases with shortened timeouts.
    #[arg(long)]
    no_timeouts: bool,
    /// Directory the reproducers go to (as fuzz-SEED-CASE/).
    #[arg(long, default_value = "tests/golden")]
    out: std::path::PathBuf,
    /// Go on after a divergence; exit 0 anyway.
    #[arg(long)]
    keep_going: bool,
    /// Do not shrink divergences or write reproducers.
    #[arg(long)]
    no_minimise: bool,
    /// Seconds one shrink may take.
    #[arg(long, default_value_t = 300)]
    minimise_secs: u64,
    /// Cases run at once (realtime cases mostly sleep).
    #[arg(long, short, default_value_t = 1)]
    jobs: usize,
    /// Do not compare ctstatus/tcp_state of packets both sides call INVALID.
    #[arg(long)]
    lenient_invalid_entry: bool,
}

impl FuzzArgs {
    fn into_options(self) -> ctsim::fuzzdiff::FuzzOptions {
        ctsim::fuzzdiff::FuzzOptions {
            seed: self.seed,
            cases: self.cases,
            first_case: self.first_case,
            max_packets: self.max_packets,
            max_realtime_packets: self.max_realtime_packets,
            ipv6: !self.no_ipv6,
            timeouts: !self.no_timeouts,
            out: self.out,
            keep_going: self.keep_going,
            minimise: !self.no_minimise,
            minimise_time: std::time::Duration::from_secs(self.minimise_secs),
            jobs: self.jobs,
            lenient_invalid_entry: self.lenient_invalid_entry,
            command: std::env::args().collect::<Vec<_>>().join(" "),
        }
    }
}
