//! The two ways of reading a capture — mapped and parsed in place, or
//! streamed through a buffer — give the same frames (index, time, link type,
//! lengths, interface and its name, bytes), the same errors (message,
//! resumability) and the same offsets, record after record: over every
//! capture in `captures/`, `captures/crafted/`, `tests/data/malformed/` and
//! the shared corpus (`/work/shared/captures` or `$CTSIM_CAPTURES`; skipped,
//! and said so, when absent), over thousands of damaged mutants of them,
//! and through a stream that hands out a few bytes per read.

use ctsim::capture::CaptureReader;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

mod common;
use common::mutate::{Rng, mutate};

/// One step of a reader: a frame, an error, or the end.
#[derive(Debug, PartialEq)]
enum Step {
    Frame {
        index: u64,
        ts: u64,
        linktype: u16,
        orig_len: u32,
        interface: u32,
        interface_name: Option<String>,
        data: Vec<u8>,
    },
    Error {
        message: String,
        resumable: bool,
    },
    End,
    /// What the reader knows at the end: interfaces and format.
    Summary(String),
}

/// Everything a reader says about a capture, in order, with the offset
/// [`CaptureReader::offset`] gives after each step.
fn transcript<R: Read>(
    opened: Result<CaptureReader<R>, ctsim::capture::CaptureError>,
) -> Vec<(Step, u64)> {
    let mut r = match opened {
        Ok(r) => r,
        Err(e) => {
            let message = format!("open: {e}");
            let resumable = e.is_resumable();
            return vec![(Step::Error { message, resumable }, 0)];
        }
    };
    let mut out = Vec::new();
    loop {
        let step = match r.next_frame() {
            Ok(Some(f)) => Step::Frame {
                index: f.index,
                ts: f.ts.0,
                linktype: f.linktype.0,
                orig_len: f.orig_len,
                interface: f.interface,
                interface_name: f.interface_name.map(str::to_string),
                data: f.data.to_vec(),
            },
            Ok(None) => Step::End,
            Err(e) => Step::Error {
                message: e.to_string(),
                resumable: e.is_resumable(),
            },
        };
        // A resumable error skips a record of at least 12 bytes, so the
        // loop ends.
        let stop = match &step {
            Step::End => true,
            Step::Error { resumable, .. } => !resumable,
            _ => false,
        };
        out.push((step, r.offset()));
        if stop {
            break;
        }
    }
    // A reader that stopped stays stopped.
    assert!(
        matches!(r.next_frame(), Ok(None)),
        "a frame or error after the end"
    );
    let ifaces: Vec<String> = r.interfaces().iter().map(|i| format!("{i:?}")).collect();
    out.push((Step::Summary(format!("{ifaces:?} {}", r.format())), 0));
    out
}

fn count(t: &[(Step, u64)], f: impl Fn(&Step) -> bool) -> usize {
    t.iter().filter(|(s, _)| f(s)).count()
}

fn first_difference(a: &[(Step, u64)], b: &[(Step, u64)]) -> Option<String> {
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        if x != y {
            return Some(format!("step {i}:\n  mapped:    {x:?}\n  streamed:  {y:?}"));
        }
    }
    (a.len() != b.len()).then(|| format!("{} steps mapped, {} streamed", a.len(), b.len()))
}

/// Hands out at most `n` bytes per read.
struct Trickle<'a> {
    bytes: &'a [u8],
    n: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let k = buf.len().min(self.n).min(self.bytes.len());
        buf[..k].copy_from_slice(&self.bytes[..k]);
        self.bytes = &self.bytes[k..];
        Ok(k)
    }
}

fn files_under(dir: &Path, recursive: bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                if recursive {
                    stack.push(p);
                }
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

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn shared_corpus() -> Option<PathBuf> {
    let dir = std::env::var_os("CTSIM_CAPTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/work/shared/captures"));
    dir.is_dir().then_some(dir)
}

fn all_captures() -> Vec<PathBuf> {
    let mut files = files_under(&repo().join("captures"), true);
    files.extend(files_under(&repo().join("tests/data/malformed"), false));
    match shared_corpus() {
        Some(d) => files.extend(files_under(&d, true)),
        None => eprintln!(
            "SKIPPED the shared corpus: not found (set CTSIM_CAPTURES or provide /work/shared/captures)"
        ),
    }
    files
}

#[test]
fn every_capture_reads_the_same_mapped_and_streamed() {
    let files = all_captures();
    assert!(files.len() > 40, "too few captures: {}", files.len());
    let mut frames = 0usize;
    let mut errors = 0usize;
    for path in &files {
        let mapped = CaptureReader::open(path);
        if let Ok(r) = &mapped {
            assert!(
                r.bytes().is_some_and(|b| b.is_map()),
                "{} was not mapped",
                path.display()
            );
            assert_eq!(r.size(), Some(std::fs::metadata(path).unwrap().len()));
        }
        let a = transcript(mapped);
        let b = transcript(CaptureReader::open_streaming(path));
        if let Some(d) = first_difference(&a, &b) {
            panic!("{}: {d}", path.display());
        }
        frames += count(&a, |s| matches!(s, Step::Frame { .. }));
        errors += count(&a, |s| matches!(s, Step::Error { .. }));
    }
    eprintln!(
        "{} captures, {frames} frames, {errors} errors, identical both ways",
        files.len()
    );
    assert!(frames > 10_000);
    assert!(errors > 0, "the malformed captures gave no error");
}

