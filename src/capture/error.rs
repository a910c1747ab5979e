//! Errors of the capture reader.
//!
//! Every error names the file, and where it can, the packet record and the
//! byte offset, so that a user can find the spot with a hex editor or
//! `tshark -r FILE -c N`.

use std::fmt;
use std::io;
use thiserror::Error;

/// Which record an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordRef {
    /// The n-th packet record (1-based, counting packet records only, like
    /// [`Frame::index`](super::Frame::index)).
    Packet(u64),
    /// A pcapng block that is not a packet block, by block type.
    Block(u32),
    /// The file header (pcap global header or first pcapng section header).
    FileHeader,
}

impl fmt::Display for RecordRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordRef::Packet(n) => write!(f, "record {n}"),
            RecordRef::Block(t) => write!(f, "a block of type 0x{t:08x}"),
            RecordRef::FileHeader => f.write_str("the file header"),
        }
    }
}

/// Why a capture could not be read (further).
///
/// After an error the reader can be asked for the next frame again: where
/// the record's boundaries were still known ([`CaptureError::is_resumable`])
/// it continues with the record after the bad one; otherwise it reports the
/// end of the capture.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CaptureError {
    #[error("{file}: {source}")]
    Io {
        file: String,
        #[source]
        source: io::Error,
    },
    #[error("{file}: not a pcap or pcapng file (it starts with {magic})")]
    BadMagic { file: String, magic: String },
    #[error(
        "{file}: capture ended inside {record} at byte offset {offset}: expected {expected} bytes, found {found}"
    )]
    Truncated {
        file: String,
        record: RecordRef,
        offset: u64,
        expected: u64,
        found: u64,
    },
    #[error("{file}: corrupt {record} at byte offset {offset}: {why}")]
    Corrupt {
        file: String,
        record: RecordRef,
        offset: u64,
        why: String,
        /// The reader skipped the record and can go on.
        resumable: bool,
    },
    #[error(
        "{file}: {record} at byte offset {offset} claims {caplen} captured bytes, more than the limit of {limit}"
    )]
    CaplenTooLarge {
        file: String,
        record: RecordRef,
        offset: u64,
        caplen: u64,
        limit: u64,
    },
    #[error(
        "{file}: {record} at byte offset {offset} names interface {interface}, but its section describes {defined} interface(s)"
    )]
    UnknownInterface {
        file: String,
        record: RecordRef,
        offset: u64,
        interface: u32,
        defined: u32,
    },
}

impl CaptureError {
    /// Whether [`CaptureReader::next_frame`](super::CaptureReader::next_frame)
    /// can go on after this error (the bad record was skipped).
    pub fn is_resumable(&self) -> bool {
        match self {
            CaptureError::Corrupt { resumable, .. } => *resumable,
            CaptureError::UnknownInterface { .. } => true,
            _ => false,
        }
    }
}
