//! Shared by the benches: a generated mixed capture held in memory.

use ctsim::capture::{CaptureReader, Frame, Linktype};
use ctsim::rules::{Ruleset, parse_rules};
use ctsim::synth::bench::{BenchConfig, generate};
use ctsim::time::Timestamp;
use ctsim::wire::Family;
use std::path::{Path, PathBuf};

/// Frames of a capture, copied out of the reader.
pub struct Frames {
    pub meta: Vec<(u64, Timestamp, Linktype, u32, std::ops::Range<usize>)>,
    pub data: Vec<u8>,
    pub file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Frames {
    pub fn iter(&self) -> impl Iterator<Item = Frame<'_>> {
        self.meta.iter().map(|(index, ts, lt, orig, r)| Frame {
            interface_name: None,
            index: *index,
            ts: *ts,
            linktype: *lt,
            orig_len: *orig,
            interface: 0,
            data: &self.data[r.clone()],
        })
    }
}

/// `packets` packets of `ctsim-gen bench` traffic (seed 1), on disk and in memory.
pub fn frames(packets: u64, flows: usize) -> Frames {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bench.pcap");
    let cfg = BenchConfig {
        packets,
        flows,
        seed: 1,
        ..BenchConfig::default()
    };
    let out = std::io::BufWriter::new(std::fs::File::create(&file).expect("create"));
    generate(&cfg, out).expect("generate");
    let mut r = CaptureReader::open(&file).expect("open");
    let (mut meta, mut data) = (Vec::new(), Vec::new());
    while let Some(f) = r.next_frame().expect("read") {
        let start = data.len();
        data.extend_from_slice(f.data);
        meta.push((f.index, f.ts, f.linktype, f.orig_len, start..data.len()));
    }
    Frames {
        meta,
        data,
        file,
        _dir: dir,
    }
}

/// The 20-rule stateful benchmark ruleset.
pub fn ruleset() -> Ruleset {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/stateful-20.rules");
    let text = std::fs::read_to_string(&p).expect("read ruleset");
    Ruleset::compile(&parse_rules(&text, &p, Family::Ipv4).expect("parse")).expect("compile")
}
