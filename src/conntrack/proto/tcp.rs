//! The TCP connection tracker: what the kernel's `nf_conntrack_proto_tcp`
//! decides for each segment of a tracked connection (Linux 6.18).
//!
//! It models, per connection, the tracker's guess of the TCP state
//! ([`TcpState`]), the per-direction window bookkeeping that decides whether a
//! segment is in window ([`TcpSide`]), and the few "last packet" fields the
//! tracker keeps to recognise resynchronisation, challenge ACKs, RST answers and
//! retransmissions ([`TcpConn`]). For a segment it says whether the packet is
//! accepted or INVALID, which state the connection moves to, which timeout the
//! entry gets, whether the entry becomes ASSURED, must be deleted, or must be
//! re-created, and the message the kernel logs with `nf_conntrack_log_invalid`
//! ([`TcpReason`]).
//!
//! The work is split as the kernel splits it:
//! * [`TcpConn::check_packet`] — header length, checksum and flag combination,
//!   checked for every segment before the entry is looked at;
//! * [`TcpConn::new`] — whether a segment without an entry may create one,
//!   and the entry's starting window data;
//! * [`TcpConn::packet`] — the state machine, the special cases and the
//!   window check for a segment of an existing (or just created) entry.
//!
//! What it does not do: look entries up, keep timers, set `SEEN_REPLY`,
//! choose the ctinfo (NEW/ESTABLISHED), or apply `FIXED_TIMEOUT` to a refresh —
//! that is the conntrack core's work. It has no NAT sequence adjustment
//! (`seqadj`), no synproxy, and no per-connection timeout policies
//! (`nfct timeout`); timeouts come from [`Sysctls`] only.
//!
//! Reasons are a small `Copy` enum rather than strings so that messages with
//! numbers in them ("SEQ is over upper bound 1001 …") cost nothing per packet;
//! they are formatted only when displayed. `Display` writes the text the kernel
//! logs after its `nf_ct_proto_6: ` prefix.

use std::fmt;

use crate::conntrack::proto::L4Verdict;
use crate::conntrack::sysctl::Sysctls;
use crate::conntrack::{Dir, Status};
use crate::time::Duration;
use crate::wire::{Tcp, tcpflag};

/// The kernel's tick rate on the reference machine (`CONFIG_HZ=250`). It shows
/// only in one log message, which prints a timeout in jiffies.
pub const HZ: u32 = 250;

/// Timeout of the SYN_SENT2 state. The kernel has no sysctl for it.
const SYN_SENT2_TIMEOUT_SECS: u32 = 120;

/// Below this much remaining lifetime an out-of-window FIN/RST never shortens
/// the timeout (fixed in the kernel, not a sysctl).
const HANDLE_INVALID_MIN_LEFT: Duration = Duration::from_secs(120);

/// The lower bound of the ACK window when the sender never advertised more.
const MAX_ACK_WINDOW_CONST: u32 = 66_000;

/// TCP conntrack states (`enum tcp_conntrack`), numbered as in the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[repr(u8)]
pub enum TcpState {
    #[default]
    None = 0,
    SynSent = 1,
    SynRecv = 2,
    Established = 3,
    FinWait = 4,
    CloseWait = 5,
    LastAck = 6,
    TimeWait = 7,
    Close = 8,
    /// A SYN seen from both sides (simultaneous open).
    SynSent2 = 9,
}

impl TcpState {
    /// Every state, in the kernel's order.
    pub const ALL: [TcpState; 10] = [
        TcpState::None,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::Established,
        TcpState::FinWait,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::SynSent2,
    ];

    /// The name `conntrack -L` and `/proc/net/nf_conntrack` print.
    pub fn name(self) -> &'static str {
        match self {
            TcpState::None => "NONE",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::Established => "ESTABLISHED",
            TcpState::FinWait => "FIN_WAIT",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::SynSent2 => "SYN_SENT2",
        }
    }

    /// The state's own timeout in seconds, from the sysctls.
    pub fn timeout_secs(self, sysctls: &Sysctls) -> u32 {
        match self {
            // The kernel's table has no entry for NONE; no packet moves a
            // connection into it.
            TcpState::None => 0,
            TcpState::SynSent => sysctls.tcp_timeout_syn_sent,
            TcpState::SynRecv => sysctls.tcp_timeout_syn_recv,
            TcpState::Established => sysctls.tcp_timeout_established,
            TcpState::FinWait => sysctls.tcp_timeout_fin_wait,
            TcpState::CloseWait => sysctls.tcp_timeout_close_wait,
            TcpState::LastAck => sysctls.tcp_timeout_last_ack,
            TcpState::TimeWait => sysctls.tcp_timeout_time_wait,
            TcpState::Close => sysctls.tcp_timeout_close,
            TcpState::SynSent2 => SYN_SENT2_TIMEOUT_SECS,
        }
    }

    /// The states in which the tracker trusts no window data for a RST: the
    /// connection is closing and the tuple may already be reused.
    fn is_closing(self) -> bool {
        matches!(
            self,
            TcpState::FinWait
                | TcpState::CloseWait
                | TcpState::LastAck
                | TcpState::TimeWait
                | TcpState::Close
        )
    }
}

impl fmt::Display for TcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which row of the transition table a segment uses, from its flags
/// (`get_conntrack_index`): RST wins over SYN, SYN over FIN, FIN over ACK.
/// The numbers are the kernel's; they appear in log messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum TcpIndex {
    Syn = 0,
    SynAck = 1,
    Fin = 2,
    Ack = 3,
    Rst = 4,
    #[default]
    None = 5,
}

impl TcpIndex {
    pub fn of(flags: u8) -> TcpIndex {
        if flags & tcpflag::RST != 0 {
            TcpIndex::Rst
        } else if flags & tcpflag::SYN != 0 {
            if flags & tcpflag::ACK != 0 {
                TcpIndex::SynAck
            } else {
                TcpIndex::Syn
            }
        } else if flags & tcpflag::FIN != 0 {
            TcpIndex::Fin
        } else if flags & tcpflag::ACK != 0 {
            TcpIndex::Ack
        } else {
            TcpIndex::None
        }
    }
}

/// Per-direction window flags (`IP_CT_TCP_FLAG_*`), and the two markers kept
/// in [`TcpConn::last_flags`].
pub mod tcp_flags {
    /// This side sent the window scale option.
    pub const WINDOW_SCALE: u8 = 0x01;
    /// This side sent SACK-permitted.
    pub const SACK_PERM: u8 = 0x02;
    /// This side sent the first FIN.
    pub const CLOSE_INIT: u8 = 0x04;
    /// Window problems of this side's segments are never INVALID.
    pub const BE_LIBERAL: u8 = 0x08;
    /// This side has sent data the other side has not acknowledged.
    pub const DATA_UNACKNOWLEDGED: u8 = 0x10;
    /// `td_maxack` holds a value.
    pub const MAXACK_SET: u8 = 0x20;
    /// (`last_flags`) An ignored SYN in LAST_ACK may draw a challenge ACK.
    pub const EXP_CHALLENGE_ACK: u8 = 0x40;
    /// (`last_flags`) Both sides sent a SYN.
    pub const SIMULTANEOUS_OPEN: u8 = 0x80;
}
use tcp_flags as tf;

