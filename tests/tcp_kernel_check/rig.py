#!/usr/bin/env python3
"""Replays crafted TCP segments through the real kernel's conntrack and records
what it did, for the unit tests of src/conntrack/proto/tcp.rs.

Topology: three network namespaces, client (10.0.1.2) -- router -- server
(10.0.2.2). Segments are built here (IPv4 + TCP, pure Python) and sent from
raw sockets opened inside the client or server namespace. The router
forwards them; its FORWARD chain logs each packet's ctstate/ctdir to NFLOG
group 5, and with nf_conntrack_log_invalid=255 and nf_log/2=nfnetlink_log the
conntrack's own INVALID/ignore messages go to NFLOG group 0. One netlink
socket in the router receives both, in kernel order. After each packet,
`conntrack -L` gives the entries (state, timeout, flags). The endpoints drop
all input so their stacks never answer.

Output (stdout, or --out FILE): a tab-separated text, one `pkt` line per
segment followed by its `obs` line; see README.md. Needs root, iproute2,
iptables (nft backend), conntrack-tools, ethtool. Namespaces are removed at
the end (and on errors).

Usage: rig.py [--out observed.txt] [scenario-name ...]
"""

import ctypes
import os
import select
import socket
import struct
import subprocess
import sys
import time

from scenarios import SCENARIOS, CLIENT, SERVER

NS_C, NS_R, NS_S = "tcpk-c", "tcpk-r", "tcpk-s"
CLONE_NEWNET = 0x40000000
LIBC = ctypes.CDLL("libc.so.6", use_errno=True)

DEFAULT_SYSCTLS = {
    "tcp_loose": 1,
    "tcp_be_liberal": 0,
    "tcp_max_retrans": 3,
    "tcp_ignore_invalid_rst": 0,
    "checksum": 1,
    "tcp_timeout_syn_sent": 120,
    "tcp_timeout_syn_recv": 60,
    "tcp_timeout_established": 432000,
    "tcp_timeout_fin_wait": 120,
    "tcp_timeout_close_wait": 60,
    "tcp_timeout_last_ack": 30,
    "tcp_timeout_time_wait": 120,
    "tcp_timeout_close": 10,
    "tcp_timeout_max_retrans": 300,
    "tcp_timeout_unacknowledged": 300,
}


def sh(*args, ns=None, check=True):
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


def in_netns(ns, fn):
    """Runs fn() with this thread in netns `ns`; sockets keep their netns."""
    own = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(f"/var/run/netns/{ns}", os.O_RDONLY)
    try:
        if LIBC.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns")
        return fn()
    finally:
        LIBC.setns(own, CLONE_NEWNET)
        os.close(own)
        os.close(target)


def teardown():
    for ns in (NS_C, NS_R, NS_S):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def setup():
    teardown()
    for ns in (NS_C, NS_R, NS_S):
        sh("ip", "netns", "add", ns)
        sh("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", ns=ns)
        sh("ip", "link", "set", "lo", "up", ns=ns)
    sh("ip", "link", "add", "c0", "netns", NS_C, "type", "veth", "peer", "r0", "netns", NS_R)
    sh("ip", "link", "add", "s0", "netns", NS_S, "type", "veth", "peer", "r1", "netns", NS_R)
    sh("ip", "addr", "add", "10.0.1.2/24", "dev", "c0", ns=NS_C)
    sh("ip", "addr", "add", "10.0.2.2/24", "dev", "s0", ns=NS_S)
    sh("ip", "addr", "add", "10.0.1.1/24", "dev", "r0", ns=NS_R)
    sh("ip", "addr", "add", "10.0.2.1/24", "dev", "r1", ns=NS_R)
    for ns, dev in ((NS_C, "c0"), (NS_S, "s0"), (NS_R, "r0"), (NS_R, "r1")):
        sh("ip", "link", "set", dev, "mtu", "65000", "up", ns=ns)
    sh("ip", "route", "add", "default", "via", "10.0.1.1", ns=NS_C)
    sh("ip", "route", "add", "default", "via", "10.0.2.1", ns=NS_S)
    sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=NS_R)
    # veth marks packets without checksum state as verified unless the
    # receiving side has rx checksumming off; turn it off so that
    # nf_conntrack_checksum really checks.
    for dev in ("r0", "r1"):
        sh("ethtool", "-K", dev, "rx", "off", ns=NS_R)
    for ns in (NS_C, NS_S):
        sh("iptables", "-A", "INPUT", "-j", "DROP", ns=ns)
    rules = []
    for st in ("NEW", "ESTABLISHED", "RELATED"):
        for d, letter in (("ORIGINAL", "O"), ("REPLY", "R")):
            rules.append(f"-A FORWARD -m conntrack --ctstate {st} --ctdir {d} "
                         f"-j NFLOG --nflog-group 5 --nflog-prefix {st}/{letter}")
    for st in ("INVALID", "UNTRACKED"):
        rules.append(f"-A FORWARD -m conntrack --ctstate {st} "
                     f"-j NFLOG --nflog-group 5 --nflog-prefix {st}/-")
    restore = "*filter\n" + "\n".join(rules) + "\nCOMMIT\n"
    subprocess.run(["ip", "netns", "exec", NS_R, "iptables-restore"], input=restore,
                   text=True, check=True)
    sh("sysctl", "-qw", "net.netfilter.nf_conntrack_log_invalid=255", ns=NS_R)
    sh("sh", "-c", "echo nfnetlink_log > /proc/sys/net/netfilter/nf_log/2", ns=NS_R)


