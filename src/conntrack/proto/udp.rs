//! UDP and UDP-Lite tracking (`nf_conntrack_proto_udp.c` semantics).
//!
//! No state machine: an entry is "unreplied" until a reply is seen, and
//! becomes a "stream" (longer timeout, ASSURED) when traffic continues after
//! the reply and more than two seconds after the entry was created.

use super::L4Verdict;
use crate::conntrack::{Status, Sysctls};
use crate::time::{Duration, Timestamp};

/// Per-entry UDP state: when the entry may first count as a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpConn {
    pub stream_ts: Timestamp,
}

/// How long after creation a replied flow must still be active to be a stream.
const STREAM_AFTER: Duration = Duration::from_secs(2);

impl UdpConn {
    /// State for an entry created by a packet at `now` (set while unconfirmed).
    pub fn new(now: Timestamp) -> Self {
        UdpConn {
            stream_ts: now.add(STREAM_AFTER),
        }
    }

    /// Header sanity as the kernel checks it before using the packet.
    /// `udp_len` is the L4 length from the IP header; `csum_ok` None means
    /// unverifiable (treated as fine); `verify` is true at PREROUTING with
    /// `nf_conntrack_checksum=1`.
    pub fn check(
        lite: bool,
        length_field: u16,
        checksum: u16,
        udp_len: u32,
        csum_ok: Option<bool>,
        verify: bool,
    ) -> Result<(), &'static str> {
        let len = u32::from(length_field);
        if lite {
            if len != 0 && (len < 8 || len > udp_len) {
                return Err("invalid checksum coverage");
            }
            if checksum == 0 {
                return Err("checksum missing");
            }
        } else {
            if len > udp_len || len < 8 {
                return Err("truncated/malformed packet");
            }
            if checksum == 0 {
                return Ok(());
            }
        }
        if verify && csum_ok == Some(false) {
            return Err("bad checksum");
        }
        Ok(())
    }

    /// The packet handler: picks the timeout and sets ASSURED.
    pub fn packet(
        &self,
        lite: bool,
        status: &mut Status,
        now: Timestamp,
        sys: &Sysctls,
    ) -> L4Verdict {
        let unreplied = Sysctls::secs(sys.udp_timeout);
        if !status.has(Status::SEEN_REPLY) {
            return L4Verdict::Accept {
                refresh: Some(unreplied),
                note: None,
            };
        }
        // UDP-Lite has no two-second rule; UDP needs the flow to outlive it
        // (since Linux 5.19 ASSURED waits for the stream too).
        let stream = lite || now > self.stream_ts;
        if !stream {
            return L4Verdict::Accept {
                refresh: Some(unreplied),
                note: None,
            };
        }
        status.set(Status::ASSURED);
        L4Verdict::Accept {
            refresh: Some(Sysctls::secs(sys.udp_timeout_stream)),
            note: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values: conntrack-facts §3, checked on the 6.18 kernel.
    #[test]
    fn timeouts_and_assured() {
        let sys = Sysctls::default();
        let t0 = Timestamp::from_secs_nanos(100, 0);
        let u = UdpConn::new(t0);
        let mut st = Status(Status::CONFIRMED);
        assert_eq!(
            u.packet(false, &mut st, t0, &sys),
            L4Verdict::Accept {
                refresh: Some(Duration::from_secs(30)),
                note: None
            }
        );
        st.set(Status::SEEN_REPLY);
        // after a reply but within 2 s: still 30 s, not ASSURED
        let v = u.packet(false, &mut st, t0.add(Duration::from_secs(1)), &sys);
        assert_eq!(
            v,
            L4Verdict::Accept {
                refresh: Some(Duration::from_secs(30)),
                note: None
            }
        );
        assert!(!st.has(Status::ASSURED));
        let v = u.packet(false, &mut st, t0.add(Duration::from_millis(2500)), &sys);
        assert_eq!(
            v,
            L4Verdict::Accept {
                refresh: Some(Duration::from_secs(120)),
                note: None
            }
        );
        assert!(st.has(Status::ASSURED));
    }

    #[test]
    fn header_checks() {
        assert_eq!(
            UdpConn::check(false, 100, 1, 9, Some(true), true),
            Err("truncated/malformed packet")
        );
        assert_eq!(
            UdpConn::check(false, 7, 1, 9, Some(true), true),
            Err("truncated/malformed packet")
        );
        assert_eq!(UdpConn::check(false, 9, 0, 9, Some(false), true), Ok(()));
        assert_eq!(
            UdpConn::check(false, 9, 5, 9, Some(false), true),
            Err("bad checksum")
        );
        assert_eq!(UdpConn::check(false, 9, 5, 9, Some(false), false), Ok(()));
        assert_eq!(
            UdpConn::check(true, 9, 0, 9, Some(true), true),
            Err("checksum missing")
        );
    }
}
