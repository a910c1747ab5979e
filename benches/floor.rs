//! The read-parse-hash floor: read a capture, decode every packet's headers
//! and count it in a flow table keyed by the unordered address/port pair —
//! nothing else. ctsim's own throughput is judged against this, so it reads
//! the capture the fastest way ctsim does: mapped and parsed in place
//! ([`CaptureReader::open`] on a regular file; it asserts that it was).
//!
//! Not a criterion bench: `scripts/bench.sh` runs it as a program,
//! `floor FILE`, and it prints `packets seconds packets/s`.

use ctsim::capture::CaptureReader;
use ctsim::wire::{self, L4};
use rustc_hash::FxHashMap;
use std::net::IpAddr;
use std::time::Instant;

fn main() {
    let Some(path) = std::env::args().skip(1).find(|a| !a.starts_with("--")) else {
        // `cargo bench` runs every bench target; without a file there is nothing to do.
        return;
    };
    let t0 = Instant::now();
    let mut r = CaptureReader::open(path.as_ref()).expect("open capture");
    assert!(
        r.bytes().is_some(),
        "the floor must read a mapped capture (is {path} a regular file?)"
    );
    let mut flows: FxHashMap<(IpAddr, u16, IpAddr, u16, u8), u64> = FxHashMap::default();
    let mut n = 0u64;
    while let Some(f) = r.next_frame().expect("read") {
        n += 1;
        let Ok(p) = wire::decode(&f) else { continue };
        let (sp, dp) = match p.l4 {
            L4::Tcp(t) => (t.sport, t.dport),
            L4::Udp(u) => (u.sport, u.dport),
            _ => (0, 0),
        };
        let key = if (p.src, sp) <= (p.dst, dp) {
            (p.src, sp, p.dst, dp, p.proto)
        } else {
            (p.dst, dp, p.src, sp, p.proto)
        };
        *flows.entry(key).or_default() += 1;
    }
    let s = t0.elapsed().as_secs_f64();
    println!("{n} {s:.3} {:.0} flows={}", n as f64 / s, flows.len());
}
