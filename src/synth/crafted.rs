//! Hand-written edge cases, one capture each, committed under
//! `captures/crafted/`.
//!
//! Every scenario is a function that lays packets on a [`Script`], each packet
//! with a note saying what the kernel does with it: the ctstate the filter
//! table sees, then the conntrack state and timeout where they matter. The
//! notes are written by hand from the kernel's documented and observed
//! behaviour (the facts digest, `/work/shared/conntrack-facts.md`, section
//! numbers given as §n), never computed by the simulator; they are
//! expectations for it. [`CRAFTED`] lists the scenarios, and [`readme`]
//! renders them, notes included, as `captures/crafted/README.md`.
//!
//! Unless a scenario says otherwise the notes assume forward mode (the
//! firewall routes between 10.9.1.0/24 and fd00:9:1::/48 on one side and
//! everything else on the other), an accept-all ruleset and default sysctls.
//!
//! Addresses: client 10.9.1.2 / fd00:9:1::2, server 10.9.2.2 / fd00:9:2::2,
//! a third-party router 10.9.3.1 / fd00:9:3::1. Every scenario uses its own
//! client ports so the files can be merged without tuple clashes.

use std::fs;
use std::io::BufWriter;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use crate::synth::SynthError;
use crate::synth::flow::{Side, SynOptions, TcpFlow};
use crate::synth::packet::{
    self, Pkt, arp, flags, fragment, icmp, icmp6, mtu_word, neighbor_advert_body,
    neighbor_solicit_body, solicited_node,
};
use crate::synth::pcap::TsPrecision;
use crate::synth::script::{EPOCH, Link, Script};
use crate::time::Duration;
use crate::wire::Family;

/// Client, server and router addresses.
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 9, 1, 2);
pub const SERVER: Ipv4Addr = Ipv4Addr::new(10, 9, 2, 2);
pub const ROUTER: Ipv4Addr = Ipv4Addr::new(10, 9, 3, 1);
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 9, 1, 1);
pub const CLIENT6: Ipv6Addr = Ipv6Addr::new(0xfd00, 9, 1, 0, 0, 0, 0, 2);
pub const SERVER6: Ipv6Addr = Ipv6Addr::new(0xfd00, 9, 2, 0, 0, 0, 0, 2);
pub const ROUTER6: Ipv6Addr = Ipv6Addr::new(0xfd00, 9, 3, 0, 0, 0, 0, 1);

const C: Side = Side::Client;
const S: Side = Side::Server;

/// One crafted scenario.
#[derive(Debug, Clone, Copy)]
pub struct Crafted {
    /// File stem: the capture is `<name>.pcap`.
    pub name: &'static str,
    /// What the capture shows and the kernel behaviour it pins down.
    pub about: &'static str,
    /// How to replay it where that differs from the default (forward mode,
    /// accept-all, default sysctls); empty otherwise.
    pub setup: &'static str,
    pub link: Link,
    pub precision: TsPrecision,
    pub build: fn() -> Result<Script, SynthError>,
}

macro_rules! crafted {
    ($name:ident, $about:expr, $setup:expr) => {
        crafted!($name, $about, $setup, Link::Ethernet, TsPrecision::Micro)
    };
    ($name:ident, $about:expr, $setup:expr, $link:expr, $prec:expr) => {
        Crafted {
            name: stringify!($name),
            about: $about,
            setup: $setup,
            link: $link,
            precision: $prec,
            build: $name,
        }
    };
}

const FORWARD_ONLY: &str = "Forward mode only: the kernel check happens before the \
    FORWARD hook, which a host-mode replay would not reach.";
const CHECKSUMS: &str = "Replay with the damage intact (oracle: `--checksums keep`). \
    Checksums are verified at PREROUTING only, so in host mode the bad packets must be \
    the received ones (`--local 10.9.2.2`).";

