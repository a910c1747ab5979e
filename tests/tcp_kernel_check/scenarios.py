"""Crafted TCP sequences for rig.py. Each scenario is a list of steps:
("pkt", {...}) sends one segment, ("sleep", s) waits, ("sysctl", name, v)
changes a router conntrack sysctl (they are reset to the defaults before
each scenario). The client is 10.0.1.2:<port>, the server 10.0.2.2:80.
"""

import struct

CLIENT, SERVER = "10.0.1.2", "10.0.2.2"

C, S = 1000, 5000  # initial sequence numbers of client and server
CW, SW = 8192, 1000  # raw windows (the server's is small to test windows)


def mss(v=1460):
    return struct.pack("!BBH", 2, 4, v)


def wscale(v):
    return bytes([1, 3, 3, v])


SACK_PERM = bytes([1, 1, 4, 2])


def sack(*blocks):
    body = b"".join(struct.pack("!II", a, b) for a, b in blocks)
    return bytes([1, 1, 5, 2 + len(body)]) + body


def ts(a=1, b=0):
    return bytes([1, 1, 8, 10]) + struct.pack("!II", a, b)


def c(port, flags, seq, ack=0, win=CW, n=0, opts=b"", **kw):
    return ("pkt", dict(side="c", port=port, flags=flags, seq=seq, ack=ack, win=win,
                        len=n, opts=opts, **kw))


def s(port, flags, seq, ack=0, win=SW, n=0, opts=b"", **kw):
    return ("pkt", dict(side="s", port=port, flags=flags, seq=seq, ack=ack, win=win,
                        len=n, opts=opts, **kw))


def hs(port, copts=None, sopts=None, cwin=CW, swin=SW):
    """A plain three-way handshake: afterwards the client's next seq is C+1,
    the server's S+1."""
    return [
        c(port, "S", C, 0, cwin, opts=mss() if copts is None else copts),
        s(port, "SA", S, C + 1, swin, opts=mss() if sopts is None else sopts),
        c(port, "A", C + 1, S + 1, cwin),
    ]


SCENARIOS = []


def scenario(name, port, steps):
    SCENARIOS.append((name, [st for st in steps]))


p = 41000

scenario("handshake_and_close", p, [
    c(p, "S", C, opts=mss()),
    ("sleep", 2.1),
    c(p, "S", C, opts=mss()),  # retransmit: no refresh
    s(p, "SA", S, C + 1, opts=mss()),
    c(p, "A", C + 1, S + 1),
    c(p, "PA", C + 1, S + 1, n=100),  # unacked data
    s(p, "A", S + 1, C + 101),
    s(p, "PA", S + 1, C + 101, n=50),
    c(p, "A", C + 101, S + 51),
    c(p, "FA", C + 101, S + 51),
    s(p, "A", S + 51, C + 102),
    s(p, "FA", S + 51, C + 102),
    c(p, "A", C + 102, S + 52),
    c(p, "A", C + 102, S + 52),  # retransmitted last ACK
    c(p, "S", C + 100000, opts=mss()),  # reuse from TIME_WAIT
    s(p, "SA", S + 7777, C + 100001, opts=mss()),
])

p += 1
scenario("bad_flags", p, [
    c(p, "F", C),
    c(p, "SF", C),
    c(p, "SR", C),
    c(p, "", C),
    c(p, "U", C),
    c(p, "FPU", C),
    c(p, "SAU", C),
    c(p + 1, "SEC", C, opts=mss()),  # SYN+ECE+CWR starts a connection
    *hs(p + 2)[0:3],
    c(p + 2, "F", C + 1, S + 1),
    c(p + 2, "SF", C + 1, S + 1),
    c(p + 2, "FPU", C + 1, S + 1),
    c(p + 2, "AU", C + 1, S + 1),
    c(p + 2, "FAU", C + 1, S + 1),
])

p += 3
scenario("invalid_new", p, [
    c(p, "SA", C, 7),
    c(p, "FA", C, 7),
    c(p, "R", C),
    c(p, "RA", C, 7),
    c(p, "A", C, 7),  # pickup
])

