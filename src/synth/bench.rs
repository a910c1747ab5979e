//! Benchmark traffic: large, mixed, deterministic captures written as they
//! are generated.
//!
//! [`generate`] writes `packets` packets drawn from `flows` concurrently
//! active conversations. By packet count the mix is about 85 % TCP (full
//! handshakes, request/response rounds with the data going both ways,
//! delayed ACKs, FIN or RST closes), 10 % UDP request/response (DNS, NTP,
//! syslog-like one-shots), 5 % ICMP (echo sessions, port-unreachable and
//! time-exceeded errors quoting a real probe) and a sprinkle of junk (invalid
//! TCP flag combinations, ARP). Frames average about 830 bytes. One flow in
//! ten is IPv6. All checksums are valid and timestamps strictly increase.
//!
//! Memory is constant: one scratch buffer for headers, one 64 KiB pattern
//! that every payload is a slice of, and one small record per active flow.
//! The same configuration always gives the same bytes.
//!
//! Not generated: fragments, TCP loss/retransmission, anything non-IP but
//! ARP. Use the crafted captures for those.

use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::synth::SynthError;
use crate::synth::csum::SliceSums;
use crate::synth::flow::{Side, SynOptions, TcpFlow};
use crate::synth::packet::{self, IpPair, Pkt, arp, ethertype, flags, icmp, icmp6, mac_for};
use crate::synth::pcap::{PcapWriter, TsPrecision};
use crate::synth::rng::Rng;
use crate::synth::script::Link;
use crate::time::Timestamp;
use crate::wire::Family;

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BenchConfig {
    pub packets: u64,
    /// Conversations active at any time (at least 1).
    pub flows: usize,
    pub seed: u64,
    pub link: Link,
    pub precision: TsPrecision,
    /// Timestamp of the first packet.
    pub start: Timestamp,
    /// Packets per second of capture time (on average; gaps vary ±90 %).
    /// The default, 100k, makes a 10M-packet capture last 100 s, less than
    /// the TIME_WAIT and UDP stream timeouts, so nothing closed ever
    /// expires; a few thousand per second spread the same traffic over long
    /// enough that entries leave the table at the rate they enter it.
    pub rate: u64,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            packets: 1_000_000,
            flows: 1000,
            seed: 1,
            link: Link::Ethernet,
            precision: TsPrecision::Micro,
            start: crate::synth::script::EPOCH,
            rate: 100_000,
        }
    }
}

/// Counts of what was written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BenchStats {
    pub packets: u64,
    /// Sum of frame lengths.
    pub bytes: u64,
    pub tcp: u64,
    pub udp: u64,
    pub icmp: u64,
    /// Invalid-flag TCP packets and ARP frames.
    pub junk: u64,
    /// Conversations started.
    pub flows: u64,
}

/// Writes the benchmark capture to `out` (wrap files in a `BufWriter`).
pub fn generate<W: Write>(cfg: &BenchConfig, out: W) -> Result<(BenchStats, W), SynthError> {
    if cfg.flows == 0 {
        return Err(SynthError::Param("flows must be at least 1"));
    }
    if cfg.rate == 0 || cfg.rate > 100_000_000 {
        return Err(SynthError::Param(
            "rate must be between 1 and 100M packets/s",
        ));
    }
    let mut rng = Rng::new(cfg.seed);
    let mut pattern = vec![0u8; PATTERN_LEN];
    rng.fill(&mut pattern);
    let sums = SliceSums::new(&pattern);
    let mut generator = BenchGen::new(cfg, rng);
    let mut w = PcapWriter::new(out, cfg.link.linktype(), cfg.precision, 65535)?;
    let mut hdr: Vec<u8> = Vec::with_capacity(256);
    for _ in 0..cfg.packets {
        hdr.clear();
        let (ts, payload, pad) = generator.next_into(&pattern, &sums, &mut hdr)?;
        let len = hdr.len() + payload.len() + pad;
        w.write_parts(ts, &[&hdr, payload, &ZEROS[..pad]], len as u32)?;
        generator.stats.packets += 1;
        generator.stats.bytes += len as u64;
    }
    let stats = generator.stats;
    Ok((stats, w.finish()?))
}

