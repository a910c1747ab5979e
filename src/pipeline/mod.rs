//! The replay pipeline: read the capture, run packets through the firewall
//! model, and hand rows to the writers in capture order.
//!
//! Rows of fragments come out when their datagram completes, so a small
//! reorder buffer restores capture order before writing. With more than one
//! worker the capture is sharded by address pair ([`shard`]); the output is
//! byte-identical for every worker count.

pub mod firewall;
pub mod shard;

pub use firewall::{EngineConfig, Firewall};

use crate::capture::{CaptureError, CaptureReader, Prefaulter};
use crate::conntrack::Event;
use crate::report::Row;
use crate::report::summary::Summary;
use crate::rules::{RuleState, Ruleset};
use std::path::Path;

/// Turns a row into its output bytes. Given by a sink that can take rows
/// already formatted, so that workers format in parallel and the merge only
/// copies bytes in capture order.
pub type RowFormat = fn(&Row, &mut Vec<u8>);

/// Receives the results of a replay, in capture order.
pub trait Sink {
    fn row(&mut self, row: &Row) -> std::io::Result<()>;
    fn events(&mut self, events: &mut dyn Iterator<Item = Event>) -> std::io::Result<()>;
    /// The formatter whose output [`Sink::formatted_rows`] accepts, if any.
    /// A sink that gives one gets the rows of a sharded replay only as
    /// text, and their [`Sink::tally`] at the end.
    fn formatter(&self) -> Option<RowFormat> {
        None
    }
    /// Consecutive rows, in capture order, as [`Sink::formatter`] made them.
    fn formatted_rows(&mut self, text: &[u8]) -> std::io::Result<()> {
        let _ = text;
        Err(std::io::Error::other(
            "this sink gives a formatter but takes no formatted rows",
        ))
    }
    /// The totals of the rows given to [`Sink::formatted_rows`], once, when
    /// they have all been given.
    fn tally(&mut self, summary: &Summary) {
        let _ = summary;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error("writing output: {0}")]
    Io(#[from] std::io::Error),
    #[error(
        "{file}: link type {linktype} is not supported; supported: {}",
        crate::capture::Linktype::supported_list()
    )]
    Linktype {
        file: String,
        linktype: crate::capture::Linktype,
    },
}

/// Refuses a capture whose (first) link type ctsim cannot decode, before
/// any row is written: a clear error beats a file of undecodable rows.
///
/// A file is probed by a reader of its own, which reads on to the first
/// packet (a pcapng file describes its interfaces there). A stream (a pipe,
/// `/dev/stdin`) can be read only once: what its header told `reader` has
/// to do — the link type of a pcap stream; nothing yet for pcapng, whose
/// frames of an unsupported type the decoder reports one by one.
fn check_linktype(
    capture: &Path,
    reader: &CaptureReader,
    input: &InputOptions<'_>,
) -> Result<(), ReplayError> {
    let bad = if reader.size().is_some() {
        let mut probe = open(capture, input)?;
        let first = match probe.next_frame() {
            Ok(Some(f)) => Some(f.linktype),
            // Errors surface again, with their context, in the real pass.
            _ => None,
        };
        first
            .into_iter()
            .chain(probe.interfaces().iter().map(|i| i.linktype))
            .find(|l| !l.is_supported())
    } else {
        reader
            .interfaces()
            .iter()
            .map(|i| i.linktype)
            .find(|l| !l.is_supported())
    };
    match bad {
        Some(linktype) => Err(ReplayError::Linktype {
            file: capture.display().to_string(),
            linktype,
        }),
        None => Ok(()),
    }
}

/// Totals of a replay.
#[derive(Debug, Default, Clone)]
pub struct ReplayStats {
    pub frames: u64,
    pub bad_l4_checksums: u64,
    pub checked_l4_checksums: u64,
    pub conntrack_entries: usize,
    /// Workers the replay ran on.
    pub shards: usize,
    /// Why it ran on one worker although more were asked for.
    pub single_shard: Option<&'static str>,
    /// Rule counters of all workers, merged.
    pub rule_state: Option<RuleState>,
}

/// How to run a replay.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReplayOptions {
    /// Workers (shards); 0 means one per available core.
    pub jobs: usize,
}

impl ReplayOptions {
    /// The worker count asked for, 0 resolved to the machine's cores.
    pub fn resolved_jobs(&self) -> usize {
        match self.jobs {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
        .min(shard::MAX_JOBS)
    }
}

/// Told by the thread that reads the capture, every few thousand frames:
/// the frames read so far and the byte offset reached in the capture. It
/// runs on that thread, so it must be cheap (a progress bar checks the time
/// and returns).
pub type Progress<'a> = &'a (dyn Fn(u64, u64) + Sync);

/// How the capture is read.
#[derive(Clone, Copy, Default)]
pub struct InputOptions<'a> {
    /// Stream a regular file with `read()` instead of mapping it (see
    /// [`crate::capture::CaptureBytes`] for when that matters).
    pub no_mmap: bool,
    pub progress: Option<Progress<'a>>,
}