/// Window data of one direction (`struct ip_ct_tcp_state`): what the sender
/// in that direction has sent and may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpSide {
    /// Highest sequence number sent, plus one (seq + len + SYN + FIN).
    pub td_end: u32,
    /// Highest sequence number the peer's window allows.
    pub td_maxend: u32,
    /// Largest window seen (scaled), at least 1 once the side is known.
    pub td_maxwin: u32,
    /// Highest ACK sent.
    pub td_maxack: u32,
    /// Window scale shift (0..=14).
    pub td_scale: u8,
    /// [`tcp_flags`] bits.
    pub flags: u8,
}

/// What conntrack logs about a TCP segment it calls INVALID or lets through
/// without using it. `Display` gives the kernel's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpReason {
    /// Header length field below 20 bytes or beyond the segment.
    Truncated,
    BadChecksum,
    InvalidFlags,
    /// A first segment that cannot start a connection (SYN/ACK, FIN, RST).
    InvalidNew,
    /// The transition table says to let the segment pass unused.
    Ignored {
        index: TcpIndex,
        dir: Dir,
        state: TcpState,
    },
    /// The transition table says the segment is invalid.
    InvalidTransition {
        index: TcpIndex,
        dir: Dir,
        state: TcpState,
    },
    /// An ACK in LAST_ACK answering an ignored SYN (RFC 5961).
    ChallengeAckIgnored,
    /// A RST whose sequence number is below what the peer acknowledged.
    InvalidRst,
    /// A segment a little beyond the receiver's window (let through).
    BytesMoreThanExpected(u32),
    /// Check I failed: data beyond the receiver's window. Holds the bound + 1.
    SeqOverUpperBound(u32),
    /// Check III failed: it ACKs data never seen. Holds the bound.
    AckOverUpperBound(u32),
    /// Check II failed: an old retransmission. Holds the bound.
    SeqUnderLowerBound(u32),
    /// Check IV failed: an overly delayed ACK. Holds the bound.
    AckUnderLowerBound(u32),
    /// An out-of-window FIN/RST answering one from the other side shortened
    /// the timeout (`timeout` in jiffies, as the kernel prints it).
    LowerTimeout {
        index: TcpIndex,
        dir: Dir,
        last_index: TcpIndex,
        timeout: u32,
    },
}

impl TcpReason {
    /// The kernel's format string for this reason (numbers not filled in).
    pub fn template(self) -> &'static str {
        match self {
            TcpReason::Truncated => "truncated packet",
            TcpReason::BadChecksum => "bad checksum",
            TcpReason::InvalidFlags => "invalid tcp flag combination",
            TcpReason::InvalidNew => "invalid new",
            TcpReason::Ignored { .. } => "packet (index %d) in dir %d ignored, state %s",
            TcpReason::InvalidTransition { .. } => "packet (index %d) in dir %d invalid, state %s",
            TcpReason::ChallengeAckIgnored => "challenge-ack ignored",
            TcpReason::InvalidRst => "invalid rst",
            TcpReason::BytesMoreThanExpected(_) => "%u bytes more than expected",
            TcpReason::SeqOverUpperBound(_) => {
                "SEQ is over upper bound %u (over the window of the receiver)"
            }
            TcpReason::AckOverUpperBound(_) => {
                "ACK is over upper bound %u (ACKed data not seen yet)"
            }
            TcpReason::SeqUnderLowerBound(_) => {
                "SEQ is under lower bound %u (already ACKed data retransmitted)"
            }
            TcpReason::AckUnderLowerBound(_) => {
                "ignored ACK under lower bound %u (possible overly delayed)"
            }
            TcpReason::LowerTimeout { .. } => {
                "packet (index %d, dir %d) response for index %d lower timeout to %u"
            }
        }
    }
}

impl fmt::Display for TcpReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            TcpReason::Ignored { index, dir, state } => write!(
                f,
                "packet (index {}) in dir {} ignored, state {}",
                index as u8,
                dir.index(),
                state.name()
            ),
            TcpReason::InvalidTransition { index, dir, state } => write!(
                f,
                "packet (index {}) in dir {} invalid, state {}",
                index as u8,
                dir.index(),
                state.name()
            ),
            TcpReason::BytesMoreThanExpected(n) => write!(f, "{n} bytes more than expected"),
            TcpReason::SeqOverUpperBound(n) => write!(
                f,
                "SEQ is over upper bound {n} (over the window of the receiver)"
            ),
            TcpReason::AckOverUpperBound(n) => {
                write!(f, "ACK is over upper bound {n} (ACKed data not seen yet)")
            }
            TcpReason::SeqUnderLowerBound(n) => write!(
                f,
                "SEQ is under lower bound {n} (already ACKed data retransmitted)"
            ),
            TcpReason::AckUnderLowerBound(n) => {
                write!(
                    f,
                    "ignored ACK under lower bound {n} (possible overly delayed)"
                )
            }
            TcpReason::LowerTimeout {
                index,
                dir,
                last_index,
                timeout,
            } => write!(
                f,
                "packet (index {}, dir {}) response for index {} lower timeout to {}",
                index as u8,
                dir.index(),
                last_index as u8,
                timeout
            ),
            other => f.write_str(other.template()),
        }
    }
}

/// The tracker's answer for one segment of an existing entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpVerdict {
    /// Accepted with its ctinfo. `refresh`: the entry's new timeout, None
    /// when the timer is left alone (ignored segments, SYN retransmits).
    /// `note`: what the kernel logs for a segment it lets through unused.
    Accept {
        refresh: Option<Duration>,
        note: Option<TcpReason>,
    },
    /// Accepted, and the entry is deleted (a RST before any reply).
    AcceptAndDelete,
    /// INVALID: the packet leaves without its entry. `reason` is None where
    /// the kernel logs nothing. `timeout`: the entry's timer was cut to this
    /// (an out-of-window FIN/RST on an ASSURED entry), logged as
    /// `timeout_note`.
    Invalid {
        reason: Option<TcpReason>,
        timeout: Option<Duration>,
        timeout_note: Option<TcpReason>,
    },
    /// A SYN re-opens a closed connection: kill the entry and look the
    /// packet up again, which creates a fresh entry.
    Repeat,
}

impl From<TcpVerdict> for L4Verdict {
    /// Lossy: the shared verdict carries static text, so messages with
    /// numbers become their kernel format string.
    fn from(v: TcpVerdict) -> L4Verdict {
        match v {
            TcpVerdict::Accept { refresh, note } => L4Verdict::Accept {
                refresh,
                note: note.map(TcpReason::template),
            },
            TcpVerdict::AcceptAndDelete => L4Verdict::AcceptAndDelete,
            TcpVerdict::Invalid {
                reason, timeout, ..
            } => L4Verdict::Invalid {
                reason: reason.map_or("", TcpReason::template),
                timeout,
            },
            TcpVerdict::Repeat => L4Verdict::Repeat,
        }
    }
}

/// One cell of the transition table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cell {
    To(TcpState),
    /// sIG: let the segment pass without using it.
    Ignore,
    /// sIV: the segment is INVALID.
    Invalid,
}