static ZEROS: [u8; packet::ETH_MIN_FRAME] = [0; packet::ETH_MIN_FRAME];

const PATTERN_LEN: usize = 64 * 1024;
const MSS: usize = 1448;

/// Which packet of a flow comes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TcpStep {
    Syn,
    SynAck,
    HandshakeAck,
    Request,
    /// Server segments left in this round's response.
    Response(u16),
    /// Client ACK after two response segments (delayed ACK) or the last one.
    ClientAck(u16),
    /// Client upload segments left (a round that sends data the other way).
    Upload(u16),
    ServerAck(u16),
    Close(u8),
    Done,
}

#[derive(Debug, Clone)]
struct TcpConv {
    flow: TcpFlow,
    step: TcpStep,
    rounds_left: u8,
    /// Close with a RST from this side instead of FINs.
    rst_by: Option<Side>,
    /// Who sends the first FIN.
    fin_first: Side,
    /// The receiver ACKs every this many segments (2 by RFC 9293's delayed
    /// ACK; 3 or more for stretch ACKs behind receive offload).
    ack_every: u16,
}

#[derive(Debug, Clone)]
enum Conv {
    Tcp(Box<TcpConv>),
    /// Request/response pairs left; `odd` is true between request and reply.
    Udp {
        ips: IpPair,
        sport: u16,
        dport: u16,
        req: u16,
        resp: u16,
        left: u8,
        odd: bool,
    },
    Echo {
        ips: IpPair,
        id: u16,
        seq: u16,
        left: u8,
        odd: bool,
    },
    /// A probe and the ICMP error it draws (port unreachable, or time
    /// exceeded from a router).
    ErrProbe {
        ips: IpPair,
        sport: u16,
        dport: u16,
        ttl_expired: bool,
        sent: bool,
    },
    /// One junk packet.
    Junk {
        ips: IpPair,
        sport: u16,
        kind: u8,
    },
    Done,
}

/// What one step produced.
enum Emit<'p> {
    Ip(Pkt<'p>),
    /// An ICMP error quoting the packet the conversation sent before; built
    /// by re-creating that packet in the scratch buffer.
    Error {
        outer: Pkt<'static>,
        quoted: Pkt<'p>,
    },
    Arp {
        op: u16,
        sender: Ipv4Addr,
        target: Ipv4Addr,
    },
}

struct BenchGen {
    rng: Rng,
    slots: Vec<Conv>,
    now: Timestamp,
    link: Link,
    counter: u64,
    stats: BenchStats,
    /// Scratch for the quoted packet of an ICMP error.
    quote_buf: Vec<u8>,
    /// Bounds of the inter-packet gap in ns.
    gap: (u64, u64),
}

/// Flow-start weights for TCP, UDP, ICMP echo, ICMP error probes and junk,
/// chosen so the packet shares come out near 85/10/4/1 (TCP conversations
/// are much longer than the others); checked by a test.
const KIND_WEIGHTS: [u32; 5] = [100, 180, 70, 40, 20];

impl BenchGen {
    fn new(cfg: &BenchConfig, rng: Rng) -> Self {
        let mut g = BenchGen {
            rng,
            slots: Vec::with_capacity(cfg.flows),
            now: cfg.start,
            link: cfg.link,
            counter: 0,
            stats: BenchStats::default(),
            quote_buf: Vec::with_capacity(128),
            gap: {
                let mean = 1_000_000_000 / cfg.rate;
                (mean / 10, 2 * mean - mean / 10)
            },
        };
        for _ in 0..cfg.flows {
            let c = g.new_conv();
            g.slots.push(c);
        }
        g
    }