p += 1
scenario("pickup_loose", p, [
    c(p, "PA", C, S, n=100),
    s(p, "A", S, C + 100),
    c(p, "PA", C + 100, S, n=100),
    s(p, "A", S, C + 200),
    c(p, "PA", C + 100000000, S, n=10),  # far ahead: liberal
    s(p, "A", S, C + 300),
])

p += 1
scenario("pickup_reply_first", p, [
    s(p, "A", S, C),  # the server's side starts the entry: roles swapped
    c(p, "A", C, S),
    s(p, "A", S, C),
])

p += 1
scenario("pickup_disabled", p, [
    ("sysctl", "tcp_loose", 0),
    c(p, "A", C, S),
    c(p, "PA", C, S, n=10),
    c(p, "S", C, opts=mss()),
    s(p, "SA", S, C + 1, opts=mss()),
    c(p, "A", C + 1, S + 1),
])

p += 1
scenario("reply_ack_in_syn_sent", p, [
    c(p, "S", C, opts=mss()),
    s(p, "A", S, 77777),  # ignored, but sets SEEN_REPLY
    c(p, "R", 77777),  # RST answering that (challenge) ACK
])

p += 1
scenario("orig_ack_in_syn_sent", p, [
    c(p, "S", C, opts=mss()),
    c(p, "A", C + 1, S + 1),
    c(p, "FA", C + 1, S + 1),
    s(p, "FA", S, C + 1),
    s(p, "S", S, opts=mss()),  # simultaneous open SYN
])

p += 1
scenario("rst_answers_syn", p, [
    c(p, "S", C, opts=mss()),
    s(p, "RA", 0, C + 1),
    c(p + 1, "S", C, opts=mss()),
    s(p + 1, "R", 0),
    c(p + 2, "S", C, opts=mss()),
    c(p + 2, "R", C + 1),
])

p += 3
scenario("client_rst_then_syn", p, [
    *hs(p),
    c(p, "R", C + 1),
    c(p, "S", C + 5000, opts=mss()),
    s(p, "SA", S + 5000, C + 5001, opts=mss()),
    c(p, "A", C + 5001, S + 5001),
])

p += 1
scenario("server_rst_then_client_syn", p, [
    *hs(p),
    s(p, "R", S + 1),
    c(p, "S", C + 5000, opts=mss() + wscale(3)),  # ignored in CLOSE
    s(p, "SA", S + 9000, C + 5001, opts=mss() + wscale(2)),  # resync
    c(p, "A", C + 5001, S + 9001),
    c(p, "PA", C + 5001, S + 9001, n=100),
])

p += 1
scenario("syn_in_established_resync", p, [
    *hs(p),
    c(p, "PA", C + 1, S + 1, n=10),
    s(p, "A", S + 1, C + 11),
    c(p, "S", C + 70000, opts=mss()),
    s(p, "SA", S + 90000, C + 70001, opts=mss()),
    c(p, "A", C + 70001, S + 90001),
    c(p, "PA", C + 70001, S + 90001, n=10),
])

p += 1
scenario("syn_in_established_rst", p, [
    *hs(p),
    c(p, "S", C + 70000, opts=mss()),
    s(p, "RA", S + 1, C + 70001),
    c(p, "S", C + 70000, opts=mss()),
])

p += 1
scenario("syn_in_established_challenge_ack", p, [
    *hs(p),
    c(p, "S", C + 70000, opts=mss()),
    s(p, "A", S + 1, C + 1),  # challenge ACK: plain in-window ACK
    c(p, "R", C + 1),  # client resets the old connection
    c(p, "S", C + 70000, opts=mss()),
])

p += 1
scenario("simultaneous_open", p, [
    c(p, "S", C, opts=mss()),
    s(p, "S", S, opts=mss()),
    s(p, "S", S, opts=mss()),
    c(p, "SA", C, S + 1, opts=mss()),
    s(p, "SA", S, C + 1, opts=mss()),
    c(p, "A", C + 1, S + 1),
    s(p, "A", S + 1, C + 1),
    c(p, "A", C + 1, S + 1),
])

