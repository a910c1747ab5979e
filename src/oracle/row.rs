//! Column vocabulary and formatting of a per-packet verdict row.
//!
//! These are plain functions over decoded fields so that `ctsim replay` and
//! `ctsim kernel` print byte-identical columns; they will move to the report
//! layer once it exists. Nothing here knows how a value was obtained (model or
//! kernel), and nothing here allocates unless it returns a `String`.

use std::borrow::Cow;
use std::fmt;

use crate::conntrack::{CtState, Dir, Status};
use crate::wire::{ipproto, tcpflag};

/// The columns of a verdict row, in output order (`notes` is last and
/// optional for writers that compare against the model).
pub const COLUMNS: [&str; 18] = [
    "packet",
    "time",
    "proto",
    "src",
    "sport",
    "dst",
    "dport",
    "flags",
    "length",
    "chains",
    "ctstate",
    "ctdir",
    "ctstatus",
    "tcp_state",
    "verdict",
    "rule",
    "reason",
    "notes",
];

pub use crate::netfilter::Hook;

/// What finally happened to a capture packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Left the last hook: POSTROUTING when forwarded or sent, INPUT when
    /// delivered locally.
    Accept,
    Drop,
    /// Dropped by a REJECT rule (which also makes the stack answer).
    Reject,
    /// Not an IPv4/IPv6 packet; never replayed.
    NotIp,
    /// A fragment held by defrag whose datagram never completed.
    Defrag,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Accept => "ACCEPT",
            Verdict::Drop => "DROP",
            Verdict::Reject => "REJECT",
            Verdict::NotIp => "NOTIP",
            Verdict::Defrag => "DEFRAG",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `tcp`, `udp`, `icmp`, `icmpv6`, else the protocol number.
pub fn proto_name(proto: u8) -> Cow<'static, str> {
    match proto {
        ipproto::TCP => Cow::Borrowed("tcp"),
        ipproto::UDP => Cow::Borrowed("udp"),
        ipproto::ICMP => Cow::Borrowed("icmp"),
        ipproto::ICMPV6 => Cow::Borrowed("icmpv6"),
        n => Cow::Owned(n.to_string()),
    }
}

/// Protocols whose first four L4 bytes are ports in conntrack's tuple and in
/// the `sport`/`dport` columns.
pub fn has_ports(proto: u8) -> bool {
    matches!(
        proto,
        ipproto::TCP | ipproto::UDP | ipproto::UDPLITE | ipproto::SCTP | 33 /* DCCP */
    )
}

/// TCP flags tcpdump-style: `S F R P U E W` in that order, then `.` for ACK
/// (`S`, `S.`, `.`, `P.`, `F.`, `R.`). No flag at all prints `none`, as
/// tcpdump does.
pub fn write_tcp_flags(flags: u8, out: &mut String) {
    const LETTERS: [(u8, char); 7] = [
        (tcpflag::SYN, 'S'),
        (tcpflag::FIN, 'F'),
        (tcpflag::RST, 'R'),
        (tcpflag::PSH, 'P'),
        (tcpflag::URG, 'U'),
        (tcpflag::ECE, 'E'),
        (tcpflag::CWR, 'W'),
    ];
    let start = out.len();
    for (bit, letter) in LETTERS {
        if flags & bit != 0 {
            out.push(letter);
        }
    }
    if flags & tcpflag::ACK != 0 {
        out.push('.');
    }
    if out.len() == start {
        out.push_str("none");
    }
}

/// ICMP / ICMPv6 `type/code`, e.g. `8/0`.
pub fn write_icmp(icmp_type: u8, code: u8, out: &mut String) {
    let mut b = itoa::Buffer::new();
    out.push_str(b.format(icmp_type));
    out.push('/');
    out.push_str(b.format(code));
}