/// The transition table, `[direction][index][old state]`, for Linux 6.18.
/// Columns: NONE, SYN_SENT, SYN_RECV, ESTABLISHED, FIN_WAIT, CLOSE_WAIT,
/// LAST_ACK, TIME_WAIT, CLOSE, SYN_SENT2. Rows: SYN, SYN/ACK, FIN, ACK, RST,
/// none of these.
const TABLE: [[[Cell; 10]; 6]; 2] = {
    use Cell::{Ignore as IG, Invalid as IV, To};
    use TcpState::*;
    const SS: Cell = To(SynSent);
    const SR: Cell = To(SynRecv);
    const ES: Cell = To(Established);
    const FW: Cell = To(FinWait);
    const CW: Cell = To(CloseWait);
    const LA: Cell = To(LastAck);
    const TW: Cell = To(TimeWait);
    const CL: Cell = To(Close);
    const S2: Cell = To(SynSent2);
    [
        // From the side that opened the connection.
        [
            [SS, SS, IG, IG, IG, IG, IG, SS, SS, S2],
            [IV, IV, SR, IV, IV, IV, IV, IV, IV, SR],
            [IV, IV, FW, FW, LA, LA, LA, TW, CL, IV],
            [ES, IV, ES, ES, CW, CW, TW, TW, CL, IV],
            [IV, CL, CL, CL, CL, CL, CL, CL, CL, CL],
            [IV, IV, IV, IV, IV, IV, IV, IV, IV, IV],
        ],
        // From the responder.
        [
            [IV, S2, IV, IV, IV, IV, IV, SS, IV, S2],
            [IV, SR, IG, IG, IG, IG, IG, IG, IG, SR],
            [IV, IV, FW, FW, LA, LA, LA, TW, CL, IV],
            [IV, IG, SR, ES, CW, CW, TW, TW, CL, IG],
            [IV, CL, CL, CL, CL, CL, CL, CL, CL, CL],
            [IV, IV, IV, IV, IV, IV, IV, IV, IV, IV],
        ],
    ]
};

/// `a` comes before `b` in sequence space.
fn before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

fn after(a: u32, b: u32) -> bool {
    before(b, a)
}

/// Sequence number after the segment: payload, SYN and FIN each count.
fn segment_end(tcp: &Tcp) -> u32 {
    tcp.seq
        .wrapping_add(tcp.payload_len)
        .wrapping_add(u32::from(tcp.flags & tcpflag::SYN != 0))
        .wrapping_add(u32::from(tcp.flags & tcpflag::FIN != 0))
}

/// The option bytes the kernel would scan: the header's option area, as far
/// as it was captured. None when the header has no options at all.
fn option_area<'a>(tcp: &Tcp<'a>) -> Option<&'a [u8]> {
    let declared = usize::from(tcp.header_len).saturating_sub(20);
    if declared == 0 {
        return None;
    }
    Some(&tcp.options[..declared.min(tcp.options.len())])
}

/// Learns window scale and SACK-permitted from a SYN or SYN/ACK into `side`.
/// As in the kernel, a header without options leaves `side` untouched, and a
/// malformed option list ends the scan where it breaks.
fn learn_options(tcp: &Tcp, side: &mut TcpSide) {
    let Some(mut opts) = option_area(tcp) else {
        return;
    };
    side.td_scale = 0;
    side.flags &= tf::BE_LIBERAL;
    while let Some((&kind, rest)) = opts.split_first() {
        match kind {
            0 => return,
            1 => opts = rest,
            _ => {
                let Some(&size) = rest.first() else { return };
                let size = usize::from(size);
                if size < 2 || size > opts.len() {
                    return;
                }
                match (kind, size) {
                    (4, 2) => side.flags |= tf::SACK_PERM,
                    (3, 3) => {
                        side.td_scale = opts[2].min(14);
                        side.flags |= tf::WINDOW_SCALE;
                    }
                    _ => {}
                }
                opts = &opts[size..];
            }
        }
    }
}

/// The highest SACK right edge after `ack`, or `ack`. Only the first SACK
/// option counts, and a header whose only option is an aligned timestamp is
/// not scanned (the kernel's shortcut).
fn sack_edge(tcp: &Tcp, ack: u32) -> u32 {
    let Some(mut opts) = option_area(tcp) else {
        return ack;
    };
    if opts.len() == 12 && opts[..4] == [1, 1, 8, 10] {
        return ack;
    }
    let mut sack = ack;
    while let Some((&kind, rest)) = opts.split_first() {
        match kind {
            0 => break,
            1 => opts = rest,
            _ => {
                let Some(&size) = rest.first() else { break };
                let size = usize::from(size);
                if size < 2 || size > opts.len() {
                    break;
                }
                if kind == 5 && size >= 10 && (size - 2) % 8 == 0 {
                    for block in opts[2..size].chunks_exact(8) {
                        let right = u32::from_be_bytes([block[4], block[5], block[6], block[7]]);
                        if after(right, sack) {
                            sack = right;
                        }
                    }
                    break;
                }
                opts = &opts[size..];
            }
        }
    }
    sack
}

/// Outcome of the window check.
enum Window {
    Accept,
    /// Let through unused (no state change, no refresh).
    Ignore(TcpReason),
    Invalid(TcpReason),
}

/// Per-connection TCP tracking data (`struct ip_ct_tcp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpConn {
    pub state: TcpState,
    /// Window data per direction, indexed by [`Dir::index`].
    pub seen: [TcpSide; 2],
    /// Direction and index of the last segment the tracker used (or ignored).
    pub last_dir: Dir,
    pub last_index: TcpIndex,
    pub last_seq: u32,
    pub last_ack: u32,
    pub last_end: u32,
    /// Raw window of the last recorded segment.
    pub last_win: u16,
    /// Window scale of the last ignored SYN.
    pub last_wscale: u8,
    /// Option flags of the last ignored SYN, plus the markers
    /// [`tcp_flags::EXP_CHALLENGE_ACK`] and [`tcp_flags::SIMULTANEOUS_OPEN`].
    pub last_flags: u8,
    /// Identical ACKs seen in a row (8 bits, as in the kernel: it wraps).
    pub retrans: u8,
}

impl Default for TcpConn {
    fn default() -> Self {
        TcpConn {
            state: TcpState::None,
            seen: [TcpSide::default(); 2],
            last_dir: Dir::Original,
            last_index: TcpIndex::Syn,
            last_seq: 0,
            last_ack: 0,
            last_end: 0,
            last_win: 0,
            last_wscale: 0,
            last_flags: 0,
            retrans: 0,
        }
    }
}

