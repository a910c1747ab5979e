//! The real-kernel oracle: replays a capture through Linux netfilter itself.
//!
//! `ctsim kernel` answers the same question as `ctsim replay` — what would a
//! Linux firewall do with each packet of this capture under these rules — by
//! asking the kernel of the machine it runs on. It builds throw-away network
//! namespaces (a firewall, and one peer per firewall interface joined to it by
//! a veth pair), loads the user's iptables rules unchanged, and injects the
//! capture's packets one at a time, in capture order: packets from remote
//! addresses arrive from the peer behind which their source lives, packets
//! from the firewall's own (`--local`) addresses leave through OUTPUT from a
//! raw socket. Our own nftables probes, nf_tables tracing and conntrack's
//! invalid-packet log, all read from one netfilter netlink socket in kernel
//! order, say which hooks the packet entered, what `-m state` saw, which rule
//! decided and why conntrack called it INVALID; a ctnetlink GET afterwards
//! gives the entry's status and TCP state. A fence packet after each injected
//! packet says when the kernel is done with it.
//!
//! What it does not do: it runs on wall-clock time, so conntrack timeouts do
//! not expire across gaps in the capture unless `realtime` is set; the
//! firewall is one router hop (TTL is decremented, TTL 1 dies); the
//! firewall's own stack never answers (whatever it sends is dropped before
//! conntrack and counted in the `suppressed:N` note); NAT'ed captures need
//! replies as seen on each side, which one-point captures do not give. Needs
//! root, `ip`, `nft` and iptables (nf_tables backend).

mod capture;
mod inject;
mod netlink;
mod netns;
mod nft;
pub mod row;
mod rules;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use thiserror::Error;

use crate::conntrack::{CtState, Dir, Status, Sysctls};
use crate::time::Timestamp;
use crate::wire::{Family, ipproto};
use capture::{CapturedPacket, IpPacket, L4Info};
use inject::{PacketSocket, RawSockets, fence_packet};
use netlink::{CtEntry, Event, Messages, NlSocket};
use netns::Namespaces;
use nft::{PROBE_GROUP, RuleMap};
pub use row::{Hook, Verdict};

/// Errors of an oracle run.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum OracleError {
    #[error("the kernel oracle needs root (it creates network namespaces)")]
    NotRoot,
    #[error("network namespaces are not available: {0}")]
    NoNetns(String),
    #[error("`{0}` is needed by the kernel oracle but was not found")]
    ToolMissing(String),
    #[error("capture {path}: {msg}")]
    Capture { path: PathBuf, msg: String },
    #[error("rules {path}: {msg}")]
    Rules { path: PathBuf, msg: String },
    #[error("rules {path}:{line}: not an iptables/ip6tables command: `{text}`")]
    RuleLine {
        path: PathBuf,
        line: usize,
        text: String,
    },
    #[error("--iface `{0}`: expected NAME=CIDR with an interface name of 1-15 characters")]
    BadIface(String),
    #[error("sysctl {name}: {msg}")]
    Sysctl { name: String, msg: String },
    #[error("`{cmd}` failed: {msg}")]
    Command { cmd: String, msg: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("netlink ({what}): {source}")]
    Netlink {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("the kernel did not finish packet {packet} (no fence seen within {secs} s)")]
    KernelSilent { packet: u64, secs: u64 },
    #[error("netlink receive queue overran at packet {packet}; events were lost")]
    Overrun { packet: u64 },
    #[error("interrupted")]
    Interrupted,
    #[error("oracle worker thread failed: {0}")]
    Worker(String),
}

/// A firewall interface and the networks that live behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iface {
    pub name: String,
    pub nets: Vec<IpNet>,
}

/// What to replay and how the firewall looks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OracleConfig {
    pub capture: PathBuf,
    /// IPv4 rules: `iptables-save` output or `iptables …` command lines
    /// (such a script may also hold `ip6tables …` lines).
    pub rules: Option<PathBuf>,
    /// IPv6 rules, same formats.
    pub rules6: Option<PathBuf>,
    /// Firewall interfaces. Addresses match the longest prefix; addresses no
    /// interface claims sit behind the first one. Empty: one interface
    /// `eth0` with everything behind it.
    pub ifaces: Vec<Iface>,
    /// Addresses owned by the firewall.
    pub locals: Vec<IpAddr>,
    /// Conntrack sysctls as `NAME=VALUE` (`nf_conntrack_tcp_loose=0`,
    /// `net.netfilter.nf_conntrack_tcp_loose=0`, `tcp_loose=0`).
    pub sysctls: Vec<String>,
    /// Keep the capture's inter-packet gaps (so timeouts can expire).
    pub realtime: bool,
    /// Trace rule evaluation to fill the `rule` column (costs speed).
    pub trace: bool,
}

impl OracleConfig {
    pub fn new(capture: impl Into<PathBuf>) -> Self {
        OracleConfig {
            capture: capture.into(),
            rules: None,
            rules6: None,
            ifaces: Vec::new(),
            locals: Vec::new(),
            sysctls: Vec::new(),
            realtime: false,
            trace: true,
        }
    }

