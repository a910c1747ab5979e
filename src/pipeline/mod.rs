//! The replay pipeline: read the capture, run packets through the firewall
//! model, and hand rows to the writers in capture order.
//!
//! Rows of fragments come out when their datagram completes, so a small
//! reorder buffer restores capture order before writing.

pub mod firewall;

pub use firewall::{EngineConfig, Firewall};

use crate::capture::{CaptureError, CaptureReader};
use crate::conntrack::Event;
use crate::report::Row;
use crate::rules::Ruleset;
use std::collections::BTreeMap;
use std::path::Path;

/// Receives the results of a replay, in capture order.
pub trait Sink {
    fn row(&mut self, row: &Row) -> std::io::Result<()>;
    fn events(&mut self, events: &mut dyn Iterator<Item = Event>) -> std::io::Result<()>;
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error("writing output: {0}")]
    Io(#[from] std::io::Error),
    #[error(
        "packet {packet}: link type {linktype} is not supported; supported: {}",
        crate::capture::Linktype::supported_list()
    )]
    Linktype {
        packet: u64,
        linktype: crate::capture::Linktype,
    },
}

/// Totals of a replay.
#[derive(Debug, Default, Clone)]
pub struct ReplayStats {
    pub frames: u64,
    pub bad_l4_checksums: u64,
    pub checked_l4_checksums: u64,
    pub conntrack_entries: usize,
}

/// Restores capture order for rows that come out of order.
struct Reorder {
    next: u64,
    waiting: BTreeMap<u64, Row>,
}

impl Reorder {
    fn push(&mut self, row: Row, sink: &mut dyn Sink) -> std::io::Result<()> {
        if row.packet == self.next && self.waiting.is_empty() {
            self.next += 1;
            return sink.row(&row);
        }
        self.waiting.insert(row.packet, row);
        while let Some(e) = self.waiting.first_entry() {
            if *e.key() != self.next {
                break;
            }
            let r = e.remove();
            self.next += 1;
            sink.row(&r)?;
        }
        Ok(())
    }
}

/// Replays a capture through one firewall model, writing rows to `sink`.
/// A capture that ends in a damaged record still yields every complete
/// record before the error is returned.
pub fn replay(
    capture: &Path,
    rules: &Ruleset,
    cfg: &EngineConfig,
    sink: &mut dyn Sink,
) -> Result<ReplayStats, ReplayError> {
    let mut reader = CaptureReader::open(capture)?;
    let mut fw = Firewall::new(rules, cfg);
    let mut reorder = Reorder {
        next: 1,
        waiting: BTreeMap::new(),
    };
    let mut stats = ReplayStats::default();
    let mut io_err: Option<std::io::Error> = None;
    let mut capture_err = None;
    loop {
        let frame = match reader.next_frame() {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                capture_err = Some(e);
                break;
            }
        };
        stats.frames += 1;
        if !frame.linktype.is_supported() {
            return Err(ReplayError::Linktype {
                packet: frame.index,
                linktype: frame.linktype,
            });
        }
        let iface = None;
        let mut emit = |row: Row| {
            if io_err.is_none()
                && let Err(e) = reorder.push(row, sink)
            {
                io_err = Some(e);
            }
        };
        fw.process(&frame, iface, &mut emit);
        if cfg.trace {
            sink.events(&mut fw.ct.drain_events())?;
        }
        if let Some(e) = io_err.take() {
            return Err(e.into());
        }
    }
    let mut emit = |row: Row| {
        if io_err.is_none()
            && let Err(e) = reorder.push(row, sink)
        {
            io_err = Some(e);
        }
    };
    fw.finish(&mut emit);
    if let Some(e) = io_err.take() {
        return Err(e.into());
    }
    stats.bad_l4_checksums = fw.bad_l4_checksums;
    stats.checked_l4_checksums = fw.checked_l4_checksums;
    stats.conntrack_entries = fw.ct.len();
    if let Some(e) = capture_err {
        return Err(e.into());
    }
    Ok(stats)
}
