//! The only clock ctsim knows: capture timestamps.
//!
//! Conntrack timeouts, rate limits and expectation timers all run on the time of
//! the packet being processed, never on the wall clock, so a replay is
//! deterministic and a gap in the capture behaves like the same gap on a wire.

use std::fmt;

/// Nanoseconds since the Unix epoch, as recorded in the capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub u64);

/// A span of capture time in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub u64);

impl Duration {
    pub const ZERO: Duration = Duration(0);
    pub const fn from_secs(s: u64) -> Self {
        Duration(s * 1_000_000_000)
    }
    pub const fn from_millis(ms: u64) -> Self {
        Duration(ms * 1_000_000)
    }
    pub const fn as_secs(self) -> u64 {
        self.0 / 1_000_000_000
    }
}

impl Timestamp {
    pub const fn from_secs_nanos(secs: u64, nanos: u64) -> Self {
        Timestamp(secs * 1_000_000_000 + nanos)
    }
    pub const fn secs(self) -> u64 {
        self.0 / 1_000_000_000
    }
    pub const fn subsec_nanos(self) -> u64 {
        self.0 % 1_000_000_000
    }
    /// `self + d`, saturating.
    pub const fn add(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(d.0))
    }
    /// Time from `earlier` to `self`, zero if `earlier` is later (captures are not
    /// always in time order; the clock never runs backwards, see `Clock`).
    pub const fn since(self, earlier: Timestamp) -> Duration {
        Duration(self.0.saturating_sub(earlier.0))
    }
}

impl fmt::Display for Timestamp {
    /// `seconds.microseconds`, like tcpdump's `-tt`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:06}", self.secs(), self.subsec_nanos() / 1000)
    }
}

/// A monotonic clock fed with capture timestamps.
///
/// The kernel's jiffies never go backwards; a capture's timestamps sometimes do
/// (merged captures, NIC timestamping). The simulation clock therefore only
/// moves forward: an earlier timestamp is treated as "no time passed".
#[derive(Debug, Clone, Copy, Default)]
pub struct Clock {
    now: Timestamp,
}

impl Clock {
    pub fn advance(&mut self, ts: Timestamp) -> Timestamp {
        if ts > self.now {
            self.now = ts;
        }
        self.now
    }
    pub fn now(&self) -> Timestamp {
        self.now
    }
}
