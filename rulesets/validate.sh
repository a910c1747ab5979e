#!/usr/bin/env bash
# Checks every ruleset in this directory against the real iptables tools, in
# a scratch network namespace (nothing on the host is touched):
#   * save-format files: `iptables-restore --test` (ip6tables-restore for
#     rules.v6), then a real restore into the scratch namespace, because the
#     nf_tables backend's --test only parses (it lets `-j ALLOW` through);
#   * command-line files: every `iptables …` line run in the namespace;
#   * textbook-mistakes.rules: must be rejected, and each of its -A lines must
#     be rejected on its own too; the tools' messages are printed.
# Needs root. Exit status 0 only if every check came out as expected.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
NS=rec-rules-check
fail=0

ns_fresh() {
    ip netns del "$NS" 2>/dev/null || true
    ip netns add "$NS"
}
trap 'ip netns del "$NS" 2>/dev/null || true' EXIT

is_save_format() { grep -q '^\*[a-z]' "$1"; }

check_ok() {
    local f=$1 restore=$2
    ns_fresh
    if is_save_format "$f"; then
        if ip netns exec "$NS" "$restore" --test <"$f" &&
            ip netns exec "$NS" "$restore" <"$f"; then
            echo "ok    $f ($restore --test and restore)"
        else
            echo "FAIL  $f"; fail=1
        fi
    else
        local line n=0 bad=0
        while IFS= read -r line; do
            n=$((n + 1))
            [[ $line =~ ^[[:space:]]*(#|$) ]] && continue
            # shellcheck disable=SC2086  # the line is a command; split it like a shell would
            eval "ip netns exec $NS $line" || { echo "FAIL  $f:$n: $line"; bad=1; }
        done <"$f"
        if ((bad)); then fail=1; else echo "ok    $f (each command line applied)"; fi
    fi
}

check_rejected() {
    local f=$1 out
    ns_fresh
    if out=$(ip netns exec "$NS" iptables-restore --test <"$f" 2>&1); then
        echo "FAIL  $f: iptables-restore --test accepted it"; fail=1
    else
        echo "ok    $f rejected by iptables-restore --test: $(head -2 <<<"$out" | tr '\n' ' ')"
    fi
    local head rule n
    head=$(sed -n '/^\*filter/,/^:OUTPUT/p' "$f")
    while IFS=: read -r n rule; do
        ns_fresh
        local one="$head"$'\n'"$rule"$'\nCOMMIT'
        local t r
        t=$(ip netns exec "$NS" iptables-restore --test <<<"$one" 2>&1) && t="accepted"
        r=$(ip netns exec "$NS" iptables-restore <<<"$one" 2>&1) && r="accepted"
        if [[ $r == accepted ]]; then
            echo "FAIL  $f:$n applied: $rule"; fail=1
        else
            echo "ok    $f:$n rejected: $rule"
        fi
        echo "        --test:  $(grep -v '^Try ' <<<"$t" | tr '\n' ' ')"
        echo "        restore: $(grep -v '^Try ' <<<"$r" | tr '\n' ' ')"
    done < <(grep -n '^-A' "$f")
}

[[ $(id -u) == 0 ]] || { echo "validate.sh: needs root (network namespaces)" >&2; exit 2; }

for f in *.rules; do
    [[ $f == textbook-mistakes.rules ]] && continue
    check_ok "$f" iptables-restore
done
check_ok rules.v6 ip6tables-restore
check_rejected textbook-mistakes.rules
exit "$fail"
