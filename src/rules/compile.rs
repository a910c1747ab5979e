//! From a parsed [`RuleFile`] to the immutable [`Ruleset`] the evaluator
//! walks: chains by index, jumps resolved to indices, counters and
//! stateful-match state given slot numbers. Also the checks the kernel makes
//! when a table is committed: jumps to chains that exist and are not
//! built-in, and no loops or nesting deeper than the jump stack.

// RuleError is large (file, source line, hint) and built at most once.
#![allow(clippy::result_large_err)]

use rustc_hash::FxHashMap;

use super::ast::{IpSpec, RuleFile, TableAst};
use super::error::{Fail, RuleError, RuleErrorKind};
use super::eval::{JUMP_STACK, RuleState};
use super::matches::limit::LimitState;
use super::matches::recent::RecentTable;
use super::matches::{Match, SlotState};
use super::targets::{self, ConnmarkOp, RejectWith, Target};
use super::{Hook, Policy, TableId};
use crate::wire::Family;

/// A compiled target.
#[derive(Debug, Clone)]
pub(crate) enum CTarget {
    None,
    Accept,
    Drop,
    Return,
    Jump(usize),
    Goto(usize),
    Reject(RejectWith),
    Log {
        prefix: String,
        level: u8,
    },
    Nflog {
        prefix: String,
        group: u16,
    },
    Mark {
        value: u32,
        mask: u32,
    },
    Connmark(ConnmarkOp),
    Ct {
        notrack: bool,
        helper: Option<String>,
    },
    Nat,
}

#[derive(Debug, Clone)]
pub(crate) struct CRule {
    pub ip: IpSpec,
    pub matches: Vec<Match>,
    pub target: CTarget,
    /// The parsed target, for listings.
    pub shown: Target,
    pub counter: usize,
    pub line: usize,
}

#[derive(Debug, Clone)]
pub(crate) struct CChain {
    pub name: String,
    pub hook: Option<Hook>,
    pub policy: Policy,
    pub rules: Vec<CRule>,
    /// Counter of the policy (built-in chains).
    pub counter: usize,
    pub references: usize,
}

#[derive(Debug, Clone)]
pub(crate) struct CTable {
    pub chains: Vec<CChain>,
    /// Built-in chain index per hook.
    pub builtin: [Option<usize>; 5],
}

/// The compiled, immutable rule set; share it as `&Ruleset` across workers,
/// each with its own [`RuleState`].
#[derive(Debug, Clone)]
pub struct Ruleset {
    /// Per family (IPv4, IPv6), per table (`TableId` order).
    pub(crate) tables: [[Option<CTable>; 5]; 2],
    counters: usize,
    slot_init: Vec<SlotState>,
    stateful: bool,
}

fn fam_index(f: Family) -> usize {
    match f {
        Family::Ipv4 => 0,
        Family::Ipv6 => 1,
    }
}

