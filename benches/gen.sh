#!/bin/sh
# Writes the standard benchmark captures with ctsim-gen (release build).
# Usage: benches/gen.sh [OUTDIR]   (default: target/bench-captures)
# Files: bench-100k.pcap (~80 MB), bench-1m.pcap (~840 MB); set BIG=1 to add
# bench-10m.pcap (~8.4 GB). Same seed, same bytes, on every machine.
set -eu
out=${1:-target/bench-captures}
mkdir -p "$out"
cargo build --release --bin ctsim-gen
gen=target/release/ctsim-gen
"$gen" bench --packets 100000 --flows 1000 --seed 1 --out "$out/bench-100k.pcap"
"$gen" bench --packets 1000000 --flows 5000 --seed 1 --out "$out/bench-1m.pcap"
if [ "${BIG:-0}" = 1 ]; then
    "$gen" bench --packets 10000000 --flows 20000 --seed 1 --out "$out/bench-10m.pcap"
fi