impl TcpConn {
    /// Checks every segment gets before its entry is used (`tcp_error`):
    /// header length, checksum, flag combination. `verify_checksum` is true
    /// only at PREROUTING with `nf_conntrack_checksum=1`; `csum_ok` comes from
    /// the decoder (None: unknown, taken as good). An error makes the packet
    /// INVALID, whether or not it has an entry.
    ///
    /// The kernel also says "truncated packet" when the IP datagram ends
    /// before the header's data offset; [`Tcp`] cannot express that (its
    /// `payload_len` is unsigned), so the decoder must report such a segment
    /// as malformed and the core log it with [`TcpReason::Truncated`]. A TCP
    /// header under 20 bytes in the datagram is INVALID with no log line.
    pub fn check_packet(
        tcp: &Tcp,
        csum_ok: Option<bool>,
        verify_checksum: bool,
    ) -> Result<(), TcpReason> {
        if tcp.header_len < 20 {
            return Err(TcpReason::Truncated);
        }
        if verify_checksum && csum_ok == Some(false) {
            return Err(TcpReason::BadChecksum);
        }
        const SYN: u8 = tcpflag::SYN;
        const ACK: u8 = tcpflag::ACK;
        const RST: u8 = tcpflag::RST;
        const FIN: u8 = tcpflag::FIN;
        const URG: u8 = tcpflag::URG;
        const SYN_URG: u8 = SYN | URG;
        const SYN_ACK: u8 = SYN | ACK;
        const RST_ACK: u8 = RST | ACK;
        const FIN_ACK: u8 = FIN | ACK;
        const FIN_ACK_URG: u8 = FIN | ACK | URG;
        const ACK_URG: u8 = ACK | URG;
        // PSH, ECE and CWR may accompany anything.
        let f = tcp.flags & !(tcpflag::ECE | tcpflag::CWR | tcpflag::PSH);
        let valid = matches!(
            f,
            SYN | SYN_URG | SYN_ACK | RST | RST_ACK | FIN_ACK | FIN_ACK_URG | ACK | ACK_URG
        );
        if valid {
            Ok(())
        } else {
            Err(TcpReason::InvalidFlags)
        }
    }

    /// May this segment (which found no entry, and passed
    /// [`check_packet`](Self::check_packet)) create one (`tcp_new`)? A SYN
    /// starts a connection; any other ACK-only-style segment picks up a
    /// connection in the middle when `tcp_loose` is set, with liberal window
    /// checking in both directions. The returned data must then see the same
    /// segment through [`packet`](Self::packet) in the ORIGINAL direction.
    ///
    /// `Err(None)`: refused without a log line (pickup disabled).
    pub fn new(tcp: &Tcp, sysctls: &Sysctls) -> Result<TcpConn, Option<TcpReason>> {
        let index = TcpIndex::of(tcp.flags);
        let first = match TABLE[0][index as usize][TcpState::None as usize] {
            Cell::To(s) => s,
            _ => return Err(Some(TcpReason::InvalidNew)),
        };
        let mut conn = TcpConn {
            last_index: TcpIndex::None,
            ..TcpConn::default()
        };
        let end = segment_end(tcp);
        let win = u32::from(tcp.window).max(1);
        let side = &mut conn.seen[0];
        side.td_end = end;
        side.td_maxwin = win;
        if first == TcpState::SynSent {
            side.td_maxend = end;
            learn_options(tcp, side);
        } else if !sysctls.tcp_loose {
            return Err(None);
        } else {
            side.td_maxend = end.wrapping_add(win);
            // Without the handshake the scale factors are unknown, so
            // windows cannot be judged: be liberal both ways.
            conn.seen[0].flags = tf::SACK_PERM | tf::BE_LIBERAL;
            conn.seen[1].flags = tf::SACK_PERM | tf::BE_LIBERAL;
        }
        Ok(conn)
    }

    /// The tracker's state.
    pub fn state(&self) -> TcpState {
        self.state
    }

    /// Handles one segment in direction `dir` (`nf_conntrack_tcp_packet`
    /// after `tcp_error`/`tcp_new`).
    ///
    /// `status` is the entry's status as the core holds it while the handler
    /// runs: `SEEN_REPLY` is still clear while the first reply is handled (the
    /// core sets it after an accepted REPLY packet). The tracker sets
    /// `ASSURED` itself. `timeout_left` is the entry's remaining lifetime,
    /// used only to decide whether an out-of-window FIN/RST shortens it.
    pub fn packet(
        &mut self,
        tcp: &Tcp,
        dir: Dir,
        status: &mut Status,
        timeout_left: Duration,
        sysctls: &Sysctls,
    ) -> TcpVerdict {
        let d = dir.index();
        let mut old_state = self.state;
        let index = TcpIndex::of(tcp.flags);
        let cell = TABLE[d][index as usize][old_state as usize];
        let ack_seq = tcp.ack;
        let mut new_state;
        let mut skip_window = false;

        // A SYN that would reopen a closed connection, or a segment the
        // table ignores.
        let reopen =
            cell == Cell::To(TcpState::SynSent) && old_state as u8 >= TcpState::TimeWait as u8;
        if reopen {
            let close_seen = (self.seen[0].flags | self.seen[1].flags) & tf::CLOSE_INIT != 0;
            if close_seen || (self.last_dir == dir && self.last_index == TcpIndex::Rst) {
                return TcpVerdict::Repeat;
            }
        }
        if reopen || cell == Cell::Ignore {
            if index == TcpIndex::SynAck
                && self.last_index == TcpIndex::Syn
                && self.last_dir != dir
                && ack_seq == self.last_end
            {
                // The peer answers a SYN we let pass unused: both ends are
                // in sync and we are not. Re-learn the handshake from the
                // recorded SYN and this SYN/ACK.
                old_state = TcpState::SynSent;
                new_state = TcpState::SynRecv;
                let l = self.last_dir.index();
                self.seen[l].td_end = self.last_end;
                self.seen[l].td_maxend = self.last_end;
                self.seen[l].td_maxwin = u32::from(self.last_win).max(1);
                self.seen[l].td_scale = self.last_wscale;
                self.last_flags &= !tf::EXP_CHALLENGE_ACK;
                self.seen[l].flags = self.last_flags;
                let s = &mut self.seen[d];
                *s = TcpSide {
                    flags: s.flags & tf::BE_LIBERAL,
                    ..TcpSide::default()
                };
            } else {
                self.record_ignored(tcp, dir, index, old_state);
                return TcpVerdict::Accept {
                    refresh: None,
                    note: Some(TcpReason::Ignored {
                        index,
                        dir,
                        state: old_state,
                    }),
                };
            }
        } else {
            new_state = match cell {
                Cell::To(s) => s,
                _ => {
                    return TcpVerdict::Invalid {
                        reason: Some(TcpReason::InvalidTransition {
                            index,
                            dir,
                            state: old_state,
                        }),
                        timeout: None,
                        timeout_note: None,
                    };
                }
            };
            match new_state {
                TcpState::TimeWait
                    if old_state == TcpState::LastAck
                        && index == TcpIndex::Ack
                        && self.last_dir != dir
                        && self.last_index == TcpIndex::Syn
                        && self.last_flags & tf::EXP_CHALLENGE_ACK != 0 =>
                {
                    // The peer's challenge ACK to an ignored SYN: it does not
                    // acknowledge the last FIN.
                    self.last_flags &= !tf::EXP_CHALLENGE_ACK;
                    return TcpVerdict::Accept {
                        refresh: None,
                        note: Some(TcpReason::ChallengeAckIgnored),
                    };
                }
                TcpState::SynSent2 => self.last_flags |= tf::SIMULTANEOUS_OPEN,
                // The responder's ACK ends a simultaneous open.
                TcpState::SynRecv
                    if dir == Dir::Reply
                        && index == TcpIndex::Ack
                        && self.last_flags & tf::SIMULTANEOUS_OPEN != 0 =>
                {
                    new_state = TcpState::Established;
                }
                TcpState::Close if index == TcpIndex::Rst => {
                    let Some(check) = self.check_rst(tcp, dir, old_state, *status, sysctls) else {
                        return TcpVerdict::Invalid {
                            reason: Some(TcpReason::InvalidRst),
                            timeout: None,
                            timeout_note: None,
                        };
                    };
                    if check.keep_state {
                        new_state = old_state;
                    }
                    skip_window = check.skip_window;
                }
                _ => {}
            }
        }

        if !skip_window {
            match self.in_window(tcp, dir, index, sysctls) {
                Window::Accept => {}
                Window::Ignore(reason) => {
                    return TcpVerdict::Accept {
                        refresh: None,
                        note: Some(reason),
                    };
                }
                Window::Invalid(reason) => {
                    let (timeout, timeout_note) =
                        self.handle_invalid(dir, index, *status, timeout_left, sysctls);
                    return TcpVerdict::Invalid {
                        reason: Some(reason),
                        timeout,
                        timeout_note,
                    };
                }
            }
        }

        // The segment is in window (or trusted without the check).
        self.last_index = index;
        self.last_dir = dir;
        self.state = new_state;
        if old_state != new_state && new_state == TcpState::FinWait {
            self.seen[d].flags |= tf::CLOSE_INIT;
        }

        let mut timeout = self.timeout_secs(new_state, index, sysctls);

        if !status.has(Status::SEEN_REPLY) {
            // Only a RST came back (or went out): nothing was established.
            if tcp.flags & tcpflag::RST != 0 {
                return TcpVerdict::AcceptAndDelete;
            }
            // A repeated SYN must not keep an unanswered entry alive.
            if index == TcpIndex::Syn && old_state == TcpState::SynSent {
                return TcpVerdict::Accept {
                    refresh: None,
                    note: None,
                };
            }
            // A picked-up connection with no reply yet gets no long timeout.
            if new_state == TcpState::Established {
                timeout = timeout.min(sysctls.tcp_timeout_unacknowledged);
            }
        } else if !status.has(Status::ASSURED)
            && matches!(old_state, TcpState::SynRecv | TcpState::Established)
            && new_state == TcpState::Established
        {
            status.set(Status::ASSURED);
        }
        TcpVerdict::Accept {
            refresh: Some(Sysctls::secs(timeout)),
            note: None,
        }
    }

