//! The kernel's conntrack sysctls that change behaviour, with their defaults.
//!
//! Names are those under `/proc/sys/net/netfilter/` (also accepted with the
//! `net.netfilter.` prefix or without `nf_conntrack_`). Defaults are the
//! kernel's own (checked on Linux 6.18, see `../shared/conntrack-facts.md` §10).

use crate::time::Duration;
use thiserror::Error;

/// Conntrack tunables. Timeouts are in seconds as in procfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sysctls {
    pub tcp_loose: bool,
    pub tcp_be_liberal: bool,
    pub tcp_max_retrans: u32,
    pub tcp_ignore_invalid_rst: bool,
    pub checksum: bool,
    pub tcp_timeout_syn_sent: u32,
    pub tcp_timeout_syn_recv: u32,
    pub tcp_timeout_established: u32,
    pub tcp_timeout_fin_wait: u32,
    pub tcp_timeout_close_wait: u32,
    pub tcp_timeout_last_ack: u32,
    pub tcp_timeout_time_wait: u32,
    pub tcp_timeout_close: u32,
    pub tcp_timeout_max_retrans: u32,
    pub tcp_timeout_unacknowledged: u32,
    pub udp_timeout: u32,
    pub udp_timeout_stream: u32,
    pub icmp_timeout: u32,
    pub icmpv6_timeout: u32,
    pub generic_timeout: u32,
    pub expect_max: u32,
    pub max: u32,
    /// `net.ipv4.ipfrag_time`: how long an incomplete IPv4 datagram is kept.
    pub ipfrag_time: u32,
    /// `nf_conntrack_frag6_timeout`.
    pub frag6_timeout: u32,
}