/// All crafted scenarios, in README order.
pub const CRAFTED: &[Crafted] = &[
    crafted!(
        ftp_expectation_timeout,
        "Passive FTP control connection to port 21 (ftp helper attached by a raw-table CT rule): the first `227` reply announces data port 50000 and the data connection arrives 1 s later (RELATED); the second `227` announces port 50001, but the data connection arrives 320 s later, after the 300 s expectation timer ran out (NEW). The kernel's timer wheel fires a 300 s timer up to 16.4 s late (HZ=250), so a data connection between 300 and 316 s may still be RELATED on a real box; ctsim expires expectations at exactly 300 s. The first data segment in each direction is never parsed (§6.3), so the client sends `USER` before `PASV`.",
        "Needs the helper: `--rules rulesets/corpus.rules` (raw `-j CT --helper ftp` on port 21). The oracle must run in real time (`--realtime`, about 5.5 minutes)."
    ),
    crafted!(
        tcp_handshake_close,
        "Three-way handshake, data both ways, FIN close from the client. The reference trace of §2.11: every state of a normal connection and the timeout each packet leaves.",
        ""
    ),
    crafted!(
        tcp_syn_retransmit,
        "The first SYN got no answer (dropped upstream) and is retransmitted after 1 s with the same sequence number. A retransmitted SYN is still NEW and does not refresh the SYN_SENT timeout (§2.8).",
        "If a rule drops the first SYN, no entry is left (§1.5) and the retransmit creates it afresh: still NEW."
    ),
    crafted!(
        tcp_refused,
        "Connection refused: SYN to a closed port answered by RST/ACK (seq 0), twice. An RST while the entry is unreplied is accepted and deletes the entry at once (§2.8), so the retry is NEW again.",
        ""
    ),
    crafted!(
        tcp_half_open,
        "Half-open: SYN, SYN/ACK, then no ACK; the server retransmits its SYN/ACK twice; the client's host (which lost the socket) finally answers with a bare RST. Retransmitted SYN/ACKs are ignored in SYN_RECV; the RST is in window and closes.",
        ""
    ),
    crafted!(
        tcp_simultaneous_open,
        "Simultaneous open between ports 40005 and 40500: both sides send SYN, both send SYN/ACK, then an ACK (§2.6 e).",
        ""
    ),
    crafted!(
        tcp_window_violation,
        "Window checks (§2.7) on an established connection whose server advertises 8192 bytes without window scaling: data 1,000,000 bytes beyond the window (INVALID, \"SEQ is over upper bound\"), normal data, then data starting 10 bytes past the right edge (ignored: accepted, the kernel logs \"111 bytes more than expected\").",
        ""
    ),
    crafted!(
        tcp_ack_unseen,
        "ACKs for data the server never sent: 1 byte and 100000 bytes beyond what the server has sent are both INVALID (\"ACK is over upper bound\", §2.7 check III); a correct ACK afterwards is fine.",
        ""
    ),
    crafted!(
        tcp_bogus_flags,
        "Invalid flag combinations (§2.3) on an established, assured connection: bare FIN, SYN+FIN, SYN+RST, no flags, FIN+PSH+URG (xmas), URG alone, SYN+ACK+URG, each INVALID (\"invalid tcp flag combination\") whatever the state; the connection carries on. Then on fresh tuples: SYN+ECE+CWR (ECN setup, valid: NEW) and a null packet (INVALID).",
        ""
    ),
    crafted!(
        tcp_invalid_first,
        "Packets that cannot start a connection (§2.4): SYN/ACK, FIN/ACK, RST and RST/ACK as the first packet of their tuple. Each is INVALID and leaves no entry.",
        ""
    ),
    crafted!(
        tcp_midstream,
        "Mid-stream pickup (§2.4): a connection whose handshake was not captured. With `nf_conntrack_tcp_loose=1` (default) the first ACK-bearing packet creates the entry (NEW, ESTABLISHED, 300 s), and window tracking is liberal for both sides, so data far ahead is still fine.",
        "Replay twice: with defaults, and with `--sysctl net.netfilter.nf_conntrack_tcp_loose=0`, where every packet here is INVALID."
    ),
    crafted!(
        tcp_rst_variants,
        "RST validation (§2.6 f) on four assured connections: (a) RST at exactly the expected sequence number → CLOSE; (b) RST inside the window but not exact → state kept (room for a challenge ACK), timeout 10 s, then the challenge ACK and an exact RST → CLOSE; (c) RST far outside the window and RST below what the peer has acknowledged → INVALID, connection unharmed; (d) the server answers an ignored SYN (client reused the tuple with a new ISN) with RST/ACK acking that SYN → CLOSE without a window check.",
        ""
    ),
    crafted!(
        tcp_syn_resync,
        "The server lost the connection (rebooted) while the firewall entry lived on; the client reconnects on the same tuple with a new ISN. The SYN is ignored in ESTABLISHED, the server's SYN/ACK acking it re-syncs the entry to SYN_RECV, and the ACK brings it back to ESTABLISHED (§2.6 b).",
        ""
    ),
    crafted!(
        tcp_time_wait_reuse,
        "A closed connection in TIME_WAIT, and 2 s later a new SYN on the same tuple with a higher ISN: the old entry is killed and a new one created (NEW, §2.6 a).",
        ""
    ),
    crafted!(
        tcp_window_scaling,
        "Window scaling in use: both sides offer wscale 7; the server advertises a raw window of 502 (64256 bytes). The client sends 56 segments of 1448 bytes with two ACKs in between. The last segments lie beyond what an unscaled 502-byte window would allow but inside the scaled one: all ESTABLISHED.",
        ""
    ),
    crafted!(
        udp_dns,
        "Two DNS queries from different source ports to 10.9.2.2:53, each answered (§3): NEW then ESTABLISHED, 30 s, never ASSURED within 2 s.",
        ""
    ),
    crafted!(
        udp_one_way,
        "A one-way UDP flow (syslog to 10.9.2.2:514), five packets 1 s apart: every packet NEW, the entry stays UNREPLIED and each packet refreshes it to 30 s. Raw-IP link type.",
        "",
        Link::Raw,
        TsPrecision::Micro
    ),
    crafted!(
        udp_stream_assured,
        "A UDP stream: request, reply within 20 ms, more packets. Only a packet that comes after the reply and more than 2 s after the first packet makes the entry ASSURED with 120 s (§3).",
        ""
    ),
    crafted!(
        icmp_echo,
        "Ping (§4.1): request NEW, reply ESTABLISHED, a duplicated reply still ESTABLISHED (the entry survives the reply), and a second request/reply with the same id on the same entry. Nanosecond timestamps.",
        "",
        Link::Ethernet,
        TsPrecision::Nano
    ),
    crafted!(
        icmp_unknown_types,
        "ICMP that cannot be tracked (§4.1): an echo reply without request, router advertisement (9), router solicitation (10) and type 19 are INVALID; a timestamp request (13) and its reply (14) are tracked like echo.",
        ""
    ),
    crafted!(
        icmp_port_unreachable,
        "ICMP errors (§4.1): port unreachable from the server for a tracked UDP flow is RELATED and leaves the UDP entry unreplied (the next UDP packet is NEW again); the same error quoting a flow never seen is INVALID.",
        ""
    ),
    crafted!(
        icmp_time_exceeded,
        "Time exceeded for a tracked TCP flow (the client's SYN): from a third-party router (10.9.3.1) and from the server itself (reassembly time exceeded), both RELATED: the source does not matter. The same error sent to the server instead of the client is INVALID: the outer destination must be the flow's endpoint (§4.1 step 4).",
        ""
    ),
    crafted!(
        ipv6_tcp,
        "IPv6 TCP between fd00:9:1::2 and fd00:9:2::2 port 22 with Linux-like options (MSS, SACK, timestamps, wscale 7): handshake, data both ways, FIN close. Same states as the IPv4 trace.",
        ""
    ),
    crafted!(
        icmpv6_errors,
        "ICMPv6 (§4.2): echo request/reply, an echo reply with an unknown id (INVALID), packet-too-big from a router (fd00:9:3::1) about the server's large TCP segment, port unreachable from the server for a tracked UDP flow (both RELATED), and port unreachable quoting an unknown flow (INVALID).",
        ""
    ),
    crafted!(
        icmpv6_nd,
        "Neighbour discovery (§4.2): router solicitation, neighbour solicitation to the solicited-node multicast address and the advertisement answering it, all hop limit 255: UNTRACKED, no entry. An echo request afterwards is tracked as usual.",
        ""
    ),
    crafted!(
        udp_gap_timeout,
        "A UDP packet, then after a 40 s gap a packet from the other end. The first entry expired after 30 s, so the second packet starts a new entry with the roles swapped (NEW), and the old client's next packet is its reply.",
        ""
    ),
    crafted!(
        gap_short,
        "Gaps of 3 s for replays with shortened timeouts: UDP request and reply, ICMP echo request and reply, each pair 3 s apart. With default timeouts the replies are ESTABLISHED.",
        "Replay with `--sysctl net.netfilter.nf_conntrack_udp_timeout=2 net.netfilter.nf_conntrack_icmp_timeout=2`: the UDP reply is then NEW with swapped roles and the ICMP echo reply INVALID."
    ),
    crafted!(
        ipv4_fragments,
        "IPv4 fragments of 3000-byte UDP datagrams (§9): a complete set in order, a complete set in reverse order, and an incomplete set (middle fragment missing). Defrag holds fragments; the datagram gets one verdict when its last missing fragment arrives; an incomplete set never reaches conntrack or the rules and is dropped after 30 s (ipfrag_time).",
        "All fragments of a datagram share the verdict of the reassembled datagram (the oracle reports it on every fragment); fragments of an incomplete datagram reach PREROUTING's defrag and nothing else."
    ),
    crafted!(
        ipv6_fragments,
        "IPv6 fragments of a 2000-byte UDP datagram (fragment header, 1232-byte pieces): a complete pair, the unfragmented reply, and an incomplete set that nf_defrag_ipv6 holds until nf_conntrack_frag6_timeout (60 s).",
        "As for `ipv4_fragments`: one verdict per datagram, shared by its fragments."
    ),
    crafted!(
        bad_tcp_checksum,
        "Bad L4 checksums (§2.3, §3): a data segment with a bad TCP checksum on an established connection (INVALID), its good retransmission (ESTABLISHED), a SYN with a bad checksum (INVALID, no entry), a UDP datagram with a bad checksum (INVALID) and one with checksum 0 (no checksum: NEW).",
        CHECKSUMS
    ),
    crafted!(
        bad_ip_checksum,
        "IPv4 header checksum errors: the IPv4 receive path drops such packets before PREROUTING, so no hook, no conntrack and no rule ever sees them. Each bad packet is followed by the same packet intact, which is NEW.",
        CHECKSUMS
    ),
    crafted!(
        truncated_record,
        "Capture records cut by the snap length (caplen < len): a 1000-byte data segment captured as headers only, and a pure ACK cut inside its TCP header. The kernel saw whole packets; the server's ACK for the 1000 bytes proves the payload length must come from the IP header, not the captured length.",
        "The expected column is what the kernel on the wire did with the whole packets. The record cut inside the TCP header cannot be decoded; a replay tool should count it and carry on. A kernel replay (the oracle) can only inject the captured bytes, so it reports the snapped records differently (bad checksum, truncated packet, and then the server's ACK as over the upper bound)."
    ),
    crafted!(
        arp_mixed,
        "ARP requests, replies and a gratuitous ARP interleaved with a TCP handshake and close. ARP is not IP: it never reaches iptables or conntrack, and the TCP packets around it are unaffected.",
        ""
    ),
    crafted!(
        ttl1_forward,
        "Packets arriving with TTL 1 (traceroute probes, UDP and TCP) that the firewall would have to forward: conntrack at PREROUTING sees them, but the forward path drops them (TTL would reach 0) before the FORWARD hook, so the new entry is never confirmed and no rule sees them. The same probes with TTL 64 are NEW in FORWARD.",
        FORWARD_ONLY
    ),
];

/// Looks a scenario up by name.
pub fn find(name: &str) -> Option<&'static Crafted> {
    CRAFTED.iter().find(|c| c.name == name)
}

fn script() -> Script {
    Script::new(Link::Ethernet, EPOCH)
}

fn v4flow(cport: u16, sport: u16) -> TcpFlow {
    TcpFlow::v4(
        CLIENT,
        cport,
        SERVER,
        sport,
        cport as u32 * 100_000,
        3_000_000_000 + cport as u32,
    )
}

/// Handshake, one request and one answer, the client's ACK: leaves the entry
/// ESTABLISHED and ASSURED with nothing unacknowledged.
fn established(s: &mut Script, f: &mut TcpFlow) -> Result<(), SynthError> {
    let [syn, sa, a] = f.handshake();
    s.send(&syn, "NEW · SYN_SENT, 120 s")?;
    s.send(&sa, "ESTABLISHED (reply) · SYN_RECV, 60 s")?;
    s.send(&a, "ESTABLISHED · ESTABLISHED + ASSURED")?;
    s.send(&f.data(C, b"GET / HTTP/1.0\r\n\r\n"), "ESTABLISHED · data")?;
    s.send(
        &f.data(S, b"HTTP/1.0 200 OK\r\n\r\n"),
        "ESTABLISHED (reply) · data, acks the request",
    )?;
    s.send(&f.ack(C), "ESTABLISHED · all data acknowledged")?;
    Ok(())
}

