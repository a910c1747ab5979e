//! `ctsim` command line. `ctsim kernel` replays a capture through the real
//! netfilter of this machine and writes one CSV row per packet (the columns
//! of `ctsim replay`, plus `notes`). `ctsim replay` (the simulator) is being
//! integrated: build it with `--features replay` as `ctsim-replay`.

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ctsim::oracle::{self, OracleConfig, OracleError, row};

#[derive(Parser, Debug)]
#[command(
    name = "ctsim",
    version,
    about = "Replay packet captures through Linux netfilter (conntrack + iptables)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Replay a capture through the real Linux netfilter in network namespaces (root).
    Kernel(Args),
}

#[derive(clap::Args, Debug)]
struct Args {
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

fn main() {
    let Cmd::Kernel(args) = Cli::parse().cmd;
    match run(args) {
        Ok(()) => {}
        Err(e) => {
            eprintln!("ctsim kernel: {e:#}");
            let code = match e.downcast_ref::<OracleError>() {
                Some(OracleError::Interrupted) => 130,
                Some(
                    OracleError::NotRoot | OracleError::NoNetns(_) | OracleError::ToolMissing(_),
                ) => 77,
                _ => 2,
            };
            std::process::exit(code);
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
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
