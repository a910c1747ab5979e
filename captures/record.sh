#!/usr/bin/env bash
# Records real clients and servers talking through a firewall network namespace
# and writes one small pcap per conversation into this directory (or $OUT).
#
# Topology (fixed addresses and MACs, so rulesets and tests can name them):
#
#   rec-cli                      rec-fw (the firewall)                    rec-srv
#   eth0 10.0.1.2/24  ===veth=== lan0 10.0.1.1/24   wan0 10.0.2.1/24 ===veth=== eth0 10.0.2.2/24
#        fd00:1::2/64                 fd00:1::1/64       fd00:2::1/64                fd00:2::2/64
#        02:00:00:00:01:02            02:00:00:00:01:01  02:00:00:00:02:01           02:00:00:00:02:02
#
# For traceroute.pcap the server side is replaced by a router and a far host:
#   rec-fw wan0 10.0.2.1 === rec-rtr eth0 10.0.2.254 | rec-rtr eth1 10.0.3.1 === rec-far eth0 10.0.3.2
#
# The firewall forwards everything (no rules, so conntrack is not even loaded
# there while recording). Every capture is taken with tcpdump on the firewall's
# client-facing interface lan0: one copy of each packet, both directions,
# whole packets. Offloads are off on every veth, so the checksums in the files
# are the ones a real wire would carry; each file is checked with `tcpdump -vv`.
#
# Usage: captures/record.sh [NAME ...]     (default: every recording)
# Needs root, iproute2, and Debian's apt-get for the client/server programs.
# Namespaces are named rec-*; they are removed on exit, error or Ctrl-C.

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${OUT:-$HERE}
NS_CLI=rec-cli
NS_FW=rec-fw
NS_SRV=rec-srv
NS_RTR=rec-rtr
NS_FAR=rec-far
ALL_NS=("$NS_CLI" "$NS_FW" "$NS_SRV" "$NS_RTR" "$NS_FAR")
ALL_RECORDINGS=(ssh ssh-forward ftp-passive ftp-epsv ftp-active ftp-eprt6 ftp-split-port
    tftp dns ping ping6 traceroute udp-unreachable http http6 tcp-refused)
PY=/usr/bin/python3

WORK=""
BG_PIDS=()
TCPDUMP_PID=""

