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
#   REPEAT=3                   rounds; each round runs every command once,
#                              in turn; the table shows the fastest run
#                              and the median
#   CSVDIR=$OUTDIR             where the CSV output goes; a tmpfs such as
#                              /dev/shm keeps the disk's writeback of the
#                              run before out of the timings
#                              (a shared VM's timings swing by tens of
#                              percent between identical runs)
# Also times `--jobs 1` pinned to one core (taskset -c 0), the one-core
# figure: unpinned, --jobs 1 is a pipeline that keeps a second core busy.
# Prints one table: for each command its fastest and median wall seconds,
# packets/s of the fastest run, and that run's CPU seconds (user + system,
# all threads; steadier than wall time on a shared machine) and peak RSS
# (from /usr/bin/time -v). The CSV goes to a file in CSVDIR, as a user's
# would, and every command's CSV must be byte-identical (with BEFORE, the
# older binary's too). Commands are split into words: paths without spaces.
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

printf '%-10s %-28s %8s %8s %14s %8s %10s\n' packets command best_s median_s packets/s cpu_s peak_MiB
# Commands of a size, as lines of NAME<TAB>OUTPUT<TAB>COMMAND (OUTPUT: a
# file the command writes, removed before each run, or "-" for none).
commands() {
    for j in $jobs; do
        if [ -n "$before" ]; then
            printf 'before: replay --jobs %s\t%s\t%s\n' "$j" "$csvdir/out-before.csv" \
                "$before replay -q --jobs $j --rules $rules -o $csvdir/out-before.csv $cap"
        fi
        printf 'ctsim replay --jobs %s\t%s\t%s\n' "$j" "$csvdir/out-$j.csv" \
            "target/release/ctsim replay -q --jobs $j --rules $rules -o $csvdir/out-$j.csv $cap"
    done
    # --jobs 1 runs as a pipeline (reader thread, worker, writer) that keeps
    # a second core busy too: the same pinned to one core is the one-core
    # figure that --jobs N scales from.
    if command -v taskset > /dev/null; then
        printf 'ctsim --jobs 1, one core\t%s\t%s\n' "$csvdir/out-pinned.csv" \
            "taskset -c 0 target/release/ctsim replay -q --jobs 1 --rules $rules -o $csvdir/out-pinned.csv $cap"
    fi
    printf 'read-parse-hash floor\t-\t%s\n' "$floor $cap"
    printf 'tcpdump -r -w /dev/null\t-\t%s\n' "tcpdump -r $cap -w /dev/null"
}

for n in $sizes; do
    cap="$out/bench-$n-f$flows-r$rate.pcap"
    if [ ! -s "$cap" ]; then
        target/release/ctsim-gen bench --packets "$n" --flows "$flows" --seed 1 \
            --rate "$rate" --out "$cap" >&2
    fi
    cat "$cap" > /dev/null   # page cache warm for every command alike
    logs="$out/logs-$n"
    rm -rf "$logs"
    mkdir -p "$logs"
    # Rounds: each runs every command once, in turn, so that a slow spell of
    # a shared machine falls on all of them rather than on one command's runs.
    r=0
    while [ "$r" -lt "$repeat" ]; do
        k=0
        commands | while IFS="$(printf '\t')" read -r name o cmd; do
            [ "$o" = - ] || rm -f "$o"
            # shellcheck disable=SC2086 # the command is words by design
            /usr/bin/time -v -o "$logs/$k.$r" $cmd > /dev/null 2>&1 || {
                echo "failed: $cmd (see $logs/$k.$r)" >&2
                exit 1
            }
            k=$((k + 1))
        done
        r=$((r + 1))
    done
    k=0
    commands | while IFS="$(printf '\t')" read -r name o cmd; do
        # The fastest run gives the row's CPU seconds and peak RSS.
        bestlog=
        walls=
        for l in "$logs/$k".*; do
            walls="$walls $(wall "$l")"
            if [ -z "$bestlog" ] || [ "$(echo "$(wall "$l") < $(wall "$bestlog")" | bc)" = 1 ]; then
                bestlog=$l
            fi
        done
        s=$(wall "$bestlog")
        med=$(echo "$walls" | tr ' ' '\n' | grep . | sort -n | awk '{v[NR]=$1} END {printf "%.3f", NR % 2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}')
        printf '%-10s %-28s %8s %8s %14.0f %8s %10s\n' "$n" "$name" "$s" "$med" \
            "$(echo "$n / $s" | bc -l)" "$(cpu "$bestlog")" "$(rss "$bestlog")"
        k=$((k + 1))
    done
    # Every command that wrote rows wrote the same bytes.
    first=
    for f in "$csvdir"/out-*.csv; do
        if [ -z "$first" ]; then
            first=$f
        elif ! cmp -s "$first" "$f"; then
            echo "OUTPUT DIFFERS at $n packets: $first and $f" >&2
            exit 1
        fi
    done
    rm -f "$csvdir"/out-*.csv
done
