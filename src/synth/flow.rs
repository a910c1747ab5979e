//! A TCP conversation between a client and a server, as a sequence-number
//! bookkeeper.
//!
//! [`TcpFlow`] remembers each side's next sequence number and what it has
//! acknowledged, and hands out [`Pkt`]s for the usual steps (handshake, data,
//! FIN, RST), advancing the numbers as a real stack would. It does not model
//! retransmission timers, congestion or reordering: anything unusual is
//! written by taking a packet from [`TcpFlow::seg`] and changing its fields.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::synth::SynthError;
use crate::synth::packet::{IpPair, Pkt, flags};
use crate::wire::tcpflag;

/// Which end of the conversation sends a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The side that sent the first SYN (conntrack's ORIGINAL direction).
    Client,
    Server,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        }
    }
    fn idx(self) -> usize {
        match self {
            Side::Client => 0,
            Side::Server => 1,
        }
    }
}

/// Per-side options offered in the SYN / SYN-ACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynOptions {
    pub mss: Option<u16>,
    pub wscale: Option<u8>,
    pub sack_perm: bool,
    /// Carry a timestamps option on every segment (TSval runs with the
    /// segment count, which is enough for a tracker that ignores it).
    pub timestamps: bool,
}

impl Default for SynOptions {
    /// What a Linux client without window scaling sends: MSS 1460, SACK
    /// permitted.
    fn default() -> Self {
        SynOptions {
            mss: Some(1460),
            wscale: None,
            sack_perm: true,
            timestamps: false,
        }
    }
}

/// Sequence-number state of one TCP conversation.
#[derive(Debug, Clone)]
pub struct TcpFlow {
    /// Client → server addresses.
    ips: IpPair,
    ports: [u16; 2],
    /// Next sequence number each side will send.
    next: [u32; 2],
    /// Window each side advertises, in bytes (scaled down on the wire once
    /// the handshake agreed on scaling).
    window: [u32; 2],
    opts: [SynOptions; 2],
    /// Both sides offered window scaling, so it is in use after the SYNs.
    scaling: bool,
    ts_clock: u32,
    ttl: u8,
}

impl TcpFlow {
    /// A conversation from `client` (address, port) to `server`, with the
    /// given initial sequence numbers.
    pub fn new(
        client: (IpAddr, u16),
        server: (IpAddr, u16),
        client_isn: u32,
        server_isn: u32,
    ) -> Result<Self, SynthError> {
        let ips = IpPair::new(client.0, server.0)?;
        Ok(Self::from_ips(
            ips, client.1, server.1, client_isn, server_isn,
        ))
    }

    pub fn v4(
        client: Ipv4Addr,
        cport: u16,
        server: Ipv4Addr,
        sport: u16,
        cisn: u32,
        sisn: u32,
    ) -> Self {
        Self::from_ips((client, server).into(), cport, sport, cisn, sisn)
    }

    pub fn v6(
        client: Ipv6Addr,
        cport: u16,
        server: Ipv6Addr,
        sport: u16,
        cisn: u32,
        sisn: u32,
    ) -> Self {
        Self::from_ips((client, server).into(), cport, sport, cisn, sisn)
    }

    /// A conversation between the addresses of `ips` (client → server).
    pub fn from_ips(ips: IpPair, cport: u16, sport: u16, cisn: u32, sisn: u32) -> Self {
        TcpFlow {
            ips,
            ports: [cport, sport],
            next: [cisn, sisn],
            window: [64240, 65160],
            opts: [SynOptions::default(); 2],
            scaling: false,
            ts_clock: 1,
            ttl: crate::synth::packet::DEFAULT_TTL,
        }
    }

    /// Options `side` offers in its SYN.
    pub fn with_options(mut self, side: Side, opts: SynOptions) -> Self {
        self.opts[side.idx()] = opts;
        self
    }

    /// The window `side` advertises, in bytes.
    pub fn with_window(mut self, side: Side, bytes: u32) -> Self {
        self.window[side.idx()] = bytes;
        self
    }

    pub fn with_ttl(mut self, ttl: u8) -> Self {
        self.ttl = ttl;
        self
    }

    pub fn set_window(&mut self, side: Side, bytes: u32) {
        self.window[side.idx()] = bytes;
    }