    /// A client address/port and a server address for conversation `n`;
    /// (address, port) pairs repeat only after 1.4e9 conversations.
    fn endpoints(&mut self, v6: bool) -> (IpPair, u16) {
        let n = self.counter;
        self.counter += 1;
        let host = n % 50_000;
        let port = 32768 + ((n / 50_000) % 28_000) as u16;
        let server = self.rng.below(50) as u16 + 1;
        let ips = if v6 {
            let c = Ipv6Addr::new(0xfd00, 9, 1, 0, 0, 0, (host >> 16) as u16, host as u16 + 2);
            let s = Ipv6Addr::new(0xfd00, 9, 2, 0, 0, 0, 0, server);
            IpPair::from((c, s))
        } else {
            let c = Ipv4Addr::new(10, 9, (host / 250) as u8, (host % 250) as u8 + 2);
            let s = Ipv4Addr::new(10, 9, 200, server as u8);
            IpPair::from((c, s))
        };
        (ips, port)
    }

    fn new_conv(&mut self) -> Conv {
        self.stats.flows += 1;
        let v6 = self.rng.percent(10);
        let kind = self.rng.weighted(&KIND_WEIGHTS).unwrap_or(0);
        let (ips, cport) = self.endpoints(v6);
        match kind {
            0 => {
                let sport = *self
                    .rng
                    .pick(&[443u16, 443, 443, 80, 80, 22, 8080, 25])
                    .unwrap_or(&443);
                let cisn = self.rng.next_u32();
                let sisn = self.rng.next_u32();
                let opts = SynOptions {
                    mss: Some(1460),
                    wscale: Some(7),
                    sack_perm: true,
                    timestamps: self.rng.percent(50),
                };
                let flow = TcpFlow::from_ips(ips, cport, sport, cisn, sisn)
                    .with_options(Side::Client, opts)
                    .with_options(Side::Server, opts);
                let rst_by = if self.rng.percent(8) {
                    Some(if self.rng.percent(50) {
                        Side::Client
                    } else {
                        Side::Server
                    })
                } else {
                    None
                };
                let fin_first = if self.rng.percent(60) {
                    Side::Client
                } else {
                    Side::Server
                };
                Conv::Tcp(Box::new(TcpConv {
                    flow,
                    step: TcpStep::Syn,
                    rounds_left: self.rng.range(1, 4) as u8,
                    rst_by,
                    fin_first,
                    ack_every: *self.rng.pick(&[2u16, 2, 3, 4]).unwrap_or(&2),
                }))
            }
            1 => {
                let (dport, req, resp) = match self.rng.below(10) {
                    0..=6 => (
                        53,
                        self.rng.range(30, 60) as u16,
                        self.rng.range(60, 480) as u16,
                    ),
                    7 | 8 => (123, 48, 48),
                    _ => (5004, 172, 172),
                };
                Conv::Udp {
                    ips,
                    sport: cport,
                    dport,
                    req,
                    resp,
                    left: self.rng.range(1, 3) as u8,
                    odd: false,
                }
            }
            2 => Conv::Echo {
                ips,
                id: self.rng.next_u16(),
                seq: 1,
                left: self.rng.range(1, 4) as u8,
                odd: false,
            },
            3 => Conv::ErrProbe {
                ips,
                sport: cport,
                dport: 33434 + self.rng.below(30) as u16,
                ttl_expired: self.rng.percent(40),
                sent: false,
            },
            _ => Conv::Junk {
                ips,
                sport: cport,
                kind: self.rng.below(4) as u8,
            },
        }
    }