fn close(s: &mut Script, f: &mut TcpFlow) -> Result<(), SynthError> {
    let [f1, a1, f2, a2] = f.close(C);
    s.send(&f1, "ESTABLISHED · FIN_WAIT, 120 s")?;
    s.send(&a1, "ESTABLISHED (reply) · CLOSE_WAIT, 60 s")?;
    s.send(&f2, "ESTABLISHED (reply) · LAST_ACK, 30 s")?;
    s.send(&a2, "ESTABLISHED · TIME_WAIT, 120 s")?;
    Ok(())
}

pub fn ftp_expectation_timeout() -> Result<Script, SynthError> {
    let mut s = script();
    let mut f = v4flow(40900, 21);
    let [syn, sa, a] = f.handshake();
    s.send(&syn, "NEW · control connection, helper ftp")?;
    s.send(&sa, "ESTABLISHED (reply)")?;
    s.send(&a, "ESTABLISHED")?;
    s.send(
        &f.data(S, b"220 ctsim FTP\r\n"),
        "ESTABLISHED (reply) · first server line: not parsed",
    )?;
    s.send(
        &f.data(C, b"USER anonymous\r\n"),
        "ESTABLISHED · first client line: not parsed",
    )?;
    s.send(&f.data(S, b"230 ok\r\n"), "ESTABLISHED (reply)")?;
    s.send(&f.data(C, b"PASV\r\n"), "ESTABLISHED")?;
    s.send(
        &f.data(S, b"227 Entering Passive Mode (10,9,2,2,195,80).\r\n"),
        "ESTABLISHED (reply) · expectation 10.9.1.2:* → 10.9.2.2:50000, 300 s",
    )?;
    s.send(&f.ack(C), "ESTABLISHED")?;
    s.wait_ms(1000);
    let mut d1 = v4flow(40901, 50000);
    let [dsyn, dsa, da] = d1.handshake();
    s.send(&dsyn, "RELATED · EXPECTED, the expectation is used")?;
    s.send(&dsa, "ESTABLISHED (reply)")?;
    s.send(&da, "ESTABLISHED")?;
    s.send(&f.data(C, b"PASV\r\n"), "ESTABLISHED")?;
    s.send(
        &f.data(S, b"227 Entering Passive Mode (10,9,2,2,195,81).\r\n"),
        "ESTABLISHED (reply) · expectation for port 50001, 300 s",
    )?;
    s.send(&f.ack(C), "ESTABLISHED")?;
    // 320 s, not 301: the kernel removes expectations with a timer, and the
    // timer wheel rounds a 300 s timer (75000 jiffies at HZ=250) up to its
    // level's 4096-jiffy granularity, so it fires up to 16.4 s late.
    s.wait_ms(320_000);
    let mut d2 = v4flow(40902, 50001);
    s.send(
        &d2.syn(),
        "NEW · the expectation expired (300 s, plus the kernel timer's slack)",
    )?;
    Ok(s)
}

pub fn tcp_handshake_close() -> Result<Script, SynthError> {
    let mut s = script();
    let mut f = v4flow(40001, 22);
    let [syn, sa, a] = f.handshake();
    s.send(&syn, "NEW · SYN_SENT, UNREPLIED, 120 s")?;
    s.wait_ms(10);
    s.send(&sa, "ESTABLISHED (reply) · SYN_RECV, 60 s")?;
    s.send(&a, "ESTABLISHED · ESTABLISHED + ASSURED, 432000 s")?;
    s.send(
        &f.data(C, b"SSH-2.0-OpenSSH_9.6\r\n"),
        "ESTABLISHED · client data unacknowledged → 300 s",
    )?;
    s.wait_ms(10);
    s.send(
        &f.data(S, b"SSH-2.0-OpenSSH_9.2p1\r\n"),
        "ESTABLISHED (reply) · acks the client; server data unacknowledged → 300 s",
    )?;
    s.send(
        &f.ack(C),
        "ESTABLISHED · everything acknowledged → 432000 s",
    )?;
    s.wait_ms(500);
    let [f1, a1, f2, a2] = f.close(C);
    s.send(&f1, "ESTABLISHED · FIN_WAIT, 120 s")?;
    s.send(&a1, "ESTABLISHED (reply) · CLOSE_WAIT, 60 s")?;
    s.send(&f2, "ESTABLISHED (reply) · LAST_ACK, 30 s")?;
    s.send(&a2, "ESTABLISHED · TIME_WAIT, 120 s")?;
    Ok(s)
}

pub fn tcp_syn_retransmit() -> Result<Script, SynthError> {
    let mut s = script();
    let mut f = v4flow(40002, 22);
    let syn = f.syn();
    s.send(&syn, "NEW · SYN_SENT, 120 s")?;
    s.wait_ms(1000);
    s.send(
        &syn,
        "NEW · retransmitted SYN: still SYN_SENT, timeout not refreshed",
    )?;
    s.wait_ms(10);
    s.send(&f.syn_ack(), "ESTABLISHED (reply) · SYN_RECV, 60 s")?;
    s.send(&f.ack(C), "ESTABLISHED · ESTABLISHED + ASSURED")?;
    Ok(s)
}

pub fn tcp_refused() -> Result<Script, SynthError> {
    let mut s = script();
    let mut f = v4flow(40003, 23);
    let syn = f.syn();
    s.send(&syn, "NEW · SYN_SENT")?;
    // A closed port answers a SYN with seq 0 and an ACK of the SYN (RFC 9293 3.10.7.1).
    let refuse = f.rst_ack(S).seq(0);
    s.send(
        &refuse,
        "ESTABLISHED (reply) · RST while unreplied: accepted, entry deleted",
    )?;
    s.wait_ms(1000);
    s.send(&syn, "NEW · the old entry is gone: new SYN_SENT entry")?;
    s.send(&refuse, "ESTABLISHED (reply) · entry deleted again")?;
    Ok(s)
}

pub fn tcp_half_open() -> Result<Script, SynthError> {
    let mut s = script();
    let mut f = v4flow(40004, 22);
    s.send(&f.syn(), "NEW · SYN_SENT")?;
    let sa = f.syn_ack();
    s.send(&sa, "ESTABLISHED (reply) · SYN_RECV, 60 s")?;
    s.wait_ms(1000);
    s.send(&sa, "ESTABLISHED (reply) · retransmitted SYN/ACK ignored in SYN_RECV: no state or timeout change")?;
    s.wait_ms(2000);
    s.send(&sa, "ESTABLISHED (reply) · ignored again")?;
    s.wait_ms(5);
    s.send(&f.rst(C), "ESTABLISHED · in-window RST: CLOSE, 10 s")?;
    Ok(s)
}

pub fn tcp_simultaneous_open() -> Result<Script, SynthError> {
    let mut s = script();
    let mut f = v4flow(40005, 40500);
    let (ci, si) = (f.next_seq(C), f.next_seq(S));
    s.send(&f.seg(C, flags::S), "NEW · SYN_SENT")?;
    f.advance(C, 1);
    s.send(
        &f.seg(S, flags::S),
        "ESTABLISHED (reply) · reply-side SYN: SYN_SENT2",
    )?;
    f.advance(S, 1);
    s.send(
        &f.seg(C, flags::SA).seq(ci),
        "ESTABLISHED · SYN/ACK from the originator: SYN_RECV",
    )?;
    s.send(
        &f.seg(S, flags::SA).seq(si),
        "ESTABLISHED (reply) · SYN/ACK in SYN_RECV ignored",
    )?;
    s.send(&f.ack(C), "ESTABLISHED · ESTABLISHED + ASSURED")?;
    s.send(
        &f.data(S, b"hello from 40500\n"),
        "ESTABLISHED (reply) · data",
    )?;
    s.send(&f.ack(C), "ESTABLISHED · ack")?;
    Ok(s)
}

pub fn tcp_window_violation() -> Result<Script, SynthError> {
    let mut s = script();
    let mut f = v4flow(40006, 80).with_window(S, 8192);
    established(&mut s, &mut f)?;
    let body = [b'x'; 100];
    let next = f.next_seq(C);
    let far = f
        .seg(C, flags::PA)
        .seq(next.wrapping_add(1_000_000))
        .payload(&body);
    s.send(
        &far,
        "INVALID · SEQ is over upper bound (1,000,000 bytes beyond the window)",
    )?;
    s.send(&f.data(C, &body), "ESTABLISHED · in-window data")?;
    s.send(&f.ack(S), "ESTABLISHED (reply) · ack, window 8192")?;
    // The right edge the server allows is its ack + 8192; start 10 bytes past it.
    let edge = f.next_seq(C).wrapping_add(8192);
    let over = f
        .seg(C, flags::PA)
        .seq(edge.wrapping_add(10))
        .payload(&body);
    s.send(
        &over,
        "ESTABLISHED · just past the window: ignored (accepted, no state change)",
    )?;
    Ok(s)
}

