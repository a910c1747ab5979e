#!/usr/bin/env bash
# Golden cases: tests/golden/<case>/args holds the arguments of one replay
# (relative to the repository root; `../shared/…` for the shared corpus), and
# an optional kernel-args the options only the oracle takes (`--realtime`).
#   scripts/golden.sh regen [CASE…]   run `ctsim kernel` for the cases (root) and
#                                     write kernel.csv + PROVENANCE
#   scripts/golden.sh diff CASE       show ctsim replay vs the golden, column by column
#   scripts/golden.sh add CASE ARGS…  create a case and regenerate it
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release/ctsim
[ -x "$bin" ] || cargo build --release --quiet
cmd=${1:-}; shift || true
regen() {
    local dir=tests/golden/$1
    local args; args=$(cat "$dir/args")
    # kernel-args: options only the oracle takes (e.g. --realtime for gaps).
    local kargs=""; [ -f "$dir/kernel-args" ] && kargs=$(cat "$dir/kernel-args")
    # shellcheck disable=SC2086
    "$bin" kernel $args $kargs --out "$dir/kernel.csv" 2>"$dir/.stderr" || { cat "$dir/.stderr"; rm -f "$dir/.stderr"; return 1; }
    rm -f "$dir/.stderr"
    {
        echo "produced-by: scripts/golden.sh regen $1  (ctsim kernel $args $kargs)"
        echo "kernel: $(uname -r)"
        echo "iptables: $(iptables -V)"
        echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    } > "$dir/PROVENANCE"
    echo "regenerated $1 ($(($(wc -l < "$dir/kernel.csv") - 1)) packets)"
}
case "$cmd" in
    regen)
        if [ $# -eq 0 ]; then set -- $(ls tests/golden); fi
        for c in "$@"; do [ -f "tests/golden/$c/args" ] && regen "$c"; done ;;
    add)
        c=$1; shift
        mkdir -p "tests/golden/$c"
        echo "$*" > "tests/golden/$c/args"
        regen "$c" ;;
    diff)
        dir=tests/golden/$1
        # shellcheck disable=SC2086
        "$bin" replay $(cat "$dir/args") --quiet --out /tmp/ctsim-golden-$1.csv
        python3 - "$dir/kernel.csv" "/tmp/ctsim-golden-$1.csv" <<'PY'
import csv, sys
cols = ["chains","ctstate","ctdir","ctstatus","tcp_state","verdict","rule","reason"]
k = list(csv.DictReader(open(sys.argv[1]))); s = list(csv.DictReader(open(sys.argv[2])))
bad = 0
for a, b in zip(k, s):
    d = [(c, a[c], b[c]) for c in cols if a[c] != b[c]]
    if d:
        bad += 1
        print(a["packet"], a["proto"], a["src"], a["sport"], a["dst"], a["dport"], a["flags"], *[f"{c}: kernel={x!r} ctsim={y!r}" for c, x, y in d], sep="  ")
print(f"{len(k)} kernel rows, {len(s)} ctsim rows, {bad} differ")
PY
        ;;
    *) echo "usage: $0 regen [CASE…] | diff CASE | add CASE ARGS…" >&2; exit 2 ;;
esac