    /// Writes the next frame's headers to `hdr` and returns its timestamp,
    /// the payload to write after the headers, and how many zero bytes of
    /// Ethernet padding follow.
    fn next_into<'p>(
        &mut self,
        pattern: &'p [u8],
        sums: &SliceSums,
        hdr: &mut Vec<u8>,
    ) -> Result<(Timestamp, &'p [u8], usize), SynthError> {
        let i = self.rng.below(self.slots.len() as u64) as usize;
        // Inter-packet gap between 0.1 and 1.9 times the mean (1-19 µs at
        // the default 100k packets per second of capture time).
        let (lo, hi) = self.gap;
        self.now = self.now.add(crate::time::Duration(self.rng.range(lo, hi)));
        let ts = self.now;
        let emit = step(
            &mut self.slots[i],
            &mut self.rng,
            pattern,
            self.link,
            &mut self.stats,
        );
        if matches!(self.slots[i], Conv::Done) {
            self.slots[i] = self.new_conv();
        }
        let frame_start = hdr.len();
        match emit {
            Emit::Arp { op, sender, target } => {
                hdr.extend_from_slice(&packet::arp_frame(op, sender, target));
                Ok((ts, &[], 0))
            }
            Emit::Ip(p) => {
                self.link_header(hdr, &p);
                let sum = pattern_offset(pattern, p.payload)
                    .and_then(|off| sums.slice_sum(pattern, off, p.payload.len()));
                match sum {
                    Some(sum) => p.build_headers_with_payload_sum(hdr, sum)?,
                    None => p.build_headers_into(hdr)?,
                }
                let pad = self.pad(hdr.len() - frame_start + p.payload.len());
                Ok((ts, p.payload, pad))
            }
            Emit::Error { outer, quoted } => {
                self.quote_buf.clear();
                quoted.build_into(&mut self.quote_buf)?;
                let q = packet::quote(outer.ips.family(), &self.quote_buf);
                let outer = outer.payload(q);
                self.link_header(hdr, &outer);
                outer.build_into(hdr)?;
                let pad = self.pad(hdr.len() - frame_start);
                Ok((ts, &[], pad))
            }
        }
    }

    fn link_header(&self, hdr: &mut Vec<u8>, p: &Pkt<'_>) {
        if self.link == Link::Ethernet {
            let et = match p.ips.family() {
                Family::Ipv4 => ethertype::IPV4,
                Family::Ipv6 => ethertype::IPV6,
            };
            packet::ethernet_header(hdr, mac_for(p.ips.dst()), mac_for(p.ips.src()), et);
        }
    }

    fn pad(&self, frame_len: usize) -> usize {
        match self.link {
            Link::Ethernet => packet::ETH_MIN_FRAME.saturating_sub(frame_len),
            Link::Raw => 0,
        }
    }
}

/// A payload of `len` bytes from the shared pattern, at a random even
/// offset (so [`SliceSums`] can give its checksum sum).
fn slice<'p>(rng: &mut Rng, pattern: &'p [u8], len: usize) -> &'p [u8] {
    let len = len.min(pattern.len());
    let off = rng.below(((pattern.len() - len) / 2 + 1) as u64) as usize * 2;
    &pattern[off..off + len]
}

/// Where `payload` starts inside `pattern`, if it is a slice of it. Only
/// addresses are compared; nothing is dereferenced.
fn pattern_offset(pattern: &[u8], payload: &[u8]) -> Option<usize> {
    let start = pattern.as_ptr() as usize;
    let p = payload.as_ptr() as usize;
    let off = p.checked_sub(start)?;
    (off + payload.len() <= pattern.len()).then_some(off)
}