/// Checks one table as the kernel does on commit. On failure: the error and
/// the line of the rule at fault.
pub(crate) fn check_table(t: &TableAst, _family: Family) -> Result<(), (Fail, Option<usize>)> {
    let index: FxHashMap<&str, usize> = t
        .chains
        .iter()
        .enumerate()
        .map(|(i, c)| (c.name.as_str(), i))
        .collect();
    let names: Vec<&str> = t
        .chains
        .iter()
        .filter(|c| c.hook.is_none())
        .map(|c| c.name.as_str())
        .collect();
    let mut edges: Vec<Vec<(usize, usize)>> = vec![Vec::new(); t.chains.len()];
    for (ci, c) in t.chains.iter().enumerate() {
        for r in &c.rules {
            if let Target::Jump(n) | Target::Goto(n) = &r.target {
                match index.get(n.as_str()) {
                    None => {
                        let mut f = Fail::new(RuleErrorKind::UnknownTarget(n.clone()));
                        if let Some(h) = targets::unknown_target_hint(n, &names) {
                            f = f.hint(h);
                        } else {
                            f = f.hint(format!(
                                "no target or chain of this name in the {} table",
                                t.id.name()
                            ));
                        }
                        return Err((f, Some(r.line)));
                    }
                    Some(&j) if t.chains[j].hook.is_some() => {
                        return Err((
                            Fail::invalid(format!("cannot jump to the built-in chain {n}"))
                                .hint("jump to a user-defined chain"),
                            Some(r.line),
                        ));
                    }
                    Some(&j) => edges[ci].push((j, r.line)),
                }
            }
        }
    }
    // Longest jump path from each built-in chain; a cycle or a path of
    // JUMP_STACK jumps is refused (the kernel answers EMLINK).
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done(usize),
    }
    fn depth(
        c: usize,
        edges: &[Vec<(usize, usize)>],
        marks: &mut [Mark],
        names: &[&str],
    ) -> Result<usize, (Fail, Option<usize>)> {
        match marks[c] {
            Mark::Done(d) => return Ok(d),
            Mark::OnPath => {
                return Err((Fail::new(RuleErrorKind::Loop(names[c].to_string())), None));
            }
            Mark::New => {}
        }
        marks[c] = Mark::OnPath;
        let mut best = 0;
        for &(j, line) in &edges[c] {
            let d = depth(j, edges, marks, names).map_err(|(f, l)| (f, l.or(Some(line))))?;
            best = best.max(d + 1);
        }
        marks[c] = Mark::Done(best);
        Ok(best)
    }
    let all_names: Vec<&str> = t.chains.iter().map(|c| c.name.as_str()).collect();
    let mut marks = vec![Mark::New; t.chains.len()];
    for (ci, c) in t.chains.iter().enumerate() {
        if c.hook.is_some() {
            let d = depth(ci, &edges, &mut marks, &all_names)?;
            if d >= JUMP_STACK {
                return Err((
                    Fail::new(RuleErrorKind::Loop(c.name.clone())).hint(format!(
                        "chains nest {d} jumps deep; the kernel allows {}",
                        JUMP_STACK - 1
                    )),
                    None,
                ));
            }
        }
    }
    Ok(())
}