pub fn tcp_ack_unseen() -> Result<Script, SynthError> {
    let mut s = script();
    let mut f = v4flow(40007, 80);
    established(&mut s, &mut f)?;
    let sn = f.next_seq(S);
    s.send(
        &f.seg(C, flags::A).ack_num(sn.wrapping_add(1)),
        "INVALID · ACK is over upper bound (1 byte never sent)",
    )?;
    s.send(
        &f.seg(C, flags::A).ack_num(sn.wrapping_add(100_000)),
        "INVALID · ACK is over upper bound (100000 bytes never sent)",
    )?;
    s.send(&f.data(C, b"more\n"), "ESTABLISHED · correct ack")?;
    s.send(&f.ack(S), "ESTABLISHED (reply)")?;
    Ok(s)
}

pub fn tcp_bogus_flags() -> Result<Script, SynthError> {
    let mut s = script();
    let mut f = v4flow(40008, 80);
    established(&mut s, &mut f)?;
    const BAD: &str = "INVALID · invalid tcp flag combination";
    for fl in [
        flags::F,
        flags::SF,
        flags::SR,
        flags::NULL,
        flags::XMAS,
        flags::U,
        flags::SAU,
    ] {
        s.send(&f.seg(C, fl), BAD)?;
    }
    s.send(
        &f.data(C, b"still here\n"),
        "ESTABLISHED · connection unaffected",
    )?;
    s.send(&f.ack(S), "ESTABLISHED (reply)")?;
    let ecn = TcpFlow::v4(CLIENT, 40009, SERVER, 80, 7_000, 0);
    s.send(
        &ecn.seg(C, flags::SEC),
        "NEW · SYN+ECE+CWR is a valid ECN-setup SYN",
    )?;
    let null = TcpFlow::v4(CLIENT, 40010, SERVER, 80, 8_000, 0);
    s.send(&null.seg(C, flags::NULL), "INVALID · null scan: no flags")?;
    Ok(s)
}

pub fn tcp_invalid_first() -> Result<Script, SynthError> {
    let mut s = script();
    let cases: [(u16, u8, &'static str); 4] = [
        (
            40011,
            flags::SA,
            "INVALID · SYN/ACK cannot open a connection: no entry",
        ),
        (
            40012,
            flags::FA,
            "INVALID · FIN/ACK cannot open a connection: no entry",
        ),
        (
            40013,
            flags::R,
            "INVALID · RST cannot open a connection: no entry",
        ),
        (
            40014,
            flags::RA,
            "INVALID · RST/ACK cannot open a connection: no entry",
        ),
    ];
    for (port, fl, note) in cases {
        let f = v4flow(port, 80);
        s.send(&f.seg(C, fl), note)?;
    }
    Ok(s)
}

pub fn tcp_midstream() -> Result<Script, SynthError> {
    let mut s = script();
    let mut f = TcpFlow::v4(CLIENT, 40015, SERVER, 80, 3_000_000, 4_000_000);
    let body = [b'm'; 200];
    s.send(
        &f.data(C, &body),
        "NEW · picked up mid-stream: ESTABLISHED, 300 s, both sides liberal (loose=0: INVALID)",
    )?;
    s.send(
        &f.data(S, &body),
        "ESTABLISHED (reply) · 300 s, not yet ASSURED (loose=0: INVALID)",
    )?;
    s.send(&f.ack(C), "ESTABLISHED · ASSURED (loose=0: INVALID)")?;
    f.advance(C, 100_000_000);
    s.send(&f.data(C, &body), "ESTABLISHED · 100 MB ahead, no window enforcement for a picked-up connection (loose=0: INVALID)")?;
    Ok(s)
}

pub fn tcp_rst_variants() -> Result<Script, SynthError> {
    let mut s = script();
    // (a) exact
    let mut a = v4flow(40016, 80);
    established(&mut s, &mut a)?;
    s.send(
        &a.rst(C),
        "ESTABLISHED · (a) RST at the expected seq: CLOSE, 10 s",
    )?;
    s.wait_ms(100);
    // (b) in window, inexact
    let mut b = v4flow(40017, 80);
    established(&mut s, &mut b)?;
    let off = b.next_seq(C).wrapping_add(1000);
    s.send(
        &b.rst(C).seq(off),
        "ESTABLISHED · (b) in-window, inexact RST: state kept ESTABLISHED, timeout 10 s",
    )?;
    s.send(&b.ack(S), "ESTABLISHED (reply) · (b) challenge ACK")?;
    s.send(&b.rst(C), "ESTABLISHED · (b) RST at the acked seq: CLOSE")?;
    s.wait_ms(100);
    // (c) out of window, and below the acked sequence
    let mut c = v4flow(40018, 80);
    established(&mut s, &mut c)?;
    let far = c.next_seq(C).wrapping_add(10_000_000);
    s.send(&c.rst(C).seq(far), "INVALID · (c) RST outside the window")?;
    let old = c.next_seq(C).wrapping_sub(5000);
    s.send(
        &c.rst(C).seq(old),
        "INVALID · (c) RST below what the server already acknowledged",
    )?;
    s.send(&c.data(C, b"ok\n"), "ESTABLISHED · (c) connection unharmed")?;
    s.send(&c.ack(S), "ESTABLISHED (reply)")?;
    s.wait_ms(100);
    // (d) RST answering an ignored SYN
    let mut d = v4flow(40019, 80);
    established(&mut s, &mut d)?;
    let new_isn = d.next_seq(C).wrapping_add(50_000_000);
    let syn = d.seg(C, flags::S).seq(new_isn);
    s.send(
        &syn,
        "ESTABLISHED · (d) SYN in ESTABLISHED: ignored, accepted",
    )?;
    let rst = d
        .seg(S, flags::RA)
        .seq(0)
        .window(0)
        .ack_num(new_isn.wrapping_add(1))
        .clear_options();
    s.send(
        &rst,
        "ESTABLISHED (reply) · (d) RST/ACK acking the ignored SYN: CLOSE, no window check",
    )?;
    Ok(s)
}

pub fn tcp_syn_resync() -> Result<Script, SynthError> {
    let mut s = script();
    let mut f = v4flow(40020, 80);
    established(&mut s, &mut f)?;
    s.wait_ms(30_000);
    let new_isn = f.next_seq(C).wrapping_add(77_000_000);
    f.set_seq(C, new_isn);
    f.set_seq(S, 900_000_000);
    s.send(
        &f.syn(),
        "ESTABLISHED · SYN in ESTABLISHED: ignored, accepted, recorded",
    )?;
    s.send(
        &f.syn_ack(),
        "ESTABLISHED (reply) · SYN/ACK acking the ignored SYN: re-sync to SYN_RECV",
    )?;
    s.send(&f.ack(C), "ESTABLISHED · ESTABLISHED again")?;
    s.send(
        &f.data(C, b"again\n"),
        "ESTABLISHED · data on the new sequence space",
    )?;
    s.send(&f.ack(S), "ESTABLISHED (reply)")?;
    Ok(s)
}

pub fn tcp_time_wait_reuse() -> Result<Script, SynthError> {
    let mut s = script();
    let mut f = v4flow(40021, 80);
    established(&mut s, &mut f)?;
    close(&mut s, &mut f)?;
    s.wait_ms(2000);
    let isn = f.next_seq(C).wrapping_add(100_000);
    let mut g = TcpFlow::v4(CLIENT, 40021, SERVER, 80, isn, 123_456_789);
    s.send(
        &g.syn(),
        "NEW · SYN on a TIME_WAIT tuple: old entry killed, new SYN_SENT entry",
    )?;
    s.send(&g.syn_ack(), "ESTABLISHED (reply) · SYN_RECV")?;
    s.send(&g.ack(C), "ESTABLISHED · ESTABLISHED + ASSURED")?;
    Ok(s)
}

pub fn tcp_window_scaling() -> Result<Script, SynthError> {
    let mut s = script();
    let ws = SynOptions {
        wscale: Some(7),
        ..SynOptions::default()
    };
    let mut f = v4flow(40022, 873)
        .with_options(C, ws)
        .with_options(S, ws)
        .with_window(C, 64256)
        .with_window(S, 64256);
    let [syn, sa, a] = f.handshake();
    s.send(&syn, "NEW · SYN with wscale 7")?;
    s.send(
        &sa,
        "ESTABLISHED (reply) · SYN/ACK with wscale 7: scaling on",
    )?;
    s.send(
        &a,
        "ESTABLISHED · ESTABLISHED + ASSURED; window field 502 (× 128)",
    )?;
    let seg = vec![b'w'; 1448];
    s.set_step(Duration(100_000));
    for i in 1..=56 {
        s.send(
            &f.data(C, &seg),
            "ESTABLISHED · data inside the scaled window (beyond 65160 only if scaled)",
        )?;
        if i == 20 || i == 40 {
            s.send(
                &f.ack(S),
                "ESTABLISHED (reply) · ack, raw window 502 = 64256 bytes",
            )?;
        }
    }
    s.set_step(Duration::from_millis(1));
    s.send(&f.ack(S), "ESTABLISHED (reply) · everything acknowledged")?;
    close(&mut s, &mut f)?;
    Ok(s)
}

/// A DNS query for `name` (already in wire format) of type A.
fn dns_query(id: u16, qname: &[u8]) -> Vec<u8> {
    let mut q = Vec::with_capacity(12 + qname.len() + 4);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    q.extend_from_slice(qname);
    q.extend_from_slice(&[0, 1, 0, 1]);
    q
}

/// The answer to [`dns_query`]: one A record, 300 s TTL.
fn dns_answer(id: u16, qname: &[u8], addr: Ipv4Addr) -> Vec<u8> {
    let mut r = dns_query(id, qname);
    r[2] = 0x81;
    r[3] = 0x80;
    r[7] = 1;
    r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0x01, 0x2c, 0, 4]);
    r.extend_from_slice(&addr.octets());
    r
}

