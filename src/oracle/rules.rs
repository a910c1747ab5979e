//! Loading the user's iptables rules into the firewall namespace, unchanged.
//!
//! Two file formats are accepted: `iptables-save` output (fed to
//! `iptables-restore` / `ip6tables-restore`) and a script of `iptables …` /
//! `ip6tables …` command lines (each run with its own binary; `sudo`, paths,
//! `\` continuations and `#` comments are accepted). Shell constructs
//! (variables, pipes, loops) are not: a line that is not an iptables command
//! is an error, never silently skipped, because a dropped rule would make the
//! oracle lie.

use std::path::Path;

use super::OracleError;
use super::netns::exec_in;

/// One iptables invocation from a command-line rules file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RuleCommand {
    /// 1-based line where the command starts.
    pub line: usize,
    pub v6: bool,
    pub args: Vec<String>,
}

/// The parsed content of a rules file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RulesFile {
    Save(String),
    Commands(Vec<RuleCommand>),
}

/// Splits a shell-like command line into words: quotes, backslashes and a
/// `#` comment at a word start. `None` on an unterminated quote.
fn split_words(line: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        ch => cur.push(ch),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' if matches!(chars.peek(), Some('"' | '\\' | '$' | '`')) => {
                            cur.push(chars.next()?)
                        }
                        ch => cur.push(ch),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(ch) = chars.next() {
                    cur.push(ch);
                }
            }
            '#' if !in_word => break,
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Some(words)
}

/// Parses a rules file's text.
pub(crate) fn parse(text: &str, path: &Path) -> Result<RulesFile, OracleError> {
    let is_save = text.lines().any(|l| {
        let t = l.trim_start();
        t.starts_with('*') || t == "COMMIT"
    });
    if is_save {
        return Ok(RulesFile::Save(text.to_string()));
    }
    let bad = |line: usize, text: &str| OracleError::RuleLine {
        path: path.to_path_buf(),
        line,
        text: text.trim().to_string(),
    };
    let mut cmds = Vec::new();
    let mut pending = String::new();
    let mut start = 0;
    for (i, l) in text.lines().enumerate() {
        if pending.is_empty() {
            start = i + 1;
        }
        if let Some(body) = l.strip_suffix('\\') {
            pending.push_str(body);
            pending.push(' ');
            continue;
        }
        pending.push_str(l);
        let full = std::mem::take(&mut pending);
        let words = split_words(&full).ok_or_else(|| bad(start, &full))?;
        let mut w = words.as_slice();
        if w.first().is_some_and(|s| s == "sudo") {
            w = &w[1..];
        }
        let Some(cmd) = w.first() else {
            continue;
        };
        // A path or a bare name; `VAR=…` or `$VAR` are shell, not iptables.
        let base = cmd.rsplit('/').next().unwrap_or(cmd);
        let plain = !cmd.contains(['=', '$']) && (!cmd.contains('/') || cmd.starts_with('/'));
        let v6 = match base {
            _ if !plain => return Err(bad(start, &full)),
            "iptables" | "iptables-nft" | "iptables-legacy" => false,
            "ip6tables" | "ip6tables-nft" | "ip6tables-legacy" => true,
            _ => return Err(bad(start, &full)),
        };
        cmds.push(RuleCommand {
            line: start,
            v6,
            args: w[1..].to_vec(),
        });
    }
    if !pending.trim().is_empty() {
        return Err(bad(start, &pending));
    }
    Ok(RulesFile::Commands(cmds))
}

/// Loads a rules file into namespace `ns`. `v6` says which restore binary
/// takes a save-format file.
pub(crate) fn load(ns: &str, path: &Path, v6: bool) -> Result<(), OracleError> {
    let text = std::fs::read_to_string(path).map_err(|e| OracleError::Io {
        what: format!("reading {}", path.display()),
        source: e,
    })?;
    let fail = |msg: String| OracleError::Rules {
        path: path.to_path_buf(),
        msg,
    };
    match parse(&text, path)? {
        RulesFile::Save(t) => {
            let bin = if v6 {
                "ip6tables-restore"
            } else {
                "iptables-restore"
            };
            exec_in(ns, bin, &[], Some(t.as_bytes())).map_err(|e| match e {
                OracleError::Command { msg, .. } => fail(msg),
                e => e,
            })?;
        }
        RulesFile::Commands(cmds) => {
            for c in cmds {
                let bin = if c.v6 { "ip6tables" } else { "iptables" };
                let args: Vec<&str> = c.args.iter().map(String::as_str).collect();
                exec_in(ns, bin, &args, None).map_err(|e| match e {
                    OracleError::Command { msg, .. } => fail(format!("line {}: {msg}", c.line)),
                    e => e,
                })?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_like_a_shell() {
        assert_eq!(
            split_words(r#"iptables -A INPUT -m comment --comment "a b \"c\"" -j ACCEPT # tail"#)
                .unwrap(),
            vec![
                "iptables",
                "-A",
                "INPUT",
                "-m",
                "comment",
                "--comment",
                "a b \"c\"",
                "-j",
                "ACCEPT"
            ]
        );
        assert_eq!(split_words("a 'x y'z").unwrap(), vec!["a", "x yz"]);
        assert!(split_words("a 'x").is_none());
    }

    #[test]
    fn command_files() {
        let p = Path::new("r.sh");
        let f = parse(
            "# rules\nsudo /sbin/iptables -P FORWARD DROP\n\nip6tables -A INPUT \\\n  -j ACCEPT\n",
            p,
        )
        .unwrap();
        assert_eq!(
            f,
            RulesFile::Commands(vec![
                RuleCommand {
                    line: 2,
                    v6: false,
                    args: vec!["-P".into(), "FORWARD".into(), "DROP".into()]
                },
                RuleCommand {
                    line: 4,
                    v6: true,
                    args: vec!["-A".into(), "INPUT".into(), "-j".into(), "ACCEPT".into()]
                },
            ])
        );
        let e = parse("iptables -F\nIPT=/sbin/iptables\n", p).unwrap_err();
        assert!(matches!(e, OracleError::RuleLine { line: 2, .. }), "{e}");
        let e = parse("$IPT -F\n", p).unwrap_err();
        assert!(matches!(e, OracleError::RuleLine { line: 1, .. }), "{e}");
    }

    #[test]
    fn save_files_pass_unchanged() {
        let t = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT\nCOMMIT\n";
        assert_eq!(parse(t, Path::new("x")).unwrap(), RulesFile::Save(t.into()));
    }
}
