#!/usr/bin/env python3
"""Runs FTP control exchanges and TFTP requests through a real Linux router
namespace with the ftp/tftp conntrack helpers attached, and records what the
kernel did, for the unit tests of src/conntrack/helper/{ftp,tftp}.rs.

Topology: client (10.0.1.2, fd01::2) -- router -- server (10.0.2.2, fd02::2).
The endpoints use ordinary kernel sockets (TCP_NODELAY, one send() per step,
so one segment per step). The router attaches the helpers with raw-table
`CT --helper` rules, counts RELATED packets in FORWARD, and sends the
helpers' own drop messages (nf_ct_helper_log) to NFLOG group 0 through
nfnetlink_log. After each step it records `conntrack -L expect`, whether the
bytes reached the other side, and the log messages.

Output (stdout or --out FILE), tab-separated:
  scenario NAME
  step SIDE REPR          side c|s, REPR = Python repr of the bytes
  obs delivered=yes|no log=MSG... expect=LINE...
  data SRC DST DPORT related=N   (a data-connection SYN and how many RELATED
                                  packets FORWARD counted for it)
Usage (root): python3 rig.py [--out observed.txt]
"""

import ctypes
import os
import select
import socket
import struct
import subprocess
import sys
import time

NS_C, NS_R, NS_S = "ftpk-c", "ftpk-r", "ftpk-s"
CLONE_NEWNET = 0x40000000
LIBC = ctypes.CDLL("libc.so.6", use_errno=True)
C4, S4, C6, S6 = "10.0.1.2", "10.0.2.2", "fd01::2", "fd02::2"


def sh(*args, ns=None, check=True, inp=None):
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    return subprocess.run(cmd, check=check, capture_output=True, text=True, input=inp)


def in_netns(ns, fn):
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
        sh("ip", "link", "set", "lo", "up", ns=ns)
    sh("ip", "link", "add", "c0", "netns", NS_C, "type", "veth", "peer", "r0", "netns", NS_R)
    sh("ip", "link", "add", "s0", "netns", NS_S, "type", "veth", "peer", "r1", "netns", NS_R)
    for ns, dev, a4, a6 in ((NS_C, "c0", "10.0.1.2/24", "fd01::2/64"),
                            (NS_S, "s0", "10.0.2.2/24", "fd02::2/64"),
                            (NS_R, "r0", "10.0.1.1/24", "fd01::1/64"),
                            (NS_R, "r1", "10.0.2.1/24", "fd02::1/64")):
        sh("ip", "addr", "add", a4, "dev", dev, ns=ns)
        sh("ip", "-6", "addr", "add", a6, "dev", dev, "nodad", ns=ns)
        sh("ip", "link", "set", dev, "up", ns=ns)
    sh("ip", "route", "add", "default", "via", "10.0.1.1", ns=NS_C)
    sh("ip", "route", "add", "default", "via", "10.0.2.1", ns=NS_S)
    sh("ip", "-6", "route", "add", "default", "via", "fd01::1", ns=NS_C)
    sh("ip", "-6", "route", "add", "default", "via", "fd02::1", ns=NS_S)
    sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=NS_R)
    sh("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1", ns=NS_R)
    rules = ("*raw\n"
             "-A PREROUTING -p tcp --dport 21 -j CT --helper ftp\n"
             "-A PREROUTING -p udp --dport 69 -j CT --helper tftp\n"
             "COMMIT\n*filter\n"
             "-A FORWARD -m conntrack --ctstate RELATED\n"
             "COMMIT\n")
    for tool in ("iptables-restore", "ip6tables-restore"):
        sh(tool, ns=NS_R, inp=rules)
    sh("sh", "-c", "echo nfnetlink_log > /proc/sys/net/netfilter/nf_log/2", ns=NS_R)
    sh("sh", "-c", "echo nfnetlink_log > /proc/sys/net/netfilter/nf_log/10", ns=NS_R)
    time.sleep(1.5)  # IPv6 neighbour setup


def related_count():
    n = 0
    for tool in ("iptables", "ip6tables"):
        out = sh(tool, "-t", "filter", "-L", "FORWARD", "-nvx", ns=NS_R).stdout
        for line in out.splitlines()[2:]:
            n += int(line.split()[0])
    return n


def expectations():
    out = []
    for fam in ("ipv4", "ipv6"):
        r = sh("conntrack", "-L", "expect", "-f", fam, ns=NS_R, check=False)
        out += [" ".join(l.split()) for l in r.stdout.splitlines() if l.strip()]
    return out


# NFLOG reader for the helpers' drop messages (group 0).
NETLINK_NETFILTER, NFNL_SUBSYS_ULOG = 12, 4
NFULNL_MSG_PACKET, NFULNL_MSG_CONFIG = 0, 1
NFULA_CFG_CMD, NFULA_CFG_MODE, NFULA_CFG_QTHRESH, NFULA_PREFIX = 1, 2, 5, 10


def nla(typ, payload):
    pad = b"\0" * ((4 - len(payload) % 4) % 4)
    return struct.pack("=HH", 4 + len(payload), typ) + payload + pad