pub(crate) fn open(
    capture: &Path,
    input: &InputOptions<'_>,
) -> Result<CaptureReader, CaptureError> {
    if input.no_mmap {
        CaptureReader::open_streaming(capture)
    } else {
        CaptureReader::open(capture)
    }
}

/// Replays a capture on one worker per core, writing rows to `sink`.
pub fn replay(
    capture: &Path,
    rules: &Ruleset,
    cfg: &EngineConfig,
    sink: &mut dyn Sink,
) -> Result<ReplayStats, ReplayError> {
    replay_with(capture, rules, cfg, &ReplayOptions::default(), sink)
}

/// Replays a capture through the firewall model, writing rows to `sink` in
/// capture order; the output is the same for every worker count. A capture
/// that ends in a damaged record still yields every complete record before
/// the error is returned.
pub fn replay_with(
    capture: &Path,
    rules: &Ruleset,
    cfg: &EngineConfig,
    opts: &ReplayOptions,
    sink: &mut dyn Sink,
) -> Result<ReplayStats, ReplayError> {
    replay_input(capture, rules, cfg, opts, &InputOptions::default(), sink)
}

/// [`replay_with`], choosing how the capture is read and with a progress
/// report.
pub fn replay_input(
    capture: &Path,
    rules: &Ruleset,
    cfg: &EngineConfig,
    opts: &ReplayOptions,
    input: &InputOptions<'_>,
    sink: &mut dyn Sink,
) -> Result<ReplayStats, ReplayError> {
    let reader = open(capture, input)?;
    check_linktype(capture, &reader, input)?;
    let mut jobs = opts.resolved_jobs();
    let single_shard = if jobs > 1 {
        shard::coupling(rules, cfg)
    } else {
        None
    };
    if single_shard.is_some() {
        jobs = 1;
    }
    // A sink that takes formatted rows gets them from worker threads, which
    // format them; this thread only writes. So even one worker runs in the
    // sharded pipeline: its core does not wait on the writes.
    let mut stats = if jobs > 1 || sink.formatter().is_some() {
        shard::replay_sharded(reader, capture, input, rules, cfg, jobs, sink)?
    } else {
        replay_inline(reader, rules, cfg, input.progress, sink)?
    };
    stats.single_shard = single_shard;
    Ok(stats)
}

/// One firewall on the caller's thread, with the same clock, gc schedule
/// and event order as the sharded path: for a sink that formats rows itself
/// (no [`Sink::formatter`]), with one worker.
fn replay_inline(
    mut reader: CaptureReader,
    rules: &Ruleset,
    cfg: &EngineConfig,
    progress: Option<Progress<'_>>,
    sink: &mut dyn Sink,
) -> Result<ReplayStats, ReplayError> {
    let mut run = shard::ShardRun::new(rules, cfg, 0);
    let mut events = Vec::new();
    let mut stats = ReplayStats {
        shards: 1,
        ..ReplayStats::default()
    };
    let mut capture_err = None;
    let mut write_err = None;
    // Rows go to the sink as they come; the first write error stops the
    // replay after the batch.
    fn emit(sink: &mut dyn Sink, err: &mut Option<std::io::Error>, row: Row) {
        if err.is_none()
            && let Err(e) = sink.row(&row)
        {
            *err = Some(e);
        }
    }
    reader.keep_behind(shard::KEEP_BEHIND);
    let _prefault = reader
        .bytes()
        .and_then(|b| Prefaulter::start(b, shard::PREFAULT_AHEAD));
    let keying = shard::Keying {
        jobs: 1,
        frames: shard::OWN_BATCH_FRAMES,
        hash_for: None,
    };
    let mut batch = shard::Batch::default();
    let mut more = true;
    while more {
        more = match shard::fill_batch(&mut reader, &mut batch, keying) {
            Ok(full) => full,
            Err(e) => {
                capture_err = Some(e);
                false
            }
        };
        stats.frames += batch.len() as u64;
        run.batch(&batch, &mut events, &mut |row| {
            emit(sink, &mut write_err, row)
        });
        if let Some(e) = write_err.take() {
            return Err(e.into());
        }
        if !events.is_empty() {
            shard::order_events(&mut events);
            sink.events(&mut events.drain(..).map(|t| t.event))?;
        }
        if let Some(p) = progress {
            p(stats.frames, reader.offset());
        }
    }
    run.finish(&mut |row| emit(sink, &mut write_err, row));
    if let Some(e) = write_err.take() {
        return Err(e.into());
    }
    let fw = run.fw;
    stats.bad_l4_checksums = fw.bad_l4_checksums;
    stats.checked_l4_checksums = fw.checked_l4_checksums;
    stats.conntrack_entries = fw.ct.len();
    stats.rule_state = Some(fw.rule_state);
    if let Some(e) = capture_err {
        return Err(e.into());
    }
    Ok(stats)
}
