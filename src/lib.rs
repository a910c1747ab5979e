//! ctsim: replay packet captures offline through an exact model of Linux
//! netfilter — connection tracking plus iptables.
//!
//! Layers, bottom up; each uses only the ones below it:
//!
//! * [`capture`] — pcap / pcapng records, streamed ([`capture::Frame`]).
//! * [`wire`] — typed views of link, IP and L4 headers ([`wire::Packet`]).
//! * [`conntrack`] — `nf_conntrack`: tuples, table, trackers, helpers, expectations, defrag.
//! * [`netfilter`] — hooks, tables, the path a packet takes through them.
//! * [`rules`] — the iptables rule language: parse, compile, evaluate.
//! * [`pipeline`] — sharding by flow across workers, merge back in capture order.
//! * [`report`] — per-packet CSV, conntrack event trace, summary counters.
//! * [`oracle`] — the same replay through the real kernel, in network namespaces.

pub mod capture;
pub mod conntrack;
pub mod fuzzdiff;
pub mod netfilter;
pub mod oracle;
pub mod pipeline;
pub mod progress;
pub mod report;
pub mod rules;
pub mod synth;
pub mod time;
pub mod wire;