    /// Timeout for an accepted segment: shortened while retransmissions,
    /// unacknowledged data or a zero window suggest the connection is stuck.
    fn timeout_secs(&self, new_state: TcpState, index: TcpIndex, s: &Sysctls) -> u32 {
        let own = new_state.timeout_secs(s);
        let unacked = (self.seen[0].flags | self.seen[1].flags) & tf::DATA_UNACKNOWLEDGED != 0;
        if u32::from(self.retrans) >= s.tcp_max_retrans && own > s.tcp_timeout_max_retrans {
            s.tcp_timeout_max_retrans
        } else if index == TcpIndex::Rst {
            s.tcp_timeout_close
        } else if unacked && own > s.tcp_timeout_unacknowledged {
            s.tcp_timeout_unacknowledged
        } else if self.last_win == 0 && own > s.tcp_timeout_max_retrans {
            s.tcp_timeout_max_retrans
        } else {
            own
        }
    }

    /// Notes a segment let through unused, so that a later answer to it
    /// (SYN/ACK, RST, challenge ACK) can be recognised.
    fn record_ignored(&mut self, tcp: &Tcp, dir: Dir, index: TcpIndex, old_state: TcpState) {
        self.last_index = index;
        self.last_dir = dir;
        self.last_seq = tcp.seq;
        self.last_end = segment_end(tcp);
        self.last_win = tcp.window;
        if index == TcpIndex::Syn && dir == Dir::Original {
            // Keep the SYN's options: if the server answers it, they become
            // this side's window data.
            let mut opts = TcpSide::default();
            learn_options(tcp, &mut opts);
            self.last_flags = 0;
            self.last_wscale = 0;
            if opts.flags & tf::WINDOW_SCALE != 0 {
                self.last_flags |= tf::WINDOW_SCALE;
                self.last_wscale = opts.td_scale;
            }
            if opts.flags & tf::SACK_PERM != 0 {
                self.last_flags |= tf::SACK_PERM;
            }
            // In LAST_ACK the peer's challenge ACK would look like the
            // final ACK.
            if old_state == TcpState::LastAck {
                self.last_flags |= tf::EXP_CHALLENGE_ACK;
            }
        }
        if old_state == TcpState::SynSent && index == TcpIndex::Ack && dir == Dir::Reply {
            // Possibly a challenge ACK answering the SYN.
            self.last_ack = tcp.ack;
        }
    }

    /// Decides how far a RST that would close the connection is trusted.
    /// None: the RST is INVALID.
    fn check_rst(
        &self,
        tcp: &Tcp,
        dir: Dir,
        old_state: TcpState,
        status: Status,
        sysctls: &Sysctls,
    ) -> Option<RstCheck> {
        let window = RstCheck {
            keep_state: false,
            skip_window: false,
        };
        // While closing, the tuple may already be reused and the window
        // data stale: trust the RST.
        if self.state.is_closing() {
            return Some(RstCheck {
                skip_window: true,
                ..window
            });
        }
        let peer = &self.seen[dir.opposite().index()];
        let mut keep_state = false;
        if peer.flags & tf::MAXACK_SET != 0 && self.last_index != TcpIndex::Syn {
            let established = self.state == TcpState::Established && status.has(Status::ASSURED);
            let seq = tcp.seq;
            // A RST with sequence 0 answers a SYN we let through.
            if seq == 0 && !established {
                return Some(window);
            }
            if before(seq, peer.td_maxack) && !sysctls.tcp_ignore_invalid_rst {
                return None;
            }
            if !established || seq == peer.td_maxack {
                return Some(window);
            }
            // A RST right after this side's data, at its end.
            if self.last_index == TcpIndex::Ack && self.last_dir == dir && seq == self.last_end {
                return Some(window);
            }
            // Inexact sequence: keep the state so the peer can answer
            // with a challenge ACK.
            keep_state = true;
        }
        // Only a RST from the other side can answer the last SYN (6.18 and
        // the stable kernels check the direction). Without that, a bare RST
        // right after the sender's own SYN, whose ack field (0) equals a
        // `last_end` never set, would skip the window check and close.
        let answers_ignored = (status.has(Status::SEEN_REPLY)
            && self.last_index == TcpIndex::Syn
            && self.last_dir != dir)
            || (!status.has(Status::ASSURED) && self.last_index == TcpIndex::Ack);
        // A RST answering a SYN or ACK we let through unused may acknowledge
        // data we never counted; one answering a challenge ACK carries its
        // ACK number as sequence. Neither can pass the window check.
        let skip_window = (answers_ignored && tcp.ack == self.last_end)
            || (old_state == TcpState::SynSent
                && self.last_index == TcpIndex::Ack
                && self.last_dir == Dir::Reply
                && tcp.seq == self.last_ack);
        Some(RstCheck {
            keep_state,
            skip_window,
        })
    }

