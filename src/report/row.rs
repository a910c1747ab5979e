//! The per-packet CSV row, shared by `ctsim replay` and `ctsim kernel` so
//! both write byte-identical columns.

use crate::conntrack::proto::tcp::TcpState;
use crate::conntrack::{CtState, Dir, Reason, Status};
use crate::netfilter::HookTrail;
use crate::time::Timestamp;
use crate::wire::{L4, Packet, ipproto, tcpflag};
use std::fmt::Write as _;
use std::io::{self, Write};
use std::net::IpAddr;

/// The leading columns, in order.
pub const HEADER: &str = "packet,time,proto,src,sport,dst,dport,flags,length,chains,ctstate,ctdir,ctstatus,tcp_state,verdict,rule,reason,notes";

/// What happened to the packet in the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowVerdict {
    Accept,
    Drop,
    Reject,
    /// Not an IPv4/IPv6 packet: netfilter's IP hooks never see it.
    NotIp,
    /// A fragment whose datagram never completed: held by defrag, never
    /// reaching a rule.
    Defrag,
}

impl RowVerdict {
    pub fn name(self) -> &'static str {
        match self {
            RowVerdict::Accept => "ACCEPT",
            RowVerdict::Drop => "DROP",
            RowVerdict::Reject => "REJECT",
            RowVerdict::NotIp => "NOTIP",
            RowVerdict::Defrag => "DEFRAG",
        }
    }
}

/// The `flags` column: TCP flags or ICMP type/code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowFlags {
    None,
    Tcp(u8),
    Icmp(u8, u8),
}

/// Header facts shown in a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowPacket {
    pub proto: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub flags: RowFlags,
    pub length: u32,
}

impl RowPacket {
    pub fn of(pkt: &Packet<'_>) -> RowPacket {
        let (sport, dport, flags) = match pkt.l4 {
            L4::Tcp(t) => (Some(t.sport), Some(t.dport), RowFlags::Tcp(t.flags)),
            L4::Udp(u) => (Some(u.sport), Some(u.dport), RowFlags::None),
            L4::Icmp(i) | L4::Icmpv6(i) => (None, None, RowFlags::Icmp(i.icmp_type, i.code)),
            _ => (None, None, RowFlags::None),
        };
        RowPacket {
            proto: pkt.proto,
            src: pkt.src,
            dst: pkt.dst,
            sport,
            dport,
            flags,
            length: pkt.ip_len,
        }
    }
}

/// Free-form facts about a row, as bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Notes(pub u32);

impl Notes {
    pub const FRAGMENT: u32 = 1 << 0;
    pub const TRUNCATED: u32 = 1 << 1;
    pub const BAD_IP_CSUM: u32 = 1 << 2;
    pub const ROUTE_MARTIAN: u32 = 1 << 3;
    pub const ROUTE_MULTICAST: u32 = 1 << 4;
    pub const ROUTE_TTL: u32 = 1 << 5;
    pub const ROUTE_LINKLOCAL: u32 = 1 << 6;
    pub const DECODE_ERROR: u32 = 1 << 7;
    pub const LOGGED: u32 = 1 << 8;
    pub const NOT_SIMULATED_NAT: u32 = 1 << 9;
    pub const DEFRAG_DROPPED: u32 = 1 << 10;
    pub const ROUTE_NOT_FOR_US: u32 = 1 << 11;
    pub const IPV6_RCV: u32 = 1 << 12;

    const NAMES: &'static [(u32, &'static str)] = &[
        (Notes::FRAGMENT, "fragment"),
        (Notes::TRUNCATED, "truncated"),
        (Notes::BAD_IP_CSUM, "ip_rcv: bad IPv4 header checksum"),
        (Notes::ROUTE_MARTIAN, "routing: martian address"),
        (Notes::ROUTE_MULTICAST, "routing: multicast not joined"),
        (Notes::ROUTE_TTL, "routing: ttl exceeded"),
        (Notes::ROUTE_LINKLOCAL, "routing: link-local not forwarded"),
        (Notes::DECODE_ERROR, "ip_rcv: malformed IP header"),
        (Notes::LOGGED, "logged"),
        (Notes::NOT_SIMULATED_NAT, "nat not simulated"),
        (Notes::DEFRAG_DROPPED, "defrag: queue dropped"),
        (
            Notes::ROUTE_NOT_FOR_US,
            "routing: link-layer broadcast/multicast not forwarded",
        ),
        (
            Notes::IPV6_RCV,
            "ipv6_rcv: loopback or multicast source from a wire",
        ),
    ];

    pub fn set(&mut self, bit: u32) {
        self.0 |= bit;
    }
    pub fn has(self, bit: u32) -> bool {
        self.0 & bit != 0
    }
    fn write(self, out: &mut String) {
        let mut first = true;
        for (bit, name) in Self::NAMES {
            if self.has(*bit) {
                if !first {
                    out.push(';');
                }
                out.push_str(name);
                first = false;
            }
        }
    }
}