def set_sysctl(name, value):
    with_ns = f"/proc/sys/net/netfilter/nf_conntrack_{name}"
    sh("sh", "-c", f"echo {value} > {with_ns}", ns=NS_R)


# ---------------------------------------------------------------- NFLOG
NETLINK_NETFILTER = 12
NFNL_SUBSYS_ULOG = 4
NFULNL_MSG_PACKET, NFULNL_MSG_CONFIG = 0, 1
NFULA_CFG_CMD, NFULA_CFG_MODE, NFULA_CFG_QTHRESH = 1, 2, 5
NFULNL_CFG_CMD_BIND = 1
NFULNL_COPY_PACKET = 2
NFULA_PAYLOAD, NFULA_PREFIX = 9, 10


def nla(typ, payload):
    hdr = struct.pack("=HH", 4 + len(payload), typ)
    pad = b"\0" * ((4 - len(payload) % 4) % 4)
    return hdr + payload + pad


class Nflog:
    def __init__(self):
        self.sock = in_netns(NS_R, lambda: socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.bind((0, 0))
        self.seq = 0
        for group in (0, 5):
            self.config(group, nla(NFULA_CFG_CMD, bytes([NFULNL_CFG_CMD_BIND])))
            self.config(group, nla(NFULA_CFG_MODE, struct.pack(">IBB", 128, NFULNL_COPY_PACKET, 0)))
            self.config(group, nla(NFULA_CFG_QTHRESH, struct.pack(">I", 1)))

    def config(self, group, attrs):
        self.seq += 1
        body = struct.pack("=BBH", socket.AF_INET, 0, socket.htons(group)) + attrs
        typ = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG
        msg = struct.pack("=IHHII", 16 + len(body), typ, 0x1 | 0x4, self.seq, 0) + body
        self.sock.send(msg)
        data = self.sock.recv(65536)
        _, mtype, _, _, _ = struct.unpack_from("=IHHII", data)
        err = struct.unpack_from("=i", data, 16)[0] if mtype == 2 else 0
        if err:
            raise OSError(-err, f"NFLOG config group {group}")

    def read(self, timeout):
        """Yields (group, prefix) for log messages arriving within `timeout`."""
        out = []
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return out
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                return out
            data = self.sock.recv(1 << 20)
            off = 0
            while off + 16 <= len(data):
                mlen, mtype, _, _, _ = struct.unpack_from("=IHHII", data, off)
                if mtype == (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET:
                    _, _, group = struct.unpack_from("=BBH", data, off + 16)
                    group = socket.ntohs(group)
                    prefix = None
                    a = off + 20
                    while a + 4 <= off + mlen:
                        alen, atype = struct.unpack_from("=HH", data, a)
                        if alen < 4:
                            break
                        if atype & 0x3FFF == NFULA_PREFIX:
                            prefix = data[a + 4:a + alen].split(b"\0")[0].decode()
                        a += (alen + 3) & ~3
                    out.append((group, prefix))
                off += (mlen + 3) & ~3
            # A FORWARD verdict (group 5) ends what one packet produces.
            if any(g == 5 for g, _ in out):
                end = min(end, time.monotonic() + 0.02)


# ---------------------------------------------------------------- packets
def csum16(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


FLAG_BITS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10, "U": 0x20, "E": 0x40, "C": 0x80}


def build(src, dst, sport, dport, flags, seq, ack, win, payload_len, opts, doff, bad_csum):
    fl = 0
    for ch in flags:
        fl |= FLAG_BITS[ch]
    opts = opts + b"\0" * ((4 - len(opts) % 4) % 4)
    hdr_len = 20 + len(opts)
    doff_field = doff if doff is not None else hdr_len // 4
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                      doff_field << 4, fl, win, 0, 0) + opts + b"x" * payload_len
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(tcp))
    c = csum16(pseudo + tcp)
    if bad_csum:
        c ^= 0x00FF
    tcp = tcp[:16] + struct.pack("!H", c) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    return ip + tcp