pub fn udp_dns() -> Result<Script, SynthError> {
    let mut s = script();
    let name = b"\x07example\x03com\x00";
    for (port, id) in [(40100u16, 0x1a2bu16), (40101, 0x3c4d)] {
        let q = dns_query(id, name);
        let r = dns_answer(id, name, Ipv4Addr::new(93, 184, 215, 14));
        s.send(
            &Pkt::udp((CLIENT, SERVER), port, 53).payload(&q),
            "NEW · UNREPLIED, 30 s",
        )?;
        s.wait_ms(12);
        s.send(
            &Pkt::udp((SERVER, CLIENT), 53, port).payload(&r),
            "ESTABLISHED (reply) · 30 s, not ASSURED",
        )?;
        s.wait_ms(200);
    }
    Ok(s)
}

pub fn udp_one_way() -> Result<Script, SynthError> {
    let mut s = Script::new(Link::Raw, EPOCH);
    let msg = b"<134>Jan  1 00:00:00 host app: message";
    for _ in 0..5 {
        s.send(
            &Pkt::udp((CLIENT, SERVER), 40102, 514).payload(msg),
            "NEW · still UNREPLIED, refreshed to 30 s",
        )?;
        s.wait_ms(999);
    }
    Ok(s)
}

pub fn udp_stream_assured() -> Result<Script, SynthError> {
    let mut s = script();
    let body = [0x80u8; 172];
    let up = Pkt::udp((CLIENT, SERVER), 40103, 5004).payload(&body);
    let down = Pkt::udp((SERVER, CLIENT), 5004, 40103).payload(&body);
    s.send(&up, "NEW · 30 s")?;
    s.wait_ms(19);
    s.send(
        &down,
        "ESTABLISHED (reply) · 30 s; the first reply never assures",
    )?;
    s.wait_ms(979);
    s.send(
        &up,
        "ESTABLISHED · 30 s: less than 2 s since the first packet",
    )?;
    s.wait_ms(1499);
    s.send(
        &up,
        "ESTABLISHED · 2.5 s after the first packet, after a reply: ASSURED, 120 s",
    )?;
    s.send(&down, "ESTABLISHED (reply) · ASSURED, 120 s")?;
    Ok(s)
}

pub fn icmp_echo() -> Result<Script, SynthError> {
    let mut s = script();
    let data: Vec<u8> = (0x10..0x40).collect();
    let (c2s, s2c) = ((CLIENT, SERVER), (SERVER, CLIENT));
    s.send(
        &Pkt::echo_request(c2s, 0x1234, 1).payload(&data),
        "NEW · 30 s",
    )?;
    s.wait(Duration(412_345));
    s.send(
        &Pkt::echo_reply(s2c, 0x1234, 1).payload(&data),
        "ESTABLISHED (reply) · entry kept, 30 s",
    )?;
    s.wait(Duration(87_001));
    s.send(
        &Pkt::echo_reply(s2c, 0x1234, 1).payload(&data),
        "ESTABLISHED (reply) · duplicate reply",
    )?;
    s.wait_ms(999);
    s.send(
        &Pkt::echo_request(c2s, 0x1234, 2).payload(&data),
        "ESTABLISHED · same id, same entry",
    )?;
    s.wait(Duration(398_765));
    s.send(
        &Pkt::echo_reply(s2c, 0x1234, 2).payload(&data),
        "ESTABLISHED (reply)",
    )?;
    Ok(s)
}

pub fn icmp_unknown_types() -> Result<Script, SynthError> {
    let mut s = script();
    let (c2s, s2c) = ((CLIENT, SERVER), (SERVER, CLIENT));
    s.send(
        &Pkt::echo_reply(s2c, 0x4321, 1).payload(b"abcdefgh"),
        "INVALID · echo reply without a request",
    )?;
    // Router advertisement: one address entry (address, preference).
    let ra_body = [10, 9, 2, 2, 0, 0, 0, 0];
    s.send(
        &Pkt::icmp(s2c, icmp::ROUTER_ADVERT, 0, [1, 2, 0x07, 0x08]).payload(&ra_body),
        "INVALID · type 9 has no reply type",
    )?;
    s.send(
        &Pkt::icmp(c2s, 10, 0, [0; 4]),
        "INVALID · type 10 has no reply type",
    )?;
    s.send(
        &Pkt::icmp(c2s, 19, 0, [0; 4]).payload(b"reserved"),
        "INVALID · type 19 is above 18",
    )?;
    let ts = [0u8; 12];
    s.send(
        &Pkt::icmp(c2s, icmp::TIMESTAMP, 0, [0x55, 0x66, 0, 1]).payload(&ts),
        "NEW · timestamp request",
    )?;
    s.send(
        &Pkt::icmp(s2c, icmp::TIMESTAMP_REPLY, 0, [0x55, 0x66, 0, 1]).payload(&ts),
        "ESTABLISHED (reply) · timestamp reply",
    )?;
    Ok(s)
}

pub fn icmp_port_unreachable() -> Result<Script, SynthError> {
    let mut s = script();
    let probe = Pkt::udp((CLIENT, SERVER), 40104, 5000)
        .payload(b"probe")
        .ip_id(0x2001);
    s.send(&probe, "NEW · UNREPLIED")?;
    let orig = probe.build()?;
    let err = Pkt::icmp_error(
        (SERVER, CLIENT),
        icmp::DEST_UNREACH,
        icmp::PORT_UNREACH,
        [0; 4],
        &orig,
    );
    s.send(
        &err,
        "RELATED · error about a tracked flow; the UDP entry is not refreshed and stays UNREPLIED",
    )?;
    s.wait_ms(500);
    s.send(
        &probe,
        "NEW · still unreplied: the ICMP error did not count as a reply",
    )?;
    let ghost = Pkt::udp((CLIENT, SERVER), 40105, 5001)
        .payload(b"ghost")
        .build()?;
    let err2 = Pkt::icmp_error(
        (SERVER, CLIENT),
        icmp::DEST_UNREACH,
        icmp::PORT_UNREACH,
        [0; 4],
        &ghost,
    );
    s.send(&err2, "INVALID · error quoting a flow that was never seen")?;
    Ok(s)
}

pub fn icmp_time_exceeded() -> Result<Script, SynthError> {
    let mut s = script();
    let mut f = v4flow(40106, 22);
    let syn = f.syn();
    s.send(&syn, "NEW · SYN_SENT")?;
    // The router quotes the SYN as it received it, TTL worn down to 1.
    let seen = syn.ttl(1).build()?;
    let te = Pkt::icmp_error((ROUTER, CLIENT), icmp::TIME_EXCEEDED, 0, [0; 4], &seen).ttl(254);
    s.send(&te, "RELATED · time exceeded from a third-party router")?;
    let te_srv = Pkt::icmp_error((SERVER, CLIENT), icmp::TIME_EXCEEDED, 1, [0; 4], &seen);
    s.send(
        &te_srv,
        "RELATED · reassembly time exceeded from the server itself",
    )?;
    let wrong = Pkt::icmp_error((ROUTER, SERVER), icmp::TIME_EXCEEDED, 0, [0; 4], &seen).ttl(254);
    s.send(
        &wrong,
        "INVALID · sent to the server, but the quoted packet came from the client",
    )?;
    Ok(s)
}

