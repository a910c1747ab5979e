//! The command line on bad input: every broken capture and rule file gets a
//! clear error naming the file, the place and what was expected, a non-zero
//! exit code, and no panic; rows before a damaged record are still written.

use std::path::PathBuf;
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn ctsim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ctsim"))
        .current_dir(root())
        .args(args)
        .output()
        .expect("run ctsim")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_fails_with(args: &[&str], needles: &[&str]) -> Output {
    let o = ctsim(args);
    let err = stderr(&o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{args:?} should fail with exit 1; stderr:\n{err}"
    );
    assert!(!err.contains("panicked"), "{args:?} panicked:\n{err}");
    for n in needles {
        assert!(err.contains(n), "{args:?}: stderr lacks {n:?}:\n{err}");
    }
    o
}

#[test]
fn damaged_captures_are_clear_errors() {
    let rules = "rulesets/accept-all.rules";
    for (file, needles) in [
        (
            "tests/data/malformed/bad-magic.pcap",
            &["bad-magic.pcap", "not a pcap or pcapng file"][..],
        ),
        (
            "tests/data/malformed/short-header.pcap",
            &[
                "short-header.pcap",
                "file header",
                "expected 24 bytes, found 10",
            ],
        ),
        (
            "tests/data/malformed/absurd-caplen.pcap",
            &["record 2", "byte offset 100", "2147483647"],
        ),
        (
            "tests/data/malformed/epb-caplen-exceeds-block.pcapng",
            &["record 1", "claims 500 captured bytes"],
        ),
        (
            "tests/data/malformed/unknown-interface.pcapng",
            &["names interface 3"],
        ),
        (
            "tests/data/malformed/truncated-last-record.pcap",
            &["record 3", "expected 76 bytes, found 41"],
        ),
    ] {
        assert_fails_with(&["replay", file, "--rules", rules], needles);
    }
}

#[test]
fn records_before_a_truncated_one_are_not_lost() {
    let o = assert_fails_with(
        &[
            "replay",
            "tests/data/malformed/truncated-last-record.pcap",
            "--rules",
            "rulesets/accept-all.rules",
        ],
        &["capture ended inside record 3"],
    );
    let csv = String::from_utf8_lossy(&o.stdout);
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(
        rows.len(),
        2,
        "both complete records must be written:\n{csv}"
    );
    assert!(rows[0].starts_with("1,") && rows[1].starts_with("2,"));
}

#[test]
fn unsupported_link_type_names_it() {
    let shared = root().join("../shared/captures/linktypes/tcpdump_nflog-dns.pcap");
    if !shared.exists() {
        eprintln!("!!! SKIPPED: ../shared/captures is absent !!!");
        return;
    }
    assert_fails_with(
        &[
            "replay",
            shared.to_str().unwrap(),
            "--rules",
            "rulesets/accept-all.rules",
        ],
        &["link type 239 (NFLOG) is not supported", "1 (ETHERNET)"],
    );
}

#[test]
fn textbook_mistakes_are_rejected_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[&str]); 4] = [
        (
            "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp --dport 22 -j ALLOW\nCOMMIT\n",
            &[":3:", "unknown target ALLOW", "did you mean ACCEPT?"],
        ),
        (
            "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp \u{2013}dport 22 -j ACCEPT\nCOMMIT\n",
            &[":3:", "typographic dash", "--dport"],
        ),
        (
            "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -d --dport 22 -j ACCEPT\nCOMMIT\n",
            &[":3:", "-d needs an address"],
        ),
        (
            "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT\n",
            &["COMMIT"],
        ),
    ];
    for (i, (text, needles)) in cases.iter().enumerate() {
        let p = dir.path().join(format!("bad{i}.rules"));
        std::fs::write(&p, text).unwrap();
        let p = p.to_str().unwrap();
        assert_fails_with(&["replay", "captures/ssh.pcap", "--rules", p], needles);
        assert_fails_with(&["check-rules", p], needles);
    }
    // The repository's own file of textbook mistakes.
    assert_fails_with(
        &["check-rules", "rulesets/textbook-mistakes.rules"],
        &["textbook-mistakes.rules:", "did you mean ACCEPT?"],
    );
}

#[test]
fn bad_options_are_clear_errors() {
    assert_fails_with(&["replay", "captures/ssh.pcap"], &["no rules given"]);
    assert_fails_with(
        &[
            "replay",
            "captures/ssh.pcap",
            "--rules",
            "rulesets/ssh.rules",
            "--sysctl",
            "nf_conntrack_bogus=1",
        ],
        &["unknown sysctl `nf_conntrack_bogus`"],
    );
    assert_fails_with(
        &[
            "replay",
            "captures/ssh.pcap",
            "--rules",
            "rulesets/ssh.rules",
            "--iface",
            "lan0",
        ],
        &["expected NAME=CIDR"],
    );
    assert_fails_with(
        &[
            "replay",
            "captures/ssh.pcap",
            "--rules",
            "rulesets/ssh.rules",
            "--local",
            "10.0.1",
        ],
        &["not an IP address"],
    );
    let o = assert_fails_with(
        &["replay", "no-such.pcap", "--rules", "rulesets/ssh.rules"],
        &["no-such.pcap"],
    );
    assert!(
        o.stdout.is_empty(),
        "nothing is written for an unreadable capture"
    );
}

