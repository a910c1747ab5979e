//! Criterion benches of the layers a replay spends its time in: decode,
//! conntrack, rule evaluation, and the whole per-packet walk with CSV
//! formatting, over generated mixed traffic (`ctsim-gen bench`).

mod common;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ctsim::conntrack::{Conntrack, CtHook, HookInput, Sysctls};
use ctsim::netfilter::Hook;
use ctsim::pipeline::{self, EngineConfig, Firewall, ReplayOptions, Sink};
use ctsim::report::RowWriter;
use ctsim::rules::{CtTupleView, CtView, EvalCtx, TableId};
use ctsim::wire::{self, L4, PktType};
use std::hint::black_box;
use std::net::IpAddr;

const PACKETS: u64 = 20_000;

fn decode(c: &mut Criterion) {
    let f = common::frames(PACKETS, 500);
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(PACKETS));
    g.bench_function("wire::decode", |b| {
        b.iter(|| {
            for fr in f.iter() {
                let _ = black_box(wire::decode(&fr));
            }
        })
    });
    g.bench_function("decode+l4_checksum", |b| {
        b.iter(|| {
            for fr in f.iter() {
                if let Ok(p) = wire::decode(&fr) {
                    black_box(p.l4_checksum_ok());
                }
            }
        })
    });
    g.finish();
}

fn conntrack(c: &mut Criterion) {
    let f = common::frames(PACKETS, 500);
    let mut g = c.benchmark_group("conntrack");
    g.throughput(Throughput::Elements(PACKETS));
    g.bench_function("packet_in+confirm", |b| {
        b.iter_batched(
            || Conntrack::new(Sysctls::default(), false),
            |mut ct| {
                for fr in f.iter() {
                    let Ok(p) = wire::decode(&fr) else { continue };
                    let inp = HookInput {
                        hook: CtHook::Prerouting,
                        now: fr.ts,
                        packet: fr.index,
                        helper: None,
                        l4_csum_ok: Some(true),
                    };
                    let res = ct.packet_in(&p, &inp);
                    let _ = black_box(ct.confirm(&res, &p, &inp));
                }
                ct
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn rules(c: &mut Criterion) {
    let f = common::frames(PACKETS, 500);
    let rs = common::ruleset();
    let zero = CtTupleView {
        src: IpAddr::from([0, 0, 0, 0]),
        dst: IpAddr::from([0, 0, 0, 0]),
        sport: 0,
        dport: 0,
    };
    let mut g = c.benchmark_group("rules");
    g.throughput(Throughput::Elements(PACKETS));
    for (name, state) in [
        (
            "filter FORWARD, ESTABLISHED",
            ctsim::conntrack::CtState::Established,
        ),
        ("filter FORWARD, NEW", ctsim::conntrack::CtState::New),
    ] {
        g.bench_function(name, |b| {
            let mut st = rs.new_state();
            b.iter(|| {
                for fr in f.iter() {
                    let Ok(p) = wire::decode(&fr) else { continue };
                    let (sport, dport, flags, icmp) = match p.l4 {
                        L4::Tcp(t) => (Some(t.sport), Some(t.dport), Some(t.flags), None),
                        L4::Udp(u) => (Some(u.sport), Some(u.dport), None, None),
                        L4::Icmp(i) | L4::Icmpv6(i) => {
                            (None, None, None, Some((i.icmp_type, i.code)))
                        }
                        _ => (None, None, None, None),
                    };
                    let mut ctx = EvalCtx {
                        family: p.family,
                        src: p.src,
                        dst: p.dst,
                        proto: p.proto,
                        sport,
                        dport,
                        tcp_flags: flags,
                        tcp_options: &[],
                        icmp,
                        non_first_fragment: false,
                        ip_len: p.ip_len,
                        ttl: p.ttl,
                        tos: p.tos,
                        in_iface: Some("eth0"),
                        out_iface: Some("eth0"),
                        src_mac: None,
                        pkttype: PktType::Host,
                        src_type: 1,
                        dst_type: 1,
                        nfmark: 0,
                        ct: Some(CtView {
                            state,
                            dir: ctsim::conntrack::Dir::Original,
                            status: Default::default(),
                            l4proto: p.proto,
                            orig: zero,
                            reply: zero,
                            ctmark: 0,
                            expires_in_secs: 0,
                        }),
                        now: fr.ts,
                        locally_generated: false,
                        conns: None,
                    };
                    if rs.has_table(p.family, TableId::Filter) {
                        black_box(rs.evaluate(
                            p.family,
                            TableId::Filter,
                            Hook::Forward,
                            &mut ctx,
                            &mut st,
                        ));
                    }
                }
            })
        });
    }
    g.finish();
}

struct NullSink(RowWriter<std::io::Sink>);
impl Sink for NullSink {
    fn row(&mut self, row: &ctsim::report::Row) -> std::io::Result<()> {
        self.0.write(row)
    }
    fn events(
        &mut self,
        events: &mut dyn Iterator<Item = ctsim::conntrack::Event>,
    ) -> std::io::Result<()> {
        events.for_each(drop);
        Ok(())
    }
}

fn replay(c: &mut Criterion) {
    let f = common::frames(PACKETS, 500);
    let rs = common::ruleset();
    let cfg = EngineConfig::default();
    let mut g = c.benchmark_group("replay");
    g.throughput(Throughput::Elements(PACKETS));
    g.bench_function("firewall+csv, in memory", |b| {
        b.iter(|| {
            let mut fw = Firewall::new(&rs, &cfg);
            let mut w = RowWriter::new(std::io::sink()).expect("sink");
            for fr in f.iter() {
                fw.process(&fr, None, &mut |row| {
                    let _ = w.write(&row);
                });
            }
        })
    });
    for jobs in [1, 2] {
        g.bench_function(format!("replay_with file, jobs {jobs}"), |b| {
            b.iter(|| {
                let mut s = NullSink(RowWriter::new(std::io::sink()).expect("sink"));
                pipeline::replay_with(&f.file, &rs, &cfg, &ReplayOptions { jobs }, &mut s)
                    .expect("replay")
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = decode, conntrack, rules, replay
}
criterion_main!(benches);