#[test]
fn a_stream_of_tiny_reads_reads_the_same() {
    let mut files = files_under(&repo().join("captures"), true);
    files.extend(files_under(&repo().join("tests/data/malformed"), false));
    for path in &files {
        let bytes = std::fs::read(path).unwrap();
        let name = path.display().to_string();
        let a = transcript(CaptureReader::from_bytes(bytes.clone(), name.as_str()));
        for n in [1, 7, 4096] {
            let b = transcript(CaptureReader::new(
                Trickle { bytes: &bytes, n },
                name.as_str(),
            ));
            if let Some(d) = first_difference(&a, &b) {
                panic!("{name}, {n}-byte reads: {d}");
            }
        }
    }
}

#[test]
fn empty_and_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pcap");
    std::fs::write(&empty, b"").unwrap();
    for r in [
        CaptureReader::open(&empty),
        CaptureReader::open_streaming(&empty),
    ] {
        let e = r.err().unwrap().to_string();
        assert!(
            e.ends_with("not a pcap or pcapng file (it starts with nothing: the file is empty)"),
            "{e}"
        );
    }
    let e = CaptureReader::from_bytes(Vec::new(), "mem").err().unwrap();
    assert_eq!(
        e.to_string(),
        "mem: not a pcap or pcapng file (it starts with nothing: the file is empty)"
    );
    let missing = dir.path().join("missing.pcap");
    let e = CaptureReader::open(&missing).err().unwrap().to_string();
    assert!(
        e.contains("missing.pcap") && e.contains("No such file"),
        "{e}"
    );
}

#[test]
fn a_pipe_is_streamed() {
    // `/dev/stdin` and FIFOs cannot be mapped; they must still be read.
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let src = repo().join("captures/http.pcap");
    let bytes = std::fs::read(&src).unwrap();
    let writer = {
        let (fifo, bytes) = (fifo.clone(), bytes.clone());
        std::thread::spawn(move || std::fs::write(fifo, bytes).unwrap())
    };
    let r = CaptureReader::open(&fifo).unwrap();
    assert!(r.bytes().is_none(), "a FIFO cannot be mapped");
    assert_eq!(r.size(), None);
    let a = transcript(Ok(r));
    writer.join().unwrap();
    let b = transcript(CaptureReader::from_bytes(bytes, fifo.display().to_string()));
    if let Some(d) = first_difference(&b, &a) {
        panic!("fifo: {d}");
    }
}

#[test]
fn damaged_captures_read_the_same_and_never_panic() {
    let mut seeds: Vec<Vec<u8>> = Vec::new();
    for p in files_under(&repo().join("tests/data/malformed"), false) {
        seeds.push(std::fs::read(p).unwrap());
    }
    for name in [
        "captures/ftp-active.pcap",
        "captures/crafted/ipv6_fragments.pcap",
    ] {
        seeds.push(std::fs::read(repo().join(name)).unwrap());
    }
    if let Some(dir) = shared_corpus() {
        // Small pcapng files of several kinds: sections, both byte orders,
        // interface options, name resolution and statistics blocks.
        for p in files_under(&dir, true) {
            let len = std::fs::metadata(&p).unwrap().len();
            if p.extension().is_some_and(|e| e == "pcapng") && len < 20_000 {
                seeds.push(std::fs::read(p).unwrap());
            }
        }
    }
    let mut rng = Rng(0x0dd_ba11_5eed_0002);
    let (mut frames, mut errors) = (0, 0);
    for i in 0..6_000 {
        let b = mutate(&seeds[i % seeds.len()], &mut rng);
        let a = transcript(CaptureReader::from_bytes(b.clone(), "mutant"));
        let s = transcript(CaptureReader::new(&b[..], "mutant"));
        if let Some(d) = first_difference(&a, &s) {
            panic!("mutant {i} of seed {}: {d}", i % seeds.len());
        }
        if i % 10 == 0 {
            let t = transcript(CaptureReader::new(Trickle { bytes: &b, n: 5 }, "mutant"));
            if let Some(d) = first_difference(&a, &t) {
                panic!("mutant {i}, 5-byte reads: {d}");
            }
        }
        frames += count(&a, |s| matches!(s, Step::Frame { .. }));
        errors += count(&a, |s| matches!(s, Step::Error { .. }));
    }
    eprintln!(
        "{} seeds, 6000 mutants: {frames} frames, {errors} errors",
        seeds.len()
    );
    assert!(frames > 0 && errors > 1000);
}