/// Advances one conversation by one packet.
fn step<'p>(
    conv: &mut Conv,
    rng: &mut Rng,
    pattern: &'p [u8],
    link: Link,
    stats: &mut BenchStats,
) -> Emit<'p> {
    match conv {
        Conv::Tcp(t) => {
            stats.tcp += 1;
            let (p, next) = tcp_step(t, rng, pattern);
            t.step = next;
            if next == TcpStep::Done {
                *conv = Conv::Done;
            }
            Emit::Ip(p)
        }
        Conv::Udp {
            ips,
            sport,
            dport,
            req,
            resp,
            left,
            odd,
        } => {
            stats.udp += 1;
            let p = if *odd {
                *left -= 1;
                Pkt::udp(ips.reversed(), *dport, *sport).payload(slice(
                    rng,
                    pattern,
                    *resp as usize,
                ))
            } else {
                Pkt::udp(*ips, *sport, *dport).payload(slice(rng, pattern, *req as usize))
            };
            *odd = !*odd;
            if *left == 0 {
                *conv = Conv::Done;
            }
            Emit::Ip(p)
        }
        Conv::Echo {
            ips,
            id,
            seq,
            left,
            odd,
        } => {
            stats.icmp += 1;
            let body = slice(rng, pattern, 56);
            let p = if *odd {
                *left -= 1;
                let p = Pkt::echo_reply(ips.reversed(), *id, *seq).payload(body);
                *seq += 1;
                p
            } else {
                Pkt::echo_request(*ips, *id, *seq).payload(body)
            };
            *odd = !*odd;
            if *left == 0 {
                *conv = Conv::Done;
            }
            Emit::Ip(p)
        }
        Conv::ErrProbe {
            ips,
            sport,
            dport,
            ttl_expired,
            sent,
        } => {
            let probe = Pkt::udp(*ips, *sport, *dport)
                .payload(&pattern[..32])
                .ttl(if *ttl_expired { 1 } else { 64 })
                .dont_fragment(false);
            if !*sent {
                *sent = true;
                stats.udp += 1;
                return Emit::Ip(probe);
            }
            stats.icmp += 1;
            let v4 = ips.family() == Family::Ipv4;
            let outer = match (*ttl_expired, v4) {
                (true, true) => Pkt::icmp(
                    (Ipv4Addr::new(10, 9, 255, 1), client_v4(ips)),
                    icmp::TIME_EXCEEDED,
                    0,
                    [0; 4],
                ),
                (true, false) => Pkt::icmp(router_v6(ips), icmp6::TIME_EXCEEDED, 0, [0; 4]),
                (false, true) => Pkt::icmp(
                    ips.reversed(),
                    icmp::DEST_UNREACH,
                    icmp::PORT_UNREACH,
                    [0; 4],
                ),
                (false, false) => Pkt::icmp(
                    ips.reversed(),
                    icmp6::DEST_UNREACH,
                    icmp6::PORT_UNREACH,
                    [0; 4],
                ),
            };
            *conv = Conv::Done;
            Emit::Error {
                outer,
                quoted: probe,
            }
        }
        Conv::Junk { ips, sport, kind } => {
            stats.junk += 1;
            let e = match (*kind, ips.src(), ips.dst()) {
                (0, std::net::IpAddr::V4(c), _) if link == Link::Ethernet => Emit::Arp {
                    op: arp::REQUEST,
                    sender: c,
                    target: Ipv4Addr::new(10, 9, 0, 1),
                },
                (1, _, std::net::IpAddr::V4(s)) if link == Link::Ethernet => Emit::Arp {
                    op: arp::REPLY,
                    sender: Ipv4Addr::new(10, 9, 0, 1),
                    target: s,
                },
                (k, _, _) => {
                    let fl = [flags::XMAS, flags::NULL, flags::SF, flags::F][k as usize % 4];
                    Emit::Ip(
                        Pkt::tcp(*ips, *sport, 80, fl)
                            .seq(rng.next_u32())
                            .window(1024),
                    )
                }
            };
            *conv = Conv::Done;
            e
        }
        // Never stepped: a finished conversation is replaced at once. An ARP
        // request keeps this total without inventing a flow.
        Conv::Done => {
            stats.junk += 1;
            Emit::Arp {
                op: arp::REQUEST,
                sender: Ipv4Addr::new(10, 9, 0, 1),
                target: Ipv4Addr::new(10, 9, 0, 2),
            }
        }
    }
}

/// The router that reports an expired IPv6 probe back to its client.
fn router_v6(ips: &IpPair) -> IpPair {
    let router = Ipv6Addr::new(0xfd00, 9, 0xff, 0, 0, 0, 0, 1);
    match ips {
        IpPair::V6 { src, .. } => IpPair::V6 {
            src: router,
            dst: *src,
        },
        IpPair::V4 { .. } => IpPair::V6 {
            src: router,
            dst: Ipv6Addr::UNSPECIFIED,
        },
    }
}

fn client_v4(ips: &IpPair) -> Ipv4Addr {
    match ips {
        IpPair::V4 { src, .. } => *src,
        IpPair::V6 { .. } => Ipv4Addr::UNSPECIFIED,
    }
}

