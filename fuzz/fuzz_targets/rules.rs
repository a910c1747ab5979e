//! Arbitrary text as an iptables-save rule file: parsing, compiling, the
//! listing, and evaluating every rule that compiles against a few real
//! conversations (TCP, UDP, ICMP errors, IPv6, fragments) must never panic,
//! and every error must render.
#![no_main]

use ctsim::capture::CaptureReader;
use ctsim::netfilter::topology::Topology;
use ctsim::pipeline::{EngineConfig, Firewall};
use ctsim::rules::{self, Ruleset};
use ctsim::synth::{TsPrecision, crafted};
use ctsim::wire::Family;
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::sync::OnceLock;

/// The conversations every compiled ruleset sees, as one pcap in memory.
fn capture() -> &'static [u8] {
    static PCAP: OnceLock<Vec<u8>> = OnceLock::new();
    PCAP.get_or_init(|| {
        let scripts = [
            crafted::tcp_handshake_close,
            crafted::udp_dns,
            crafted::icmp_port_unreachable,
            crafted::ipv6_tcp,
            crafted::icmpv6_errors,
            crafted::ipv4_fragments,
        ];
        // Each script is its own pcap; the first's header is kept and the
        // others' records appended (all are Ethernet, microseconds).
        let mut out = Vec::new();
        for s in scripts {
            let pcap = s()
                .expect("crafted scripts build")
                .write_pcap(Vec::new(), TsPrecision::Micro)
                .expect("writing to memory");
            let skip = if out.is_empty() { 0 } else { 24 };
            out.extend_from_slice(&pcap[skip..]);
        }
        out
    })
}

fn config() -> &'static EngineConfig {
    static CFG: OnceLock<EngineConfig> = OnceLock::new();
    CFG.get_or_init(|| EngineConfig {
        sysctls: Default::default(),
        // Some traffic is local (INPUT/OUTPUT), the rest forwarded.
        topology: Topology::new(&["10.0.1.1".to_string(), "2001:db8::1".to_string()], &[])
            .expect("a valid topology"),
        trace: true,
        auto_helpers: true,
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let file = match rules::parse_rules(&text, Path::new("fuzz.rules"), Family::Ipv4) {
        Ok(f) => f,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let rs = match Ruleset::compile(&file) {
        Ok(rs) => rs,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let mut fw = Firewall::new(&rs, config());
    let Ok(mut reader) = CaptureReader::from_bytes(capture().to_vec(), "fuzz.pcap") else {
        return;
    };
    let mut rows = 0usize;
    while let Ok(Some(frame)) = reader.next_frame() {
        fw.process(&frame, None, &mut |_| rows += 1);
    }
    fw.finish(&mut |_| rows += 1);
    for family in [Family::Ipv4, Family::Ipv6] {
        let _ = rs.listing(family, &fw.rule_state);
    }
});
