//! The oracle's own nftables instrumentation and the map from trace events
//! back to iptables rule numbers.
//!
//! The probe table (`ip ctsim_oracle`, and `ip6 ctsim_oracle` when IPv6 is
//! replayed) is separate from the user's tables and only logs to NFLOG group
//! [`PROBE_GROUP`]; it never changes a packet's fate except for the fence and
//! for packets the firewall's own stack generates, which it drops before
//! conntrack. Prefixes: `A|HOOK` arrival, `S|HOOK|STATE|DIR` state probe,
//! `E|POST` postrouting entry, `O|HOOK` passed the hook, `F` fence, `GEN`
//! suppressed locally generated packet.
//!
//! Priorities: arrival at −490 (−495 on output: before defrag −400, raw −300,
//! conntrack −200); prerouting/output state probes at −199 (just after
//! conntrack); input/forward state probes at −490 (entry of the hook); the
//! "passed" probes at `i32::MAX`. Every probe rule ends its chain with
//! `accept` (which only ends our chain, not the hook): it halves the trace
//! events our own chains cause when nftrace is on. The table must be loaded before anything
//! else enables conntrack in the namespace: hooks of equal priority run in
//! reverse registration order, so ours (registered first) then run after
//! conntrack's confirm at `INT_MAX`, and a packet that confirm drops is not
//! reported as passed.

use std::collections::HashMap;
use std::fmt::Write;

use super::inject::{FENCE_DST, FENCE_PROTO, INJECT_MARK};
use super::row::Hook;

/// NFLOG group of the probes.
pub(crate) const PROBE_GROUP: u16 = 47471;
/// Name of our tables (in families `ip` and `ip6`).
pub(crate) const TABLE: &str = "ctsim_oracle";

fn hook_tag(h: Hook) -> &'static str {
    match h {
        Hook::Prerouting => "PRE",
        Hook::Input => "IN",
        Hook::Forward => "FWD",
        Hook::Output => "OUT",
        Hook::Postrouting => "POST",
    }
}

pub(crate) fn hook_from_tag(tag: &[u8]) -> Option<Hook> {
    Some(match tag {
        b"PRE" => Hook::Prerouting,
        b"IN" => Hook::Input,
        b"FWD" => Hook::Forward,
        b"OUT" => Hook::Output,
        b"POST" => Hook::Postrouting,
        _ => return None,
    })
}

fn log(out: &mut String, prefix: &str, tail: &str) {
    let _ = writeln!(out, "    log prefix \"{prefix}\" group {PROBE_GROUP}{tail}");
}

fn chain_head(out: &mut String, name: &str, hook: &str, prio: i64) {
    let _ = writeln!(
        out,
        "  chain {name} {{\n    type filter hook {hook} priority {prio}; policy accept;"
    );
}

fn state_rules(out: &mut String, h: Hook) {
    let tag = hook_tag(h);
    for (state, dirs) in [
        ("established", true),
        ("new", true),
        ("related", true),
        ("invalid", false),
        ("untracked", false),
    ] {
        let upper = state.to_ascii_uppercase();
        if dirs {
            for dir in ["original", "reply"] {
                let _ = writeln!(
                    out,
                    "    ct state {state} ct direction {dir} log prefix \"S|{tag}|{upper}|{}\" group {PROBE_GROUP} accept",
                    dir.to_ascii_uppercase()
                );
            }
        } else {
            let _ = writeln!(
                out,
                "    ct state {state} log prefix \"S|{tag}|{upper}|\" group {PROBE_GROUP} accept"
            );
        }
    }
}