    /// Client → server addresses.
    pub fn ips(&self) -> IpPair {
        self.ips
    }

    pub fn client_port(&self) -> u16 {
        self.ports[0]
    }

    pub fn server_port(&self) -> u16 {
        self.ports[1]
    }

    /// The next sequence number `side` will send.
    pub fn next_seq(&self, side: Side) -> u32 {
        self.next[side.idx()]
    }

    /// Moves `side`'s sequence number on by `n` without sending anything (data
    /// lost before the capture point, say).
    pub fn advance(&mut self, side: Side, n: u32) {
        let i = side.idx();
        self.next[i] = self.next[i].wrapping_add(n);
    }

    /// Replaces `side`'s next sequence number (a new ISN after a reboot).
    pub fn set_seq(&mut self, side: Side, seq: u32) {
        self.next[side.idx()] = seq;
    }

    /// The raw window field `side` puts on a segment.
    fn raw_window(&self, side: Side, syn: bool) -> u16 {
        let bytes = self.window[side.idx()];
        let shift = match (syn, self.scaling, self.opts[side.idx()].wscale) {
            // Windows in SYN segments are never scaled (RFC 7323 2.2).
            (false, true, Some(s)) => s.min(14),
            _ => 0,
        };
        (bytes >> shift).min(65535) as u16
    }

