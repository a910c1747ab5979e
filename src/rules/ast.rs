//! What the parser produces: tables, chains and rules per address family,
//! with every value already checked and converted (addresses to integer
//! (address, mask) pairs, ports to ranges); only chain references are still
//! names, resolved by [`compile`](super::compile).

use std::path::PathBuf;

use super::matches::Match;
use super::targets::Target;
use super::{Hook, Policy, TableId};
use crate::wire::Family;

/// A parsed rule file: one set of tables per family, and the notes the
/// parser made about lines it skipped (`modprobe`, `sysctl`, …).
#[derive(Debug, Clone, Default)]
pub struct RuleFile {
    pub file: PathBuf,
    pub ipv4: FamilyRules,
    pub ipv6: FamilyRules,
    pub notes: Vec<Note>,
}

impl RuleFile {
    pub fn family(&self, family: Family) -> &FamilyRules {
        match family {
            Family::Ipv4 => &self.ipv4,
            Family::Ipv6 => &self.ipv6,
        }
    }
    pub(crate) fn family_mut(&mut self, family: Family) -> &mut FamilyRules {
        match family {
            Family::Ipv4 => &mut self.ipv4,
            Family::Ipv6 => &mut self.ipv6,
        }
    }
}

/// Something the parser noticed and did not apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub line: usize,
    pub text: String,
}

/// The tables of one family that the file defines (absent tables are not
/// there at all: nothing hooks in for them).
#[derive(Debug, Clone, Default)]
pub struct FamilyRules {
    pub tables: Vec<TableAst>,
}

impl FamilyRules {
    pub fn table(&self, id: TableId) -> Option<&TableAst> {
        self.tables.iter().find(|t| t.id == id)
    }
    pub(crate) fn table_mut(&mut self, id: TableId) -> &mut TableAst {
        if let Some(i) = self.tables.iter().position(|t| t.id == id) {
            return &mut self.tables[i];
        }
        self.tables.push(TableAst::new(id));
        self.tables.sort_by_key(|t| t.id);
        let i = self.tables.iter().position(|t| t.id == id).unwrap_or(0);
        &mut self.tables[i]
    }
    /// Number of rules in the family, all tables.
    pub fn rule_count(&self) -> usize {
        self.tables.iter().map(TableAst::rule_count).sum()
    }
}

/// One table: its built-in chains (always present) and user chains.
#[derive(Debug, Clone)]
pub struct TableAst {
    pub id: TableId,
    pub chains: Vec<ChainAst>,
}

impl TableAst {
    pub fn new(id: TableId) -> Self {
        let chains = id
            .hooks()
            .iter()
            .map(|h| ChainAst {
                name: h.chain_name().to_string(),
                hook: Some(*h),
                policy: Policy::Accept,
                rules: Vec::new(),
            })
            .collect();
        TableAst { id, chains }
    }
    pub fn chain(&self, name: &str) -> Option<&ChainAst> {
        self.chains.iter().find(|c| c.name == name)
    }
    pub(crate) fn chain_index(&self, name: &str) -> Option<usize> {
        self.chains.iter().position(|c| c.name == name)
    }
    pub fn rule_count(&self) -> usize {
        self.chains.iter().map(|c| c.rules.len()).sum()
    }
}

/// A chain: built-in (with a hook and a policy) or user-defined.
#[derive(Debug, Clone)]
pub struct ChainAst {
    pub name: String,
    pub hook: Option<Hook>,
    /// Meaningful for built-in chains only.
    pub policy: Policy,
    pub rules: Vec<RuleAst>,
}

/// One rule, after `-s a,b` / `-d c,d` expansion (each combination is its
/// own rule with its own number, as iptables does).
#[derive(Debug, Clone)]
pub struct RuleAst {
    /// Line in the rule file.
    pub line: usize,
    pub ip: IpSpec,
    pub matches: Vec<Match>,
    pub target: Target,
}

/// An (address, mask) pair; IPv4 uses the low 32 bits. The address is
/// already masked, as iptables stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AddrMask {
    pub addr: u128,
    pub mask: u128,
}

impl AddrMask {
    #[inline]
    pub fn contains(&self, a: u128) -> bool {
        a & self.mask == self.addr
    }
}

/// An interface name as `-i`/`-o` give it: exact, or a prefix with `+`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iface {
    pub name: String,
    pub wildcard: bool,
}

impl Iface {
    #[inline]
    pub fn matches(&self, dev: Option<&str>) -> bool {
        let dev = dev.unwrap_or("");
        if self.wildcard {
            dev.starts_with(&self.name)
        } else {
            dev == self.name
        }
    }
    pub fn display(&self) -> String {
        if self.wildcard {
            format!("{}+", self.name)
        } else {
            self.name.clone()
        }
    }
}

/// The fixed part of a rule (`struct ipt_ip`): addresses, interfaces,
/// protocol, fragment flag, each with its inversion.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpSpec {
    pub src: Option<AddrMask>,
    pub src_inv: bool,
    pub dst: Option<AddrMask>,
    pub dst_inv: bool,
    pub iniface: Option<Iface>,
    pub iniface_inv: bool,
    pub outiface: Option<Iface>,
    pub outiface_inv: bool,
    /// 0 = any protocol.
    pub proto: u8,
    pub proto_inv: bool,
    /// `-f`: Some(true); `! -f`: Some(false).
    pub frag: Option<bool>,
}