/// The nft script creating the probe table of one family.
pub(crate) fn probe_table(v6: bool, trace: bool) -> String {
    let fam = if v6 { "ip6" } else { "ip" };
    let nftrace = if trace {
        "    meta nftrace set 1\n"
    } else {
        ""
    };
    let last = i32::MAX as i64;
    let mut s = String::new();
    let _ = writeln!(s, "table {fam} {TABLE} {{");

    chain_head(&mut s, "pre_arr", "prerouting", -490);
    if !v6 {
        let _ = writeln!(
            s,
            "    ip protocol {FENCE_PROTO} ip daddr {FENCE_DST} log prefix \"F\" group {PROBE_GROUP} drop"
        );
    }
    s.push_str(nftrace);
    log(&mut s, "A|PRE", " accept");
    s.push_str("  }\n");

    for (name, hook, prio, h) in [
        ("pre_st", "prerouting", -199, Hook::Prerouting),
        ("in_st", "input", -490, Hook::Input),
        ("fwd_st", "forward", -490, Hook::Forward),
        ("out_st", "output", -199, Hook::Output),
    ] {
        chain_head(&mut s, name, hook, prio);
        state_rules(&mut s, h);
        s.push_str("  }\n");
    }

    chain_head(&mut s, "out_arr", "output", -495);
    if v6 {
        // The stack's own timer-driven MLD reports and router solicitations:
        // not caused by any packet, so not worth reporting.
        let _ = writeln!(
            s,
            "    meta mark != {INJECT_MARK:#x} icmpv6 type {{ 130, 131, 132, 133, 143 }} drop"
        );
    }
    let _ = writeln!(
        s,
        "    meta mark != {INJECT_MARK:#x} log prefix \"GEN\" group {PROBE_GROUP} drop"
    );
    if !v6 {
        let _ = writeln!(
            s,
            "    ip protocol {FENCE_PROTO} ip daddr {FENCE_DST} log prefix \"F\" group {PROBE_GROUP} drop"
        );
    }
    s.push_str("    meta mark set 0\n");
    s.push_str(nftrace);
    log(&mut s, "A|OUT", " accept");
    s.push_str("  }\n");

    chain_head(&mut s, "post_ent", "postrouting", -490);
    log(&mut s, "E|POST", " accept");
    s.push_str("  }\n");

    for (name, hook, h) in [
        ("pre_ok", "prerouting", Hook::Prerouting),
        ("in_ok", "input", Hook::Input),
        ("fwd_ok", "forward", Hook::Forward),
        ("out_ok", "output", Hook::Output),
        ("post_ok", "postrouting", Hook::Postrouting),
    ] {
        chain_head(&mut s, name, hook, last);
        log(&mut s, &format!("O|{}", hook_tag(h)), " accept");
        s.push_str("  }\n");
    }
    s.push_str("}\n");
    s
}

/// One user rule as nft lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RuleInfo {
    /// 1-based position in its chain (`iptables -L --line-numbers`).
    pub position: usize,
    /// The rule's target is REJECT.
    pub reject: bool,
}

/// Map from (nfproto, table, chain, handle) to the rule's position.
#[derive(Debug, Default)]
pub(crate) struct RuleMap {
    rules: HashMap<(u8, String, String, u64), RuleInfo>,
}

impl RuleMap {
    pub fn get(&self, nfproto: u8, table: &str, chain: &str, handle: u64) -> Option<&RuleInfo> {
        self.rules
            .get(&(nfproto, table.to_string(), chain.to_string(), handle))
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.rules.len()
    }
}

/// Removes double-quoted strings so keywords inside comments do not count.
fn unquoted(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut inq = false;
    for c in line.chars() {
        if c == '"' {
            inq = !inq;
        } else if !inq {
            out.push(c);
        }
    }
    out
}

