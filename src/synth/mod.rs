//! Synthetic captures: packet builders, a pcap writer, and three generators
//! built on them.
//!
//! * [`packet`] builds IPv4/IPv6 datagrams (TCP with options, UDP, ICMP,
//!   ICMPv6, fragments, ICMP errors quoting a datagram) with correct lengths
//!   and checksums, or with exactly the damage asked for.
//! * [`flow`] keeps the sequence numbers of a TCP conversation so a scenario
//!   reads like prose: `syn`, `syn_ack`, `data`, `fin`, `rst`.
//! * [`script`] lays packets on a timeline and writes them as a capture.
//! * [`crafted`] holds the hand-written edge cases committed under
//!   `captures/crafted/`, each with the behaviour the kernel shows for it.
//! * [`bench`] streams large, mixed, deterministic traffic for benchmarks.
//! * [`fuzz`] draws short random packet sequences and iptables rulesets for a
//!   differential fuzzer against the kernel.
//!
//! This module is a tool beside the replay pipeline: it writes captures and
//! knows nothing of conntrack or rules. Its expectations (in `crafted`) are
//! hand-written from the kernel's documented behaviour, never computed by the
//! simulator.

pub mod bench;
pub mod crafted;
pub mod csum;
pub mod flow;
pub mod fuzz;
pub mod packet;
pub mod pcap;
pub mod rng;
pub mod script;

use std::net::IpAddr;

use crate::time::Timestamp;

pub use flow::{Side, TcpFlow};
pub use packet::{IpPair, Pkt};
pub use pcap::{PcapWriter, TsPrecision};
pub use rng::Rng;
pub use script::{Link, Record, Script};

/// What can go wrong while building packets or writing captures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SynthError {
    #[error("I/O error writing capture: {0}")]
    Io(#[from] std::io::Error),
    #[error("source {src} and destination {dst} are of different address families")]
    FamilyMismatch { src: IpAddr, dst: IpAddr },
    #[error("TCP options exceed the 40 bytes a header can carry")]
    TcpOptionsTooLong,
    #[error("packet of {len} bytes is too long for its length field")]
    TooLong { len: usize },
    #[error("original length {orig_len} is shorter than the {caplen} captured bytes")]
    OrigLenShort { caplen: u32, orig_len: u32 },
    #[error("timestamp {ts} does not fit a 32-bit pcap seconds field")]
    TimestampRange { ts: Timestamp },
    #[error("fragments must carry at least 8 bytes of data, asked for {max_data}")]
    FragmentSize { max_data: usize },
    #[error("bytes do not start with an IPv4 or IPv6 header")]
    NotADatagram,
    #[error("link-layer frame given for a raw-IP capture")]
    FrameOnRawLink,
    #[error("invalid generator parameter: {0}")]
    Param(&'static str),
}