    /// Out-of-window FIN or RST on an ASSURED entry: if the other side
    /// closed the same way just before, the connection is most likely gone,
    /// so its timeout is cut to the unacknowledged-data timeout.
    fn handle_invalid(
        &mut self,
        dir: Dir,
        index: TcpIndex,
        status: Status,
        timeout_left: Duration,
        sysctls: &Sysctls,
    ) -> (Option<Duration>, Option<TcpReason>) {
        if !status.has(Status::ASSURED) || status.has(Status::FIXED_TIMEOUT) {
            return (None, None);
        }
        if !matches!(index, TcpIndex::Rst | TcpIndex::Fin) {
            return (None, None);
        }
        if self.last_dir != dir && matches!(self.last_index, TcpIndex::Fin | TcpIndex::Rst) {
            let unack = Sysctls::secs(sysctls.tcp_timeout_unacknowledged);
            if timeout_left < HANDLE_INVALID_MIN_LEFT || timeout_left <= unack {
                return (None, None);
            }
            let note = TcpReason::LowerTimeout {
                index,
                dir,
                last_index: self.last_index,
                timeout: sysctls.tcp_timeout_unacknowledged.saturating_mul(HZ),
            };
            (Some(unack), Some(note))
        } else {
            self.last_index = index;
            self.last_dir = dir;
            (None, None)
        }
    }

    /// The window check (`tcp_in_window`): checks I–IV of the segment
    /// against what each side has sent and allowed, and on success learns
    /// from it. Liberal senders (and `tcp_be_liberal`) turn every failure
    /// into acceptance, without the learning.
    fn in_window(&mut self, tcp: &Tcp, dir: Dir, index: TcpIndex, sysctls: &Sysctls) -> Window {
        let state = self.state;
        let (si, ri) = (dir.index(), dir.opposite().index());
        let syn = tcp.flags & tcpflag::SYN != 0;
        let has_ack = tcp.flags & tcpflag::ACK != 0;
        let rst = tcp.flags & tcpflag::RST != 0;
        let mut seq = tcp.seq;
        let mut ack = tcp.ack;
        let mut sack = ack;
        let win_raw = tcp.window;
        let mut win = u32::from(win_raw);
        let mut end = segment_end(tcp);

        if self.seen[ri].flags & tf::SACK_PERM != 0 {
            sack = sack_edge(tcp, sack);
        }

        if self.seen[si].td_maxwin == 0 {
            if syn {
                self.init_sender(tcp, dir, end, win);
                if !has_ack {
                    // The responder's own SYN (simultaneous open).
                    return Window::Accept;
                }
            } else {
                // First segment of this side of a picked-up connection.
                let s = &mut self.seen[si];
                s.td_end = end;
                s.td_maxwin = (win << s.td_scale).max(1);
                s.td_maxend = end.wrapping_add(s.td_maxwin);
                let r = &mut self.seen[ri];
                if r.td_maxwin == 0 {
                    // Nothing seen the other way yet: make checks III and IV
                    // pass until something is.
                    r.td_end = sack;
                    r.td_maxend = sack;
                } else if sack == r.td_end.wrapping_add(1) {
                    // Probably the answer to a keep-alive.
                    r.td_end = r.td_end.wrapping_add(1);
                }
            }
        } else if syn
            && after(end, self.seen[si].td_end)
            && matches!(state, TcpState::SynSent | TcpState::SynRecv)
        {
            // A new SYN (or SYN/ACK) with a higher sequence number: the end
            // restarted its attempt; learn it afresh.
            self.init_sender(tcp, dir, end, win);
            if dir == Dir::Reply && !has_ack {
                return Window::Accept;
            }
        }

        let liberal = self.seen[si].flags & tf::BE_LIBERAL != 0 || sysctls.tcp_be_liberal;
        let fail = |w: Window| if liberal { Window::Accept } else { w };

        let r_end = self.seen[ri].td_end;
        if !has_ack || (rst && ack == 0) {
            // No (usable) ACK: pretend it acknowledges everything.
            ack = r_end;
            sack = r_end;
        }
        if rst && seq == 0 && state == TcpState::SynSent {
            // A RST answering the SYN.
            seq = self.seen[si].td_end;
            end = seq;
        }

        let s = self.seen[si];
        let r = self.seen[ri];
        let max_ack_window = s.td_maxwin.max(MAX_ACK_WINDOW_CONST);
        let ack_floor = r.td_end.wrapping_sub(max_ack_window).wrapping_sub(1);

        // I: the data must start within what the receiver allowed.
        if !before(seq, s.td_maxend.wrapping_add(1)) {
            let overshot = end.wrapping_sub(s.td_maxend).wrapping_add(1);
            let in_recv_win =
                r.td_maxwin != 0 && after(end, s.td_end.wrapping_sub(r.td_maxwin).wrapping_sub(1));
            if in_recv_win
                && after(sack, ack_floor)
                && overshot <= r.td_maxwin
                && before(sack, r.td_end.wrapping_add(1))
            {
                // Slightly more than the window: senders do that. Count the
                // data so that its ACK is not taken for one of unseen data.
                let s = &mut self.seen[si];
                s.td_end = end;
                s.flags |= tf::DATA_UNACKNOWLEDGED;
                return fail(Window::Ignore(TcpReason::BytesMoreThanExpected(overshot)));
            }
            return fail(Window::Invalid(TcpReason::SeqOverUpperBound(
                s.td_maxend.wrapping_add(1),
            )));
        }
        // III: it must not acknowledge data never sent.
        if !before(sack, r.td_end.wrapping_add(1)) {
            return fail(Window::Invalid(TcpReason::AckOverUpperBound(
                r.td_end.wrapping_add(1),
            )));
        }
        // II: the data must not lie entirely before the receiver's window.
        let seq_floor = s.td_end.wrapping_sub(r.td_maxwin).wrapping_sub(1);
        if r.td_maxwin != 0 && !after(end, seq_floor) {
            return fail(Window::Ignore(TcpReason::SeqUnderLowerBound(seq_floor)));
        }
        // IV: the ACK must not be too far behind.
        if !after(sack, ack_floor) {
            return fail(Window::Ignore(TcpReason::AckUnderLowerBound(ack_floor)));
        }

        // In window: learn from the segment.
        if !syn {
            win <<= s.td_scale;
        }
        let s = &mut self.seen[si];
        let swin = win.wrapping_add(sack.wrapping_sub(ack));
        if s.td_maxwin < swin {
            s.td_maxwin = swin;
        }
        if after(end, s.td_end) {
            s.td_end = end;
            s.flags |= tf::DATA_UNACKNOWLEDGED;
        }
        if has_ack {
            if s.flags & tf::MAXACK_SET == 0 {
                s.td_maxack = ack;
                s.flags |= tf::MAXACK_SET;
            } else if after(ack, s.td_maxack) {
                s.td_maxack = ack;
            }
        }
        let s_maxend = s.td_maxend;
        let r = &mut self.seen[ri];
        if r.td_maxwin != 0 && after(end, s_maxend) {
            r.td_maxwin = r.td_maxwin.wrapping_add(end.wrapping_sub(s_maxend));
        }
        let right = sack.wrapping_add(win);
        if after(right, r.td_maxend.wrapping_sub(1)) {
            r.td_maxend = if win == 0 {
                right.wrapping_add(1)
            } else {
                right
            };
        }
        if ack == r.td_end {
            r.flags &= !tf::DATA_UNACKNOWLEDGED;
        }

        if index == TcpIndex::Ack {
            if self.last_dir == dir
                && self.last_seq == seq
                && self.last_ack == ack
                && self.last_end == end
                && self.last_win == win_raw
            {
                self.retrans = self.retrans.wrapping_add(1);
            } else {
                self.last_dir = dir;
                self.last_seq = seq;
                self.last_ack = ack;
                self.last_end = end;
                self.last_win = win_raw;
                self.retrans = 0;
            }
        }
        Window::Accept
    }