/// Emits the packet for the conversation's current step and says which step
/// comes next.
fn tcp_step<'p>(t: &mut TcpConv, rng: &mut Rng, pattern: &'p [u8]) -> (Pkt<'p>, TcpStep) {
    use Side::{Client, Server};
    let f = &mut t.flow;
    match t.step {
        TcpStep::Syn => (f.syn(), TcpStep::SynAck),
        TcpStep::SynAck => (f.syn_ack(), TcpStep::HandshakeAck),
        TcpStep::HandshakeAck => (f.ack(Client), TcpStep::Request),
        TcpStep::Request => {
            let len = rng.range(120, 900) as usize;
            let p = f.data(Client, slice(rng, pattern, len));
            // One round in four uploads (data client → server) instead of
            // downloading.
            let next = if rng.percent(25) {
                TcpStep::Upload(rng.range(4, 24) as u16)
            } else {
                TcpStep::Response(rng.range(4, 36) as u16)
            };
            (p, next)
        }
        TcpStep::Response(left) => {
            let len = if left == 1 {
                rng.range(200, MSS as u64) as usize
            } else {
                MSS
            };
            let p = f.data(Server, slice(rng, pattern, len));
            // Delayed ACK: every second segment, and after the last one.
            let rest = left.saturating_sub(1);
            let next = if rest == 0 || rest % t.ack_every == 0 {
                TcpStep::ClientAck(rest)
            } else {
                TcpStep::Response(rest)
            };
            (p, next)
        }
        TcpStep::ClientAck(left) => {
            let p = f.ack(Client);
            (
                p,
                if left == 0 {
                    end_round(t)
                } else {
                    TcpStep::Response(left)
                },
            )
        }
        TcpStep::Upload(left) => {
            let len = if left == 1 {
                rng.range(200, MSS as u64) as usize
            } else {
                MSS
            };
            let p = f.data(Client, slice(rng, pattern, len));
            let rest = left.saturating_sub(1);
            let next = if rest == 0 || rest % t.ack_every == 0 {
                TcpStep::ServerAck(rest)
            } else {
                TcpStep::Upload(rest)
            };
            (p, next)
        }
        TcpStep::ServerAck(left) => {
            let p = f.ack(Server);
            (
                p,
                if left == 0 {
                    end_round(t)
                } else {
                    TcpStep::Upload(left)
                },
            )
        }
        TcpStep::Close(n) => {
            if let Some(side) = t.rst_by {
                return (f.rst_ack(side), TcpStep::Done);
            }
            let first = t.fin_first;
            let p = match n {
                0 => f.fin(first),
                1 => f.ack(first.other()),
                2 => f.fin(first.other()),
                _ => f.ack(first),
            };
            (
                p,
                if n >= 3 {
                    TcpStep::Done
                } else {
                    TcpStep::Close(n + 1)
                },
            )
        }
        // Unreachable in practice: a finished conversation is replaced before
        // it is stepped again. A keep-alive ACK keeps this total.
        TcpStep::Done => (f.ack(Client), TcpStep::Done),
    }
}

