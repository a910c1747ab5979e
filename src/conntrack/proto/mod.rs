//! Per-protocol trackers: what each L4 protocol's conntrack handler decides
//! for a packet of a known connection.

pub mod tcp;

use crate::time::Duration;

/// The outcome of a protocol handler for one packet (the kernel handler's
/// return value, plus what it did to the entry's timer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4Verdict {
    /// The packet is accepted with its ctinfo. `refresh` is the new timeout
    /// (None: the timer is left alone). `note` is a message the kernel logs
    /// (with `nf_conntrack_log_invalid`) for packets it lets through without
    /// using them, e.g. an ignored SYN.
    Accept {
        refresh: Option<Duration>,
        note: Option<&'static str>,
    },
    /// Accepted, and the entry is deleted right after (a RST while the
    /// connection is unreplied).
    AcceptAndDelete,
    /// The handler rejected the packet (`-NF_ACCEPT`): it is INVALID and
    /// leaves with no entry attached. The entry itself stays, with its timer
    /// set to `timeout` when the handler shortened it.
    Invalid {
        reason: &'static str,
        timeout: Option<Duration>,
    },
    /// A SYN re-opens a closed connection: the old entry is killed and the
    /// lookup repeated, creating a fresh entry (`-NF_REPEAT`).
    Repeat,
}

pub mod icmp;
pub mod udp;