pub fn ipv6_tcp() -> Result<Script, SynthError> {
    let mut s = script();
    let linux = SynOptions {
        mss: Some(1440),
        wscale: Some(7),
        sack_perm: true,
        timestamps: true,
    };
    let mut f = TcpFlow::v6(CLIENT6, 40200, SERVER6, 22, 0x1111_0000, 0x2222_0000)
        .with_options(C, linux)
        .with_options(S, linux)
        .with_window(C, 64768)
        .with_window(S, 64768);
    let [syn, sa, a] = f.handshake();
    s.send(&syn, "NEW · SYN_SENT")?;
    s.send(&sa, "ESTABLISHED (reply) · SYN_RECV")?;
    s.send(&a, "ESTABLISHED · ESTABLISHED + ASSURED")?;
    s.send(
        &f.data(C, b"SSH-2.0-OpenSSH_9.6\r\n"),
        "ESTABLISHED · data, 300 s",
    )?;
    s.send(
        &f.data(S, b"SSH-2.0-OpenSSH_9.2p1\r\n"),
        "ESTABLISHED (reply) · data, 300 s",
    )?;
    s.send(&f.ack(C), "ESTABLISHED · 432000 s")?;
    close(&mut s, &mut f)?;
    Ok(s)
}

pub fn icmpv6_errors() -> Result<Script, SynthError> {
    let mut s = script();
    let (c2s, s2c) = ((CLIENT6, SERVER6), (SERVER6, CLIENT6));
    s.send(
        &Pkt::echo_request(c2s, 0x0606, 1).payload(b"ping6ping6"),
        "NEW · echo request",
    )?;
    s.send(
        &Pkt::echo_reply(s2c, 0x0606, 1).payload(b"ping6ping6"),
        "ESTABLISHED (reply)",
    )?;
    s.send(
        &Pkt::echo_reply(s2c, 0x0707, 1).payload(b"ping6ping6"),
        "INVALID · echo reply with an unknown id",
    )?;
    let mut f = TcpFlow::v6(CLIENT6, 40201, SERVER6, 80, 10_000, 20_000);
    let [syn, sa, a] = f.handshake();
    s.send(&syn, "NEW · SYN_SENT")?;
    s.send(&sa, "ESTABLISHED (reply) · SYN_RECV")?;
    s.send(&a, "ESTABLISHED · ESTABLISHED + ASSURED")?;
    let big = vec![b'B'; 1400];
    let seg = f.data(S, &big);
    s.send(&seg, "ESTABLISHED (reply) · 1400-byte segment")?;
    let seg_bytes = seg.build()?;
    let ptb = Pkt::icmp_error(
        (ROUTER6, SERVER6),
        icmp6::PACKET_TOO_BIG,
        0,
        mtu_word(Family::Ipv6, 1280),
        &seg_bytes,
    );
    s.send(
        &ptb,
        "RELATED · packet too big for the tracked TCP flow, to the sender of the segment",
    )?;
    let probe = Pkt::udp(c2s, 40202, 5000).payload(b"probe6");
    s.send(&probe, "NEW · UDP")?;
    let pb = probe.build()?;
    let unreach = Pkt::icmp_error(s2c, icmp6::DEST_UNREACH, icmp6::PORT_UNREACH, [0; 4], &pb);
    s.send(
        &unreach,
        "RELATED · port unreachable for the tracked UDP flow",
    )?;
    let ghost = Pkt::udp(c2s, 40203, 5001).payload(b"ghost6").build()?;
    let unreach2 = Pkt::icmp_error(
        s2c,
        icmp6::DEST_UNREACH,
        icmp6::PORT_UNREACH,
        [0; 4],
        &ghost,
    );
    s.send(
        &unreach2,
        "INVALID · port unreachable quoting an unknown flow",
    )?;
    Ok(s)
}

pub fn icmpv6_nd() -> Result<Script, SynthError> {
    let mut s = script();
    let all_routers: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);
    let cmac = packet::mac_for(CLIENT6.into());
    let smac = packet::mac_for(SERVER6.into());
    // Router solicitation with a source link-layer address option.
    let rs_body = [1, 1, cmac[0], cmac[1], cmac[2], cmac[3], cmac[4], cmac[5]];
    s.send(
        &Pkt::icmp((CLIENT6, all_routers), icmp6::ROUTER_SOLICIT, 0, [0; 4])
            .ttl(255)
            .payload(&rs_body),
        "UNTRACKED · router solicitation",
    )?;
    let ns_body = neighbor_solicit_body(SERVER6, cmac);
    let ns = Pkt::icmp(
        (CLIENT6, solicited_node(SERVER6)),
        icmp6::NEIGHBOR_SOLICIT,
        0,
        [0; 4],
    )
    .ttl(255)
    .payload(&ns_body);
    s.send(&ns, "UNTRACKED · neighbour solicitation")?;
    let na_body = neighbor_advert_body(SERVER6, smac);
    let na = Pkt::icmp(
        (SERVER6, CLIENT6),
        icmp6::NEIGHBOR_ADVERT,
        0,
        packet::NA_SOLICITED_OVERRIDE,
    )
    .ttl(255)
    .payload(&na_body);
    s.send(&na, "UNTRACKED · neighbour advertisement")?;
    s.send(
        &Pkt::echo_request((CLIENT6, SERVER6), 0x0b0b, 1),
        "NEW · echo request is tracked as usual",
    )?;
    Ok(s)
}

pub fn udp_gap_timeout() -> Result<Script, SynthError> {
    let mut s = script();
    let a = Pkt::udp((CLIENT, SERVER), 40300, 5353).payload(b"first");
    let b = Pkt::udp((SERVER, CLIENT), 5353, 40300).payload(b"late answer");
    s.send(&a, "NEW · 30 s")?;
    s.wait_ms(40_000);
    s.send(
        &b,
        "NEW · first entry expired at 30 s: new entry, server is the originator now",
    )?;
    s.send(&a, "ESTABLISHED (reply) · reply direction of the new entry")?;
    Ok(s)
}

pub fn gap_short() -> Result<Script, SynthError> {
    let mut s = script();
    let a = Pkt::udp((CLIENT, SERVER), 40301, 7000).payload(b"q");
    let b = Pkt::udp((SERVER, CLIENT), 7000, 40301).payload(b"r");
    s.send(&a, "NEW")?;
    s.wait_ms(3000);
    s.send(
        &b,
        "ESTABLISHED (reply) by default · udp_timeout=2: NEW, roles swapped",
    )?;
    s.wait_ms(100);
    s.send(&Pkt::echo_request((CLIENT, SERVER), 0x0300, 1), "NEW")?;
    s.wait_ms(3000);
    s.send(
        &Pkt::echo_reply((SERVER, CLIENT), 0x0300, 1),
        "ESTABLISHED (reply) by default · icmp_timeout=2: INVALID",
    )?;
    Ok(s)
}

pub fn ipv4_fragments() -> Result<Script, SynthError> {
    let mut s = script();
    let data: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    let d = |id: u16| -> Result<Vec<Vec<u8>>, SynthError> {
        let pkt = Pkt::udp((CLIENT, SERVER), 40400, 5000)
            .payload(&data)
            .ip_id(id)
            .dont_fragment(false);
        fragment(&pkt.build()?, 1480, 0)
    };
    let f1 = d(0x1001)?;
    s.send_datagram(
        &f1[0],
        "NEW · fragment 1/3: held by defrag, shares the verdict of the reassembled datagram",
    )?;
    s.send_datagram(&f1[1], "NEW · fragment 2/3: held")?;
    s.send_datagram(
        &f1[2],
        "NEW · fragment 3/3 completes the datagram: one conntrack and filter pass",
    )?;
    s.send(
        &Pkt::udp((SERVER, CLIENT), 5000, 40400).payload(b"ack"),
        "ESTABLISHED (reply)",
    )?;
    let f2 = d(0x1002)?;
    s.send_datagram(&f2[2], "ESTABLISHED · fragment 3/3 first: held")?;
    s.send_datagram(&f2[1], "ESTABLISHED · fragment 2/3: held")?;
    s.send_datagram(&f2[0], "ESTABLISHED · fragment 1/3 completes the datagram")?;
    let f3 = d(0x1003)?;
    s.send_datagram(
        &f3[0],
        "no verdict · fragment 1/3 held; fragment 2 never comes",
    )?;
    s.send_datagram(
        &f3[2],
        "no verdict · fragment 3/3 held; the incomplete datagram is dropped after 30 s",
    )?;
    Ok(s)
}