fn end_round(t: &mut TcpConv) -> TcpStep {
    t.rounds_left = t.rounds_left.saturating_sub(1);
    if t.rounds_left == 0 {
        TcpStep::Close(0)
    } else {
        TcpStep::Request
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pcap_parser::traits::PcapReaderIterator;
    use pcap_parser::{LegacyPcapReader, PcapBlockOwned, PcapError};

    fn cfg(packets: u64, flows: usize, seed: u64) -> BenchConfig {
        BenchConfig {
            packets,
            flows,
            seed,
            ..BenchConfig::default()
        }
    }

    fn frames(bytes: &[u8]) -> Vec<(u64, Vec<u8>)> {
        let mut rdr = LegacyPcapReader::new(1 << 20, bytes).unwrap();
        let mut out = vec![];
        loop {
            match rdr.next() {
                Ok((off, b)) => {
                    if let PcapBlockOwned::Legacy(r) = b {
                        assert_eq!(r.caplen, r.origlen);
                        out.push((
                            r.ts_sec as u64 * 1_000_000 + r.ts_usec as u64,
                            r.data.to_vec(),
                        ));
                    }
                    rdr.consume(off);
                }
                Err(PcapError::Eof) => break,
                Err(PcapError::Incomplete(_)) => rdr.refill().unwrap(),
                Err(e) => panic!("{e:?}"),
            }
        }
        out
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        let (_, a) = generate(&cfg(5000, 50, 7), Vec::new()).unwrap();
        let (_, b) = generate(&cfg(5000, 50, 7), Vec::new()).unwrap();
        let (_, c) = generate(&cfg(5000, 50, 8), Vec::new()).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn mix_size_and_validity() {
        let (st, bytes) = generate(&cfg(200_000, 500, 1), Vec::new()).unwrap();
        assert_eq!(st.packets, 200_000);
        let avg = st.bytes as f64 / st.packets as f64;
        assert!(
            (800.0..=880.0).contains(&avg),
            "average frame {avg:.1} bytes; {st:?}"
        );
        let share = |n: u64| n as f64 / st.packets as f64;
        assert!(
            (0.80..=0.90).contains(&share(st.tcp)),
            "tcp {:.3}",
            share(st.tcp)
        );
        assert!(
            (0.07..=0.13).contains(&share(st.udp)),
            "udp {:.3}",
            share(st.udp)
        );
        assert!(
            (0.03..=0.07).contains(&share(st.icmp)),
            "icmp {:.3}",
            share(st.icmp)
        );
        assert!(
            st.junk > 0 && share(st.junk) < 0.01,
            "junk {:.4}",
            share(st.junk)
        );

        let fr = frames(&bytes);
        assert_eq!(fr.len(), 200_000);
        assert!(
            fr.windows(2).all(|w| w[0].0 < w[1].0),
            "timestamps strictly increase"
        );
        let mut tcp = 0;
        let mut arp = 0;
        for (_, f) in &fr {
            if f[12..14] == [0x08, 0x06] {
                arp += 1;
                continue;
            }
            let p = etherparse::SlicedPacket::from_ethernet(f).expect("frame parses");
            match (&p.net, &p.transport) {
                (
                    Some(etherparse::NetSlice::Ipv4(ip)),
                    Some(etherparse::TransportSlice::Tcp(t)),
                ) => {
                    let h = ip.header();
                    let want = t.calc_checksum_ipv4(h.source(), h.destination()).unwrap();
                    assert_eq!(want, t.checksum());
                    tcp += 1;
                }
                (
                    Some(etherparse::NetSlice::Ipv6(ip)),
                    Some(etherparse::TransportSlice::Tcp(t)),
                ) => {
                    let h = ip.header();
                    assert_eq!(
                        t.calc_checksum_ipv6(h.source(), h.destination()).unwrap(),
                        t.checksum()
                    );
                    tcp += 1;
                }
                (Some(_), Some(_)) => {}
                other => panic!("unparsed transport: {other:?}"),
            }
        }
        assert!(tcp > 150_000 && arp > 0);
    }

    #[test]
    fn raw_link_has_no_arp_and_no_padding() {
        let c = BenchConfig {
            link: Link::Raw,
            ..cfg(20_000, 100, 3)
        };
        let (st, bytes) = generate(&c, Vec::new()).unwrap();
        for (_, f) in frames(&bytes) {
            assert!(f[0] >> 4 == 4 || f[0] >> 4 == 6);
            assert!(etherparse::SlicedPacket::from_ip(&f).is_ok());
        }
        assert!(st.junk > 0);
    }

    #[test]
    fn zero_flows_is_an_error() {
        assert!(generate(&cfg(10, 0, 1), Vec::new()).is_err());
        let zero_rate = BenchConfig {
            rate: 0,
            ..cfg(10, 1, 1)
        };
        assert!(generate(&zero_rate, Vec::new()).is_err());
    }

    #[test]
    fn rate_sets_the_capture_duration() {
        // 20k packets at 1000/s last about 20 s; at the default 100k/s, 0.2 s.
        for (rate, secs) in [(1000u64, 20.0f64), (100_000, 0.2)] {
            let c = BenchConfig {
                rate,
                ..cfg(20_000, 100, 3)
            };
            let (_, bytes) = generate(&c, Vec::new()).unwrap();
            let f = frames(&bytes);
            let span = (f.last().unwrap().0 - f[0].0) as f64 / 1e6;
            assert!((span - secs).abs() < secs * 0.05, "rate {rate}: {span} s");
            assert!(f.windows(2).all(|w| w[1].0 > w[0].0));
        }
    }
}