impl Ruleset {
    /// Compiles a parsed rule file.
    pub fn compile(file: &RuleFile) -> Result<Ruleset, RuleError> {
        let mut rs = Ruleset {
            tables: Default::default(),
            counters: 0,
            slot_init: Vec::new(),
            stateful: false,
        };
        // Named tables shared between rules: recent by name (both
        // families), hashlimit by (name, family).
        let mut recent_slots: FxHashMap<String, usize> = FxHashMap::default();
        let mut hashlimit_slots: FxHashMap<(String, Family), usize> = FxHashMap::default();
        for family in [Family::Ipv4, Family::Ipv6] {
            for t in &file.family(family).tables {
                check_table(t, family).map_err(|(f, line)| RuleError {
                    file: file.file.clone(),
                    line: line.unwrap_or(0),
                    column: 0,
                    word: String::new(),
                    kind: f.kind,
                    hint: f.hint,
                    source_line: String::new(),
                })?;
                let index: FxHashMap<&str, usize> = t
                    .chains
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.name.as_str(), i))
                    .collect();
                let mut ct = CTable {
                    chains: Vec::with_capacity(t.chains.len()),
                    builtin: [None; 5],
                };
                for (ci, c) in t.chains.iter().enumerate() {
                    if let Some(h) = c.hook {
                        ct.builtin[h as usize] = Some(ci);
                    }
                    let mut rules = Vec::with_capacity(c.rules.len());
                    for r in &c.rules {
                        let mut matches = r.matches.clone();
                        for m in &mut matches {
                            rs.assign_slot(m, family, &mut recent_slots, &mut hashlimit_slots);
                        }
                        let target = match &r.target {
                            Target::None => CTarget::None,
                            Target::Accept => CTarget::Accept,
                            Target::Drop => CTarget::Drop,
                            Target::Return => CTarget::Return,
                            Target::Jump(n) => CTarget::Jump(index[n.as_str()]),
                            Target::Goto(n) => CTarget::Goto(index[n.as_str()]),
                            Target::Reject(w) => CTarget::Reject(*w),
                            Target::Log(l) => CTarget::Log {
                                prefix: l.prefix.clone(),
                                level: l.level,
                            },
                            Target::Nflog(n) => CTarget::Nflog {
                                prefix: n.prefix.clone(),
                                group: n.group,
                            },
                            Target::Mark { value, mask } => CTarget::Mark {
                                value: *value,
                                mask: *mask,
                            },
                            Target::Connmark(op) => CTarget::Connmark(*op),
                            Target::Ct(c) => CTarget::Ct {
                                notrack: c.notrack,
                                helper: c.helper.clone(),
                            },
                            Target::Nat { .. } => CTarget::Nat,
                        };
                        rules.push(CRule {
                            ip: r.ip.clone(),
                            matches,
                            target,
                            shown: r.target.clone(),
                            counter: rs.counters,
                            line: r.line,
                        });
                        rs.counters += 1;
                    }
                    ct.chains.push(CChain {
                        name: c.name.clone(),
                        hook: c.hook,
                        policy: c.policy,
                        rules,
                        counter: rs.counters,
                        references: 0,
                    });
                    rs.counters += 1;
                }
                for ci in 0..ct.chains.len() {
                    let refs = ct
                        .chains
                        .iter()
                        .flat_map(|c| &c.rules)
                        .filter(
                            |r| matches!(r.target, CTarget::Jump(j) | CTarget::Goto(j) if j == ci),
                        )
                        .count();
                    ct.chains[ci].references = refs;
                }
                rs.tables[fam_index(family)][t.id.index()] = Some(ct);
            }
        }
        Ok(rs)
    }

    fn assign_slot(
        &mut self,
        m: &mut Match,
        family: Family,
        recent: &mut FxHashMap<String, usize>,
        hashlimit: &mut FxHashMap<(String, Family), usize>,
    ) {
        let next = self.slot_init.len();
        match m {
            Match::Limit(l) => {
                l.slot = next;
                self.slot_init.push(SlotState::Limit(LimitState::default()));
            }
            Match::Statistic(s) => {
                s.slot = next;
                let init = s.initial_state();
                self.slot_init.push(init);
            }
            Match::Connlimit(c) => {
                c.slot = next;
                self.slot_init
                    .push(SlotState::Connlimit(Default::default()));
            }
            Match::Recent(r) => {
                let want = RecentTable::mask_for(r.hit_count);
                match recent.get(&r.name) {
                    Some(&s) => {
                        r.slot = s;
                        if let SlotState::Recent(t) = &mut self.slot_init[s] {
                            t.nstamps_mask = t.nstamps_mask.max(want);
                        }
                    }
                    None => {
                        r.slot = next;
                        recent.insert(r.name.clone(), next);
                        self.slot_init
                            .push(SlotState::Recent(RecentTable::new(want)));
                    }
                }
            }
            Match::Hashlimit(h) => match hashlimit.get(&(h.name.clone(), family)) {
                Some(&s) => h.slot = s,
                None => {
                    h.slot = next;
                    hashlimit.insert((h.name.clone(), family), next);
                    let st = super::matches::limit::HashlimitState::with_cfg(h.cfg.clone());
                    self.slot_init.push(SlotState::Hashlimit(st));
                }
            },
            _ => return,
        }
        self.stateful = true;
    }

    /// Fresh counters and stateful-match state for one worker.
    pub fn new_state(&self) -> RuleState {
        RuleState {
            counters: vec![(0, 0); self.counters],
            slots: self.slot_init.clone(),
        }
    }

    /// True if a rule uses limit, hashlimit, recent, connlimit or statistic:
    /// their state depends on every packet in order, so the caller must run
    /// the replay on one worker.
    pub fn needs_global_state(&self) -> bool {
        self.stateful
    }

    /// Whether the rule file defines this table for the family.
    pub fn has_table(&self, family: Family, table: TableId) -> bool {
        self.table(family, table).is_some()
    }

    pub(crate) fn table(&self, family: Family, table: TableId) -> Option<&CTable> {
        self.tables[fam_index(family)][table.index()].as_ref()
    }

    /// Number of rules per table of a family (for "nat table: N rules, not
    /// simulated" reports).
    pub fn rule_counts(&self, family: Family) -> Vec<(TableId, usize)> {
        TableId::ALL
            .iter()
            .filter_map(|&id| {
                self.table(family, id)
                    .map(|t| (id, t.chains.iter().map(|c| c.rules.len()).sum()))
            })
            .collect()
    }

    /// The rule file line of a rule (`None` for a policy or unknown rule).
    pub fn rule_line(&self, family: Family, rule: &super::RuleRef) -> Option<usize> {
        let t = self.table(family, rule.table)?;
        let c = t.chains.iter().find(|c| c.name == rule.chain)?;
        Some(c.rules.get(rule.num? as usize - 1)?.line)
    }
}