/// Parses `nft -a list ruleset` (ignoring our own tables).
pub(crate) fn parse_ruleset(text: &str) -> RuleMap {
    let mut map = RuleMap::default();
    let mut table: Option<(u8, String)> = None;
    let mut chain: Option<(String, usize)> = None;
    for raw in text.lines() {
        let line = raw.trim();
        if let Some(rest) = line.strip_prefix("table ") {
            let mut it = rest.split_whitespace();
            let fam = match it.next() {
                Some("ip") => 2,
                Some("ip6") => 10,
                Some("inet") => 1,
                Some("arp") => 3,
                Some("bridge") => 7,
                _ => 0,
            };
            let name = it.next().unwrap_or("").trim_matches('"').to_string();
            table = (name != TABLE).then_some((fam, name));
            chain = None;
            continue;
        }
        if let Some(rest) = line.strip_prefix("chain ") {
            let name = rest
                .split_whitespace()
                .next()
                .unwrap_or("")
                .trim_matches('"')
                .to_string();
            chain = Some((name, 0));
            continue;
        }
        if line.starts_with('}') || line.starts_with("set ") || line.starts_with("map ") {
            if line.starts_with('}') {
                chain = None;
            }
            continue;
        }
        let (Some((fam, tname)), Some((cname, count))) = (&table, &mut chain) else {
            continue;
        };
        let Some(at) = line.rfind("# handle ") else {
            continue;
        };
        if line.starts_with("type ") || line.starts_with("policy ") {
            continue;
        }
        let Ok(handle) = line[at + 9..].trim().parse::<u64>() else {
            continue;
        };
        *count += 1;
        let body = unquoted(&line[..at]);
        let reject =
            body.split_whitespace().any(|w| w == "reject") || line.contains("xt target \"REJECT\"");
        map.rules.insert(
            (*fam, tname.clone(), cname.clone(), handle),
            RuleInfo {
                position: *count,
                reject,
            },
        );
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    // Output of `nft -a list ruleset` on this machine for a small iptables-nft ruleset.
    const LISTING: &str = r#"table ip filter { # handle 1
	chain FORWARD { # handle 1
		type filter hook forward priority filter; policy accept;
		tcp dport 22 counter packets 0 bytes 0 reject with tcp reset # handle 2
		meta l4proto udp counter packets 0 bytes 0 reject # handle 3
		counter packets 0 bytes 0 jump MY-CHAIN # handle 6
	}

	chain MY-CHAIN { # handle 4
		 counter packets 0 bytes 0 drop # handle 5
	}
}
table ip ctsim_oracle { # handle 3
	chain pre_arr { # handle 1
		log prefix "A|PRE" group 47471 # handle 9
	}
}
table ip6 filter { # handle 2
	chain INPUT { # handle 1
		type filter hook input priority filter; policy accept;
		counter packets 0 bytes 0 comment "reject" accept # handle 2
	}
}"#;

    #[test]
    fn handles_map_to_positions() {
        let m = parse_ruleset(LISTING);
        assert_eq!(m.len(), 5);
        assert_eq!(
            m.get(2, "filter", "FORWARD", 2),
            Some(&RuleInfo {
                position: 1,
                reject: true
            })
        );
        assert_eq!(
            m.get(2, "filter", "FORWARD", 3),
            Some(&RuleInfo {
                position: 2,
                reject: true
            })
        );
        assert_eq!(
            m.get(2, "filter", "FORWARD", 6),
            Some(&RuleInfo {
                position: 3,
                reject: false
            })
        );
        assert_eq!(
            m.get(2, "filter", "MY-CHAIN", 5),
            Some(&RuleInfo {
                position: 1,
                reject: false
            })
        );
        assert_eq!(
            m.get(10, "filter", "INPUT", 2),
            Some(&RuleInfo {
                position: 1,
                reject: false
            })
        );
        assert_eq!(m.get(2, TABLE, "pre_arr", 9), None);
    }

    #[test]
    fn probe_table_has_every_hook() {
        let t = probe_table(false, true);
        for p in [
            "\"A|PRE\"",
            "\"O|POST\"",
            "\"S|FWD|NEW|ORIGINAL\"",
            "\"GEN\"",
            "\"F\"",
            "nftrace",
        ] {
            assert!(t.contains(p), "{p}");
        }
        assert!(t.contains("priority 2147483647"));
        let t6 = probe_table(true, false);
        assert!(!t6.contains("\"F\"") && !t6.contains("nftrace") && t6.contains("icmpv6 type"));
    }
}