    /// Learns a side from its SYN or SYN/ACK. Window scaling counts only if
    /// both sides offered it, which is known once the responder has spoken.
    fn init_sender(&mut self, tcp: &Tcp, dir: Dir, end: u32, win: u32) {
        let (si, ri) = (dir.index(), dir.opposite().index());
        let s = &mut self.seen[si];
        s.td_end = end;
        s.td_maxend = end;
        s.td_maxwin = win.max(1);
        learn_options(tcp, s);
        if dir == Dir::Reply
            && !(self.seen[si].flags & tf::WINDOW_SCALE != 0
                && self.seen[ri].flags & tf::WINDOW_SCALE != 0)
        {
            self.seen[si].td_scale = 0;
            self.seen[ri].td_scale = 0;
        }
    }
}

/// How a closing RST is to be treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RstCheck {
    /// Keep the current state instead of going to CLOSE.
    keep_state: bool,
    /// Trust the RST without the window check.
    skip_window: bool,
}

#[cfg(test)]
mod tests {
    //! Every expected value here was observed on the real kernel (Linux
    //! 6.18) by `tests/tcp_kernel_check/rig.py`, which sends crafted segments
    //! through a router namespace and records the ctstate the FORWARD chain
    //! saw, conntrack's own log lines (`nf_conntrack_log_invalid`) and
    //! `conntrack -L` after each packet. `observed.txt` is its output; the
    //! replay below feeds the same segments to [`TcpConn`] through a minimal
    //! stand-in for the conntrack core and compares.

    use super::*;
    use std::collections::BTreeMap;

    const OBSERVED: &str = include_str!("../../../tests/tcp_kernel_check/observed.txt");

    /// One crafted segment as the rig sent it.
    struct Seg {
        t_ms: u64,
        from_client: bool,
        port: u16,
        flags: u8,
        seq: u32,
        ack: u32,
        win: u16,
        len: u32,
        opts: Vec<u8>,
        doff: Option<u8>,
        csum_ok: bool,
    }

    impl Seg {
        fn parse(line: &str) -> Seg {
            let f = fields(line);
            let flags = f["flags"].chars().fold(0u8, |acc, ch| {
                acc | match ch {
                    'F' => tcpflag::FIN,
                    'S' => tcpflag::SYN,
                    'R' => tcpflag::RST,
                    'P' => tcpflag::PSH,
                    'A' => tcpflag::ACK,
                    'U' => tcpflag::URG,
                    'E' => tcpflag::ECE,
                    'C' => tcpflag::CWR,
                    '-' => 0,
                    other => panic!("flag {other}"),
                }
            });
            let mut opts = match f["opts"] {
                "-" => Vec::new(),
                hex => (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                    .collect(),
            };
            // The rig pads the option area with EOL bytes.
            opts.resize(opts.len().div_ceil(4) * 4, 0);
            Seg {
                t_ms: f["t"].parse().unwrap(),
                from_client: f["side"] == "c",
                port: f["port"].parse().unwrap(),
                flags,
                seq: f["seq"].parse().unwrap(),
                ack: f["ack"].parse().unwrap(),
                win: f["win"].parse().unwrap(),
                len: f["len"].parse().unwrap(),
                opts,
                doff: f["doff"].parse().ok(),
                csum_ok: f["csum"] == "ok",
            }
        }

        fn tcp(&self) -> Tcp<'_> {
            let header_len = match self.doff {
                Some(d) => d * 4,
                None => 20 + self.opts.len() as u8,
            };
            Tcp {
                sport: 0,
                dport: 0,
                seq: self.seq,
                ack: self.ack,
                flags: self.flags,
                window: self.win,
                header_len,
                payload_len: self.len,
                opts: TcpOptions::default(),
                options: &self.opts,
                payload: &[],
            }
        }
    }

    use crate::wire::TcpOptions;

    fn fields(line: &str) -> BTreeMap<&str, &str> {
        line.split('\t')
            .skip(1)
            .filter_map(|kv| kv.split_once('='))
            .collect()
    }

    struct Entry {
        conn: TcpConn,
        status: Status,
        expires_ns: u64,
    }

    /// Keyed by (the originator is the client, client port).
    type Table = BTreeMap<(bool, u16), Entry>;

    /// What conntrack did with one segment: ctstate, direction, log lines.
    fn replay(seg: &Seg, now: u64, table: &mut Table, sysctls: &Sysctls) -> (String, Vec<String>) {
        let tcp = seg.tcp();
        table.retain(|_, e| e.expires_ns > now);
        if let Err(r) = TcpConn::check_packet(&tcp, Some(seg.csum_ok), sysctls.checksum) {
            return ("INVALID/-".into(), vec![r.to_string()]);
        }
        let logs = |rs: &[Option<TcpReason>]| rs.iter().flatten().map(|r| r.to_string()).collect();
        loop {
            let own = (seg.from_client, seg.port);
            let other = (!seg.from_client, seg.port);
            let found = if table.contains_key(&own) {
                Some((own, Dir::Original))
            } else if table.contains_key(&other) {
                Some((other, Dir::Reply))
            } else {
                None
            };
            let Some((key, dir)) = found else {
                let mut conn = match TcpConn::new(&tcp, sysctls) {
                    Ok(c) => c,
                    Err(r) => return ("INVALID/-".into(), logs(&[r])),
                };
                let mut status = Status::default();
                let v = conn.packet(&tcp, Dir::Original, &mut status, Duration::ZERO, sysctls);
                return match v {
                    TcpVerdict::Accept { refresh, note } => {
                        status.set(Status::CONFIRMED);
                        let expires_ns = now + refresh.expect("a new entry gets a timeout").0;
                        table.insert(
                            own,
                            Entry {
                                conn,
                                status,
                                expires_ns,
                            },
                        );
                        ("NEW/O".into(), logs(&[note]))
                    }
                    TcpVerdict::Invalid { reason, .. } => ("INVALID/-".into(), logs(&[reason])),
                    other => panic!("first packet gave {other:?}"),
                };
            };
            let e = table.get_mut(&key).unwrap();
            let ct = match (dir, e.status.has(Status::SEEN_REPLY)) {
                (Dir::Reply, _) => "ESTABLISHED/R",
                (Dir::Original, true) => "ESTABLISHED/O",
                (Dir::Original, false) => "NEW/O",
            };
            let left = Duration(e.expires_ns - now);
            match e.conn.packet(&tcp, dir, &mut e.status, left, sysctls) {
                TcpVerdict::Accept { refresh, note } => {
                    if let Some(r) = refresh {
                        e.expires_ns = now + r.0;
                    }
                    if dir == Dir::Reply {
                        e.status.set(Status::SEEN_REPLY);
                    }
                    return (ct.into(), logs(&[note]));
                }
                TcpVerdict::AcceptAndDelete => {
                    table.remove(&key);
                    return (ct.into(), Vec::new());
                }
                TcpVerdict::Invalid {
                    reason,
                    timeout,
                    timeout_note,
                } => {
                    if let Some(t) = timeout {
                        e.expires_ns = now + t.0;
                    }
                    return ("INVALID/-".into(), logs(&[reason, timeout_note]));
                }
                TcpVerdict::Repeat => {
                    table.remove(&key);
                }
            }
        }
    }

