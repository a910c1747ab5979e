//! Parse-error parity with the real `iptables-restore` / `ip6tables-restore`
//! (nf_tables backend): every file in the table below must be accepted by
//! ctsim exactly when the real tool, committing into a fresh network
//! namespace (`unshare -n`), accepts it.
//!
//! The real tools are the oracle; nothing here was produced by running
//! ctsim. The test skips (loudly) when not run as root or when the tools or
//! `unshare` are missing.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use ctsim::rules::{Ruleset, parse_rules};
use ctsim::wire::Family;

/// A rule in INPUT of the filter table, with a user chain `u` declared.
fn f(rule: &str) -> String {
    format!(
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:u - [0:0]\n-A INPUT {rule}\nCOMMIT\n"
    )
}

/// A rule in `chain` of `table`, with a user chain `u` declared.
fn t(table: &str, chain: &str, rule: &str) -> String {
    format!("*{table}\n:u - [0:0]\n-A {chain} {rule}\nCOMMIT\n")
}

fn cases() -> Vec<(Family, String)> {
    let v4 = Family::Ipv4;
    let v6 = Family::Ipv6;
    let mut c: Vec<(Family, String)> = Vec::new();
    let rules4 = [
        // protocol and ports
        "-p tcp --dport 22 -j ACCEPT",
        "-p tcp --dpo 22",
        "-p tcp --dport ! 22",
        "-p tcp ! --dport 22",
        "-p 6 --dport 22",
        "-p TCP --dport 22",
        "-p all --dport 22",
        "--dport 22 -j ACCEPT",
        "-p tcp --dport 22:21",
        "-p tcp --dport :80",
        "-p tcp --dport 80:",
        "-p tcp --dport ssh",
        "-p tcp --dport 0x16",
        "-p tcp --dport 026",
        "-p tcp --dport 65536",
        "-p tcp -m tcp --sport 1-2",
        "-p tcp --dport 1 --dport 2",
        "-p tcp -m tcp --dport 1 -m tcp --dport 2",
        "-p tcp -m udp --dport 1",
        "-p udp -m udp --dport 1 -m tcp",
        "-p tcp -m tcp",
        "-p tcp --syn --dport 1",
        "-p tcp --syn ! --syn",
        "-p tcp --tcp-flags SYN,ACK SYN",
        "-p tcp --tcp-flags ALL NONE",
        "-p tcp --tcp-flags SYN,ECE SYN",
        "-p tcp --tcp-flags syn syn",
        "-p tcp --tcp-option 2",
        "-p tcp -p udp",
        "-p foo",
        "! -p all",
        // addresses and interfaces
        "-s 10.1",
        "-s 0/0",
        "-s 1.2.3.256",
        "-s 1.2.3.4/",
        "-s 1.2.3.4/33",
        "-s 1.2.3.4/08",
        "-s 1.2.3.4/0x8",
        "-s 1.2.3.4/255.255.0.255",
        "-s nonexistent.invalid",
        "-s 1.2.3.4,5.6.7.8 -d 9.9.9.9,8.8.8.8",
        "-s 1.2.3.4, 5.6.7.8",
        "-s 1.2.3.4,,5.6.7.8",
        "-s 1.2.3.4 -s 5.6.7.8",
        "! -s 10.0.0.0/8 -j DROP",
        "-d -p tcp",
        "-i eth+",
        "-i eth0+x",
        "-i ! eth0",
        "! -i eth0",
        "-i aaaaaaaaaaaaaaaaa",
        "-f",
        "! -f",
        // targets
        "-j ALLOW",
        "-j accept",
        "-j u",
        "-j u -j ACCEPT",
        "-g u",
        "-g INPUT",
        "-j INPUT",
        "-j RETURN",
        "-j DROP --foo",
        "-p tcp -j REJECT --reject-with tcp-reset",
        "-j REJECT --reject-with tcp-reset",
        "-p udp -j REJECT --reject-with icmp-host-prohib",
        "-j REJECT --reject-with foo",
        "-j REJECT --reject-with icmp-admin-prohibited",
        "-j LOG --log-prefix \"x y\" --log-level 4",
        "-j LOG --log-level foo",
        "-j LOG --log-level warning",
        "-j LOG --log-prefix 1234567890123456789012345678901234567890",
        "-j NFLOG --nflog-group 5 --nflog-prefix p",
        "-j MARK --set-mark 1/0xff",
        "-j MARK --set-mark 1",
        "-j MARK",
        "-j CONNMARK --save-mark",
        "-j CONNMARK --restore-mark --mask 0xff",
        "-j CONNMARK --set-mark 1",
        "-j CT --notrack",
        "-j NOTRACK",
        "-j DNAT --to-destination 1.2.3.4",
        // match extensions
        "-m comment --comment \"a b\"",
        "-m comment --comment 'a b'",
        "-m comment --comment \"a \\\"b\"",
        "-m comment",
        "-m comment --comment x --comment y",
        "-m foo",
        "-m state --state NEW,FOO",
        "-m state --state new",
        "-m state ! --state NEW",
        "-m state",
        "-m conntrack",
        "-m conntrack --ctstate SNAT,DNAT,UNTRACKED",
        "-m conntrack --ctstatus NONE,EXPECTED",
        "-m conntrack --ctdir ORIGINAL",
        "-m conntrack ! --ctdir REPLY",
        "-m conntrack --ctexpire 10:5",
        "-m conntrack --ctproto tcp --ctorigsrcport 80",
        "-m conntrack --ctorigsrcport 80:90",
        "-m conntrack --ctorigsrc 1.2.3.0/24",
        "-m mark --mark 0x10/0xf0",
        "-m mark --mark 4294967296",
        "-m connmark --mark 1",
        "-m length --length 10:",
        "-m length --length :10",
        "-m ttl --ttl-eq 256",
        "-m ttl ! --ttl-lt 5",
        "-m ttl ! --ttl-eq 5",
        "-m pkttype --pkt-type host",
        "-m pkttype --pkt-type loopback",
        "-m pkttype --pkt-type broadcast",
        "-m mac --mac-source 00:11:22:33:44:55",
        "-m mac --mac-source 00:11:22:33:44",
        "-m iprange --src-range 1.1.1.5-1.1.1.1",
        "-m iprange --src-range 1.1.1.1-1.1.1.5",
        "-m addrtype --src-type LOCAL --limit-iface-in",
        "-m addrtype --src-type LOCAL --limit-iface-out",
        "-m addrtype --src-type FOO",
        "-m addrtype",
        "-m addrtype --dst-type LOCAL",
        "-p tcp -m multiport --dports 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15",
        "-p tcp -m multiport --dports 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16",
        "-p tcp -m multiport --dports 1:2,3:4,5:6,7:8,9:10,11:12,13:14,15",
        "-m multiport --dports 1",
        "! -p tcp -m multiport --dports 1",
        "-p tcp -m multiport --dports 1 --sports 2",
        "-p tcp -m multiport ! --dports 1",
        "-p udp -m multiport --dports 1:5,7 -j ACCEPT",
        "-p icmp --icmp-type echo-request",
        "-p icmp --icmp-type 3/4",
        "-p icmp --icmp-type 300",
        "-p icmp --icmp-type any",
        "-m icmp --icmp-type any",
        "-m limit --limit 0/s",
        "-m limit --limit 10/minute --limit-burst 0",
        "-m limit --limit 5/m",
        "-m limit --limit 5/mi",
        "-m limit --limit 5",
        "-m limit --limit 5/week",
        "-m recent --name x --rcheck --seconds 60 --hitcount 3",
        "-m recent --set --seconds 5",
        "-m recent --rcheck --reap",
        "-m recent --update --seconds 5 --reap",
        "-m recent --set --rcheck",
        "-m recent",
        "-m recent --set --name a/b",
        "-m statistic --mode random --probability 0.5",
        "-m statistic --mode random --probability 1.5",
        "-m statistic --mode nth --every 3 --packet 3",
        "-m statistic --mode nth --every 3 --packet 0",
        "-m statistic --mode nth --every 3",
        "-m statistic --mode nth --every 0 --packet 0",
        "-m connlimit --connlimit-upto 2 --connlimit-mask 24 --connlimit-daddr",
        "-m connlimit --connlimit-above 2 --connlimit-upto 3",
        "-m connlimit --connlimit-above 3",
        "-m hashlimit --hashlimit-upto 5/s",
        "-m hashlimit --hashlimit-name x --hashlimit-above 5/min --hashlimit-mode srcip,dstport --hashlimit-srcmask 24 --hashlimit-htable-expire 30000",
        "-m hashlimit --hashlimit-name x --hashlimit 5/min",
        // words that are not options
        "-j ACCEPT # trailing comment",
        "-j ACCEPT extra",
        "-t nat -j ACCEPT",
    ];
    for r in rules4 {
        c.push((v4, f(r)));
    }
    let tables = [
        ("mangle", "PREROUTING", "-j REJECT"),
        ("mangle", "INPUT", "-j REJECT"),
        ("raw", "PREROUTING", "-j REJECT"),
        ("filter", "u", "-j REJECT"),
        ("raw", "PREROUTING", "-p tcp -j CT --helper ftp"),
        ("raw", "PREROUTING", "-j CT --helper ftp"),
        ("raw", "PREROUTING", "-p tcp -j CT --helper foo"),
        ("raw", "PREROUTING", "-p tcp -j CT --helper tftp"),
        ("raw", "PREROUTING", "-p udp -j CT --helper tftp"),
        ("raw", "PREROUTING", "-j CT --notrack --helper ftp"),
        ("raw", "u", "-j CT --notrack"),
        ("raw", "OUTPUT", "-j NOTRACK"),
        ("mangle", "PREROUTING", "-j CT --notrack"),
        ("raw", "PREROUTING", "-j MARK --set-mark 1"),
        ("raw", "PREROUTING", "-m conntrack --ctstate NEW"),
        (
            "filter",
            "OUTPUT",
            "-m addrtype --src-type LOCAL --limit-iface-in",
        ),
        (
            "filter",
            "INPUT",
            "-m addrtype --src-type LOCAL --limit-iface-in",
        ),
        ("filter", "OUTPUT", "-m mac --mac-source 00:11:22:33:44:55"),
        (
            "nat",
            "PREROUTING",
            "-p tcp -j DNAT --to-destination 1.2.3.4:80",
        ),
        ("nat", "PREROUTING", "-j DNAT --to-destination 1.2.3.4:80"),
        ("nat", "PREROUTING", "-j DNAT --to-destination 1.2.3.4"),
        ("nat", "POSTROUTING", "-j MASQUERADE"),
        ("nat", "PREROUTING", "-j MASQUERADE"),
        ("nat", "POSTROUTING", "-j SNAT --to-source 5.6.7.8"),
        ("nat", "PREROUTING", "-j DROP"),
        ("nat", "OUTPUT", "-p tcp -j REDIRECT --to-ports 8080"),
        ("raw", "INPUT", "-j ACCEPT"),
        ("security", "INPUT", "-j ACCEPT"),
    ];
    for (tb, ch, r) in tables {
        c.push((v4, t(tb, ch, r)));
    }
    let files = [
        "*filter\n:INPUT DROP [0:0]\n   \nCOMMIT\n",
        "*filter\n:INPUT DROP [0:0]\n  # c\nCOMMIT\n",
        "*filter\n:INPUT DROP [0:0]\nCOMMIT \n",
        "*filter\n:INPUT DROP [0:0]\n COMMIT\n",
        "*filter\n:INPUT DROP\nCOMMIT\n",
        "*filter\n:FOO DROP [0:0]\nCOMMIT\n",
        "*filter\n:INPUT - [0:0]\nCOMMIT\n",
        "*filter\n:INPUT REJECT [0:0]\nCOMMIT\n",
        "*filter\n:u - [0:0]\n:u - [0:0]\nCOMMIT\n",
        "*filter\n:uuuuuuuuuuuuuuuuuuuuuuuuuuuu - [0:0]\nCOMMIT\n",
        "*filter\n:uuuuuuuuuuuuuuuuuuuuuuuuuuuuu - [0:0]\nCOMMIT\n",
        "*filter\n:-u - [0:0]\nCOMMIT\n",
        "*filter\n:ACCEPT - [0:0]\nCOMMIT\n",
        "*filter\n*filter\nCOMMIT\n",
        "*foo\nCOMMIT\n",
        "COMMIT\n",
        "-A INPUT -j ACCEPT\n",
        "*filter\n-A INPUT -j ACCEPT\n",
        "*filter\n-A INPUT -j u\n-N u\nCOMMIT\n",
        "*filter\n-N u\n-A INPUT -j u\nCOMMIT\n",
        "*filter\n[1:2] -A INPUT -j ACCEPT\nCOMMIT\n",
        "*filter\n-A FOO -j ACCEPT\nCOMMIT\n",
        "*filter\n:u - [0:0]\n-A u -j u\nCOMMIT\n",
        "*filter\n:u - [0:0]\n-A INPUT -j u\n-A u -j u\nCOMMIT\n",
        "*filter\n:u - [0:0]\n:v - [0:0]\n-A INPUT -j u\n-A u -j v\n-A v -g u\nCOMMIT\n",
        "*filter\n:u - [0:0]\n:v - [0:0]\n-A INPUT -j u\n-A u -j v\n-A v -j RETURN\n-A u -j v\nCOMMIT\n",
        "*filter\n:u - [0:0]\n-A INPUT -j u\n-A u -j REJECT\nCOMMIT\n",
        "*mangle\n:u - [0:0]\n-A PREROUTING -j u\n-A u -j REJECT\nCOMMIT\n",
        "*filter\n:u - [0:0]\n-A OUTPUT -j u\n-A u -m addrtype --src-type LOCAL --limit-iface-in\nCOMMIT\n",
        "*filter\n-A INPUT -j ACCEPT\nCOMMIT\n# c\n",
        "*filter\n-I INPUT 2 -j ACCEPT\nCOMMIT\n",
        "*filter\n-A INPUT -j ACCEPT\n-I INPUT 2 -j ACCEPT\n-I INPUT 4 -j ACCEPT\nCOMMIT\n",
        "*filter\n-A INPUT -j ACCEPT\n-D INPUT 1\nCOMMIT\n",
        "*filter\n-A INPUT -j ACCEPT\n-D INPUT -j DROP\nCOMMIT\n",
        "*filter\n-P INPUT DROP\nCOMMIT\n",
        "*filter\n-A INPUT\nCOMMIT\n",
        "*filter\n-A INPUT -j ACCEPT\nCOMMIT\n*nat\n-A POSTROUTING -j MASQUERADE\nCOMMIT\n",
        "*filter\n:c1 - [0:0]\n:c2 - [0:0]\n:c3 - [0:0]\n:c4 - [0:0]\n:c5 - [0:0]\n:c6 - [0:0]\n:c7 - [0:0]\n:c8 - [0:0]\n:c9 - [0:0]\n:c10 - [0:0]\n:c11 - [0:0]\n:c12 - [0:0]\n:c13 - [0:0]\n:c14 - [0:0]\n:c15 - [0:0]\n:c16 - [0:0]\n-A INPUT -j c1\n-A c1 -j c2\n-A c2 -j c3\n-A c3 -j c4\n-A c4 -j c5\n-A c5 -j c6\n-A c6 -j c7\n-A c7 -j c8\n-A c8 -j c9\n-A c9 -j c10\n-A c10 -j c11\n-A c11 -j c12\n-A c12 -j c13\n-A c13 -j c14\n-A c14 -j c15\nCOMMIT\n",
        "*filter\n:c1 - [0:0]\n:c2 - [0:0]\n:c3 - [0:0]\n:c4 - [0:0]\n:c5 - [0:0]\n:c6 - [0:0]\n:c7 - [0:0]\n:c8 - [0:0]\n:c9 - [0:0]\n:c10 - [0:0]\n:c11 - [0:0]\n:c12 - [0:0]\n:c13 - [0:0]\n:c14 - [0:0]\n:c15 - [0:0]\n:c16 - [0:0]\n-A INPUT -j c1\n-A c1 -j c2\n-A c2 -j c3\n-A c3 -j c4\n-A c4 -j c5\n-A c5 -j c6\n-A c6 -j c7\n-A c7 -j c8\n-A c8 -j c9\n-A c9 -j c10\n-A c10 -j c11\n-A c11 -j c12\n-A c12 -j c13\n-A c13 -j c14\n-A c14 -j c15\n-A c15 -j c16\nCOMMIT\n",
    ];
    for fl in files {
        c.push((v4, fl.to_string()));
    }
    let rules6 = [
        "-p icmpv6 --icmpv6-type echo-request -j ACCEPT",
        "-p ipv6-icmp --icmpv6-type neighbour-solicitation",
        "-p icmpv6 --icmp-type 8",
        "-p icmp --icmp-type 8",
        "-s 2001:db8::/32 -j ACCEPT",
        "-s 2001:db8::/129",
        "-s 10.0.0.1",
        "-f",
        "-p tcp -j REJECT --reject-with tcp-reset",
        "-j REJECT --reject-with icmp6-adm-prohibited",
        "-j REJECT --reject-with icmp-host-prohibited",
        "-m hl --hl-eq 255",
        "-m ttl --ttl-eq 64",
        "-m conntrack --ctorigsrc 2001:db8::1",
    ];
    for r in rules6 {
        c.push((v6, f(r)));
    }
    c
}