p += 1
scenario("simultaneous_open_reply_ack", p, [
    c(p, "S", C, opts=mss()),
    s(p, "S", S, opts=mss()),
    s(p, "A", S + 1, C + 1),
    c(p, "SA", C, S + 1, opts=mss()),
    s(p, "A", S + 1, C + 1),
    c(p, "A", C + 1, S + 1),
])

p += 1
scenario("synack_variants", p, [
    c(p, "S", C, opts=mss()),
    s(p, "SA", S, C + 1, opts=mss()),
    s(p, "SA", S, C + 1, opts=mss()),  # retransmitted SYN/ACK
    s(p, "A", S + 1, C + 1),  # reply ACK in SYN_RECV
    c(p, "SA", C, S + 1),  # client SYN/ACK in SYN_RECV
    c(p, "A", C + 1, S + 1),
    c(p, "SA", C, S + 1),  # client SYN/ACK in ESTABLISHED
    s(p, "SA", S, C + 1),  # server SYN/ACK in ESTABLISHED
    c(p, "FA", C + 1, S + 1),
    s(p, "SA", S, C + 1),  # in FIN_WAIT
])

p += 1
scenario("syn_new_isn", p, [
    c(p, "S", C, opts=mss()),
    c(p, "S", C + 3000, opts=mss()),  # new ISN while SYN_SENT
    s(p, "SA", S, C + 1, opts=mss()),  # acks the old one
    s(p, "SA", S, C + 3001, opts=mss()),
    c(p, "A", C + 3001, S + 1),
])

p += 1
scenario("window_checks", p, [
    *hs(p),
    c(p, "PA", C + 1, S + 1, n=1000),  # fills the server's window
    c(p, "PA", C + 1001, S + 1, n=100),  # 100 over
    c(p, "PA", C + 50000, S + 1, n=10),  # far over
    s(p, "A", S + 1, C + 5000),  # acks data never sent
    s(p, "A", S + 1, C + 1101),
    c(p, "PA", C + 1, S + 1, n=10),  # old retransmission
    c(p, "PA", C - 5000, S + 1, n=10),  # far below
    s(p, "A", S + 1, C - 70000),  # ACK too old
    s(p, "A", S + 1, C + 1101),
])

p += 1
scenario("window_checks_liberal", p, [
    ("sysctl", "tcp_be_liberal", 1),
    *hs(p),
    c(p, "PA", C + 1, S + 1, n=1000),
    c(p, "PA", C + 50000, S + 1, n=10),
    s(p, "A", S + 1, C + 5000),
    c(p, "PA", C - 5000, S + 1, n=10),
    s(p, "A", S + 1, C - 70000),
])

p += 1
scenario("window_scale", p, [
    c(p, "S", C, opts=mss() + wscale(7)),
    s(p, "SA", S, C + 1, win=100, opts=mss() + wscale(7)),
    c(p, "A", C + 1, S + 1, win=100),
    c(p, "PA", C + 1, S + 1, win=100, n=5000),  # within 100<<7 (after the ACK) ...
    s(p, "A", S + 1, C + 5001, win=100),  # 100 << 7 = 12800
    c(p, "PA", C + 5001, S + 1, win=100, n=12000),
    c(p, "PA", C + 40000, S + 1, win=100, n=10),
])

p += 1
scenario("window_scale_one_sided", p, [
    c(p, "S", C, opts=mss() + wscale(7)),
    s(p, "SA", S, C + 1, win=100, opts=mss()),
    c(p, "A", C + 1, S + 1, win=100),
    c(p, "PA", C + 1, S + 1, win=100, n=100),
    s(p, "A", S + 1, C + 101, win=100),
    c(p, "PA", C + 101, S + 1, win=100, n=1000),
    c(p, "PA", C + 2000, S + 1, win=100, n=10),
])

