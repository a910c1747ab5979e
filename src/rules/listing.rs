//! `iptables -L -v -n -x --line-numbers`-style listings of a ruleset with
//! the counters of a [`RuleState`].
//!
//! The column layout is the one iptables 1.8.9 prints; the match and target
//! texts follow its `-n` wording for the common extensions, without
//! claiming to be byte-identical for every option combination.

use std::fmt::Write as _;

use super::TableId;
use super::compile::Ruleset;
use super::eval::RuleState;
use super::matches::fmt_addr_mask;
use crate::wire::Family;

const HEADER: &str = "num      pkts      bytes target     prot opt in     out     source               destination         ";

impl Ruleset {
    /// All tables of a family, each as `iptables -t T -L -v -n -x
    /// --line-numbers` prints it, preceded by a `# Table: T` line.
    pub fn listing(&self, family: Family, state: &RuleState) -> String {
        let mut out = String::new();
        for id in TableId::ALL {
            let Some(t) = self.table(family, id) else {
                continue;
            };
            let _ = writeln!(
                out,
                "# Table: {}{}",
                id.name(),
                if id.simulated() {
                    ""
                } else {
                    " (not simulated)"
                }
            );
            let mut order: Vec<usize> = (0..t.chains.len())
                .filter(|&i| t.chains[i].hook.is_some())
                .collect();
            let mut users: Vec<usize> = (0..t.chains.len())
                .filter(|&i| t.chains[i].hook.is_none())
                .collect();
            users.sort_by(|a, b| t.chains[*a].name.cmp(&t.chains[*b].name));
            order.extend(users);
            for (k, &ci) in order.iter().enumerate() {
                let c = &t.chains[ci];
                if k > 0 {
                    out.push('\n');
                }
                if c.hook.is_some() {
                    let (p, b) = state.counter(c.counter);
                    let _ = writeln!(
                        out,
                        "Chain {} (policy {} {p} packets, {b} bytes)",
                        c.name,
                        c.policy.name()
                    );
                } else {
                    let _ = writeln!(out, "Chain {} ({} references)", c.name, c.references);
                }
                out.push_str(HEADER);
                out.push('\n');
                for (n, r) in c.rules.iter().enumerate() {
                    let (p, b) = state.counter(r.counter);
                    let prot = format!("{}{}", if r.ip.proto_inv { "!" } else { "" }, r.ip.proto);
                    let opt = match r.ip.frag {
                        None => "--",
                        Some(true) => "-f",
                        Some(false) => "!f",
                    };
                    let iface = |i: &Option<super::ast::Iface>, inv: bool| match i {
                        None => "*".to_string(),
                        Some(i) => format!("{}{}", if inv { "!" } else { "" }, i.display()),
                    };
                    let src = fmt_addr_mask(r.ip.src.as_ref(), family);
                    let dst = fmt_addr_mask(r.ip.dst.as_ref(), family);
                    let _ = write!(
                        out,
                        "{:<4} {:>8} {:>8} {:<10} {:<4} {:<3} {:<6} {:<6} {}{:<20}{}{:<20}",
                        n + 1,
                        p,
                        b,
                        r.shown.column(),
                        prot,
                        opt,
                        iface(&r.ip.iniface, r.ip.iniface_inv),
                        iface(&r.ip.outiface, r.ip.outiface_inv),
                        if r.ip.src_inv { '!' } else { ' ' },
                        src,
                        if r.ip.dst_inv { '!' } else { ' ' },
                        dst,
                    );
                    for m in &r.matches {
                        out.push_str(&m.describe(family));
                    }
                    out.push_str(&r.shown.describe());
                    out.push('\n');
                }
            }
            out.push('\n');
        }
        out
    }
}
