//! `ctsim-gen`: writes synthetic captures.
//!
//! * `crafted --out DIR`: every crafted edge case as `DIR/<name>.pcap`, plus
//!   `DIR/README.md` describing them (or one scenario with `--only NAME`).
//! * `bench --packets N --flows F --seed S [--rate PPS] --out FILE`: a large
//!   mixed capture for benchmarks, streamed to disk; `--rate` (packets per
//!   second of capture time, default 100k) sets how long it lasts.
//! * `fuzz --seed S --out DIR [--count K]`: fuzz cases, each as
//!   `case-<seed>.pcap` with `case-<seed>.rules` (iptables-save text) and
//!   `case-<seed>.txt` (addresses and suggested sysctls).

use std::fs;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};

use ctsim::synth::bench::{self, BenchConfig};
use ctsim::synth::crafted;
use ctsim::synth::fuzz::{self, FuzzConfig};
use ctsim::synth::{Link, TsPrecision};

#[derive(Parser)]
#[command(
    name = "ctsim-gen",
    version,
    about = "Write synthetic packet captures for ctsim"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum LinkArg {
    Ethernet,
    Raw,
}

#[derive(Clone, Copy, ValueEnum)]
enum PrecisionArg {
    Us,
    Ns,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write the crafted edge-case captures and their README.
    Crafted {
        #[arg(long, default_value = "captures/crafted")]
        out: PathBuf,
        /// Write only this scenario (no README).
        #[arg(long)]
        only: Option<String>,
        /// List the scenarios and exit.
        #[arg(long)]
        list: bool,
    },
    /// Write a large deterministic mixed-traffic capture.
    Bench {
        #[arg(long, default_value_t = 1_000_000)]
        packets: u64,
        /// Conversations active at the same time.
        #[arg(long, default_value_t = 1000)]
        flows: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, value_enum, default_value = "ethernet")]
        link: LinkArg,
        #[arg(long, value_enum, default_value = "us")]
        precision: PrecisionArg,
        /// Packets per second of capture time: sets the capture's duration
        /// (packets / rate). At a few thousand, closed conversations expire
        /// from the conntrack table as fast as new ones arrive, so memory
        /// stays flat however long the capture is.
        #[arg(long, default_value_t = 100_000)]
        rate: u64,
        /// Output file ("-" for stdout).
        #[arg(long)]
        out: PathBuf,
    },
    /// Write fuzz cases: capture, ruleset and notes per seed.
    Fuzz {
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Number of consecutive seeds to write.
        #[arg(long, default_value_t = 1)]
        count: u64,
        #[arg(long, default_value_t = 24)]
        max_packets: usize,
        /// Only IPv4 cases.
        #[arg(long)]
        no_ipv6: bool,
        #[arg(long, value_enum, default_value = "ethernet")]
        link: LinkArg,
        #[arg(long)]
        out: PathBuf,
    },
}

fn link(l: LinkArg) -> Link {
    match l {
        LinkArg::Ethernet => Link::Ethernet,
        LinkArg::Raw => Link::Raw,
    }
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        // A closed pipe (`ctsim-gen bench --out - | head -c`) is not a failure.
        if e.chain().any(|c| {
            c.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
        }) {
            return;
        }
        eprintln!("ctsim-gen: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Crafted { out, only, list } => {
            if list {
                for c in crafted::CRAFTED {
                    println!("{}", c.name);
                }
                return Ok(());
            }
            if let Some(name) = only {
                let Some(c) = crafted::find(&name) else {
                    bail!("no crafted scenario named {name:?} (see --list)");
                };
                fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
                let path = out.join(format!("{}.pcap", c.name));
                let file = fs::File::create(&path)
                    .with_context(|| format!("creating {}", path.display()))?;
                (c.build)()?.write_pcap(BufWriter::new(file), c.precision)?;
                eprintln!("wrote {}", path.display());
                return Ok(());
            }
            let written = crafted::write_all(&out)
                .with_context(|| format!("writing into {}", out.display()))?;
            eprintln!("wrote {} files into {}", written.len(), out.display());
        }
        Cmd::Bench {
            packets,
            flows,
            seed,
            link: l,
            precision,
            rate,
            out,
        } => {
            let cfg = BenchConfig {
                packets,
                flows,
                seed,
                link: link(l),
                precision: match precision {
                    PrecisionArg::Us => TsPrecision::Micro,
                    PrecisionArg::Ns => TsPrecision::Nano,
                },
                rate,
                ..BenchConfig::default()
            };
            let t0 = Instant::now();
            let stats = if out.as_os_str() == "-" {
                let stdout = std::io::stdout().lock();
                bench::generate(&cfg, BufWriter::with_capacity(1 << 20, stdout))?.0
            } else {
                let file = fs::File::create(&out)
                    .with_context(|| format!("creating {}", out.display()))?;
                let (stats, w) = bench::generate(&cfg, BufWriter::with_capacity(1 << 20, file))?;
                w.into_inner().map_err(|e| e.into_error())?;
                stats
            };
            let secs = t0.elapsed().as_secs_f64();
            eprintln!(
                "{} packets, {} bytes (avg {:.0}), {} conversations; tcp {} udp {} icmp {} junk {}; {:.2} s, {:.2} Mpkt/s",
                stats.packets,
                stats.bytes,
                stats.bytes as f64 / stats.packets.max(1) as f64,
                stats.flows,
                stats.tcp,
                stats.udp,
                stats.icmp,
                stats.junk,
                secs,
                stats.packets as f64 / secs / 1e6
            );
        }
        Cmd::Fuzz {
            seed,
            count,
            max_packets,
            no_ipv6,
            link: l,
            out,
        } => {
            let cfg = FuzzConfig {
                max_packets,
                ipv6: !no_ipv6,
                link: link(l),
            };
            fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            for s in seed..seed.saturating_add(count) {
                let case = fuzz::random_case(s, &cfg);
                let stem = out.join(format!("case-{s}"));
                let pcap = stem.with_extension("pcap");
                let file = fs::File::create(&pcap)
                    .with_context(|| format!("creating {}", pcap.display()))?;
                case.write_pcap(BufWriter::new(file))?;
                fs::write(
                    stem.with_extension("rules"),
                    fuzz::random_ruleset(s, &case.rule_context()),
                )?;
                let mut notes = Vec::new();
                writeln!(
                    notes,
                    "seed {s}\nfamily {:?}\npackets {}",
                    case.family,
                    case.packets.len()
                )?;
                writeln!(
                    notes,
                    "client {}\nserver {}\nrouter {}",
                    case.client, case.server, case.router
                )?;
                if case.short_timeouts {
                    for (k, v) in fuzz::SHORT_TIMEOUTS {
                        writeln!(notes, "sysctl net.netfilter.{k}={v}")?;
                    }
                }
                fs::write(stem.with_extension("txt"), notes)?;
            }
            eprintln!("wrote {count} cases into {}", out.display());
        }
    }
    Ok(())
}