    /// A segment from `from` with `flags`, carrying the current sequence
    /// number, the peer's next sequence number as ack (when ACK is set) and
    /// the current window. Nothing is advanced.
    pub fn seg(&self, from: Side, flags: u8) -> Pkt<'static> {
        let (ips, sport, dport) = match from {
            Side::Client => (self.ips, self.ports[0], self.ports[1]),
            Side::Server => (self.ips.reversed(), self.ports[1], self.ports[0]),
        };
        let ack = if flags & tcpflag::ACK != 0 {
            self.next[from.other().idx()]
        } else {
            0
        };
        let syn = flags & tcpflag::SYN != 0;
        let mut p = Pkt::tcp(ips, sport, dport, flags)
            .seq(self.next[from.idx()])
            .ack_num(ack)
            .window(self.raw_window(from, syn))
            .ttl(self.ttl);
        let o = self.opts[from.idx()];
        if syn {
            if let Some(m) = o.mss {
                p = p.mss(m);
            }
            if o.sack_perm {
                p = p.sack_perm();
            }
            if o.timestamps {
                p = p.timestamp(self.ts_clock, 0);
            }
            if let Some(s) = o.wscale {
                p = p.wscale(s);
            }
        } else if o.timestamps && self.opts[from.other().idx()].timestamps {
            p = p.timestamp(self.ts_clock, self.ts_clock.wrapping_sub(1));
        }
        p
    }

    fn bump_ts(&mut self) {
        self.ts_clock = self.ts_clock.wrapping_add(1);
    }

    /// The client's SYN.
    pub fn syn(&mut self) -> Pkt<'static> {
        let p = self.seg(Side::Client, flags::S);
        self.advance(Side::Client, 1);
        self.bump_ts();
        p
    }

    /// The server's SYN-ACK. Window scaling is in use from here on when both
    /// sides offered it.
    pub fn syn_ack(&mut self) -> Pkt<'static> {
        let p = self.seg(Side::Server, flags::SA);
        self.advance(Side::Server, 1);
        self.scaling = self.opts[0].wscale.is_some() && self.opts[1].wscale.is_some();
        self.bump_ts();
        p
    }

    /// A bare ACK from `from`.
    pub fn ack(&mut self, from: Side) -> Pkt<'static> {
        let p = self.seg(from, flags::A);
        self.bump_ts();
        p
    }

    /// SYN, SYN-ACK and ACK.
    pub fn handshake(&mut self) -> [Pkt<'static>; 3] {
        [self.syn(), self.syn_ack(), self.ack(Side::Client)]
    }

    /// A PSH+ACK segment carrying `payload`.
    pub fn data<'a>(&mut self, from: Side, payload: &'a [u8]) -> Pkt<'a> {
        let p = self.seg(from, flags::PA).payload(payload);
        self.advance(from, payload.len() as u32);
        self.bump_ts();
        p
    }

    /// FIN+ACK from `from`.
    pub fn fin(&mut self, from: Side) -> Pkt<'static> {
        let p = self.seg(from, flags::FA);
        self.advance(from, 1);
        self.bump_ts();
        p
    }

    /// A bare RST from `from` at its next sequence number.
    pub fn rst(&mut self, from: Side) -> Pkt<'static> {
        let p = self.seg(from, flags::R).window(0).clear_options();
        self.bump_ts();
        p
    }

    /// RST+ACK from `from`.
    pub fn rst_ack(&mut self, from: Side) -> Pkt<'static> {
        let p = self.seg(from, flags::RA).window(0).clear_options();
        self.bump_ts();
        p
    }

    /// The four segments of an orderly close initiated by `first`: FIN, ACK,
    /// FIN, ACK.
    pub fn close(&mut self, first: Side) -> [Pkt<'static>; 4] {
        let f1 = self.fin(first);
        let a1 = self.ack(first.other());
        let f2 = self.fin(first.other());
        let a2 = self.ack(first);
        [f1, a1, f2, a2]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::packet::L4Spec;

    fn seq_ack(p: &Pkt<'_>) -> (u32, u32, u16) {
        match p.l4 {
            L4Spec::Tcp {
                seq, ack, window, ..
            } => (seq, ack, window),
            _ => panic!("not tcp"),
        }
    }

    #[test]
    fn handshake_data_close_numbers() {
        let c = Ipv4Addr::new(10, 9, 1, 2);
        let s = Ipv4Addr::new(10, 9, 2, 2);
        let mut f = TcpFlow::v4(c, 40000, s, 22, 1000, 5000);
        let [syn, sa, a] = f.handshake();
        assert_eq!(seq_ack(&syn).0, 1000);
        assert_eq!(seq_ack(&syn).1, 0);
        assert_eq!(seq_ack(&sa).0, 5000);
        assert_eq!(seq_ack(&sa).1, 1001);
        assert_eq!(seq_ack(&a).0, 1001);
        assert_eq!(seq_ack(&a).1, 5001);
        let d = f.data(Side::Client, b"0123456789");
        assert_eq!(seq_ack(&d).0, 1001);
        assert_eq!(f.next_seq(Side::Client), 1011);
        let back = f.ack(Side::Server);
        assert_eq!(seq_ack(&back), (5001, 1011, 65160));
        assert_eq!(back.ips.src(), IpAddr::from(s));
        let [f1, a1, f2, a2] = f.close(Side::Client);
        assert_eq!(f1.tcp_flags(), flags::FA);
        assert_eq!(seq_ack(&f1).0, 1011);
        assert_eq!(seq_ack(&a1).1, 1012);
        assert_eq!(seq_ack(&f2).0, 5001);
        assert_eq!(seq_ack(&a2), (1012, 5002, 64240));
    }

    #[test]
    fn window_scaling_applies_after_syns_only_when_both_offer() {
        let c = Ipv4Addr::new(10, 9, 1, 2);
        let s = Ipv4Addr::new(10, 9, 2, 2);
        let ws = SynOptions {
            wscale: Some(7),
            ..SynOptions::default()
        };
        let mut f = TcpFlow::v4(c, 1, s, 2, 0, 0)
            .with_options(Side::Client, ws)
            .with_options(Side::Server, ws)
            .with_window(Side::Server, 64256);
        let _ = f.syn();
        let sa = f.syn_ack();
        assert_eq!(seq_ack(&sa).2, 64256, "SYN windows are not scaled");
        assert_eq!(seq_ack(&f.ack(Side::Server)).2, 502);

        let mut g = TcpFlow::v4(c, 1, s, 2, 0, 0).with_options(Side::Client, ws);
        let _ = g.handshake();
        assert_eq!(
            seq_ack(&g.ack(Side::Client)).2,
            64240,
            "server did not offer scaling"
        );
    }

    #[test]
    fn mismatched_families_are_an_error() {
        let r = TcpFlow::new(
            (Ipv4Addr::LOCALHOST.into(), 1),
            (Ipv6Addr::LOCALHOST.into(), 2),
            0,
            0,
        );
        assert!(r.is_err());
    }
}