#[test]
fn replay_writes_the_documented_columns() {
    let o = ctsim(&[
        "replay",
        "captures/ssh.pcap",
        "--rules",
        "rulesets/ssh.rules",
        "--local",
        "10.0.1.1",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let csv = String::from_utf8_lossy(&o.stdout);
    assert!(csv.starts_with(
        "packet,time,proto,src,sport,dst,dport,flags,length,chains,ctstate,ctdir,ctstatus,tcp_state,verdict,rule,reason"
    ));
    assert_eq!(csv.lines().count(), 1 + 49);
}

/// Without `--iface`, `-i` matches the pcapng interface the packet was
/// captured on (`if_name`); `--iface` overrides it.
#[test]
fn pcapng_interface_names_feed_the_in_interface() {
    let cap = root().join("../shared/captures/linktypes/zeek_pcapng-multi-interface.pcapng");
    if !cap.exists() {
        eprintln!("!!! SKIPPED: ../shared/captures is absent !!!");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("i.rules");
    std::fs::write(
        &rules,
        "*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -i eth0 -j DROP\nCOMMIT\n",
    )
    .unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "replay",
            cap.to_str().unwrap(),
            "--rules",
            rules.to_str().unwrap(),
            "--quiet",
        ];
        args.extend_from_slice(extra);
        let o = ctsim(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        String::from_utf8(o.stdout).unwrap()
    };
    let by_name = run(&[]);
    let first: Vec<&str> = by_name.lines().nth(1).unwrap().split(',').collect();
    assert_eq!(
        (first[14], first[15]),
        ("DROP", "filter:FORWARD:1"),
        "packet 1 was captured on eth0"
    );
    let overridden = run(&["--iface", "wan0=0.0.0.0/0"]);
    let first: Vec<&str> = overridden.lines().nth(1).unwrap().split(',').collect();
    assert_eq!(
        first[14], "ACCEPT",
        "--iface puts every address behind wan0"
    );
}

/// `--trace` agrees with the per-packet CSV (whose tcp_state and ctstatus
/// columns the golden suite checks against the kernel): every NEW/UPDATE
/// event carries the state and status the row of its packet shows, and the
/// ftp helper's expectation is announced, then used by the data connection.
#[test]
fn trace_events_match_the_rows_and_show_expectations() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace.csv");
    let o = ctsim(&[
        "replay",
        "captures/ftp-passive.pcap",
        "--rules",
        "rulesets/ftp.rules",
        "--local",
        "10.0.1.1",
        "--iface",
        "lan0=10.0.1.0/24",
        "--iface",
        "wan0=10.0.2.0/24",
        "--quiet",
        "--trace",
        trace.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: Vec<csv::StringRecord> = csv::Reader::from_reader(&o.stdout[..])
        .records()
        .map(|r| r.unwrap())
        .collect();
    let events: Vec<csv::StringRecord> = csv::Reader::from_path(&trace)
        .unwrap()
        .records()
        .map(|r| r.unwrap())
        .collect();
    let row_of = |p: &str| rows.iter().find(|r| &r[0] == p).expect("row for event");
    let mut checked = 0;
    for e in &events {
        if matches!(&e[2], "NEW" | "UPDATE") {
            let r = row_of(&e[0]);
            assert_eq!(&e[7], &r[13], "tcp_state of event {e:?} vs row {r:?}");
            assert_eq!(&e[8], &r[12], "status of event {e:?} vs row {r:?}");
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} events");
    let kinds: Vec<(&str, &str)> = events.iter().map(|e| (&e[0], &e[2])).collect();
    let exp = kinds
        .iter()
        .position(|k| k.1 == "EXP_NEW")
        .expect("expectation created");
    let matched = kinds
        .iter()
        .position(|k| k.1 == "EXP_MATCH")
        .expect("expectation used");
    assert!(exp < matched);
    let data_syn = kinds[matched].0;
    assert_eq!(
        &row_of(data_syn)[10],
        "RELATED",
        "the data connection's first packet is RELATED"
    );
}

/// The CLI's sink takes rows formatted by the workers; the bytes must be the
/// same whatever the number of workers (`--jobs 1` formats on one thread).
#[test]
fn cli_output_is_identical_for_every_jobs_value() {
    let dir = tempfile::tempdir().unwrap();
    for (cap, rules) in [
        ("captures/ftp-passive.pcap", "rulesets/ftp.rules"),
        (
            "captures/crafted/ipv4_fragments.pcap",
            "rulesets/accept-all.rules",
        ),
        (
            "captures/crafted/tcp_rst_variants.pcap",
            "rulesets/stateful-default-drop.rules",
        ),
        (
            "captures/traceroute.pcap",
            "rulesets/forward-established-related.rules",
        ),
    ] {
        let mut outs = Vec::new();
        for jobs in ["1", "2", "4"] {
            let out = dir.path().join(format!("out{jobs}.csv"));
            let trace = dir.path().join(format!("trace{jobs}.csv"));
            let o = ctsim(&[
                "replay",
                cap,
                "--rules",
                rules,
                "--quiet",
                "--jobs",
                jobs,
                "--out",
                out.to_str().unwrap(),
                "--trace",
                trace.to_str().unwrap(),
            ]);
            assert!(o.status.success(), "{}", stderr(&o));
            outs.push((std::fs::read(&out).unwrap(), std::fs::read(&trace).unwrap()));
        }
        assert!(outs[0].0.len() > 100);
        assert!(
            outs.iter().all(|o| *o == outs[0]),
            "{cap}: output differs between --jobs values"
        );
    }
}

/// A pcapng whose second section gives interface 0 another name: each frame
/// keeps the name of its own section, also when both sections' frames are
/// read into one batch, for one worker and for several.
#[test]
fn interface_names_follow_their_section_within_a_batch() {
    fn block(kind: u32, body: &[u8]) -> Vec<u8> {
        let pad = (4 - body.len() % 4) % 4;
        let len = (12 + body.len() + pad) as u32;
        let mut b = Vec::new();
        b.extend_from_slice(&kind.to_le_bytes());
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(body);
        b.extend(std::iter::repeat_n(0u8, pad));
        b.extend_from_slice(&len.to_le_bytes());
        b
    }
    fn shb() -> Vec<u8> {
        let mut body = 0x1a2b_3c4du32.to_le_bytes().to_vec();
        body.extend_from_slice(&[1, 0, 0, 0]);
        body.extend_from_slice(&u64::MAX.to_le_bytes());
        block(0x0a0d_0d0a, &body)
    }
    fn idb(name: &str) -> Vec<u8> {
        let mut body = vec![1, 0, 0, 0, 0, 0, 0, 0]; // Ethernet, snaplen 0
        body.extend_from_slice(&2u16.to_le_bytes()); // if_name
        body.extend_from_slice(&(name.len() as u16).to_le_bytes());
        body.extend_from_slice(name.as_bytes());
        body.extend(std::iter::repeat_n(0u8, (4 - name.len() % 4) % 4));
        body.extend_from_slice(&[0, 0, 0, 0]); // opt_endofopt
        block(1, &body)
    }
    fn epb(ts_us: u64, sport: u16) -> Vec<u8> {
        let mut ip = vec![
            0x45, 0, 0, 28, 0, 1, 0, 0, 64, 17, 0, 0, 192, 0, 2, 1, 198, 51, 100, 1,
        ];
        let mut sum: u32 = ip
            .chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
            .sum();
        sum = (sum & 0xffff) + (sum >> 16);
        sum = (sum & 0xffff) + (sum >> 16);
        ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
        ip.extend_from_slice(&sport.to_be_bytes());
        ip.extend_from_slice(&[0, 53, 0, 8, 0, 0]); // dport 53, len 8, no checksum
        let mut frame = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00];
        frame.extend_from_slice(&ip);
        let mut body = 0u32.to_le_bytes().to_vec();
        body.extend_from_slice(&((ts_us >> 32) as u32).to_le_bytes());
        body.extend_from_slice(&(ts_us as u32).to_le_bytes());
        body.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        body.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        body.extend_from_slice(&frame);
        body.extend(std::iter::repeat_n(0u8, (4 - frame.len() % 4) % 4));
        block(6, &body)
    }
    let dir = tempfile::tempdir().unwrap();
    let cap = dir.path().join("two-sections.pcapng");
    let mut bytes = shb();
    bytes.extend(idb("lanA"));
    bytes.extend(epb(1_700_000_000_000_000, 1000));
    bytes.extend(shb());
    bytes.extend(idb("lanB"));
    bytes.extend(epb(1_700_000_000_100_000, 1001));
    bytes.extend(epb(1_700_000_000_200_000, 1002));
    std::fs::write(&cap, bytes).unwrap();
    let rules = dir.path().join("i.rules");
    std::fs::write(
        &rules,
        "*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -i lanA -j DROP\nCOMMIT\n",
    )
    .unwrap();
    for jobs in ["1", "2"] {
        let o = ctsim(&[
            "replay",
            cap.to_str().unwrap(),
            "--rules",
            rules.to_str().unwrap(),
            "--quiet",
            "--jobs",
            jobs,
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let out = String::from_utf8(o.stdout).unwrap();
        let verdicts: Vec<&str> = out
            .lines()
            .skip(1)
            .map(|l| l.split(',').nth(14).unwrap())
            .collect();
        assert_eq!(
            verdicts,
            ["DROP", "ACCEPT", "ACCEPT"],
            "--jobs {jobs}\n{out}"
        );
    }
}