    /// Adds `NAME=CIDR` (repeatable; one interface may get several CIDRs).
    pub fn add_iface(&mut self, spec: &str) -> Result<(), OracleError> {
        let bad = || OracleError::BadIface(spec.to_string());
        let (name, cidr) = spec.split_once('=').ok_or_else(bad)?;
        let name = name.trim();
        let valid = !name.is_empty()
            && name.len() <= 15
            && name != "lo"
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !valid {
            return Err(bad());
        }
        let cidr = cidr.trim();
        let net: IpNet = cidr
            .parse()
            .or_else(|_| cidr.parse::<IpAddr>().map(IpNet::from))
            .map_err(|_| bad())?;
        match self.ifaces.iter_mut().find(|i| i.name == name) {
            Some(i) => i.nets.push(net),
            None => self.ifaces.push(Iface {
                name: name.to_string(),
                nets: vec![net],
            }),
        }
        Ok(())
    }
}

/// One row per capture packet: what the kernel did with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelRow {
    pub packet: u64,
    pub time: Timestamp,
    pub family: Option<Family>,
    pub proto: Option<u8>,
    pub src: Option<IpAddr>,
    pub sport: Option<u16>,
    pub dst: Option<IpAddr>,
    pub dport: Option<u16>,
    /// TCP flags (`S.`) or ICMP `type/code`, already formatted.
    pub flags: String,
    pub length: Option<u32>,
    pub chains: Vec<Hook>,
    pub ctstate: Option<CtState>,
    pub ctdir: Option<Dir>,
    pub ctstatus: Option<Status>,
    /// TCP conntrack state number of the entry (see [`row::tcp_state_name`]).
    pub tcp_state: Option<u8>,
    pub verdict: Verdict,
    /// `table:CHAIN:N` or `table:CHAIN:policy`.
    pub rule: Option<String>,
    /// Conntrack's own explanation (`nf_conntrack_log_invalid`), without the
    /// `nf_ct_proto_N: ` prefix; several are `; `-joined.
    pub reason: String,
    pub notes: Vec<String>,
}

impl KernelRow {
    /// The row as CSV fields, in [`row::COLUMNS`] order.
    pub fn record(&self) -> [String; 18] {
        let opt = |v: Option<String>| v.unwrap_or_default();
        [
            self.packet.to_string(),
            self.time.to_string(),
            opt(self.proto.map(|p| row::proto_name(p).into_owned())),
            opt(self.src.map(|a| a.to_string())),
            opt(self.sport.map(|p| p.to_string())),
            opt(self.dst.map(|a| a.to_string())),
            opt(self.dport.map(|p| p.to_string())),
            self.flags.clone(),
            opt(self.length.map(|l| l.to_string())),
            row::chains(&self.chains),
            self.ctstate.map(row::ctstate).unwrap_or("").to_string(),
            self.ctdir.map(row::ctdir).unwrap_or("").to_string(),
            opt(self.ctstatus.map(row::ctstatus)),
            self.tcp_state
                .and_then(row::tcp_state_name)
                .unwrap_or("")
                .to_string(),
            self.verdict.name().to_string(),
            opt(self.rule.clone()),
            self.reason.clone(),
            self.notes.join(" "),
        ]
    }

    fn from_packet(p: &CapturedPacket) -> KernelRow {
        let mut r = KernelRow {
            packet: p.index,
            time: p.ts,
            family: None,
            proto: None,
            src: None,
            sport: None,
            dst: None,
            dport: None,
            flags: String::new(),
            length: None,
            chains: Vec::new(),
            ctstate: None,
            ctdir: None,
            ctstatus: None,
            tcp_state: None,
            verdict: Verdict::NotIp,
            rule: None,
            reason: String::new(),
            notes: Vec::new(),
        };
        match &p.ip {
            Err(why) => r.notes.push((*why).to_string()),
            Ok(ip) => {
                r.family = Some(ip.family);
                r.proto = Some(ip.proto);
                r.src = Some(ip.src);
                r.dst = Some(ip.dst);
                r.length = Some(ip.ip_len);
                match ip.l4 {
                    L4Info::Ports {
                        sport,
                        dport,
                        tcp_flags,
                    } => {
                        r.sport = Some(sport);
                        r.dport = Some(dport);
                        if let Some(f) = tcp_flags {
                            row::write_tcp_flags(f, &mut r.flags);
                        }
                    }
                    L4Info::Icmp {
                        icmp_type, code, ..
                    } => row::write_icmp(icmp_type, code, &mut r.flags),
                    L4Info::None => {}
                }
                if ip.padded > 0 {
                    r.notes.push(format!("truncated:padded-{}", ip.padded));
                }
                if !ip.ext.is_empty() {
                    r.notes.push(format!("ext:{}", ip.ext.join(",")));
                }
                if ip.frag.is_some_and(|f| f.is_atomic()) {
                    r.notes.push("atomic-fragment".into());
                }
            }
        }
        r
    }
}

/// Replays the capture through the kernel and returns one row per packet.
pub fn run(cfg: &OracleConfig) -> Result<Vec<KernelRow>, OracleError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(OracleError::NotRoot);
    }
    if !std::path::Path::new("/proc/self/ns/net").exists() {
        return Err(OracleError::NoNetns("/proc/self/ns/net is missing".into()));
    }
    let mut sysctls = Vec::new();
    for s in &cfg.sysctls {
        Sysctls::default()
            .apply(s)
            .map_err(|e| OracleError::Sysctl {
                name: s.clone(),
                msg: e.to_string(),
            })?;
        if let Some((name, value)) = s.split_once('=') {
            sysctls.push((
                Sysctls::proc_path(&Sysctls::short_name(name)),
                value.trim().to_string(),
            ));
        }
    }
    let packets = capture::read_capture(&cfg.capture)?;
    let plan = Plan::new(cfg, &packets);
    netns::remove_stale();
    let _signals = netns::SignalGuard::install();
    let cfg = cfg.clone();
    let worker = std::thread::Builder::new()
        .name("ctsim-oracle".into())
        .spawn(move || replay(&cfg, &plan, &sysctls, &packets))
        .map_err(|e| OracleError::Worker(e.to_string()))?;
    worker
        .join()
        .map_err(|e| OracleError::Worker(format!("{e:?}")))?
}