    /// Compares the table with the kernel's `conntrack -L` entries
    /// (`orig:port:STATE:timeout:UNREPLIED:ASSURED`). The kernel listed them
    /// a few ms after the packet and rounds down to whole seconds.
    fn check_entries(ctx: &str, table: &Table, now: u64, kernel: &[&str]) {
        let ours: Vec<_> = table.iter().collect();
        assert_eq!(ours.len(), kernel.len(), "{ctx}: entries {kernel:?}");
        for (((client_orig, port), e), k) in ours.into_iter().zip(kernel) {
            let p: Vec<&str> = k.split(':').collect();
            let want = format!("{}:{}:{}:{}:{}", p[0], p[1], p[2], p[4], p[5]);
            let got = format!(
                "{}:{}:{}:{}:{}",
                if *client_orig { "c" } else { "s" },
                port,
                e.conn.state().name(),
                if e.status.has(Status::SEEN_REPLY) {
                    "-"
                } else {
                    "UNREPLIED"
                },
                if e.status.has(Status::ASSURED) {
                    "ASSURED"
                } else {
                    "-"
                },
            );
            assert_eq!(got, want, "{ctx}");
            let kernel_secs: u64 = p[3].parse().unwrap();
            let left = e.expires_ns - now;
            assert!(
                kernel_secs * 1_000_000_000 <= left && left < (kernel_secs + 2) * 1_000_000_000,
                "{ctx}: timeout {left} ns left, kernel showed {kernel_secs} s"
            );
        }
    }

    #[test]
    fn replays_kernel_observations() {
        let mut scenarios = 0;
        let mut packets = 0;
        let mut name = "";
        let mut sysctls = Sysctls::default();
        let mut table = Table::new();
        let mut seg: Option<Seg> = None;
        for line in OBSERVED.lines() {
            let kind = line.split('\t').next().unwrap();
            match kind {
                "scenario" => {
                    name = line.split('\t').nth(1).unwrap();
                    sysctls = Sysctls::default();
                    table.clear();
                    scenarios += 1;
                }
                "sysctl" => {
                    let mut it = line.split('\t').skip(1);
                    sysctls.set(it.next().unwrap(), it.next().unwrap()).unwrap();
                }
                "pkt" => seg = Some(Seg::parse(line)),
                "obs" => {
                    let s = seg.take().expect("obs follows pkt");
                    packets += 1;
                    let now = s.t_ms * 1_000_000;
                    let ctx = format!("{name}, packet at {} ms: {}", s.t_ms, line);
                    let (ct, logs) = replay(&s, now, &mut table, &sysctls);
                    let f: Vec<(&str, &str)> = line
                        .split('\t')
                        .skip(1)
                        .filter_map(|kv| kv.split_once('='))
                        .collect();
                    let get =
                        |k: &'static str| f.iter().filter(move |(n, _)| *n == k).map(|(_, v)| *v);
                    let want_ct = format!(
                        "{}/{}",
                        get("ct").next().unwrap(),
                        get("dir").next().unwrap()
                    );
                    assert_eq!(ct, want_ct, "{ctx}");
                    let want_logs: Vec<&str> = get("log").collect();
                    assert_eq!(logs, want_logs, "{ctx}");
                    let entries: Vec<&str> = get("entry").collect();
                    check_entries(&ctx, &table, now, &entries);
                }
                _ => {}
            }
        }
        assert!(
            scenarios >= 30 && packets >= 250,
            "{scenarios} scenarios, {packets} packets"
        );
    }

    fn syn_with_options(opts: &[u8]) -> Tcp<'_> {
        Tcp {
            sport: 40000,
            dport: 80,
            seq: 1000,
            ack: 0,
            flags: tcpflag::SYN,
            window: 100,
            header_len: 20 + opts.len() as u8,
            payload_len: 0,
            opts: TcpOptions::default(),
            options: opts,
            payload: &[],
        }
    }

    /// Option scanning as `tcp_options` does it (read in the kernel source):
    /// scale clamped to 14, SACK-permitted only with length 2, the scan ends
    /// at EOL, at a length below 2 and at an option running past the header.
    #[test]
    fn option_scanning_edges() {
        let learn = |opts: &[u8]| {
            let mut side = TcpSide {
                td_scale: 9,
                flags: tf::BE_LIBERAL | tf::CLOSE_INIT,
                ..TcpSide::default()
            };
            learn_options(&syn_with_options(opts), &mut side);
            (side.td_scale, side.flags)
        };
        assert_eq!(
            learn(&[3, 3, 20, 0]),
            (14, tf::BE_LIBERAL | tf::WINDOW_SCALE)
        );
        assert_eq!(learn(&[4, 2, 1, 1]), (0, tf::BE_LIBERAL | tf::SACK_PERM));
        assert_eq!(learn(&[4, 3, 0, 0]), (0, tf::BE_LIBERAL));
        assert_eq!(learn(&[0, 3, 3, 7]), (0, tf::BE_LIBERAL));
        assert_eq!(learn(&[1, 8, 1, 0, 3, 3, 7, 0]), (0, tf::BE_LIBERAL));
        assert_eq!(learn(&[1, 1, 3, 9, 3, 3, 7, 0]), (0, tf::BE_LIBERAL));
        // No options at all: nothing is reset.
        assert_eq!(learn(&[]), (9, tf::BE_LIBERAL | tf::CLOSE_INIT));
    }

    /// `tcp_sack`: only the first SACK option counts, edges are compared in
    /// sequence space from the ACK up, and a lone aligned timestamp is skipped.
    #[test]
    fn sack_edge_scanning() {
        let mut opts = vec![1, 1, 5, 18];
        for v in [10u32, 500, 600, 0xF000_0000] {
            opts.extend_from_slice(&v.to_be_bytes());
        }
        assert_eq!(sack_edge(&syn_with_options(&opts), 100), 500);
        opts.extend_from_slice(&[5, 10, 0, 0, 0, 0, 0, 0, 9, 9]);
        opts.extend_from_slice(&[0, 0]);
        assert_eq!(sack_edge(&syn_with_options(&opts), 100), 500);
        assert_eq!(sack_edge(&syn_with_options(&opts), 700), 700);
        let ts = [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2];
        assert_eq!(sack_edge(&syn_with_options(&ts), 100), 100);
    }

    #[test]
    fn shared_verdict_carries_templates() {
        let v = TcpVerdict::Invalid {
            reason: Some(TcpReason::SeqOverUpperBound(7)),
            timeout: None,
            timeout_note: None,
        };
        assert_eq!(
            L4Verdict::from(v),
            L4Verdict::Invalid {
                reason: "SEQ is over upper bound %u (over the window of the receiver)",
                timeout: None
            }
        );
        let silent = TcpVerdict::Invalid {
            reason: None,
            timeout: None,
            timeout_note: None,
        };
        assert_eq!(
            L4Verdict::from(silent),
            L4Verdict::Invalid {
                reason: "",
                timeout: None
            }
        );
        assert_eq!(
            TcpReason::SeqOverUpperBound(2002).to_string(),
            "SEQ is over upper bound 2002 (over the window of the receiver)"
        );
    }
}