p += 1
scenario("sack", p, [
    c(p, "S", C, opts=mss() + SACK_PERM),
    s(p, "SA", S, C + 1, opts=mss() + SACK_PERM),
    c(p, "A", C + 1, S + 1),
    c(p, "PA", C + 1, S + 1, n=500),
    s(p, "A", S + 1, C + 1, opts=sack((C + 101, C + 301))),
    s(p, "A", S + 1, C + 1, opts=sack((C + 101, C + 900))),  # beyond data
    s(p, "A", S + 1, C + 1, opts=ts() + b"\x01\x01" + b""),
    s(p, "A", S + 1, C + 501, opts=sack((C + 1, C + 5000))),  # block below ack? no: beyond
])

p += 1
scenario("retransmissions", p, [
    *hs(p),
    c(p, "PA", C + 1, S + 1, n=10),
    s(p, "A", S + 1, C + 11),
    s(p, "A", S + 1, C + 11),
    s(p, "A", S + 1, C + 11),
    s(p, "A", S + 1, C + 11),
    s(p, "A", S + 1, C + 11),
    c(p, "A", C + 11, S + 1),
    s(p, "A", S + 1, C + 11),
])

p += 1
scenario("max_retrans_zero", p, [
    ("sysctl", "tcp_max_retrans", 0),
    *hs(p),
    c(p, "FA", C + 1, S + 1),
])

p += 1
scenario("zero_window", p, [
    *hs(p),
    s(p, "A", S + 1, C + 1, win=0),
    c(p, "A", C + 1, S + 1),
    s(p, "A", S + 1, C + 1, win=10),
])

p += 1
scenario("rst_checks", p, [
    *hs(p),
    c(p, "PA", C + 1, S + 1, n=100),
    s(p, "A", S + 1, C + 101),
    c(p, "R", C + 50),  # before what the server acked: invalid rst
    c(p, "R", C + 150),  # inexact, in window: state kept, 10 s
    c(p, "A", C + 101, S + 1),
    c(p, "R", C + 101),  # exact
])

p += 1
scenario("rst_ignore_invalid", p, [
    ("sysctl", "tcp_ignore_invalid_rst", 1),
    *hs(p),
    c(p, "PA", C + 1, S + 1, n=100),
    s(p, "A", S + 1, C + 101),
    c(p, "R", C + 50),
])

p += 1
scenario("rst_after_data", p, [
    *hs(p),
    c(p, "PA", C + 1, S + 1, n=100),
    s(p, "A", S + 1, C + 101),
    s(p, "PA", S + 1, C + 101, n=20),
    s(p, "R", S + 21),  # right after its own data
])

p += 1
scenario("rst_not_assured", p, [
    c(p, "S", C, opts=mss()),
    s(p, "SA", S, C + 1, opts=mss()),
    s(p, "R", S + 1),
])

p += 1
scenario("rst_in_window_zero_seq", p, [
    *hs(p),
    c(p, "PA", C + 1, S + 1, n=100),
    s(p, "R", 0),  # seq 0 on an assured connection
    s(p, "RA", S + 1, 0),  # ACK 0
])

p += 1
scenario("out_of_window_fin_rst", p, [
    *hs(p),
    c(p, "PA", C + 1, S + 1, n=10),
    s(p, "A", S + 1, C + 11),
    c(p, "FA", C + 900000, S + 1),
    s(p, "R", S + 900000),
    c(p, "A", C + 11, S + 1),
])

p += 1
scenario("closing_rst", p, [
    *hs(p),
    c(p, "FA", C + 1, S + 1),
    s(p, "R", S + 123456),  # any seq in FIN_WAIT
])

p += 1
scenario("challenge_ack_last_ack", p, [
    *hs(p),
    c(p, "FA", C + 1, S + 1),
    s(p, "A", S + 1, C + 2),
    s(p, "FA", S + 1, C + 2),
    c(p, "S", C + 90000, opts=mss()),  # new SYN in LAST_ACK: ignored
    s(p, "A", S + 2, C + 2),  # challenge ACK
    c(p, "A", C + 2, S + 2),  # the real last ACK
])