log() { printf '[record] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

stop_bg() {
    local pid
    for pid in "${BG_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${BG_PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    BG_PIDS=()
}

topo_down() {
    stop_bg
    if [[ -n $TCPDUMP_PID ]]; then
        kill "$TCPDUMP_PID" 2>/dev/null || true
        wait "$TCPDUMP_PID" 2>/dev/null || true
        TCPDUMP_PID=""
    fi
    local ns
    for ns in "${ALL_NS[@]}"; do
        if ip netns pids "$ns" >/dev/null 2>&1; then
            # Anything still running in there was started by this script.
            ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true
            ip netns del "$ns" 2>/dev/null || true
        fi
    done
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    topo_down
    [[ -n $WORK && -d $WORK && -z ${KEEP_WORK:-} ]] && rm -rf "$WORK"
    exit "$rc"
}

install_packages() {
    local need=()
    command -v ethtool >/dev/null || need+=(ethtool)
    [[ -x /usr/sbin/sshd ]] || need+=(openssh-server)
    command -v ssh >/dev/null || need+=(openssh-client)
    [[ -x /usr/sbin/vsftpd ]] || need+=(vsftpd)
    command -v dnsmasq >/dev/null || need+=(dnsmasq-base)
    command -v dig >/dev/null || need+=(bind9-dnsutils)
    command -v traceroute >/dev/null || need+=(traceroute)
    [[ -x /usr/sbin/in.tftpd ]] || need+=(tftpd-hpa)
    command -v tftp >/dev/null || need+=(tftp-hpa)
    command -v ping >/dev/null || need+=(iputils-ping)
    command -v curl >/dev/null || need+=(curl)
    command -v tcpdump >/dev/null || need+=(tcpdump)
    [[ -x $PY ]] || need+=(python3)
    if ((${#need[@]})); then
        log "installing: ${need[*]}"
        apt-get update -q
        # The packages' own services must not start on the host.
        DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -q --no-install-recommends "${need[@]}"
    fi
}

in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# Starts a long-running program inside a namespace and remembers its pid.
bg_ns() {
    local ns=$1 logf=$2; shift 2
    ip netns exec "$ns" "$@" >"$logf" 2>&1 &
    BG_PIDS+=($!)
}

ns_new() {
    local ns=$1
    ip netns add "$ns"
    in_ns "$ns" ip link set lo up
    # Hosts here would otherwise send router solicitations at random later
    # times (RFC 7559 backoff), which would land in unrelated captures.
    in_ns "$ns" sysctl -qw net.ipv6.conf.default.router_solicitations=0
    in_ns "$ns" sysctl -qw net.ipv6.conf.all.router_solicitations=0
}

# veth NS_A IF_A MAC_A NS_B IF_B MAC_B
veth() {
    ip link add "$2" netns "$1" address "$3" type veth peer "$5" netns "$4" address "$6"
    local side
    for side in "$1 $2" "$4 $5"; do
        set -- $side
        # Checksums computed in software, one wire-sized packet per frame.
        in_ns "$1" ethtool -K "$2" tx off rx off gro off tso off gso off >/dev/null 2>&1 ||
            die "ethtool -K failed on $1/$2"
        in_ns "$1" ip link set "$2" up
    done
}

addr() { in_ns "$1" ip addr add "$3" dev "$2" ${4:-}; }

topo_up() {
    local variant=${1:-server}
    topo_down
    ns_new "$NS_CLI"
    ns_new "$NS_FW"
    in_ns "$NS_FW" sysctl -qw net.ipv4.ip_forward=1
    in_ns "$NS_FW" sysctl -qw net.ipv6.conf.default.forwarding=1
    in_ns "$NS_FW" sysctl -qw net.ipv6.conf.all.forwarding=1

    veth "$NS_CLI" eth0 02:00:00:00:01:02 "$NS_FW" lan0 02:00:00:00:01:01
    addr "$NS_CLI" eth0 10.0.1.2/24
    addr "$NS_CLI" eth0 fd00:1::2/64 nodad
    in_ns "$NS_CLI" ip route add default via 10.0.1.1
    in_ns "$NS_CLI" ip -6 route add default via fd00:1::1
    addr "$NS_FW" lan0 10.0.1.1/24
    addr "$NS_FW" lan0 fd00:1::1/64 nodad

    if [[ $variant == server ]]; then
        ns_new "$NS_SRV"
        veth "$NS_FW" wan0 02:00:00:00:02:01 "$NS_SRV" eth0 02:00:00:00:02:02
        addr "$NS_FW" wan0 10.0.2.1/24
        addr "$NS_FW" wan0 fd00:2::1/64 nodad
        addr "$NS_SRV" eth0 10.0.2.2/24
        addr "$NS_SRV" eth0 fd00:2::2/64 nodad
        in_ns "$NS_SRV" ip route add default via 10.0.2.1
        in_ns "$NS_SRV" ip -6 route add default via fd00:2::1
    else
        ns_new "$NS_RTR"
        ns_new "$NS_FAR"
        in_ns "$NS_RTR" sysctl -qw net.ipv4.ip_forward=1
        veth "$NS_FW" wan0 02:00:00:00:02:01 "$NS_RTR" eth0 02:00:00:00:02:fe
        veth "$NS_RTR" eth1 02:00:00:00:03:01 "$NS_FAR" eth0 02:00:00:00:03:02
        addr "$NS_FW" wan0 10.0.2.1/24
        addr "$NS_RTR" eth0 10.0.2.254/24
        addr "$NS_RTR" eth1 10.0.3.1/24
        addr "$NS_FAR" eth0 10.0.3.2/24
        in_ns "$NS_FW" ip route add 10.0.3.0/24 via 10.0.2.254
        in_ns "$NS_RTR" ip route add default via 10.0.2.1
        in_ns "$NS_FAR" ip route add default via 10.0.3.1
    fi
    # rulesets/check-live.sh loads a ruleset into the firewall here.
    if declare -F topo_hook >/dev/null; then topo_hook; fi
}

# Link-local DAD and the MLD reports sent when interfaces come up take about
# two seconds; captures start after that so they hold only the conversation.
settle() { sleep 4; }

wait_listen() {
    local ns=$1 kind=$2 port=$3 i
    for i in $(seq 1 100); do
        if in_ns "$ns" ss -H "-ln$kind" "sport = :$port" | grep -q .; then
            return 0
        fi
        sleep 0.1
    done
    die "nothing listening on $kind port $port in $ns"
}

capture_start() {
    local name=$1 ns=${2:-$NS_FW} ifc=${3:-lan0}
    CAP_NAME=$name
    CAP_FILE=$WORK/$name.pcap
    # -s 0: whole packets; --immediate-mode -U: hand over and write each packet
    # at once (else the last ring block is lost at SIGINT); -Z root: stay root.
    ip netns exec "$ns" tcpdump -i "$ifc" -s 0 -n -U --immediate-mode -Z root -w "$CAP_FILE" \
        >"$WORK/$name.tcpdump.log" 2>&1 &
    TCPDUMP_PID=$!
    local i
    for i in $(seq 1 100); do
        grep -q "listening on" "$WORK/$name.tcpdump.log" && return 0
        sleep 0.1
    done
    die "tcpdump did not start: $(cat "$WORK/$name.tcpdump.log")"
}

capture_stop() {
    # Let the last answers (FIN/ACK, ICMP errors) arrive before stopping.
    sleep "${1:-0.5}"
    kill -INT "$TCPDUMP_PID"
    wait "$TCPDUMP_PID" || true
    TCPDUMP_PID=""
    local tlog=$WORK/$CAP_NAME.tcpdump.log got seen
    got=$(sed -n 's/^\([0-9]*\) packets\? captured$/\1/p' "$tlog")
    seen=$(sed -n 's/^\([0-9]*\) packets\? received by filter$/\1/p' "$tlog")
    [[ -n $got && $got == "$seen" ]] && grep -q '^0 packets dropped by kernel' "$tlog" ||
        die "$CAP_NAME: tcpdump lost packets: $(tr '\n' ' ' <"$tlog")"
    local dump bad n
    dump=$(tcpdump -vv -n -r "$CAP_FILE" 2>/dev/null)
    n=$(tcpdump -n -r "$CAP_FILE" 2>/dev/null | wc -l)
    # How tcpdump -vv flags a wrong checksum: "bad cksum" (IPv4 header),
    # "(incorrect -> 0x...)" (TCP), "[bad udp cksum", "[bad icmp6 cksum",
    # "wrong icmp cksum".
    bad=$(grep -c -i -E "incorrect|bad [a-z0-9]* ?cksum|wrong [a-z0-9]* ?cksum" <<<"$dump" || true)
    ((bad == 0)) || die "$CAP_NAME: $bad packets with bad checksums"
    ((n > 0)) || die "$CAP_NAME: empty capture"
    install -m 0644 "$CAP_FILE" "$OUT/$CAP_NAME.pcap"
    log "$CAP_NAME.pcap: $n packets, $(stat -c %s "$OUT/$CAP_NAME.pcap") bytes, checksums ok"
}

make_files() {
    mkdir -p "$WORK/www" "$WORK/ftp" "$WORK/tftp" "$WORK/empty" "$WORK/ssh"
    chmod 0755 "$WORK" "$WORK/www" "$WORK/ftp" "$WORK/tftp"
    chmod 0555 "$WORK/empty"
    # Small deterministic files: one for HTTP/FTP, one for TFTP (3 blocks).
    "$PY" - "$WORK" <<'EOF'
import sys, pathlib
w = pathlib.Path(sys.argv[1])
text = "".join(f"line {i:03d} of the ctsim example file\n" for i in range(1, 21))
for d in ("www", "ftp"):
    (w / d / "hello.txt").write_text(text)
(w / "tftp" / "hello.bin").write_bytes(bytes(i % 251 for i in range(1300)))
EOF
    chmod 0644 "$WORK"/www/hello.txt "$WORK"/ftp/hello.txt "$WORK"/tftp/hello.bin
}

# ---------------------------------------------------------------- SSH
ssh_keys() {
    [[ -f $WORK/ssh/host_ed25519 ]] && return 0
    ssh-keygen -q -t ed25519 -N '' -C ctsim-host -f "$WORK/ssh/host_ed25519"
    ssh-keygen -q -t ed25519 -N '' -C ctsim-client -f "$WORK/ssh/client_ed25519"
    cp "$WORK/ssh/client_ed25519.pub" "$WORK/ssh/authorized_keys"
    mkdir -p /run/sshd
}

sshd_start() {
    local ns=$1 listen=$2
    ssh_keys
    cat >"$WORK/ssh/sshd_config" <<EOF
ListenAddress $listen
Port 22
HostKey $WORK/ssh/host_ed25519
PidFile none
UsePAM no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthorizedKeysFile $WORK/ssh/authorized_keys
StrictModes no
UseDNS no
PrintMotd no
PrintLastLog no
X11Forwarding no
EOF
    bg_ns "$ns" "$WORK/sshd.log" /usr/sbin/sshd -D -e -f "$WORK/ssh/sshd_config"
    wait_listen "$ns" t 22
}

ssh_client() {
    in_ns "$NS_CLI" ssh -F /dev/null -i "$WORK/ssh/client_ed25519" -o IdentitiesOnly=yes \
        -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes \
        -o ConnectTimeout=5 -o LogLevel=ERROR "root@$1" echo hi
}

rec_ssh() {
    topo_up
    sshd_start "$NS_FW" 10.0.1.1
    settle
    capture_start ssh
    [[ $(ssh_client 10.0.1.1) == hi ]] || die "ssh to 10.0.1.1 did not print hi"
    capture_stop
}

rec_ssh-forward() {
    topo_up
    sshd_start "$NS_SRV" 10.0.2.2
    settle
    capture_start ssh-forward
    [[ $(ssh_client 10.0.2.2) == hi ]] || die "ssh to 10.0.2.2 did not print hi"
    capture_stop
}

# ---------------------------------------------------------------- FTP
vsftpd_start() {
    cat >"$WORK/vsftpd.conf" <<EOF
listen=NO
listen_ipv6=YES
background=NO
anonymous_enable=YES
no_anon_password=YES
anon_root=$WORK/ftp
local_enable=NO
write_enable=NO
dirmessage_enable=NO
pasv_enable=YES
pasv_min_port=50000
pasv_max_port=50009
port_enable=YES
connect_from_port_20=YES
secure_chroot_dir=$WORK/empty
nopriv_user=nobody
ftp_username=ftp
seccomp_sandbox=NO
isolate_network=NO
xferlog_enable=NO
vsftpd_log_file=$WORK/vsftpd.xfer.log
EOF
    bg_ns "$NS_SRV" "$WORK/vsftpd.log" /usr/sbin/vsftpd "$WORK/vsftpd.conf"
    wait_listen "$NS_SRV" t 21
}

# One FTP session with python's ftplib: login, LIST, RETR hello.txt, QUIT.
# MODE picks how the data connections are opened.
FTP_CLIENT='
import ftplib, io, socket, sys
host, mode = sys.argv[1], sys.argv[2]

class Client(ftplib.FTP):
    def makepasv(self):
        if mode == "epsv":
            # ftplib only uses EPSV for IPv6; ask for it explicitly here.
            port = ftplib.parse229(self.sendcmd("EPSV"), self.sock.getpeername())[1]
            return self.sock.getpeername()[0], port
        return super().makepasv()

ftp = Client()
ftp.connect(host, 21, timeout=10)
ftp.login()
if mode == "eprt6":
    ftp.set_pasv(False)          # LIST over an active (EPRT) data connection
    lines = []
    ftp.retrlines("LIST", lines.append)
    ftp.set_pasv(True)           # RETR over a passive (EPSV) data connection
else:
    ftp.set_pasv(mode != "port")
    lines = []
    ftp.retrlines("LIST", lines.append)
buf = io.BytesIO()
ftp.retrbinary("RETR hello.txt", buf.write)
ftp.quit()
assert any("hello.txt" in l for l in lines), lines
assert buf.getvalue().startswith(b"line 001"), buf.getvalue()[:20]
'

rec_ftp() {
    local name=$1 host=$2 mode=$3
    topo_up
    vsftpd_start
    settle
    capture_start "$name"
    in_ns "$NS_CLI" "$PY" -c "$FTP_CLIENT" "$host" "$mode"
    capture_stop
}

rec_ftp-passive() { rec_ftp ftp-passive 10.0.2.2 pasv; }
rec_ftp-epsv() { rec_ftp ftp-epsv 10.0.2.2 epsv; }
rec_ftp-active() { rec_ftp ftp-active 10.0.2.2 port; }
rec_ftp-eprt6() { rec_ftp ftp-eprt6 fd00:2::2 eprt6; }

# PORT split over two TCP segments: "PORT 10,0,1,2," then "200,10\r\n".
FTP_SPLIT_CLIENT='
import socket, time
def reply(f):
    line = f.readline()
    while line[3:4] == b"-":
        line = f.readline()
    return line
data_l = socket.socket()
data_l.bind(("10.0.1.2", 200 * 256 + 10))
data_l.listen(1)
c = socket.create_connection(("10.0.2.2", 21), timeout=10)
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
f = c.makefile("rb")
assert reply(f).startswith(b"220")
c.sendall(b"USER anonymous\r\n"); assert reply(f).startswith(b"230")
c.sendall(b"TYPE I\r\n"); assert reply(f).startswith(b"200")
c.sendall(b"PORT 10,0,1,2,")
time.sleep(0.3)                  # the server ACKs the first half on its own
c.sendall(b"200,10\r\n"); assert reply(f).startswith(b"200")
c.sendall(b"RETR hello.txt\r\n"); assert reply(f).startswith(b"150")
d, _ = data_l.accept()
got = b""
while chunk := d.recv(4096):
    got += chunk
d.close()
assert reply(f).startswith(b"226")
assert got.startswith(b"line 001")
c.sendall(b"QUIT\r\n"); assert reply(f).startswith(b"221")
c.close()
'

rec_ftp-split-port() {
    topo_up
    vsftpd_start
    settle
    capture_start ftp-split-port
    in_ns "$NS_CLI" "$PY" -c "$FTP_SPLIT_CLIENT"
    capture_stop
}

# ---------------------------------------------------------------- TFTP
rec_tftp() {
    topo_up
    bg_ns "$NS_SRV" "$WORK/tftpd.log" /usr/sbin/in.tftpd --foreground --listen \
        --address 10.0.2.2:69 --user tftp --secure "$WORK/tftp"
    wait_listen "$NS_SRV" u 69
    settle
    capture_start tftp
    (cd "$WORK" && in_ns "$NS_CLI" tftp -4 -m binary 10.0.2.2 -c get hello.bin "$WORK/got.bin")
    capture_stop
    cmp -s "$WORK/got.bin" "$WORK/tftp/hello.bin" || die "tftp transfer differs"
}

# ---------------------------------------------------------------- DNS
rec_dns() {
    topo_up
    bg_ns "$NS_SRV" "$WORK/dnsmasq.log" dnsmasq --keep-in-foreground --no-resolv --no-hosts \
        --no-poll --bind-interfaces --listen-address=10.0.2.2 --port=53 --pid-file= \
        --user=nobody --conf-file=/dev/null --log-queries --log-facility=- \
        --host-record=www.example.test,10.0.2.2,fd00:2::2 \
        --txt-record=example.test,"ctsim example"
    wait_listen "$NS_SRV" u 53
    wait_listen "$NS_SRV" t 53
    settle
    capture_start dns
    local q
    q=$(in_ns "$NS_CLI" dig +short @10.0.2.2 www.example.test A)
    [[ $q == 10.0.2.2 ]] || die "dig A: $q"
    q=$(in_ns "$NS_CLI" dig +short @10.0.2.2 www.example.test AAAA)
    [[ $q == fd00:2::2 ]] || die "dig AAAA: $q"
    q=$(in_ns "$NS_CLI" dig +short @10.0.2.2 example.test TXT)
    [[ $q == '"ctsim example"' ]] || die "dig TXT: $q"
    q=$(in_ns "$NS_CLI" dig +short +tcp @10.0.2.2 www.example.test A)
    [[ $q == 10.0.2.2 ]] || die "dig +tcp A: $q"
    capture_stop
}

# ---------------------------------------------------------------- ICMP
rec_ping() {
    topo_up
    settle
    capture_start ping
    in_ns "$NS_CLI" ping -4 -n -c 3 -i 0.2 10.0.2.2 >/dev/null
    capture_stop
}

rec_ping6() {
    topo_up
    settle
    capture_start ping6
    in_ns "$NS_CLI" ping -6 -n -c 3 -i 0.2 fd00:2::2 >/dev/null
    capture_stop
}

rec_traceroute() {
    topo_up router
    settle
    capture_start traceroute
    # One probe per hop, one at a time: hop 1 is the firewall itself, hop 2
    # the router, hop 3 the destination (port unreachable ends the trace).
    in_ns "$NS_CLI" traceroute -n -q 1 -N 1 -w 2 -m 5 10.0.3.2 >"$WORK/traceroute.out"
    capture_stop
    grep -q '^ 3  10.0.3.2' "$WORK/traceroute.out" || die "traceroute: $(cat "$WORK/traceroute.out")"
}

UDP_PROBE='
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("10.0.1.2", 40000))
s.connect(("10.0.2.2", 9999))
s.send(b"hello, is anyone there?\n")
s.settimeout(2)
try:
    s.recv(100)
    raise SystemExit("unexpected answer")
except ConnectionRefusedError:
    pass                         # the ICMP port unreachable, as expected
'

rec_udp-unreachable() {
    topo_up
    settle
    capture_start udp-unreachable
    in_ns "$NS_CLI" "$PY" -c "$UDP_PROBE"
    capture_stop
}

# ---------------------------------------------------------------- HTTP / TCP
rec_http_any() {
    local name=$1 bind=$2 url=$3
    topo_up
    bg_ns "$NS_SRV" "$WORK/http.log" "$PY" -m http.server 80 --bind "$bind" --directory "$WORK/www"
    wait_listen "$NS_SRV" t 80
    settle
    capture_start "$name"
    in_ns "$NS_CLI" curl -sS --max-time 5 -o "$WORK/got.txt" "$url"
    capture_stop
    cmp -s "$WORK/got.txt" "$WORK/www/hello.txt" || die "$name: download differs"
}

rec_http() { rec_http_any http 10.0.2.2 http://10.0.2.2/hello.txt; }
rec_http6() { rec_http_any http6 fd00:2::2 'http://[fd00:2::2]/hello.txt'; }

TCP_REFUSED='
import socket
s = socket.socket()
s.bind(("10.0.1.2", 40001))
s.settimeout(5)
try:
    s.connect(("10.0.2.2", 81))
    raise SystemExit("unexpected connect")
except ConnectionRefusedError:
    pass
'

rec_tcp-refused() {
    topo_up
    settle
    capture_start tcp-refused
    in_ns "$NS_CLI" "$PY" -c "$TCP_REFUSED"
    capture_stop
}

# ---------------------------------------------------------------- main
main() {
    [[ $(id -u) == 0 ]] || die "needs root (network namespaces, tcpdump)"
    local todo=("$@") r
    ((${#todo[@]})) || todo=("${ALL_RECORDINGS[@]}")
    for r in "${todo[@]}"; do
        declare -F "rec_$r" >/dev/null || die "unknown recording $r (known: ${ALL_RECORDINGS[*]})"
    done
    install_packages
    WORK=$(mktemp -d /tmp/ctsim-record.XXXXXX)
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    make_files
    mkdir -p "$OUT"
    for r in "${todo[@]}"; do
        log "recording $r"
        "rec_$r"
    done
    topo_down
    log "done; kernel $(uname -r)"
}

# Sourcing the file (e.g. from rulesets/check-live.sh) only defines the functions.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    main "$@"
fi
