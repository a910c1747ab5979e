#!/usr/bin/env bash
# Runs the real conversations of captures/record.sh again, live, with a
# ruleset from this directory loaded into the firewall namespace, and checks
# that each conversation succeeds or fails as the ruleset intends (e.g.
# ftp-nohelper.rules must break passive FTP, ftp.rules must not). This is the
# kernel's own answer to "does this ruleset do what its comment says"; it is
# not a replay of the committed pcaps (blocked traffic is retransmitted live,
# which a capture of accept-all traffic does not contain).
# Usage: rulesets/check-live.sh [RULESET:RECORDING ...]   (default: the table below)
# Prints one line per check and, with -v, the rule counters after it.
# Needs root; uses the rec-* namespaces of record.sh. Exit 0 if all matched.
set -euo pipefail
RULES_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../captures/record.sh
source "$RULES_DIR/../captures/record.sh"

VERBOSE=0
if [[ ${1:-} == -v ]]; then VERBOSE=1; shift; fi

# ruleset:recording:expected (pass = the client finished normally).
CHECKS=(
    ssh.rules:ssh:pass
    ssh.rules:ssh-forward:fail
    ftp.rules:ftp-passive:pass
    ftp.rules:ftp-epsv:pass
    ftp.rules:ftp-active:pass
    # The helper drops the segment holding the partial "PORT 10,0,1,2,"; the
    # second half is SACKed, so TCP never merges the two on retransmission
    # and the control connection stalls (seen: every retransmission dropped).
    ftp.rules:ftp-split-port:fail
    ftp-nohelper.rules:ftp-passive:fail
    ftp-nohelper.rules:ftp-active:fail
    forward-established-related.rules:ftp-passive:pass
    forward-established-related.rules:ftp-active:fail
    forward-established-related.rules:http:pass
    forward-established-related.rules:traceroute:pass
    forward-established-related.rules:udp-unreachable:pass
    forward-established-related.rules:tftp:fail
    tftp.rules:tftp:pass
    stateful-default-drop.rules:ssh:pass
    stateful-default-drop.rules:ssh-forward:pass
    stateful-default-drop.rules:dns:pass
    stateful-default-drop.rules:http:pass
    stateful-default-drop.rules:ping:pass
    stateful-default-drop.rules:traceroute:fail
    stateful-default-drop.rules:udp-unreachable:fail
    stateful-default-drop.rules:tcp-refused:fail
    rules.v6:ping6:pass
    rules.v6:http6:pass
    rules.v6:ftp-eprt6:pass
    accept-all.rules:ftp-active:pass
    accept-all.rules:ftp-split-port:pass
)

RULES_FILE=""
topo_hook() {
    local f=$RULES_DIR/$RULES_FILE restore=iptables-restore line
    [[ $RULES_FILE == *.v6 ]] && restore=ip6tables-restore
    if grep -q '^\*[a-z]' "$f"; then
        in_ns "$NS_FW" "$restore" <"$f"
    else
        while IFS= read -r line; do
            [[ $line =~ ^[[:space:]]*(#|$) ]] && continue
            eval "ip netns exec $NS_FW $line"
        done <"$f"
    fi
}

counters() {
    local t
    for t in raw filter; do
        in_ns "$NS_FW" iptables -t "$t" -L -v -n -x --line-numbers 2>/dev/null | sed 's/^/      /'
    done
    [[ $RULES_FILE == *.v6 ]] && in_ns "$NS_FW" ip6tables -L -v -n -x --line-numbers | sed 's/^/      /'
    return 0
}

[[ $(id -u) == 0 ]] || die "needs root"
install_packages
WORK=$(mktemp -d /tmp/ctsim-check-live.XXXXXX)
OUT=$WORK/out
trap cleanup EXIT
trap 'exit 130' INT TERM
make_files
mkdir -p "$OUT"

todo=("$@")
((${#todo[@]})) || todo=("${CHECKS[@]}")
failures=0
for c in "${todo[@]}"; do
    IFS=: read -r RULES_FILE rec want <<<"$c"
    want=${want:-pass}
    # Not in an `if`: bash ignores set -e inside a condition, subshells included.
    set +e
    (set -e; "rec_$rec") >"$WORK/check.log" 2>&1
    rc=$?
    set -e
    if ((rc == 0)); then got=pass; else got=fail; fi
    if [[ $got == "$want" ]]; then mark=ok; else mark=MISMATCH; failures=$((failures + 1)); fi
    printf '%-9s %-36s %-16s expected %-4s got %s\n' "$mark" "$RULES_FILE" "$rec" "$want" "$got"
    if ((VERBOSE)) || [[ $mark != ok ]]; then
        sed 's/^/      | /' "$WORK/check.log"
        counters
    fi
    topo_down
done
exit $((failures > 0))