fn real_accepts(family: Family, text: &str) -> Option<bool> {
    let tool = match family {
        Family::Ipv4 => "iptables-restore",
        Family::Ipv6 => "ip6tables-restore",
    };
    let mut child = Command::new("unshare")
        .args(["-n", tool])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(text.as_bytes()).ok()?;
    let st = child.wait().ok()?;
    Some(st.success())
}

fn ctsim_accepts(family: Family, text: &str) -> Result<(), String> {
    let f = parse_rules(text, Path::new("case.rules"), family).map_err(|e| e.to_string())?;
    Ruleset::compile(&f).map(|_| ()).map_err(|e| e.to_string())
}

#[test]
fn restore_parity() {
    // SAFETY-free root check: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let have = Command::new("iptables-restore")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let probe = real_accepts(Family::Ipv4, "*filter\nCOMMIT\n");
    if !root || !have || probe != Some(true) {
        eprintln!(
            "SKIPPED restore_parity: needs root, iptables-restore and unshare -n (root={root}, iptables-restore={have}, probe={probe:?})"
        );
        return;
    }
    let mut mismatches = Vec::new();
    let cases = cases();
    for (family, text) in &cases {
        let real = real_accepts(*family, text).expect("running iptables-restore");
        let ours = ctsim_accepts(*family, text);
        if real != ours.is_ok() {
            mismatches.push(format!(
                "{family:?}: iptables-restore {} but ctsim {}\n{text}{}",
                if real { "accepts" } else { "rejects" },
                if ours.is_ok() { "accepts" } else { "rejects" },
                ours.err()
                    .map(|e| format!("ctsim said: {e}\n"))
                    .unwrap_or_default()
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} cases differ:\n\n{}",
        mismatches.len(),
        cases.len(),
        mismatches.join("\n")
    );
}
