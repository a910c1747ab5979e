#!/bin/sh
# End-to-end throughput and memory of `ctsim replay`, side by side with a
# read-parse-hash floor and tcpdump, on generated mixed captures.
#
# Usage: scripts/bench.sh [OUTDIR]        (default: target/bench-captures)
#   SIZES="1000000 10000000"  packet counts to run (default: 1M and 10M)
#   JOBS="1 2"                 --jobs values to time (default: 1 and all cores)
#   FLOWS=5000                 concurrent conversations, the same for
#                              every size so sizes differ only in duration
#   RATE=5000                  packets per second of capture time
#                              (`ctsim-gen bench --rate`); see below
#   BEFORE=path/to/ctsim       also time this (older) binary, row by row
#                              beside the current one, for before/after
#   REPEAT=3                   runs of each command; the fastest is shown
#   CSVDIR=$OUTDIR             where the CSV output goes; a tmpfs such as
#                              /dev/shm keeps the disk's writeback of the
#                              run before out of the timings
#                              (a shared VM's timings swing by tens of
#                              percent between identical runs)
# Also times `--jobs 1` pinned to one core (taskset -c 0), the one-core
# figure: unpinned, --jobs 1 is a pipeline that keeps a second core busy.
# Prints one table: packets/s for each command, wall seconds, CPU seconds
# (user + system, all threads; steadier than wall time on a shared machine)
# and peak RSS (from /usr/bin/time -v). The CSV goes to a file in OUTDIR, as
# a user's would.
#
# Why RATE: at the generator's default 100k packets/s a 10M-packet capture
# lasts 100 s, shorter than the TIME_WAIT (120 s) and UDP stream (120 s)
# timeouts, so every conversation ever started stays in the conntrack table
# and memory grows with the capture. At 5000/s the 1M capture lasts 200 s
# and the table has reached its steady size (entries expire as fast as new
# ones arrive) before it ends, so 1M and 10M compare like for like.
# Captures are cached in OUTDIR by size, flows and rate.
set -eu
out=${1:-target/bench-captures}
sizes=${SIZES:-"1000000 10000000"}
cores=$(nproc)
jobs=${JOBS:-"1 $cores"}
rate=${RATE:-5000}
flows=${FLOWS:-5000}
before=${BEFORE:-}
repeat=${REPEAT:-3}
csvdir=${CSVDIR:-$out}
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

# cpu FILE: user + system seconds from a /usr/bin/time -v log.
cpu() { awk -F: '/(User|System) time/ {s+=$2} END {printf "%.2f", s}' "$1"; }

printf '%-10s %-28s %10s %14s %8s %10s\n' packets command seconds packets/s cpu_s peak_MiB
for n in $sizes; do
    cap="$out/bench-$n-f$flows-r$rate.pcap"
    if [ ! -s "$cap" ]; then
        target/release/ctsim-gen bench --packets "$n" --flows "$flows" --seed 1 \
            --rate "$rate" --out "$cap" >&2
    fi
    cat "$cap" > /dev/null   # page cache warm for every command alike
    log="$out/time.log"
    best="$out/best.log"
    # timed OUTPUT COMMAND...: runs it REPEAT times, each time without the
    # OUTPUT file (or "" for none) of the run before, and keeps the log of
    # the fastest run in $best: CPU seconds and peak RSS are that run's.
    timed() {
        o=$1
        shift
        rm -f "$best"
        i=0
        while [ "$i" -lt "$repeat" ]; do
            [ -z "$o" ] || rm -f "$o"
            /usr/bin/time -v -o "$log" "$@" > /dev/null
            if [ ! -s "$best" ] || [ "$(echo "$(wall "$log") < $(wall "$best")" | bc)" = 1 ]; then
                cp "$log" "$best"
            fi
            i=$((i + 1))
        done
    }
    row() { # row NAME
        s=$(wall "$best")
        printf '%-10s %-28s %10s %14.0f %8s %10s\n' "$n" "$1" "$s" "$(echo "$n / $s" | bc -l)" \
            "$(cpu "$best")" "$(rss "$best")"
    }
    for j in $jobs; do
        if [ -n "$before" ]; then
            timed "$csvdir/out-before.csv" "$before" replay -q --jobs "$j" \
                --rules "$rules" -o "$csvdir/out-before.csv" "$cap"
            row "before: replay --jobs $j"
        fi
        timed "$csvdir/out.csv" target/release/ctsim replay -q --jobs "$j" \
            --rules "$rules" -o "$csvdir/out.csv" "$cap"
        row "ctsim replay --jobs $j"
        if [ -n "$before" ] && ! cmp -s "$csvdir/out-before.csv" "$csvdir/out.csv"; then
            echo "OUTPUT DIFFERS from $before at $n packets, --jobs $j" >&2
            exit 1
        fi
    done
    # --jobs 1 runs as a pipeline (reader thread, worker, writer) that keeps
    # a second core busy too: the same pinned to one core is the one-core
    # figure that --jobs N scales from.
    if command -v taskset > /dev/null; then
        timed "$csvdir/out.csv" taskset -c 0 target/release/ctsim replay -q --jobs 1 \
            --rules "$rules" -o "$csvdir/out.csv" "$cap"
        row "ctsim --jobs 1, one core"
    fi
    timed "" "$floor" "$cap"
    row "read-parse-hash floor"
    timed "" sh -c 'exec tcpdump -r "$1" -w /dev/null 2>/dev/null' sh "$cap"
    row "tcpdump -r -w /dev/null"
    rm -f "$csvdir/out.csv" "$csvdir/out-before.csv"
done