pub fn ipv6_fragments() -> Result<Script, SynthError> {
    let mut s = script();
    let data: Vec<u8> = (0..2000u32).map(|i| (i % 241) as u8).collect();
    let pkt = Pkt::udp((CLIENT6, SERVER6), 40401, 5000)
        .payload(&data)
        .build()?;
    let f1 = fragment(&pkt, 1232, 0x6001)?;
    s.send_datagram(
        &f1[0],
        "NEW · fragment 1/2: held by defrag, shares the verdict of the reassembled datagram",
    )?;
    s.send_datagram(&f1[1], "NEW · fragment 2/2 completes the datagram")?;
    s.send(
        &Pkt::udp((SERVER6, CLIENT6), 5000, 40401).payload(b"ack"),
        "ESTABLISHED (reply)",
    )?;
    let f2 = fragment(&pkt, 1232, 0x6002)?;
    s.send_datagram(
        &f2[0],
        "no verdict · fragment 1/2 held; fragment 2 never comes, dropped after 60 s",
    )?;
    Ok(s)
}

pub fn bad_tcp_checksum() -> Result<Script, SynthError> {
    let mut s = script();
    let mut f = v4flow(40500, 80);
    established(&mut s, &mut f)?;
    let body = b"checksummed payload\n";
    let next = f.next_seq(C);
    let good = f.data(C, body);
    s.send(&good.bad_l4_checksum(), "INVALID · bad TCP checksum")?;
    s.wait_ms(200);
    s.send(
        &good.seq(next),
        "ESTABLISHED · the retransmission with a good checksum",
    )?;
    s.send(&f.ack(S), "ESTABLISHED (reply)")?;
    let mut g = v4flow(40501, 80);
    s.send(
        &g.syn().bad_l4_checksum(),
        "INVALID · SYN with a bad checksum: no entry",
    )?;
    s.send(
        &Pkt::udp((CLIENT, SERVER), 40502, 6000)
            .payload(b"bad")
            .bad_l4_checksum(),
        "INVALID · bad UDP checksum",
    )?;
    s.send(
        &Pkt::udp((CLIENT, SERVER), 40503, 6000)
            .payload(b"none")
            .no_udp_checksum(),
        "NEW · UDP checksum 0 means none: accepted",
    )?;
    Ok(s)
}

pub fn bad_ip_checksum() -> Result<Script, SynthError> {
    let mut s = script();
    let u = Pkt::udp((CLIENT, SERVER), 40600, 5000).payload(b"datagram");
    s.send(
        &u.bad_ip_checksum(),
        "no verdict · dropped by the IPv4 receive path before PREROUTING",
    )?;
    s.send(&u, "NEW · the same datagram intact")?;
    let mut f = v4flow(40601, 80);
    let syn = f.syn();
    s.send(
        &syn.bad_ip_checksum(),
        "no verdict · dropped before PREROUTING",
    )?;
    s.send(&syn, "NEW · SYN_SENT")?;
    Ok(s)
}

pub fn truncated_record() -> Result<Script, SynthError> {
    let mut s = script();
    let mut f = v4flow(40700, 80);
    let [syn, sa, a] = f.handshake();
    s.send(&syn, "NEW · SYN_SENT")?;
    s.send(&sa, "ESTABLISHED (reply) · SYN_RECV")?;
    s.send(&a, "ESTABLISHED · ESTABLISHED + ASSURED")?;
    let body = vec![b'T'; 1000];
    let d = f.data(C, &body);
    s.send_truncated(
        &d,
        14 + 20 + 20,
        "ESTABLISHED · 1000-byte segment, only its 54 header bytes captured",
    )?;
    let cut = f.ack(C);
    s.send_truncated(
        &cut,
        14 + 20 + 6,
        "undecodable · cut 6 bytes into the TCP header (the kernel saw a plain ACK)",
    )?;
    s.send(&f.ack(S), "ESTABLISHED (reply) · acks all 1000 bytes: valid only if the payload length came from the IP header")?;
    Ok(s)
}

pub fn arp_mixed() -> Result<Script, SynthError> {
    let mut s = script();
    const ARP: &str = "ARP · not IP: no hook, no conntrack";
    s.send_frame(packet::arp_frame(arp::REQUEST, CLIENT, GATEWAY), ARP)?;
    s.send_frame(packet::arp_frame(arp::REPLY, GATEWAY, CLIENT), ARP)?;
    let mut f = v4flow(40800, 80);
    let [syn, sa, a] = f.handshake();
    s.send(&syn, "NEW · SYN_SENT")?;
    s.send_frame(
        packet::arp_frame(arp::REQUEST, SERVER, Ipv4Addr::new(10, 9, 2, 1)),
        ARP,
    )?;
    s.send(&sa, "ESTABLISHED (reply) · SYN_RECV")?;
    s.send(&a, "ESTABLISHED · ESTABLISHED + ASSURED")?;
    // Gratuitous ARP: sender and target address are the same.
    s.send_frame(packet::arp_frame(arp::REQUEST, SERVER, SERVER), ARP)?;
    close(&mut s, &mut f)?;
    Ok(s)
}

pub fn ttl1_forward() -> Result<Script, SynthError> {
    let mut s = script();
    let probe = |ttl: u8| {
        Pkt::udp((CLIENT, SERVER), 40900, 33434)
            .payload(&[0u8; 32])
            .ttl(ttl)
            .dont_fragment(false)
    };
    s.send(
        &probe(1),
        "NEW in PREROUTING only · TTL 1 cannot be forwarded: no FORWARD, entry never confirmed",
    )?;
    s.wait_ms(5);
    s.send(&probe(64), "NEW · same probe with TTL 64 reaches FORWARD")?;
    s.wait_ms(5);
    let f = v4flow(40901, 443).with_ttl(1);
    s.send(
        &f.seg(C, flags::S),
        "NEW in PREROUTING only · TCP SYN with TTL 1",
    )?;
    let g = v4flow(40901, 443);
    s.send(&g.seg(C, flags::S), "NEW · the SYN with TTL 64")?;
    Ok(s)
}

/// Builds every scenario and writes `<name>.pcap` plus `README.md` into
/// `dir`; returns the paths written.
pub fn write_all(dir: &Path) -> Result<Vec<PathBuf>, SynthError> {
    fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    let mut built = Vec::with_capacity(CRAFTED.len());
    for c in CRAFTED {
        let script = (c.build)()?;
        let path = dir.join(format!("{}.pcap", c.name));
        let file = fs::File::create(&path)?;
        script.write_pcap(BufWriter::new(file), c.precision)?;
        written.push(path);
        built.push((c, script));
    }
    let readme = dir.join("README.md");
    fs::write(&readme, render_readme(&built))?;
    written.push(readme);
    Ok(written)
}

/// The README for `captures/crafted/`, notes included.
pub fn readme() -> Result<String, SynthError> {
    let mut built = Vec::with_capacity(CRAFTED.len());
    for c in CRAFTED {
        built.push((c, (c.build)()?));
    }
    Ok(render_readme(&built))
}

fn render_readme(built: &[(&Crafted, Script)]) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    o.push_str(README_HEAD);
    for (c, script) in built {
        let _ = writeln!(o, "\n## {}\n", c.name);
        let link = match c.link {
            Link::Ethernet => "Ethernet",
            Link::Raw => "raw IP",
        };
        let prec = match c.precision {
            TsPrecision::Micro => "µs",
            TsPrecision::Nano => "ns",
        };
        let _ = writeln!(
            o,
            "`{}.pcap` · {} packets · {link} · {prec} timestamps\n",
            c.name,
            script.records().len()
        );
        let _ = writeln!(o, "{}\n", c.about);
        if !c.setup.is_empty() {
            let _ = writeln!(o, "*Replay:* {}\n", c.setup);
        }
        o.push_str("| # | t (ms) | expected |\n|---:|---:|---|\n");
        let t0 = script.records().first().map(|r| r.ts).unwrap_or(EPOCH);
        for (i, r) in script.records().iter().enumerate() {
            let us = r.ts.since(t0).0 / 1000;
            let _ = writeln!(
                o,
                "| {} | {}.{:03} | {} |",
                i + 1,
                us / 1000,
                us % 1000,
                r.note
            );
        }
    }
    o
}

const README_HEAD: &str = "# Crafted captures

Synthetic edge cases for ctsim, written by `ctsim-gen crafted --out captures/crafted`
(source: `src/synth/crafted.rs`; this file is generated from it, edit there).
Every file is deterministic: regenerating gives the same bytes.

Addresses: client **10.9.1.2** / **fd00:9:1::2**, server **10.9.2.2** / **fd00:9:2::2**,
third-party router **10.9.3.1** / **fd00:9:3::1**, client-side gateway 10.9.1.1.
Each scenario uses its own client ports (40001 upwards), so files can be merged.