impl Default for Sysctls {
    fn default() -> Self {
        Sysctls {
            tcp_loose: true,
            tcp_be_liberal: false,
            tcp_max_retrans: 3,
            tcp_ignore_invalid_rst: false,
            checksum: true,
            tcp_timeout_syn_sent: 120,
            tcp_timeout_syn_recv: 60,
            tcp_timeout_established: 432_000,
            tcp_timeout_fin_wait: 120,
            tcp_timeout_close_wait: 60,
            tcp_timeout_last_ack: 30,
            tcp_timeout_time_wait: 120,
            tcp_timeout_close: 10,
            tcp_timeout_max_retrans: 300,
            tcp_timeout_unacknowledged: 300,
            udp_timeout: 30,
            udp_timeout_stream: 120,
            icmp_timeout: 30,
            icmpv6_timeout: 30,
            generic_timeout: 600,
            expect_max: 4096,
            max: 262_144,
            ipfrag_time: 30,
            frag6_timeout: 60,
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SysctlError {
    #[error("`{0}`: expected NAME=VALUE")]
    Syntax(String),
    #[error("unknown sysctl `{0}` (known: {known})", known = Sysctls::NAMES.join(", "))]
    Unknown(String),
    #[error("sysctl `{name}`: `{value}` is not a non-negative integer")]
    Value { name: String, value: String },
}

impl Sysctls {
    /// Short names (without `net.netfilter.nf_conntrack_`), as accepted by [`Sysctls::set`].
    pub const NAMES: &'static [&'static str] = &[
        "tcp_loose",
        "tcp_be_liberal",
        "tcp_max_retrans",
        "tcp_ignore_invalid_rst",
        "checksum",
        "tcp_timeout_syn_sent",
        "tcp_timeout_syn_recv",
        "tcp_timeout_established",
        "tcp_timeout_fin_wait",
        "tcp_timeout_close_wait",
        "tcp_timeout_last_ack",
        "tcp_timeout_time_wait",
        "tcp_timeout_close",
        "tcp_timeout_max_retrans",
        "tcp_timeout_unacknowledged",
        "udp_timeout",
        "udp_timeout_stream",
        "icmp_timeout",
        "icmpv6_timeout",
        "generic_timeout",
        "expect_max",
        "max",
        "ipfrag_time",
        "frag6_timeout",
    ];

    /// Strips `net.netfilter.`, `net.ipv4.` and `nf_conntrack_` prefixes (and
    /// accepts `/` separators as in procfs paths).
    pub fn short_name(name: &str) -> String {
        let n = name.trim().replace('/', ".");
        let n = n.strip_prefix("net.netfilter.").unwrap_or(&n);
        let n = n.strip_prefix("net.ipv4.").unwrap_or(n);
        let n = n.strip_prefix("nf_conntrack_").unwrap_or(n);
        n.to_string()
    }

    /// The procfs path, relative to `/proc/sys/`, of a short name.
    pub fn proc_path(short: &str) -> String {
        match short {
            "ipfrag_time" => "net/ipv4/ipfrag_time".to_string(),
            _ => format!("net/netfilter/nf_conntrack_{short}"),
        }
    }

    /// Applies `name=value`.
    pub fn apply(&mut self, assignment: &str) -> Result<(), SysctlError> {
        let (name, value) = assignment
            .split_once('=')
            .ok_or_else(|| SysctlError::Syntax(assignment.to_string()))?;
        self.set(name, value)
    }

    /// Sets one sysctl by (long or short) name.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), SysctlError> {
        let short = Self::short_name(name);
        let v: u32 = value.trim().parse().map_err(|_| SysctlError::Value {
            name: name.to_string(),
            value: value.to_string(),
        })?;
        let b = v != 0;
        match short.as_str() {
            "tcp_loose" => self.tcp_loose = b,
            "tcp_be_liberal" => self.tcp_be_liberal = b,
            "tcp_max_retrans" => self.tcp_max_retrans = v,
            "tcp_ignore_invalid_rst" => self.tcp_ignore_invalid_rst = b,
            "checksum" => self.checksum = b,
            "tcp_timeout_syn_sent" => self.tcp_timeout_syn_sent = v,
            "tcp_timeout_syn_recv" => self.tcp_timeout_syn_recv = v,
            "tcp_timeout_established" => self.tcp_timeout_established = v,
            "tcp_timeout_fin_wait" => self.tcp_timeout_fin_wait = v,
            "tcp_timeout_close_wait" => self.tcp_timeout_close_wait = v,
            "tcp_timeout_last_ack" => self.tcp_timeout_last_ack = v,
            "tcp_timeout_time_wait" => self.tcp_timeout_time_wait = v,
            "tcp_timeout_close" => self.tcp_timeout_close = v,
            "tcp_timeout_max_retrans" => self.tcp_timeout_max_retrans = v,
            "tcp_timeout_unacknowledged" => self.tcp_timeout_unacknowledged = v,
            "udp_timeout" => self.udp_timeout = v,
            "udp_timeout_stream" => self.udp_timeout_stream = v,
            "icmp_timeout" => self.icmp_timeout = v,
            "icmpv6_timeout" => self.icmpv6_timeout = v,
            "generic_timeout" => self.generic_timeout = v,
            "expect_max" => self.expect_max = v,
            "max" => self.max = v,
            "ipfrag_time" => self.ipfrag_time = v,
            "frag6_timeout" => self.frag6_timeout = v,
            _ => return Err(SysctlError::Unknown(name.to_string())),
        }
        Ok(())
    }

    /// Every sysctl that differs from the default, as (short name, value).
    pub fn changed(&self) -> Vec<(&'static str, u32)> {
        let d = Sysctls::default();
        Self::NAMES
            .iter()
            .filter(|n| self.get(n) != d.get(n))
            .map(|n| (*n, self.get(n)))
            .collect()
    }

    /// Reads one sysctl by short name.
    pub fn get(&self, short: &str) -> u32 {
        match short {
            "tcp_loose" => self.tcp_loose as u32,
            "tcp_be_liberal" => self.tcp_be_liberal as u32,
            "tcp_max_retrans" => self.tcp_max_retrans,
            "tcp_ignore_invalid_rst" => self.tcp_ignore_invalid_rst as u32,
            "checksum" => self.checksum as u32,
            "tcp_timeout_syn_sent" => self.tcp_timeout_syn_sent,
            "tcp_timeout_syn_recv" => self.tcp_timeout_syn_recv,
            "tcp_timeout_established" => self.tcp_timeout_established,
            "tcp_timeout_fin_wait" => self.tcp_timeout_fin_wait,
            "tcp_timeout_close_wait" => self.tcp_timeout_close_wait,
            "tcp_timeout_last_ack" => self.tcp_timeout_last_ack,
            "tcp_timeout_time_wait" => self.tcp_timeout_time_wait,
            "tcp_timeout_close" => self.tcp_timeout_close,
            "tcp_timeout_max_retrans" => self.tcp_timeout_max_retrans,
            "tcp_timeout_unacknowledged" => self.tcp_timeout_unacknowledged,
            "udp_timeout" => self.udp_timeout,
            "udp_timeout_stream" => self.udp_timeout_stream,
            "icmp_timeout" => self.icmp_timeout,
            "icmpv6_timeout" => self.icmpv6_timeout,
            "generic_timeout" => self.generic_timeout,
            "expect_max" => self.expect_max,
            "max" => self.max,
            "ipfrag_time" => self.ipfrag_time,
            "frag6_timeout" => self.frag6_timeout,
            _ => 0,
        }
    }

    pub fn secs(v: u32) -> Duration {
        Duration::from_secs(v as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_and_short_names() {
        let mut s = Sysctls::default();
        s.apply("net.netfilter.nf_conntrack_tcp_loose=0").unwrap();
        assert!(!s.tcp_loose);
        s.apply("nf_conntrack_udp_timeout=5").unwrap();
        assert_eq!(s.udp_timeout, 5);
        s.apply("icmp_timeout=7").unwrap();
        assert_eq!(s.changed(), vec![("tcp_loose", 0), ("udp_timeout", 5), ("icmp_timeout", 7)]);
        assert!(matches!(s.apply("nf_conntrack_bogus=1"), Err(SysctlError::Unknown(_))));
        assert!(matches!(s.apply("udp_timeout=x"), Err(SysctlError::Value { .. })));
        assert!(matches!(s.apply("udp_timeout"), Err(SysctlError::Syntax(_))));
    }
}