def conntrack_entries():
    out = sh("conntrack", "-L", "-p", "tcp", ns=NS_R, check=False).stdout
    entries = []
    for line in out.splitlines():
        tok = line.split()
        if len(tok) < 5 or tok[0] != "tcp":
            continue
        kv = {}
        for t in tok:
            if "=" in t and t.split("=")[0] not in kv:
                kv[t.split("=")[0]] = t.split("=")[1]
        if kv["src"] == CLIENT:
            orig, port = "c", int(kv["sport"])
        else:
            orig, port = "s", int(kv["dport"])
        entries.append(f"{orig}:{port}:{tok[3]}:{tok[2]}:"
                       f"{'UNREPLIED' if '[UNREPLIED]' in tok else '-'}:"
                       f"{'ASSURED' if '[ASSURED]' in tok else '-'}")
    return sorted(entries)


def run_scenario(name, steps, nflog, socks, emit):
    sh("conntrack", "-F", ns=NS_R, check=False)
    for k, v in DEFAULT_SYSCTLS.items():
        set_sysctl(k, v)
    nflog.read(0.05)
    emit(f"scenario\t{name}")
    t0 = time.monotonic()
    for st in steps:
        if st[0] == "sleep":
            time.sleep(st[1])
            continue
        if st[0] == "sysctl":
            set_sysctl(st[1], st[2])
            emit(f"sysctl\t{st[1]}\t{st[2]}")
            continue
        p = st[1]
        side = p["side"]
        src, dst = (CLIENT, SERVER) if side == "c" else (SERVER, CLIENT)
        sport, dport = (p["port"], 80) if side == "c" else (80, p["port"])
        pkt = build(src, dst, sport, dport, p["flags"], p["seq"], p["ack"], p["win"],
                    p["len"], p["opts"], p.get("doff"), p.get("bad_csum", False))
        t = time.monotonic() - t0
        socks[side].sendto(pkt, (dst, 0))
        logs = nflog.read(1.0)
        states = [pfx for g, pfx in logs if g == 5]
        reasons = [pfx for g, pfx in logs if g == 0]
        if len(states) != 1:
            raise RuntimeError(f"{name}: expected one FORWARD log, got {logs}")
        ct, d = states[0].split("/")
        doff = p.get("doff")
        emit("\t".join([
            "pkt", f"t={int(t * 1000)}", f"side={side}", f"port={p['port']}",
            f"flags={p['flags'] or '-'}", f"seq={p['seq'] & 0xFFFFFFFF}",
            f"ack={p['ack'] & 0xFFFFFFFF}", f"win={p['win']}", f"len={p['len']}",
            f"opts={p['opts'].hex() or '-'}", f"doff={doff if doff is not None else '-'}",
            f"csum={'bad' if p.get('bad_csum') else 'ok'}"]))
        obs = ["obs", f"ct={ct}", f"dir={d}"]
        for r in reasons:
            # "nf_ct_proto_6: <message> " (nf_l4proto_log_invalid's format)
            msg = r.split(": ", 1)[1].rstrip(" ") if ": " in r else r
            obs.append(f"log={msg}")
        obs += [f"entry={e}" for e in conntrack_entries()]
        emit("\t".join(obs))


def main():
    args = sys.argv[1:]
    out = sys.stdout
    if args[:1] == ["--out"]:
        out = open(args[1], "w")
        args = args[2:]
    wanted = set(args)
    setup()
    try:
        nflog = Nflog()
        socks = {
            "c": in_netns(NS_C, lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)),
            "s": in_netns(NS_S, lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)),
        }
        out.write("# Observed on the real kernel by tests/tcp_kernel_check/rig.py; "
                  f"kernel {os.uname().release}. Do not edit by hand.\n")

        def emit(line):
            out.write(line + "\n")
            out.flush()

        for name, steps in SCENARIOS:
            if wanted and name not in wanted:
                continue
            run_scenario(name, steps, nflog, socks, emit)
    finally:
        teardown()


if __name__ == "__main__":
    main()
