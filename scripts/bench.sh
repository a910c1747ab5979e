#!/bin/sh
# End-to-end throughput and memory of `ctsim replay`, side by side with a
# read-parse-hash floor and tcpdump, on generated mixed captures.
#
# Usage: scripts/bench.sh [OUTDIR]        (default: target/bench-captures)
#   SIZES="1000000 10000000"  packet counts to run (default: 1M and 10M)
#   JOBS="1 2"                 --jobs values to time (default: 1 and all cores)
# Prints one table: packets/s for each command, wall seconds, and peak RSS
# (from /usr/bin/time -v). The CSV goes to a file in OUTDIR, as a user's would.
set -eu
out=${1:-target/bench-captures}
sizes=${SIZES:-"1000000 10000000"}
cores=$(nproc)
jobs=${JOBS:-"1 $cores"}
rules=benches/stateful-20.rules
mkdir -p "$out"
cargo build --release --bin ctsim --bin ctsim-gen >&2
floor=$(cargo bench --bench floor --no-run 2>&1 | sed -n 's/.*Executable.*(\(.*\)).*/\1/p' | tail -1)
[ -x "$floor" ] || { echo "floor binary not found" >&2; exit 1; }

# rss FILE: peak RSS in MiB from a /usr/bin/time -v log.
rss() { awk -F: '/Maximum resident/ {printf "%.0f", $2/1024}' "$1"; }
# wall FILE: elapsed seconds from a /usr/bin/time -v log.
wall() {
    awk '/Elapsed \(wall clock\)/ {n=split($NF,t,":"); s=0; for(i=1;i<=n;i++) s=s*60+t[i]; printf "%.3f", s}' "$1"
}

printf '%-10s %-28s %10s %14s %10s\n' packets command seconds packets/s peak_MiB
for n in $sizes; do
    cap="$out/bench-$n.pcap"
    if [ ! -s "$cap" ]; then
        flows=$((n / 200)); [ "$flows" -gt 20000 ] && flows=20000
        target/release/ctsim-gen bench --packets "$n" --flows "$flows" --seed 1 --out "$cap" >&2
    fi
    cat "$cap" > /dev/null   # page cache warm for every command alike
    log="$out/time.log"
    row() { # row NAME
        s=$(wall "$log")
        printf '%-10s %-28s %10s %14.0f %10s\n' "$n" "$1" "$s" "$(echo "$n / $s" | bc -l)" "$(rss "$log")"
    }
    for j in $jobs; do
        /usr/bin/time -v -o "$log" target/release/ctsim replay -q --jobs "$j" \
            --rules "$rules" -o "$out/out.csv" "$cap"
        row "ctsim replay --jobs $j"
    done
    /usr/bin/time -v -o "$log" "$floor" "$cap" > /dev/null
    row "read-parse-hash floor"
    /usr/bin/time -v -o "$log" tcpdump -r "$cap" -w /dev/null 2>/dev/null
    row "tcpdump -r -w /dev/null"
    rm -f "$out/out.csv"
done