p += 1
scenario("reply_syn_in_time_wait", p, [
    *hs(p),
    c(p, "FA", C + 1, S + 1),
    s(p, "FA", S + 1, C + 2),
    c(p, "A", C + 2, S + 2),
    s(p, "S", S + 80000, opts=mss()),  # server reuses the tuple as client
    c(p, "SA", C + 80000, S + 80001, opts=mss()),
])

p += 1
scenario("checksum", p, [
    c(p, "S", C, opts=mss(), bad_csum=True),
    ("sysctl", "checksum", 0),
    c(p, "S", C, opts=mss(), bad_csum=True),
])

p += 1
scenario("truncated_header", p, [
    c(p, "S", C, doff=4),
    *hs(p),
    c(p, "A", C + 1, S + 1, doff=3),
])

p += 1
scenario("timeouts_sysctls", p, [
    ("sysctl", "tcp_timeout_syn_sent", 50),
    ("sysctl", "tcp_timeout_syn_recv", 40),
    ("sysctl", "tcp_timeout_established", 1000),
    ("sysctl", "tcp_timeout_fin_wait", 33),
    ("sysctl", "tcp_timeout_close_wait", 22),
    ("sysctl", "tcp_timeout_last_ack", 11),
    ("sysctl", "tcp_timeout_time_wait", 44),
    ("sysctl", "tcp_timeout_unacknowledged", 500),
    *hs(p),
    c(p, "PA", C + 1, S + 1, n=10),
    s(p, "A", S + 1, C + 11),
    c(p, "FA", C + 11, S + 1),
    s(p, "A", S + 1, C + 12),
    s(p, "FA", S + 1, C + 12),
    c(p, "A", C + 12, S + 2),
])

p += 1
scenario("fin_in_syn_recv", p, [
    c(p, "S", C, opts=mss()),
    s(p, "SA", S, C + 1, opts=mss()),
    s(p, "FA", S + 1, C + 1),
    c(p, "A", C + 1, S + 2),
    c(p, "FA", C + 1, S + 2),
    s(p, "A", S + 2, C + 2),
])

p += 1
scenario("keepalive", p, [
    *hs(p),
    c(p, "A", C, S + 1),  # keep-alive probe (seq one below)
    s(p, "A", S + 1, C + 1),
    c(p, "A", C, S + 1, n=1),
])

p += 1
scenario("out_of_window_fin_rst_short_timeout", p, [
    # Less than 120 s left: the timeout is not touched.
    ("sysctl", "tcp_timeout_established", 100),
    *hs(p),
    c(p, "FA", C + 900000, S + 1),
    s(p, "R", S + 900000),
])

p += 1
scenario("out_of_window_fin_rst_unack_longer", p, [
    # The unacknowledged timeout is not shorter than what is left.
    ("sysctl", "tcp_timeout_established", 500),
    ("sysctl", "tcp_timeout_unacknowledged", 1000),
    *hs(p),
    c(p, "FA", C + 900000, S + 1),
    s(p, "R", S + 900000),
])

p += 1
scenario("out_of_window_same_direction", p, [
    *hs(p),
    c(p, "FA", C + 900000, S + 1),
    c(p, "R", C + 900000),  # same direction: no shortening
    s(p, "FA", S + 900000, C + 1),  # other direction after a RST
])

p += 1
scenario("retrans_wrap", p, [
    *hs(p),
    *[s(p, "A", S + 1, C + 1, win=999) for _ in range(258)],
])

p += 1
scenario("wscale_clamp", p, [
    c(p, "S", C, opts=mss() + wscale(15)),
    s(p, "SA", S, C + 1, win=2, opts=mss() + wscale(15)),
    c(p, "A", C + 1, S + 1, win=2),
    s(p, "A", S + 1, C + 1, win=2),
    c(p, "PA", C + 1, S + 1, win=2, n=30000),  # 2 << 14 = 32768
    c(p, "PA", C + 30001, S + 1, win=2, n=10000),
    c(p, "PA", C + 45000, S + 1, win=2, n=10),
])