/// Where every address lives, decided before anything is built.
struct Plan {
    ifaces: Vec<Iface>,
    locals: Vec<IpAddr>,
    v6: bool,
    /// Remote addresses with the interface they sit behind.
    remotes: Vec<(IpAddr, usize)>,
}

fn routable(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(v) => {
            !(v.is_unspecified()
                || v.is_loopback()
                || v.is_multicast()
                || v.is_broadcast()
                || v.octets()[0] >= 240)
        }
        IpAddr::V6(v) => !(v.is_unspecified() || v.is_loopback() || v.is_multicast()),
    }
}

impl Plan {
    fn new(cfg: &OracleConfig, packets: &[CapturedPacket]) -> Plan {
        let ifaces = if cfg.ifaces.is_empty() {
            vec![Iface {
                name: "eth0".into(),
                nets: Vec::new(),
            }]
        } else {
            cfg.ifaces.clone()
        };
        let mut plan = Plan {
            ifaces,
            locals: cfg.locals.clone(),
            v6: cfg.rules6.is_some() || cfg.locals.iter().any(IpAddr::is_ipv6),
            remotes: Vec::new(),
        };
        let mut seen = std::collections::HashSet::new();
        for p in packets {
            if let Ok(ip) = &p.ip {
                plan.v6 |= ip.family == Family::Ipv6;
                for a in [ip.src, ip.dst] {
                    if routable(a) && !plan.locals.contains(&a) && seen.insert(a) {
                        plan.remotes.push((a, plan.iface_of(a)));
                    }
                }
            }
        }
        plan
    }

    /// Longest-prefix match over the interfaces' networks; else the first.
    fn iface_of(&self, a: IpAddr) -> usize {
        let mut best: Option<(u8, usize)> = None;
        for (i, iface) in self.ifaces.iter().enumerate() {
            for n in &iface.nets {
                if n.contains(&a) && best.is_none_or(|(len, _)| n.prefix_len() > len) {
                    best = Some((n.prefix_len(), i));
                }
            }
        }
        best.map_or(0, |(_, i)| i)
    }

    fn fw_mac(i: usize) -> [u8; 6] {
        [0x02, 0xc7, 0x5e, 0x00, i as u8, 0x01]
    }

    fn peer_mac(i: usize) -> [u8; 6] {
        [0x02, 0xc7, 0x5e, 0x00, i as u8, 0x02]
    }

    fn peer_if(i: usize) -> String {
        format!("p{i}")
    }
}