/// Hooks entered, `>`-joined: `PREROUTING>FORWARD>POSTROUTING`.
pub fn chains(hooks: &[Hook]) -> String {
    let mut out = String::new();
    for (i, h) in hooks.iter().enumerate() {
        if i > 0 {
            out.push('>');
        }
        out.push_str(h.name());
    }
    out
}

/// Conntrack status bits, `|`-joined in bit order, as `conntrack -L` names them.
pub fn ctstatus(status: Status) -> String {
    status.names()
}

/// The `ctstate` column: what `-m state` sees.
pub fn ctstate(state: CtState) -> &'static str {
    state.name()
}

/// The `ctdir` column.
pub fn ctdir(dir: Dir) -> &'static str {
    dir.name()
}

/// Name of a TCP conntrack state number (`enum tcp_conntrack` order).
/// `None` for numbers outside the table.
pub fn tcp_state_name(state: u8) -> Option<&'static str> {
    const NAMES: [&str; 10] = [
        "NONE",
        "SYN_SENT",
        "SYN_RECV",
        "ESTABLISHED",
        "FIN_WAIT",
        "CLOSE_WAIT",
        "LAST_ACK",
        "TIME_WAIT",
        "CLOSE",
        "SYN_SENT2",
    ];
    NAMES.get(state as usize).copied()
}

/// A rule reference `table:CHAIN:N` (1-based like `iptables -L
/// --line-numbers`) or `table:CHAIN:policy`.
pub fn rule_ref(table: &str, chain: &str, position: Option<usize>) -> String {
    let mut out = String::with_capacity(table.len() + chain.len() + 10);
    out.push_str(table);
    out.push(':');
    out.push_str(chain);
    out.push(':');
    match position {
        Some(n) => out.push_str(itoa::Buffer::new().format(n)),
        None => out.push_str("policy"),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(f: u8) -> String {
        let mut s = String::new();
        write_tcp_flags(f, &mut s);
        s
    }

    #[test]
    fn tcp_flags_like_tcpdump() {
        use tcpflag::*;
        assert_eq!(flags(SYN), "S");
        assert_eq!(flags(SYN | ACK), "S.");
        assert_eq!(flags(ACK), ".");
        assert_eq!(flags(PSH | ACK), "P.");
        assert_eq!(flags(FIN | ACK), "F.");
        assert_eq!(flags(RST | ACK), "R.");
        assert_eq!(flags(RST), "R");
        assert_eq!(flags(FIN), "F");
        assert_eq!(flags(SYN | ECE | CWR), "SEW");
        assert_eq!(
            flags(FIN | SYN | RST | PSH | URG | ACK | ECE | CWR),
            "SFRPUEW."
        );
        assert_eq!(flags(0), "none");
    }

    #[test]
    fn icmp_and_proto() {
        let mut s = String::new();
        write_icmp(8, 0, &mut s);
        assert_eq!(s, "8/0");
        assert_eq!(proto_name(6), "tcp");
        assert_eq!(proto_name(58), "icmpv6");
        assert_eq!(proto_name(47), "47");
        assert!(has_ports(ipproto::SCTP) && !has_ports(ipproto::ICMP));
    }

    #[test]
    fn chains_status_states() {
        assert_eq!(chains(&[]), "");
        assert_eq!(
            chains(&[Hook::Prerouting, Hook::Forward, Hook::Postrouting]),
            "PREROUTING>FORWARD>POSTROUTING"
        );
        let st = Status(Status::SEEN_REPLY | Status::ASSURED | Status::CONFIRMED);
        assert_eq!(ctstatus(st), "SEEN_REPLY|ASSURED|CONFIRMED");
        assert_eq!(tcp_state_name(1), Some("SYN_SENT"));
        assert_eq!(tcp_state_name(9), Some("SYN_SENT2"));
        assert_eq!(tcp_state_name(10), None);
        assert_eq!(rule_ref("filter", "INPUT", Some(3)), "filter:INPUT:3");
        assert_eq!(rule_ref("filter", "FORWARD", None), "filter:FORWARD:policy");
    }
}