/// One output row, as typed values.
#[derive(Debug, Clone)]
pub struct Row {
    pub packet: u64,
    pub time: Timestamp,
    pub pkt: Option<RowPacket>,
    pub chains: HookTrail,
    pub ctstate: Option<CtState>,
    pub ctdir: Option<Dir>,
    /// Status of the entry after the packet; None when no entry exists then.
    pub ctstatus: Option<Status>,
    pub tcp_state: Option<TcpState>,
    pub verdict: RowVerdict,
    /// The deciding rule, already rendered (`filter:INPUT:3`); rendering
    /// needs the ruleset's names, so the engine does it once per rule and
    /// hands out shared strings.
    pub rule: Option<std::sync::Arc<str>>,
    pub reason: Option<Reason>,
    pub notes: Notes,
    /// Non-IP frames and decode failures: what was found.
    pub detail: Option<&'static str>,
}

impl Row {
    pub fn new(packet: u64, time: Timestamp) -> Row {
        Row {
            packet,
            time,
            pkt: None,
            chains: HookTrail::default(),
            ctstate: None,
            ctdir: None,
            ctstatus: None,
            tcp_state: None,
            verdict: RowVerdict::Drop,
            rule: None,
            reason: None,
            notes: Notes::default(),
            detail: None,
        }
    }
}

/// Writes the `flags` column text.
pub fn write_flags(f: RowFlags, out: &mut String) {
    match f {
        RowFlags::None => {}
        RowFlags::Tcp(b) => {
            for (bit, c) in [
                (tcpflag::SYN, 'S'),
                (tcpflag::FIN, 'F'),
                (tcpflag::RST, 'R'),
                (tcpflag::PSH, 'P'),
                (tcpflag::URG, 'U'),
                (tcpflag::ECE, 'E'),
                (tcpflag::CWR, 'W'),
                (tcpflag::ACK, '.'),
            ] {
                if b & bit != 0 {
                    out.push(c);
                }
            }
        }
        RowFlags::Icmp(t, c) => {
            let _ = write!(out, "{t}/{c}");
        }
    }
}

/// The `proto` column text.
pub fn proto_text(p: u8, out: &mut String) {
    match p {
        ipproto::TCP => out.push_str("tcp"),
        ipproto::UDP => out.push_str("udp"),
        ipproto::ICMP => out.push_str("icmp"),
        ipproto::ICMPV6 => out.push_str("icmpv6"),
        n => {
            let _ = write!(out, "{n}");
        }
    }
}

/// Buffered CSV writer for rows.
pub struct RowWriter<W: Write> {
    out: csv::Writer<W>,
    field: String,
}

impl<W: Write> RowWriter<W> {
    pub fn new(w: W) -> io::Result<Self> {
        let mut out = csv::WriterBuilder::new().has_headers(false).from_writer(w);
        out.write_record(HEADER.split(','))
            .map_err(io::Error::other)?;
        Ok(RowWriter {
            out,
            field: String::with_capacity(64),
        })
    }

    fn put(&mut self) -> io::Result<()> {
        self.out
            .write_field(self.field.as_bytes())
            .map_err(io::Error::other)?;
        self.field.clear();
        Ok(())
    }

    pub fn write(&mut self, r: &Row) -> io::Result<()> {
        let f = &mut self.field;
        f.clear();
        let mut ib = itoa::Buffer::new();
        f.push_str(ib.format(r.packet));
        self.put()?;
        let _ = write!(self.field, "{}", r.time);
        self.put()?;
        match &r.pkt {
            Some(p) => {
                proto_text(p.proto, &mut self.field);
                self.put()?;
                let _ = write!(self.field, "{}", p.src);
                self.put()?;
                if let Some(sp) = p.sport {
                    self.field.push_str(ib.format(sp));
                }
                self.put()?;
                let _ = write!(self.field, "{}", p.dst);
                self.put()?;
                if let Some(dp) = p.dport {
                    self.field.push_str(ib.format(dp));
                }
                self.put()?;
                write_flags(p.flags, &mut self.field);
                self.put()?;
                self.field.push_str(ib.format(p.length));
                self.put()?;
            }
            None => {
                for _ in 0..7 {
                    self.put()?;
                }
            }
        }
        let mut chains = Vec::new();
        r.chains.write_to(&mut chains);
        self.field
            .push_str(std::str::from_utf8(&chains).unwrap_or(""));
        self.put()?;
        if let Some(s) = r.ctstate {
            self.field.push_str(s.name());
        }
        self.put()?;
        if let Some(d) = r.ctdir {
            self.field.push_str(d.name());
        }
        self.put()?;
        if let Some(s) = r.ctstatus {
            self.field.push_str(&s.names());
        }
        self.put()?;
        if let Some(t) = r.tcp_state {
            self.field.push_str(t.name());
        }
        self.put()?;
        self.field.push_str(r.verdict.name());
        self.put()?;
        if let Some(rule) = &r.rule {
            self.field.push_str(rule);
        }
        self.put()?;
        if let Some(reason) = &r.reason {
            let _ = write!(self.field, "{reason}");
        }
        self.put()?;
        r.notes.write(&mut self.field);
        if let Some(d) = r.detail {
            if !self.field.is_empty() {
                self.field.push(';');
            }
            self.field.push_str(d);
        }
        self.put()?;
        self.out
            .write_record(None::<&[u8]>)
            .map_err(io::Error::other)?;
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