class Nflog:
    def __init__(self):
        self.sock = in_netns(NS_R, lambda: socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER))
        self.sock.bind((0, 0))
        self.seq = 0
        for fam in (socket.AF_INET, socket.AF_INET6):
            pass
        self.config(nla(NFULA_CFG_CMD, bytes([1])))
        self.config(nla(NFULA_CFG_MODE, struct.pack(">IBB", 0, 0, 0)))
        self.config(nla(NFULA_CFG_QTHRESH, struct.pack(">I", 1)))

    def config(self, attrs):
        self.seq += 1
        body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(0)) + attrs
        typ = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG
        self.sock.send(struct.pack("=IHHII", 16 + len(body), typ, 0x5, self.seq, 0) + body)
        data = self.sock.recv(65536)
        if struct.unpack_from("=IHHII", data)[1] == 2 and struct.unpack_from("=i", data, 16)[0]:
            raise OSError("NFLOG config")

    def read(self):
        out = []
        while select.select([self.sock], [], [], 0)[0]:
            data = self.sock.recv(1 << 20)
            off = 0
            while off + 16 <= len(data):
                mlen, mtype = struct.unpack_from("=IH", data, off)
                if mtype == (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET:
                    a = off + 20
                    while a + 4 <= off + mlen:
                        alen, atype = struct.unpack_from("=HH", data, a)
                        if alen < 4:
                            break
                        if atype & 0x3FFF == NFULA_PREFIX:
                            out.append(data[a + 4:a + alen].split(b"\0")[0].decode().strip())
                        a += (alen + 3) & ~3
                off += (mlen + 3) & ~3
        return out


PRE = [("s", b"220 ready\r\n"), ("c", b"USER a\r\n"), ("s", b"331 pass\r\n")]
# (name, family, steps, data connection (from side, port) or None)
FTP = [
    ("port_first_line", 4, [("c", b"PORT 10,0,1,2,4,1\r\n"), ("s", b"200 ok\r\n"),
                            ("c", b"PORT 10,0,1,2,4,2\r\n")], ("s", 1026)),
    ("port", 4, PRE + [("c", b"PORT 10,0,1,2,4,1\r\n")], ("s", 1025)),
    ("port_lowercase", 4, PRE + [("c", b"port 10,0,1,2,4,1\r\n")], None),
    ("port_wrong_addr", 4, PRE + [("c", b"PORT 10,0,1,3,4,1\r\n")], None),
    ("port_big_numbers", 4, PRE + [("c", b"PORT 10,0,1,2,260,1\r\n")], None),
    ("port_second_line", 4, PRE + [("c", b"NOOP\r\nPORT 10,0,1,2,4,1\r\n")], None),
    ("port_bare_lf", 4, PRE + [("c", b"PORT 10,0,1,2,4,1\n")], None),
    ("port_split", 4, PRE + [("c", b"PORT 10,0,")], None),
    ("port_short", 4, PRE + [("c", b"PO")], None),
    ("port_no_space", 4, PRE + [("c", b"PORT\r\n")], None),
    ("port_letters", 4, PRE + [("c", b"PORT abc\r\n")], None),
    ("port_after_other", 4, PRE + [("c", b"NOOP\r\n"), ("s", b"200 ok\r\n"),
                                   ("c", b"PORT 10,0,1,2,4,3\r\n")], None),
    ("pasv", 4, PRE + [("c", b"PASV\r\n"),
                       ("s", b"227 Entering Passive Mode (10,0,2,2,4,1).\r\n")], ("c", 1025)),
    ("pasv_no_paren", 4, PRE + [("c", b"PASV\r\n"),
                                ("s", b"227 Entering Passive Mode 10,0,2,2,4,1\r\n")], None),
    ("pasv_wrong_addr", 4, PRE + [("c", b"PASV\r\n"),
                                  ("s", b"227 Entering Passive Mode (10,0,2,9,4,1)\r\n")], None),
    ("pasv_no_digit", 4, PRE + [("c", b"PASV\r\n"), ("s", b"227 no numbers\r\n")], None),
    ("pasv_unterminated", 4, PRE + [("c", b"PASV\r\n"), ("s", b"227 =10,0,2,2,4,1")], None),
    ("epsv", 4, PRE + [("c", b"EPSV\r\n"),
                       ("s", b"229 Entering Extended Passive Mode (|||6446|)\r\n")], ("c", 6446)),
    ("epsv_port0", 4, PRE + [("c", b"EPSV\r\n"), ("s", b"229 x (|||0|)\r\n")], None),
    ("epsv_digit_delim", 4, PRE + [("c", b"EPSV\r\n"), ("s", b"229 x (111123|)\r\n")], None),
    ("eprt", 4, PRE + [("c", b"EPRT |1|10.0.1.2|6275|\r\n")], ("s", 6275)),
    ("eprt_port0", 4, PRE + [("c", b"EPRT |1|10.0.1.2|0|\r\n")], None),
    ("eprt_wrong_af", 4, PRE + [("c", b"EPRT |2|10.0.1.2|6275|\r\n")], None),
    ("eprt_bang", 4, PRE + [("c", b"EPRT !1!10.0.1.2!6275!\r\n")], None),
    ("epsv_then_eprt", 4, PRE + [("c", b"EPSV\r\n"), ("s", b"229 x (|||5000|)\r\n"),
                                 ("c", b"EPRT |1|10.0.1.2|6000|\r\n")], None),
    ("eprt_v6", 6, PRE + [("c", b"EPRT |2|fd01::2|6275|\r\n")], ("s", 6275)),
    ("eprt_v6_wrong", 6, PRE + [("c", b"EPRT |2|fd01::3|6275|\r\n")], None),
    ("epsv_v6", 6, PRE + [("c", b"EPSV\r\n"), ("s", b"229 ok (|||7000|)\r\n")], ("c", 7000)),
    ("port_v6", 6, PRE + [("c", b"PORT 253,1,0,0,4,1\r\n")], None),
]


def tcp_pair(fam, port):
    af = socket.AF_INET if fam == 4 else socket.AF_INET6
    saddr, caddr = (S4, C4) if fam == 4 else (S6, C6)
    ls = in_netns(NS_S, lambda: socket.socket(af, socket.SOCK_STREAM))
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((saddr, 21))
    ls.listen(1)
    c = in_netns(NS_C, lambda: socket.socket(af, socket.SOCK_STREAM))
    c.bind((caddr, port))
    c.connect((saddr, 21))
    s, _ = ls.accept()
    ls.close()
    for x in (c, s):
        x.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        x.setblocking(False)
    return c, s


def drain(sock):
    got = b""
    try:
        while True:
            b = sock.recv(65536)
            if not b:
                break
            got += b
    except BlockingIOError:
        pass
    return got


def data_syn(fam, side, port):
    """Opens the data connection's SYN and returns the RELATED delta."""
    af = socket.AF_INET if fam == 4 else socket.AF_INET6
    src, dst, ns = {(4, "s"): (S4, C4, NS_S), (4, "c"): (C4, S4, NS_C),
                    (6, "s"): (S6, C6, NS_S), (6, "c"): (C6, S6, NS_C)}[(fam, side)]
    before = related_count()
    k = in_netns(ns, lambda: socket.socket(af, socket.SOCK_STREAM))
    k.setblocking(False)
    try:
        k.connect((dst, port))
    except BlockingIOError:
        pass
    time.sleep(0.3)
    k.close()
    return src, dst, related_count() - before


def run_ftp(emit, nflog, idx, name, fam, steps, data):
    sh("conntrack", "-F", ns=NS_R, check=False)
    sh("conntrack", "-F", "expect", ns=NS_R, check=False)
    nflog.read()
    emit(f"scenario\t{name}\tipv{fam}")
    c, s = tcp_pair(fam, 40000 + idx)
    for side, payload in steps:
        snd, rcv = (c, s) if side == "c" else (s, c)
        drain(rcv)
        snd.send(payload)
        time.sleep(0.15)
        got = drain(rcv)
        obs = [f"delivered={'yes' if got == payload else 'no'}"]
        obs += [f"log={m}" for m in nflog.read()]
        obs += [f"expect={e}" for e in expectations()]
        emit(f"step\t{side}\t{payload!r}")
        emit("obs\t" + "\t".join(obs))
    if data:
        src, dst, rel = data_syn(fam, *data)
        emit(f"data\t{src}\t{dst}\t{data[1]}\trelated={rel}")
    for x in (c, s):
        x.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        x.close()


def run_tftp(emit, nflog, name, payload):
    sh("conntrack", "-F", ns=NS_R, check=False)
    sh("conntrack", "-F", "expect", ns=NS_R, check=False)
    emit(f"scenario\t{name}\tipv4")
    u = in_netns(NS_C, lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    u.bind((C4, 5555))
    u.sendto(payload, (S4, 69))
    time.sleep(0.15)
    emit(f"step\tc\t{payload!r}")
    emit("obs\t" + "\t".join([f"log={m}" for m in nflog.read()] +
                             [f"expect={e}" for e in expectations()]))
    before = related_count()
    r = in_netns(NS_S, lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    r.bind((S4, 3000))
    r.sendto(b"\x00\x03\x00\x01data", (C4, 5555))
    time.sleep(0.15)
    emit(f"data\t{S4}\t{C4}\t5555\trelated={related_count() - before}")
    u.close()
    r.close()


def main():
    out = sys.stdout
    if len(sys.argv) > 2 and sys.argv[1] == "--out":
        out = open(sys.argv[2], "w")

    def emit(line):
        out.write(line + "\n")
        out.flush()

    setup()
    try:
        nflog = Nflog()
        for i, (name, fam, steps, data) in enumerate(FTP):
            run_ftp(emit, nflog, i, name, fam, steps, data)
        run_tftp(emit, nflog, "tftp_rrq", b"\x00\x01file\x00octet\x00")
        run_tftp(emit, nflog, "tftp_wrq", b"\x00\x02file\x00octet\x00")
        run_tftp(emit, nflog, "tftp_data", b"\x00\x03\x00\x01x")
    finally:
        teardown()


if __name__ == "__main__":
    main()
