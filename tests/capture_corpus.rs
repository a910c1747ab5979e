//! Every capture in the shared corpus (`/work/shared/captures`, or
//! `$CTSIM_CAPTURES`) is read and decoded without a panic, and the reader's
//! packet counts match those the corpus's SOURCES.md lists (read there with
//! `capinfos`).
//!
//! The corpus lives outside the repository; when it is absent the test says
//! so on stderr and passes.

use ctsim::capture::{CaptureReader, Linktype};
use ctsim::conntrack::defrag::{Defrag, DefragTimeouts};
use ctsim::wire::{self, DecodeError};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod common;
use common::mutate::{Rng, mutate};

fn corpus_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("CTSIM_CAPTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/work/shared/captures"));
    dir.is_dir().then_some(dir)
}

fn captures(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("pcap" | "pcapng" | "cap")
            ) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// `file name → packet count` from the tables in SOURCES.md.
fn expected_counts(dir: &Path) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    let Ok(text) = std::fs::read_to_string(dir.join("SOURCES.md")) else {
        return m;
    };
    for line in text.lines() {
        let cols: Vec<&str> = line.split('|').map(str::trim).collect();
        // | `file` | origin | lic | bytes | packets | link type | format | description |
        if cols.len() > 6 && cols[1].starts_with('`') {
            let name = cols[1].trim_matches('`').to_string();
            if let Ok(n) = cols[5].replace(',', "").parse::<u64>() {
                m.insert(name, n);
            }
        }
    }
    m
}

#[test]
fn corpus_reads_and_decodes_without_panic() {
    let Some(dir) = corpus_dir() else {
        eprintln!(
            "SKIPPED: capture corpus not found (set CTSIM_CAPTURES or provide /work/shared/captures)"
        );
        return;
    };
    let expected = expected_counts(&dir);
    let files = captures(&dir);
    assert!(!files.is_empty(), "no captures under {}", dir.display());
    let mut total = 0u64;
    let mut mismatches = Vec::new();
    for path in &files {
        let mut reader = CaptureReader::open(path).unwrap_or_else(|e| panic!("{e}"));
        let mut n = 0u64;
        let mut by_error: BTreeMap<String, u64> = BTreeMap::new();
        loop {
            match reader.next_frame() {
                Ok(Some(frame)) => {
                    n += 1;
                    assert_eq!(frame.index, n);
                    match wire::decode(&frame) {
                        Ok(pkt) => {
                            // Exercise the lazy accessors too.
                            let _ = pkt.l4_checksum_ok();
                            if let Some(inner) = pkt.inner() {
                                let _ = inner;
                            }
                        }
                        Err(e) => {
                            let key = match &e {
                                DecodeError::UnsupportedLinktype { linktype } => {
                                    assert!(!linktype.is_supported());
                                    format!("unsupported {linktype}")
                                }
                                DecodeError::NotIp { .. } => "not IP".to_string(),
                                other => other.to_string(),
                            };
                            *by_error.entry(key).or_default() += 1;
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => panic!("{e}"),
            }
        }
        total += n;
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if let Some(&want) = expected.get(&name)
            && want != n
        {
            mismatches.push(format!("{name}: read {n}, SOURCES.md says {want}"));
        }
        let lt: Vec<String> = reader
            .interfaces()
            .iter()
            .map(|i| Linktype::to_string(&i.linktype))
            .collect();
        eprintln!("{name}: {n} packets, link {lt:?}, decode errors {by_error:?}");
    }
    eprintln!("{} files, {total} packets", files.len());
    assert!(mismatches.is_empty(), "{mismatches:#?}");
}

/// Feeds one byte buffer through reader, decoder, ICMP inner parsing,
/// checksum and defragmenter; returns how many frames came out. Must never
/// panic, whatever the bytes.
fn exercise(bytes: &[u8]) -> usize {
    let Ok(mut r) = CaptureReader::new(bytes, "mutant") else {
        return 0;
    };
    let mut defrag = Defrag::new();
    let mut n = 0;
    // Resumable errors may repeat; bound the loop by the input size.
    for _ in 0..bytes.len() + 2 {
        match r.next_frame() {
            Ok(Some(f)) => {
                n += 1;
                if let Ok(p) = wire::decode(&f) {
                    let _ = p.l4_checksum_ok();
                    let _ = p.inner();
                    if let ctsim::conntrack::defrag::DefragOutcome::Complete(c) =
                        defrag.push(&p, f.index, f.ts, DefragTimeouts::default())
                        && let Ok(q) = wire::decode_ip(&c.datagram, c.link)
                    {
                        let _ = q.l4_checksum_ok();
                    }
                }
            }
            Ok(None) => break,
            Err(e) if e.is_resumable() => continue,
            Err(_) => break,
        }
    }
    n
}

#[test]
fn ten_thousand_mutated_captures_never_panic() {
    let started = std::time::Instant::now();
    let mut seeds: Vec<Vec<u8>> = Vec::new();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/malformed");
    for e in std::fs::read_dir(&fixtures).unwrap() {
        seeds.push(std::fs::read(e.unwrap().path()).unwrap());
    }
    if let Some(dir) = corpus_dir() {
        for name in [
            "ipv6/sanders_ipv6-fragments.pcapng",
            "ipv6/zeek_ipv6-fragmented-dns.pcap",
            "icmp/zeek_icmp6-toobig-crafted.pcap",
            "icmp/sanders_ppa1e-destunreachable.pcap",
            "linktypes/zeek_vlan-qinqinq.pcap",
            "linktypes/pcapparser_test016-be.pcapng",
            "linktypes/suricata_sll2-http.pcap",
            "tcp/sanders_tcp-handshake.pcapng",
        ] {
            if let Ok(b) = std::fs::read(dir.join(name)) {
                seeds.push(b);
            }
        }
    } else {
        eprintln!("corpus not found: mutating only tests/data/malformed");
    }
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut frames = 0;
    for i in 0..10_000 {
        let seed = &seeds[i % seeds.len()];
        frames += exercise(&mutate(seed, &mut rng));
    }
    assert!(frames > 0);
    eprintln!("10000 mutants, {frames} frames, {:?}", started.elapsed());
}