p += 1
scenario("rst_answers_pickup", p, [
    c(p, "PA", C, S, n=10),
    s(p, "RA", S, C + 10),
    c(p + 1, "PA", C, S, n=10),
    s(p + 1, "A", S, C + 10),
    c(p + 1, "A", C + 10, S),
    c(p + 1, "R", C + 10),
])

p += 2
scenario("packets_in_close", p, [
    *hs(p),
    c(p, "R", C + 1),
    s(p, "A", S + 1, C + 1),
    s(p, "FA", S + 1, C + 1),
    c(p, "R", C + 1),
    s(p, "SA", S, C + 1),
])

p += 1
scenario("simultaneous_open_timeouts", p, [
    ("sysctl", "tcp_timeout_syn_sent", 50),
    c(p, "S", C, opts=mss()),
    s(p, "S", S, opts=mss()),
    c(p, "S", C, opts=mss()),  # late retransmitted SYN
    s(p, "R", S + 1),
])

p += 1
scenario("syn_sent_reply_rst_variants", p, [
    c(p, "S", C, opts=mss()),
    s(p, "RA", 12345, C + 1),  # RST/ACK with a random seq
    c(p + 1, "S", C, opts=mss()),
    s(p + 1, "RA", 0, C + 77),  # acks something else
])

p += 2
scenario("data_on_syn", p, [
    c(p, "S", C, opts=mss(), n=20),  # SYN with data (TFO-like)
    s(p, "SA", S, C + 21, opts=mss()),
    c(p, "A", C + 21, S + 1),
])

p += 1
scenario("ecn_syn", p, [
    c(p, "SEC", C, opts=mss()),
    s(p, "SAE", S, C + 1, opts=mss()),
    c(p, "A", C + 1, S + 1),
    c(p, "PAE", C + 1, S + 1, n=5),
])

# A RST takes the "answers an ignored SYN" shortcut (no window check) only
# when it comes from the side opposite the last SYN. The reproducers the
# differential fuzzer found (tests/golden/fuzz-100-138, -363, -423, 300-6)
# all send a bare RST (ack field 0) right after the sender's own SYN.
p += 1
scenario("rst_after_own_syn_synack_ack_too_old", p, [
    c(p, "S", C, opts=mss() + SACK_PERM),
    s(p, "SA", S, C - 100000, opts=mss() + SACK_PERM),  # ACK under lower bound
    c(p, "R", C - 5000),  # below the client's window: ignored, stays SYN_SENT
    c(p, "R", C - 500, win=0),  # within it: closes; the server's maxend + 1
    s(p, "PA", S + 6, C - 100000, win=2, n=96),  # beyond that maxend
])

p += 1
scenario("rst_after_own_syn_simultaneous_open", p, [
    c(p, "S", C, opts=mss() + SACK_PERM + wscale(11)),
    s(p, "S", S, opts=mss() + SACK_PERM + wscale(7)),
    s(p, "R", S + 1553),  # a little beyond the server's maxend: ignored
    s(p, "R", S + 100000),  # far beyond: INVALID
    s(p, "R", S + 1),  # exact: closes
])

p += 1
scenario("rst_after_own_syn_ecn_simultaneous_open", p, [
    c(p, "S", C, opts=mss() + SACK_PERM + wscale(11)),
    s(p, "SEC", S, C + 1, opts=mss() + SACK_PERM + wscale(0)),  # ack field set, no ACK flag
    s(p, "R", S + 70000000),
])

p += 1
scenario("rst_answers_peer_syn_simultaneous_open", p, [
    c(p, "S", C, opts=mss()),
    s(p, "S", S, opts=mss()),
    c(p, "R", C + 100000),  # ack field 0 == last_end 0: no window check
])

p += 1
scenario("rst_after_own_syn_retransmit", p, [
    c(p, "S", C, opts=mss()),
    s(p, "SA", S, C + 1, opts=mss()),
    c(p, "S", C, opts=mss()),  # retransmitted SYN in SYN_RECV: ignored
    c(p, "R", C + 50000, C + 1),  # the client's own RST, ack field = its SYN's end
])