**Default replay:** forward mode, the firewall routing between the client side
(`--inside 10.9.1.0/24 fd00:9:1::/48`; for `ctsim-kernel`:
`--iface eth1=10.9.1.0/24 --iface eth1=fd00:9:1::/48`) and everything else, accept-all rules,
default sysctls. Host mode with `--local 10.9.2.2 fd00:9:2::2` gives the same
conntrack states (packets to the server in INPUT, from it in OUTPUT), except
that checksums are checked only on received packets (PREROUTING) and the
forwarding-only cases (`ttl1_forward`) differ.

**Expected column:** what the kernel does with each packet, written by hand
from `/work/shared/conntrack-facts.md` (section numbers §n), not produced by
ctsim. The ctstate and TCP state of every packet were then checked against the
real kernel (Linux 6.18) with the `ctsim-kernel` oracle (oracle branch,
commit df59495; forward mode, accept-all, `--realtime` for the files with
gaps, and the sysctls named under *Replay*): all agree, except the snapped
records of `truncated_record`, which no kernel replay can reproduce (see
there). Timeouts were not checked by the oracle; they come from the digest.
Before the `·`: the ctstate the filter table sees (`ESTABLISHED (reply)`
is ESTABLISHED seen in the reply direction). After it: the conntrack state,
status and timeout the packet leaves, where relevant. `INVALID` packets never
change an entry. \"no verdict\" means no netfilter hook sees the packet at all.
Times are milliseconds from the first packet; all captures start at
2024-01-01 00:00:00 UTC.
";

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn every_scenario_builds_with_a_note_per_packet() {
        let mut names = std::collections::HashSet::new();
        for c in CRAFTED {
            assert!(names.insert(c.name), "duplicate name {}", c.name);
            let s = (c.build)().unwrap_or_else(|e| panic!("{}: {e}", c.name));
            assert_eq!(s.link(), c.link, "{}", c.name);
            assert!(!s.records().is_empty(), "{}", c.name);
            for (i, r) in s.records().iter().enumerate() {
                assert!(
                    !r.note.is_empty(),
                    "{} packet {} has no note",
                    c.name,
                    i + 1
                );
                assert!(r.data.len() as u32 <= r.orig_len);
            }
            let ts: Vec<_> = s.records().iter().map(|r| r.ts).collect();
            assert!(
                ts.windows(2).all(|w| w[0] < w[1]),
                "{}: timestamps must increase",
                c.name
            );
        }
        assert!(find("tcp_handshake_close").is_some());
        assert!(find("nope").is_none());
    }

    #[test]
    fn checksums_are_right_except_where_damaged() {
        for c in CRAFTED {
            if c.name.starts_with("bad_") || c.name == "truncated_record" {
                continue;
            }
            let s = (c.build)().unwrap();
            for (i, r) in s.records().iter().enumerate() {
                let frame = &r.data;
                let ip = match c.link {
                    Link::Raw => &frame[..],
                    Link::Ethernet => {
                        if frame[12..14] == [0x08, 0x06] {
                            continue;
                        }
                        &frame[14..]
                    }
                };
                let p = match etherparse::SlicedPacket::from_ip(ip) {
                    Ok(p) => p,
                    Err(e) => panic!("{} #{}: {e:?}", c.name, i + 1),
                };
                check_transport(c.name, i, &p);
            }
        }
    }

    fn check_transport(name: &str, i: usize, p: &etherparse::SlicedPacket<'_>) {
        use etherparse::{NetSlice, TransportSlice};
        let (src, dst, frag) = match &p.net {
            Some(NetSlice::Ipv4(v4)) => {
                let h = v4.header();
                let hb = h.slice();
                let mut sum: u32 = 0;
                for w in hb.chunks(2) {
                    sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
                }
                while sum > 0xffff {
                    sum = (sum & 0xffff) + (sum >> 16);
                }
                assert_eq!(sum, 0xffff, "{name} #{}: IPv4 header checksum", i + 1);
                (
                    std::net::IpAddr::from(h.source()),
                    std::net::IpAddr::from(h.destination()),
                    v4.is_payload_fragmented(),
                )
            }
            Some(NetSlice::Ipv6(v6)) => (
                std::net::IpAddr::from(v6.header().source()),
                std::net::IpAddr::from(v6.header().destination()),
                v6.is_payload_fragmented(),
            ),
            _ => panic!("{name} #{}: no IP layer", i + 1),
        };
        if frag {
            return;
        }
        match (&p.transport, src, dst) {
            (Some(TransportSlice::Tcp(t)), std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) => {
                assert_eq!(
                    t.calc_checksum_ipv4(s.octets(), d.octets()).unwrap(),
                    t.checksum(),
                    "{name} #{}",
                    i + 1
                )
            }
            (Some(TransportSlice::Tcp(t)), std::net::IpAddr::V6(s), std::net::IpAddr::V6(d)) => {
                assert_eq!(
                    t.calc_checksum_ipv6(s.octets(), d.octets()).unwrap(),
                    t.checksum(),
                    "{name} #{}",
                    i + 1
                )
            }
            (Some(TransportSlice::Udp(u)), std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) => {
                let want = etherparse::UdpHeader::from_slice(u.slice()).unwrap().0;
                let calc = want
                    .calc_checksum_ipv4_raw(s.octets(), d.octets(), u.payload())
                    .unwrap();
                assert_eq!(calc, u.checksum(), "{name} #{}", i + 1)
            }
            (Some(TransportSlice::Udp(u)), std::net::IpAddr::V6(s), std::net::IpAddr::V6(d)) => {
                let want = etherparse::UdpHeader::from_slice(u.slice()).unwrap().0;
                let calc = want
                    .calc_checksum_ipv6_raw(s.octets(), d.octets(), u.payload())
                    .unwrap();
                assert_eq!(calc, u.checksum(), "{name} #{}", i + 1)
            }
            (Some(TransportSlice::Icmpv4(m)), _, _) => {
                let h = m.header();
                assert_eq!(
                    h.icmp_type.calc_checksum(m.payload()),
                    h.checksum,
                    "{name} #{}",
                    i + 1
                )
            }
            (Some(TransportSlice::Icmpv6(m)), std::net::IpAddr::V6(s), std::net::IpAddr::V6(d)) => {
                let h = m.header();
                assert_eq!(
                    h.icmp_type
                        .calc_checksum(s.octets(), d.octets(), m.payload())
                        .unwrap(),
                    h.checksum,
                    "{name} #{}",
                    i + 1
                )
            }
            (t, _, _) => panic!("{name} #{}: unexpected transport {t:?}", i + 1),
        }
    }

    #[test]
    fn regenerating_gives_identical_bytes() {
        for c in CRAFTED {
            let a = (c.build)()
                .unwrap()
                .write_pcap(Vec::new(), c.precision)
                .unwrap();
            let b = (c.build)()
                .unwrap()
                .write_pcap(Vec::new(), c.precision)
                .unwrap();
            assert_eq!(a, b, "{}", c.name);
        }
    }

    /// The committed files match what the code generates now.
    #[test]
    fn committed_files_are_current() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/crafted");
        for c in CRAFTED {
            let want = (c.build)()
                .unwrap()
                .write_pcap(Vec::new(), c.precision)
                .unwrap();
            let have = fs::read(dir.join(format!("{}.pcap", c.name))).unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (run `ctsim-gen crafted --out captures/crafted`)",
                    c.name
                )
            });
            assert!(
                have == want,
                "{}.pcap is stale: run `ctsim-gen crafted --out captures/crafted`",
                c.name
            );
        }
        let readme = fs::read_to_string(dir.join("README.md")).unwrap();
        assert_eq!(readme, super::readme().unwrap(), "README.md is stale");
    }

    /// tcpdump reads every file to the end and prints one line per record.
    #[test]
    fn tcpdump_reads_every_file() {
        if Command::new("tcpdump").arg("--version").output().is_err() {
            eprintln!("tcpdump not installed; skipped");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let written = write_all(tmp.path()).unwrap();
        assert_eq!(written.len(), CRAFTED.len() + 1);
        for c in CRAFTED {
            let path = tmp.path().join(format!("{}.pcap", c.name));
            let out = Command::new("tcpdump")
                .args(["-nn", "-r"])
                .arg(&path)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{}: {stderr}", c.name);
            let lines = String::from_utf8_lossy(&out.stdout).lines().count();
            let n = (c.build)().unwrap().records().len();
            assert_eq!(
                lines, n,
                "{}: tcpdump printed {lines} lines for {n} records",
                c.name
            );
            assert!(
                !stderr.contains("truncated dump file"),
                "{}: {stderr}",
                c.name
            );
        }
    }
}