fn mac_text(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Everything set up in the namespaces; dropped in reverse order (sockets
/// first, namespaces last).
struct Firewall {
    events: NlSocket,
    ct: NlSocket,
    raw: RawSockets,
    peers: Vec<PacketSocket>,
    /// Firewall-side ifindex per interface (IPv6 scope ids).
    ifindex: Vec<u32>,
    rules: RuleMap,
    _ns: Namespaces,
}

fn nl_err(what: &'static str) -> impl FnOnce(std::io::Error) -> OracleError {
    move |source| OracleError::Netlink { what, source }
}

fn setup(
    cfg: &OracleConfig,
    plan: &Plan,
    sysctls: &[(String, String)],
) -> Result<Firewall, OracleError> {
    let ns = Namespaces::create(plan.ifaces.len())?;
    for peer in &ns.peers {
        netns::enter(peer)?;
        netns::write_sysctl("net/ipv6/conf/all/disable_ipv6", "1")?;
        netns::write_sysctl("net/ipv6/conf/default/disable_ipv6", "1")?;
    }
    netns::enter(&ns.fw)?;
    let mut knobs: Vec<(String, &str)> = [
        ("net/ipv4/ip_forward", "1"),
        ("net/ipv4/conf/all/rp_filter", "0"),
        ("net/ipv4/conf/default/rp_filter", "0"),
        ("net/ipv4/conf/all/send_redirects", "0"),
        ("net/ipv4/conf/default/send_redirects", "0"),
        ("net/ipv4/conf/all/accept_redirects", "0"),
        ("net/ipv4/conf/default/accept_redirects", "0"),
        ("net/netfilter/nf_conntrack_log_invalid", "255"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), *v))
    .collect();
    if plan.v6 {
        for scope in ["all", "default"] {
            for (k, v) in [
                ("addr_gen_mode", "1"),
                ("accept_dad", "0"),
                ("accept_ra", "0"),
                ("autoconf", "0"),
                ("router_solicitations", "0"),
                ("accept_redirects", "0"),
                ("forwarding", "1"),
            ] {
                knobs.push((format!("net/ipv6/conf/{scope}/{k}"), v));
            }
        }
    } else {
        knobs.push(("net/ipv6/conf/all/disable_ipv6".into(), "1"));
        knobs.push(("net/ipv6/conf/default/disable_ipv6".into(), "1"));
    }
    for (k, v) in knobs {
        netns::write_sysctl(&k, v)?;
    }
    for k in ["net/netfilter/nf_log/2", "net/netfilter/nf_log/10"] {
        if netns::write_sysctl(k, "nfnetlink_log").is_err() {
            let _ = std::process::Command::new("modprobe")
                .arg("nfnetlink_log")
                .status();
            netns::write_sysctl(k, "nfnetlink_log")?;
        }
    }
    for (path, value) in sysctls {
        netns::write_sysctl(path, value)?;
    }

    // Wires: one veth pair per interface.
    let mut host = String::new();
    for (i, iface) in plan.ifaces.iter().enumerate() {
        host.push_str(&format!(
            "link add {} address {} mtu 65535 netns {} type veth peer name {} address {} mtu 65535 netns {}\n",
            iface.name,
            mac_text(Plan::fw_mac(i)),
            ns.fw,
            Plan::peer_if(i),
            mac_text(Plan::peer_mac(i)),
            ns.peers[i]
        ));
    }
    netns::ip_batch(None, &host)?;
    for (i, peer) in ns.peers.iter().enumerate() {
        netns::ip_batch(Some(peer), &format!("link set {} up\n", Plan::peer_if(i)))?;
        // The peer only ever swallows what the firewall sends it.
        netns::exec_in(
            peer,
            "nft",
            &["-f", "-"],
            Some(b"table ip ctsim_peer {\n  chain c {\n    type filter hook prerouting priority -500; policy drop;\n  }\n}\n"),
        )?;
    }
    let mut fw = String::from("link set lo up\n");
    for iface in &plan.ifaces {
        fw.push_str(&format!("link set {} up\n", iface.name));
    }
    for a in &plan.locals {
        match a {
            IpAddr::V4(_) => {
                let on = plan
                    .ifaces
                    .iter()
                    .find(|i| i.nets.iter().any(|n| n.contains(a)))
                    .map_or("lo", |i| i.name.as_str());
                fw.push_str(&format!("addr add {a}/32 dev {on}\n"));
            }
            IpAddr::V6(_) => {
                for iface in &plan.ifaces {
                    fw.push_str(&format!("addr add {a}/128 dev {} nodad\n", iface.name));
                }
            }
        }
    }
    for (a, i) in &plan.remotes {
        let len = if a.is_ipv4() { 32 } else { 128 };
        if a.is_ipv6() && !plan.v6 {
            continue;
        }
        let dev = &plan.ifaces[*i].name;
        fw.push_str(&format!("route add {a}/{len} dev {dev}\n"));
        fw.push_str(&format!(
            "neigh add {a} lladdr {} dev {dev} nud permanent\n",
            mac_text(Plan::peer_mac(*i))
        ));
    }
    netns::ip_batch(Some(&ns.fw), &fw)?;
    for iface in &plan.ifaces {
        // veth GRO would merge injected segments; best effort, it is
        // usually off already.
        let _ = netns::exec_in(&ns.fw, "ethtool", &["-K", &iface.name, "gro", "off"], None);
    }

    // Our probes first: they must enable conntrack in this namespace (see
    // `nft` module docs for why the order matters).
    let mut script = nft::probe_table(false, cfg.trace);
    if plan.v6 {
        script.push_str(&nft::probe_table(true, cfg.trace));
    }
    netns::exec_in(&ns.fw, "nft", &["-f", "-"], Some(script.as_bytes()))?;
    if let Some(p) = &cfg.rules {
        rules::load(&ns.fw, p, false)?;
    }
    if let Some(p) = &cfg.rules6 {
        rules::load(&ns.fw, p, true)?;
    }
    let rules = if cfg.trace {
        nft::parse_ruleset(&netns::exec_in(
            &ns.fw,
            "nft",
            &["-a", "list", "ruleset"],
            None,
        )?)
    } else {
        RuleMap::default()
    };

    let mut events = NlSocket::open().map_err(nl_err("event socket"))?;
    events
        .set_rcvbuf(64 << 20)
        .map_err(nl_err("receive buffer"))?;
    netlink::nflog_bind(&mut events, PROBE_GROUP, 64).map_err(nl_err("NFLOG bind probes"))?;
    netlink::nflog_bind(&mut events, 0, 64).map_err(nl_err("NFLOG bind group 0"))?;
    if cfg.trace {
        events
            .join_group(netlink::NFNLGRP_NFTRACE)
            .map_err(nl_err("trace group"))?;
    }
    events
        .set_timeout(Duration::from_millis(200))
        .map_err(nl_err("timeout"))?;
    let ct = NlSocket::open().map_err(nl_err("ctnetlink socket"))?;
    ct.set_timeout(Duration::from_secs(2))
        .map_err(nl_err("timeout"))?;
    let raw = RawSockets::open(plan.v6).map_err(|e| OracleError::Io {
        what: "raw socket".into(),
        source: e,
    })?;
    let mut ifindex = Vec::new();
    for iface in &plan.ifaces {
        let c = std::ffi::CString::new(iface.name.as_str())
            .map_err(|_| OracleError::BadIface(iface.name.clone()))?;
        // SAFETY: c is NUL-terminated.
        ifindex.push(unsafe { libc::if_nametoindex(c.as_ptr()) });
    }
    let mut peers = Vec::new();
    for (i, peer) in ns.peers.iter().enumerate() {
        netns::enter(peer)?;
        let s = PacketSocket::open(&Plan::peer_if(i), Plan::peer_mac(i), Plan::fw_mac(i));
        netns::enter(&ns.fw)?;
        peers.push(s.map_err(|e| OracleError::Io {
            what: format!("packet socket on {peer}"),
            source: e,
        })?);
    }
    Ok(Firewall {
        events,
        ct,
        raw,
        peers,
        ifindex,
        rules,
        _ns: ns,
    })
}

/// Pins the calling thread to the CPU it runs on: a packet and its fence
/// then share one per-CPU backlog, processed in order.
fn pin_to_current_cpu() {
    // SAFETY: plain libc calls on a zeroed cpu_set_t owned here.
    unsafe {
        let cpu = libc::sched_getcpu();
        if cpu >= 0 {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu as usize, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
    }
}

/// A decision traced in a user table.
#[derive(Debug, Clone)]
struct Decision {
    nfproto: u8,
    table: String,
    chain: String,
    handle: Option<u64>,
    /// `NF_*` verdict (0 drop, 1 accept, 2 stolen, 3 queue).
    verdict: u32,
}

/// What the kernel said about one injected packet.
#[derive(Debug, Default)]
struct Observation {
    hooks: Vec<Hook>,
    passed: [bool; 5],
    state_pre: Option<(CtState, Option<Dir>)>,
    state_filter: Option<(CtState, Option<Dir>)>,
    terminal: [Option<Decision>; 5],
    filter_accept: [Option<Decision>; 5],
    reasons: Vec<String>,
    user_logs: Vec<String>,
    generated: u32,
    fence: bool,
}

impl Observation {
    fn clear(&mut self) {
        self.hooks.clear();
        self.passed = [false; 5];
        self.state_pre = None;
        self.state_filter = None;
        self.terminal = Default::default();
        self.filter_accept = Default::default();
        self.reasons.clear();
        self.user_logs.clear();
        self.generated = 0;
        self.fence = false;
    }

    fn enter(&mut self, h: Hook) {
        if self.hooks.last() != Some(&h) {
            self.hooks.push(h);
        }
    }

    fn on_probe(&mut self, prefix: &[u8], payload: &[u8], fence_seq: u16) {
        let mut parts = prefix.split(|&c| c == b'|');
        let kind = parts.next().unwrap_or(b"");
        let hook = parts.next().and_then(nft::hook_from_tag);
        match (kind, hook) {
            (b"F", _) if payload.get(4..6) == Some(&fence_seq.to_be_bytes()[..]) => {
                self.fence = true
            }
            (b"GEN", _) => self.generated += 1,
            (b"A" | b"E", Some(h)) => self.enter(h),
            (b"O", Some(h)) => self.passed[h.index()] = true,
            (b"S", Some(h)) => {
                self.enter(h);
                let state = match parts.next().unwrap_or(b"") {
                    b"NEW" => CtState::New,
                    b"ESTABLISHED" => CtState::Established,
                    b"RELATED" => CtState::Related,
                    b"INVALID" => CtState::Invalid,
                    _ => CtState::Untracked,
                };
                let dir = match parts.next().unwrap_or(b"") {
                    b"ORIGINAL" => Some(Dir::Original),
                    b"REPLY" => Some(Dir::Reply),
                    _ => None,
                };
                if h.is_filter_hook() {
                    self.state_filter = Some((state, dir));
                } else {
                    self.state_pre = Some((state, dir));
                }
            }
            _ => {}
        }
    }

    fn on_trace(&mut self, t: &netlink::Trace<'_>) {
        if t.table == nft::TABLE.as_bytes() {
            return;
        }
        let Some(&h) = self.hooks.last() else {
            return;
        };
        let verdict = match t.kind {
            netlink::TRACE_POLICY => t.policy,
            netlink::TRACE_RULE => t.verdict.filter(|v| *v >= 0).map(|v| v as u32 & 0xff),
            _ => None,
        };
        let Some(verdict) = verdict else {
            return;
        };
        let d = Decision {
            nfproto: t.nfproto,
            table: String::from_utf8_lossy(t.table).into_owned(),
            chain: String::from_utf8_lossy(t.chain).into_owned(),
            handle: if t.kind == netlink::TRACE_POLICY {
                None
            } else {
                t.handle
            },
            verdict,
        };
        if d.table == "filter" && verdict == 1 {
            self.filter_accept[h.index()] = Some(d.clone());
        }
        self.terminal[h.index()] = Some(d);
    }

    fn on_log0(&mut self, prefix: &[u8]) {
        let text = String::from_utf8_lossy(prefix);
        let text = text.trim_end();
        // Conntrack's messages come as "nf_ct_proto_6: <reason> " (helpers:
        // "nf_ct_ftp: …"); the reason is the part after the tag.
        match text.strip_prefix("nf_ct_").and_then(|r| r.split_once(": ")) {
            Some((tag, reason)) if !tag.contains(' ') => self.reasons.push(reason.to_string()),
            _ => self.user_logs.push(format!("nflog:{text}")),
        }
    }
}

/// A datagram's identity: (src, dst, IPv4 protocol or 0, fragment id).
type DatagramKey = (IpAddr, IpAddr, u8, u32);

/// Bookkeeping for fragments held by defrag.
#[derive(Default)]
struct Fragments {
    /// Rows still waiting for their datagram, and the first fragment's L4.
    pending: HashMap<DatagramKey, (Vec<usize>, Option<L4Info>)>,
}

fn rule_text(rules: &RuleMap, d: &Decision) -> (String, bool) {
    match d.handle {
        None => (row::rule_ref(&d.table, &d.chain, None), false),
        Some(h) => match rules.get(d.nfproto, &d.table, &d.chain, h) {
            Some(info) => (
                row::rule_ref(&d.table, &d.chain, Some(info.position)),
                info.reject,
            ),
            None => (format!("{}:{}:handle-{h}", d.table, d.chain), false),
        },
    }
}

fn replay(
    cfg: &OracleConfig,
    plan: &Plan,
    sysctls: &[(String, String)],
    packets: &[CapturedPacket],
) -> Result<Vec<KernelRow>, OracleError> {
    let mut fw = setup(cfg, plan, sysctls)?;
    pin_to_current_cpu();
    let mut obs = Observation::default();
    let mut seq: u16 = 0;
    // Settle: anything the setup caused is read and discarded.
    sync(&mut fw, &mut obs, &mut seq, 0, None)?;

    let mut rows: Vec<KernelRow> = Vec::with_capacity(packets.len());
    let mut frags = Fragments::default();
    let start = Instant::now();
    let first_ts = packets.first().map_or(Timestamp(0), |p| p.ts);
    for p in packets {
        if netns::interrupted() {
            return Err(OracleError::Interrupted);
        }
        if cfg.realtime {
            let due = start + Duration::from_nanos(p.ts.since(first_ts).0);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        let mut row = KernelRow::from_packet(p);
        let Ok(ip) = &p.ip else {
            rows.push(row);
            continue;
        };
        let (send_err, peer) = inject(&mut fw, plan, p, ip);
        if let Some(e) = send_err {
            row.notes.push(e);
        }
        sync(&mut fw, &mut obs, &mut seq, p.index, Some(peer))?;
        let held = judge(&obs, ip, &fw.rules, &mut row);

        // Fragments: hold rows until their datagram is processed.
        let mut l4 = ip.l4;
        if let Some(key) = ip
            .frag_key()
            .filter(|_| !ip.frag.is_some_and(|f| f.is_atomic()))
        {
            let entry = frags.pending.entry(key).or_default();
            if ip.frag.is_some_and(|f| f.offset == 0) {
                entry.1 = Some(ip.l4);
            }
            if held {
                entry.0.push(rows.len());
                rows.push(row);
                continue;
            }
            let (waiting, first_l4) = frags.pending.remove(&key).unwrap_or_default();
            l4 = first_l4.unwrap_or(l4);
            row.notes.push("fragment".into());
            fill_entry(&mut fw, ip, l4, &mut row)?;
            for i in waiting {
                let r = &mut rows[i];
                r.chains = row.chains.clone();
                r.ctstate = row.ctstate;
                r.ctdir = row.ctdir;
                r.ctstatus = row.ctstatus;
                r.tcp_state = row.tcp_state;
                r.verdict = row.verdict;
                r.rule = row.rule.clone();
                r.reason = row.reason.clone();
                r.notes.push("fragment".into());
            }
            rows.push(row);
            continue;
        }
        if !held {
            fill_entry(&mut fw, ip, l4, &mut row)?;
        }
        rows.push(row);
    }
    Ok(rows)
}

/// Sends one packet the way its source address says; returns a send error
/// note (if any) and the peer whose socket carries the fence.
fn inject(
    fw: &mut Firewall,
    plan: &Plan,
    p: &CapturedPacket,
    ip: &IpPacket,
) -> (Option<String>, usize) {
    let errname = |e: std::io::Error| {
        let name = match e.raw_os_error() {
            Some(libc::EPERM) => "EPERM".to_string(),
            Some(libc::ENETUNREACH) => "ENETUNREACH".to_string(),
            Some(libc::EMSGSIZE) => "EMSGSIZE".to_string(),
            Some(libc::EINVAL) => "EINVAL".to_string(),
            Some(n) => format!("errno{n}"),
            None => e.kind().to_string(),
        };
        format!("sendto:{name}")
    };
    if plan.locals.contains(&ip.src) {
        let i = plan.iface_of(ip.dst);
        let scope = match ip.dst {
            IpAddr::V6(a)
                if a.is_unicast_link_local()
                    || (a.is_multicast() && a.segments()[0] & 0xf <= 2) =>
            {
                fw.ifindex[i]
            }
            _ => 0,
        };
        (fw.raw.send(&ip.bytes, ip.dst, scope).err().map(errname), i)
    } else {
        let i = plan.iface_of(ip.src);
        let s = &mut fw.peers[i];
        let dst = p.group_dst_mac.unwrap_or(s.peer_mac);
        let src = p.src_mac.unwrap_or(s.mac);
        (s.send(dst, src, &ip.bytes).err().map(errname), i)
    }
}

/// Sends a fence and collects every kernel message until it arrives.
fn sync(
    fw: &mut Firewall,
    obs: &mut Observation,
    seq: &mut u16,
    packet: u64,
    peer: Option<usize>,
) -> Result<(), OracleError> {
    obs.clear();
    *seq = seq.wrapping_add(1);
    let fence = fence_packet(*seq);
    let s = &mut fw.peers[peer.unwrap_or(0)];
    let (dst, src) = (s.peer_mac, s.mac);
    s.send(dst, src, &fence).map_err(|e| OracleError::Io {
        what: "sending fence".into(),
        source: e,
    })?;
    let mut waited = 0u32;
    while !obs.fence {
        let data = match fw.events.recv() {
            Ok(d) => d,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                waited += 1;
                if netns::interrupted() {
                    return Err(OracleError::Interrupted);
                }
                if waited >= 25 {
                    return Err(OracleError::KernelSilent { packet, secs: 5 });
                }
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
                if netns::interrupted() {
                    return Err(OracleError::Interrupted);
                }
                continue;
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                return Err(OracleError::Overrun { packet });
            }
            Err(e) => return Err(nl_err("receive")(e)),
        };
        for m in Messages(data) {
            match netlink::decode_event(&m) {
                Event::Log {
                    group: PROBE_GROUP,
                    prefix,
                    payload,
                } => obs.on_probe(prefix, payload, *seq),
                Event::Log {
                    group: 0, prefix, ..
                } => obs.on_log0(prefix),
                Event::Trace(t) => obs.on_trace(&t),
                Event::Error(e) if -e == libc::ENOBUFS => {
                    return Err(OracleError::Overrun { packet });
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// Fills the row from the observation. Returns true when the packet is a
/// fragment defrag is holding.
fn judge(obs: &Observation, ip: &IpPacket, rules: &RuleMap, row: &mut KernelRow) -> bool {
    row.chains = obs.hooks.clone();
    let st = obs.state_filter.or(obs.state_pre);
    row.ctstate = st.map(|s| s.0);
    row.ctdir = st.and_then(|s| s.1);
    row.reason = obs.reasons.join("; ");
    row.notes.extend(obs.user_logs.iter().cloned());
    if obs.generated > 0 {
        row.notes.push(format!("suppressed:{}", obs.generated));
    }
    let Some(&last) = obs.hooks.last() else {
        row.verdict = Verdict::Drop;
        row.notes.push("ip_rcv".into());
        return false;
    };
    // Defrag (−400) holds a fragment right after our arrival probe (−490):
    // nothing else is heard of it, not even a rule.
    let is_frag = ip.frag.is_some_and(|f| !f.is_atomic());
    let silent = obs.hooks.len() == 1
        && obs.state_pre.is_none()
        && obs.state_filter.is_none()
        && !obs.passed[last.index()]
        && obs.terminal[last.index()].is_none();
    if is_frag && silent {
        row.verdict = Verdict::Defrag;
        return true;
    }
    if obs.passed[last.index()] {
        if matches!(last, Hook::Postrouting | Hook::Input) {
            row.verdict = Verdict::Accept;
            if let Some(fh) = obs.hooks.iter().copied().find(|h| h.is_filter_hook()) {
                row.rule = Some(match &obs.filter_accept[fh.index()] {
                    Some(d) => rule_text(rules, d).0,
                    None => row::rule_ref("filter", fh.name(), None),
                });
            }
        } else {
            row.verdict = Verdict::Drop;
            row.notes.push("routing".into());
        }
        return false;
    }
    row.verdict = Verdict::Drop;
    match &obs.terminal[last.index()] {
        Some(d) if d.verdict == 0 || d.verdict == 3 => {
            let (text, reject) = rule_text(rules, d);
            row.rule = Some(text);
            if reject {
                row.verdict = Verdict::Reject;
            }
        }
        _ => row.notes.push(format!("dropped-in-{}", last.name())),
    }
    false
}

/// Asks ctnetlink for the entry the packet left behind.
fn fill_entry(
    fw: &mut Firewall,
    ip: &IpPacket,
    l4: L4Info,
    row: &mut KernelRow,
) -> Result<(), OracleError> {
    let Some(tuple) = ip.tuple_with(l4) else {
        return Ok(());
    };
    let entry: Option<CtEntry> =
        netlink::ct_get(&mut fw.ct, &tuple).map_err(nl_err("ctnetlink GET"))?;
    if let Some(e) = entry {
        row.ctstatus = Some(Status(e.status));
        if tuple.proto == ipproto::TCP {
            row.tcp_state = e.tcp_state;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp_packet(frag: u16) -> IpPacket {
        let mut p = vec![
            0x45, 0, 0, 36, 0, 9, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        p[6..8].copy_from_slice(&frag.to_be_bytes());
        p.extend([0x13, 0x88, 0, 53, 0, 16, 0, 0]);
        p.extend([0u8; 8]);
        capture::decode_frame(1, Timestamp(0), 101, &p).ip.unwrap()
    }

    fn blank_row() -> KernelRow {
        let p = CapturedPacket {
            index: 1,
            ts: Timestamp(0),
            src_mac: None,
            group_dst_mac: None,
            ip: Err("x"),
        };
        KernelRow::from_packet(&p)
    }

    fn feed(obs: &mut Observation, prefixes: &[&str]) {
        for p in prefixes {
            obs.on_probe(p.as_bytes(), &[], 0);
        }
    }

    const LISTING: &str = "table ip filter { # handle 1\n\tchain FORWARD { # handle 1\n\
        \t\ttype filter hook forward priority filter; policy drop;\n\
        \t\tct state established counter packets 0 bytes 0 accept # handle 4\n\
        \t\ttcp dport 22 counter packets 0 bytes 0 reject with tcp reset # handle 5\n\t}\n}\n";

    fn trace(
        obs: &mut Observation,
        table: &str,
        chain: &str,
        kind: u32,
        handle: Option<u64>,
        v: i32,
    ) {
        let t = netlink::Trace {
            nfproto: 2,
            table: table.as_bytes(),
            chain: chain.as_bytes(),
            handle,
            kind,
            verdict: (kind == netlink::TRACE_RULE).then_some(v),
            policy: (kind == netlink::TRACE_POLICY).then_some(v as u32),
        };
        obs.on_trace(&t);
    }

    #[test]
    fn accepted_forward_names_the_filter_rule() {
        let rules = nft::parse_ruleset(LISTING);
        let mut obs = Observation::default();
        feed(
            &mut obs,
            &[
                "A|PRE",
                "S|PRE|ESTABLISHED|REPLY",
                "O|PRE",
                "S|FWD|ESTABLISHED|REPLY",
            ],
        );
        trace(
            &mut obs,
            "filter",
            "FORWARD",
            netlink::TRACE_RULE,
            Some(4),
            1,
        );
        trace(
            &mut obs,
            nft::TABLE,
            "fwd_ok",
            netlink::TRACE_POLICY,
            None,
            1,
        );
        feed(&mut obs, &["O|FWD", "E|POST", "O|POST"]);
        let mut row = blank_row();
        assert!(!judge(&obs, &udp_packet(0), &rules, &mut row));
        assert_eq!(row.verdict, Verdict::Accept);
        assert_eq!(row::chains(&row.chains), "PREROUTING>FORWARD>POSTROUTING");
        assert_eq!(
            (row.ctstate, row.ctdir),
            (Some(CtState::Established), Some(Dir::Reply))
        );
        assert_eq!(row.rule.as_deref(), Some("filter:FORWARD:1"));
    }

    #[test]
    fn reject_policy_routing_and_ip_rcv() {
        let rules = nft::parse_ruleset(LISTING);
        let mut obs = Observation::default();
        feed(
            &mut obs,
            &[
                "A|PRE",
                "S|PRE|NEW|ORIGINAL",
                "O|PRE",
                "S|FWD|NEW|ORIGINAL",
                "GEN",
            ],
        );
        trace(
            &mut obs,
            "filter",
            "FORWARD",
            netlink::TRACE_RULE,
            Some(5),
            0,
        );
        let mut row = blank_row();
        judge(&obs, &udp_packet(0), &rules, &mut row);
        assert_eq!(row.verdict, Verdict::Reject);
        assert_eq!(row.rule.as_deref(), Some("filter:FORWARD:2"));
        assert_eq!(row.notes, ["x", "suppressed:1"]);

        obs.clear();
        feed(
            &mut obs,
            &["A|PRE", "S|PRE|NEW|ORIGINAL", "O|PRE", "S|FWD|NEW|ORIGINAL"],
        );
        trace(
            &mut obs,
            "filter",
            "FORWARD",
            netlink::TRACE_POLICY,
            None,
            0,
        );
        let mut row = blank_row();
        judge(&obs, &udp_packet(0), &rules, &mut row);
        assert_eq!(
            (row.verdict, row.rule.as_deref()),
            (Verdict::Drop, Some("filter:FORWARD:policy"))
        );

        obs.clear();
        feed(&mut obs, &["A|PRE", "S|PRE|UNTRACKED|", "O|PRE"]);
        let mut row = blank_row();
        judge(&obs, &udp_packet(0), &rules, &mut row);
        assert_eq!((row.verdict, row.rule.as_deref()), (Verdict::Drop, None));
        assert_eq!((row.ctstate, row.ctdir), (Some(CtState::Untracked), None));
        assert!(row.notes.contains(&"routing".to_string()));

        obs.clear();
        let mut row = blank_row();
        judge(&obs, &udp_packet(0), &rules, &mut row);
        assert_eq!(row.verdict, Verdict::Drop);
        assert!(row.chains.is_empty() && row.notes.contains(&"ip_rcv".to_string()));
    }

    #[test]
    fn held_fragment_and_invalid_reason() {
        let rules = RuleMap::default();
        let mut obs = Observation::default();
        feed(&mut obs, &["A|PRE"]);
        let mut row = blank_row();
        assert!(judge(&obs, &udp_packet(0x2000), &rules, &mut row));
        assert_eq!(row.verdict, Verdict::Defrag);
        // Not a fragment: dropped in PREROUTING before conntrack, no rule.
        let mut row = blank_row();
        assert!(!judge(&obs, &udp_packet(0), &rules, &mut row));
        assert_eq!(row.verdict, Verdict::Drop);

        obs.on_log0(b"nf_ct_proto_6: invalid tcp flag combination ");
        obs.on_log0(b"nf_ct_ftp: dropping packet: partial 227 ");
        obs.on_log0(b"my nflog prefix");
        assert_eq!(
            obs.reasons,
            [
                "invalid tcp flag combination",
                "dropping packet: partial 227"
            ]
        );
        assert_eq!(obs.user_logs, ["nflog:my nflog prefix"]);
    }

    #[test]
    fn fence_matches_only_its_sequence() {
        let mut obs = Observation::default();
        let f = fence_packet(7);
        obs.on_probe(b"F", &f, 6);
        assert!(!obs.fence);
        obs.on_probe(b"F", &f, 7);
        assert!(obs.fence);
    }

    #[test]
    fn iface_specs_and_plan() {
        let mut cfg = OracleConfig::new("x.pcap");
        cfg.add_iface("eth1=10.0.0.0/8").unwrap();
        cfg.add_iface("eth2=10.1.0.0/16").unwrap();
        cfg.add_iface("eth1=2001:db8::/32").unwrap();
        cfg.add_iface("wan0=192.0.2.1").unwrap();
        assert_eq!(cfg.ifaces.len(), 3);
        assert!(cfg.add_iface("lo=10.0.0.0/8").is_err());
        assert!(cfg.add_iface("eth 0=10.0.0.0/8").is_err());
        assert!(cfg.add_iface("eth0=10.0.0.0/33").is_err());
        let plan = Plan::new(&cfg, &[]);
        let at = |a: &str| plan.iface_of(a.parse().unwrap());
        assert_eq!(at("10.1.2.3"), 1);
        assert_eq!(at("10.2.2.3"), 0);
        assert_eq!(at("2001:db8::1"), 0);
        assert_eq!(at("192.0.2.1"), 2);
        assert_eq!(at("8.8.8.8"), 0);
        assert!(!routable("224.0.0.1".parse().unwrap()) && !routable("240.0.0.1".parse().unwrap()));
        assert!(routable("fe80::1".parse().unwrap()) && !routable("ff02::1".parse().unwrap()));
    }
}
