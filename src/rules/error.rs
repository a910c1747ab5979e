//! Errors of the rules layer: where in the rule file, what was wrong, and a
//! hint in the words a user of `iptables` would understand.
//!
//! Every error carries the file, the 1-based line and column, the offending
//! word and the whole source line, so the binary can print it the way rustc
//! points at code. The kinds mirror the reasons `iptables-restore` gives for
//! refusing a file; ctsim refuses exactly what it refuses, plus the few things
//! ctsim cannot simulate (those say "unsupported").

use std::fmt;
use std::path::PathBuf;

/// What was wrong. `Display` gives one sentence; [`RuleError`] adds the place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RuleErrorKind {
    /// `-j NAME` where NAME is neither a built-in target, a supported
    /// extension target nor a chain of this table.
    #[error("unknown target {0}")]
    UnknownTarget(String),
    /// `-A`/`-I`/`-P`/`-F`… on a chain that does not exist, or `-j`/`-g` to one.
    #[error("chain {0} does not exist")]
    UnknownChain(String),
    /// `-m NAME` for a match ctsim does not know (iptables: "Couldn't load match").
    #[error("unsupported match {0}")]
    UnknownMatch(String),
    /// A target iptables knows but ctsim does not simulate.
    #[error("unsupported target {0}")]
    UnsupportedTarget(String),
    /// An option of a known match or target that ctsim does not simulate.
    #[error("unsupported option {0}")]
    UnsupportedOption(String),
    /// An option no loaded match, target or iptables itself knows.
    #[error("unknown option {0}")]
    UnknownOption(String),
    /// An abbreviated long option that fits more than one option.
    #[error("option {0} is ambiguous")]
    AmbiguousOption(String),
    /// `–dport` / `—dport`: a word processor replaced `--` with a dash.
    #[error("typographic dash in {0}")]
    TypographicDash(String),
    /// An option given without its argument.
    #[error("{0} needs an argument")]
    MissingArgument(String),
    /// An argument that does not parse.
    #[error("bad value {value:?} for {option}: expected {expected}")]
    BadValue {
        option: String,
        value: String,
        expected: &'static str,
    },
    /// A word that is not an option where an option was expected.
    #[error("bad argument {0}")]
    BadArgument(String),
    /// The same option twice in one rule, or two of a kind that allows one.
    #[error("{0} may only be given once")]
    Duplicate(String),
    /// Options that exclude each other, or a missing required option.
    #[error("{0}")]
    Invalid(String),
    /// A port option or match used without the protocol it needs.
    #[error("{option} needs {needs}")]
    NeedsProtocol { option: String, needs: &'static str },
    /// A target or match used in a table or chain where the kernel refuses it.
    #[error("{what} is not allowed in {place}")]
    NotAllowedHere { what: String, place: String },
    /// A chain jumps back to itself, or chains nest deeper than the kernel's
    /// jump stack (the kernel answers ELOOP/EMLINK, "Too many links").
    #[error("jump loop or nesting too deep through chain {0}")]
    Loop(String),
    /// The file ended inside a table without COMMIT.
    #[error("COMMIT expected before the end of the file (table {0} is still open)")]
    MissingCommit(String),
    /// A line iptables-restore does not accept where it stands.
    #[error("unexpected line")]
    UnexpectedLine,
    /// `*name` with a table name iptables does not have.
    #[error("unknown table {0}")]
    UnknownTable(String),
    /// A chain name that iptables refuses (too long, starts with '-', …).
    #[error("invalid chain name {0}")]
    BadChainName(String),
    /// A line of a shell script that is not an iptables command ctsim can run.
    #[error("unsupported shell construct")]
    ShellConstruct,
    /// A command (`-D`, `-I n`, `-X`) that refers to something that is not there.
    #[error("{0}")]
    CommandFailed(String),
}

/// A rule file could not be read as iptables would read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub file: PathBuf,
    /// 1-based line number in the file (the first line of a `\` continuation).
    pub line: usize,
    /// 1-based column of the offending word (in characters), 0 if none.
    pub column: usize,
    /// The offending word, empty if none.
    pub word: String,
    pub kind: RuleErrorKind,
    /// A suggestion: "did you mean ACCEPT?", "write --dport".
    pub hint: Option<String>,
    /// The source line, for display.
    pub source_line: String,
}

impl std::error::Error for RuleError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.kind)
    }
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)?;
        if self.column > 0 {
            write!(f, ":{}", self.column)?;
        }
        write!(f, ": {}", self.kind)?;
        if !self.source_line.is_empty() {
            write!(f, "\n    {}", self.source_line.trim_end())?;
            if self.column > 0 {
                let width = self.word.chars().count().max(1);
                write!(
                    f,
                    "\n    {}{}",
                    " ".repeat(self.column - 1),
                    "^".repeat(width)
                )?;
            }
        }
        if let Some(h) = &self.hint {
            write!(f, "\n    hint: {h}")?;
        }
        Ok(())
    }
}

/// An error before its place in the file is known: the kind, the word it is
/// about (used to find the column) and a hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fail {
    pub kind: RuleErrorKind,
    pub hint: Option<String>,
}

impl Fail {
    pub(crate) fn new(kind: RuleErrorKind) -> Self {
        Fail { kind, hint: None }
    }
    pub(crate) fn hint(mut self, h: impl Into<String>) -> Self {
        self.hint = Some(h.into());
        self
    }
    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Fail::new(RuleErrorKind::Invalid(msg.into()))
    }
    pub(crate) fn bad(option: &str, value: &str, expected: &'static str) -> Self {
        Fail::new(RuleErrorKind::BadValue {
            option: option.to_string(),
            value: value.to_string(),
            expected,
        })
    }
}

impl From<RuleErrorKind> for Fail {
    fn from(kind: RuleErrorKind) -> Self {
        Fail::new(kind)
    }
}

/// The closest candidate to `word` by edit distance, if it is close enough
/// to be a plausible typo (used for "did you mean …?").
pub(crate) fn closest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let w = word.to_ascii_uppercase();
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = edit_distance(&w, &c.to_ascii_uppercase());
        if best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    let (d, c) = best?;
    let limit = (word.chars().count() / 2).max(2);
    (d <= limit).then_some(c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_suggests_accept_for_allow() {
        let c = closest("ALLOW", ["ACCEPT", "DROP", "REJECT", "RETURN", "LOG"]);
        // ALLOW→ACCEPT is 4 edits; too far. The hint table in targets.rs
        // handles well-known synonyms; edit distance handles typos.
        assert_eq!(c, None);
        assert_eq!(closest("ACCPET", ["ACCEPT", "DROP"]), Some("ACCEPT"));
        assert_eq!(closest("DORP", ["ACCEPT", "DROP"]), Some("DROP"));
    }

    #[test]
    fn display_points_at_the_word() {
        let e = RuleError {
            file: PathBuf::from("r.rules"),
            line: 3,
            column: 13,
            word: "ALLOW".into(),
            kind: RuleErrorKind::UnknownTarget("ALLOW".into()),
            hint: Some("did you mean ACCEPT?".into()),
            source_line: "-A INPUT -j ALLOW".into(),
        };
        let s = e.to_string();
        assert!(s.starts_with("r.rules:3:13: unknown target ALLOW"), "{s}");
        assert!(s.contains("\n                ^^^^^"), "{s}");
        assert!(s.ends_with("hint: did you mean ACCEPT?"), "{s}");
    }
}
