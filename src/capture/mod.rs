//! Capture reading: pcap and pcapng files, record by record — mapped and
//! parsed in place when the capture is a regular file, streamed otherwise
//! (see [`CaptureReader`]).
//!
//! This layer knows file formats and link types, nothing about IP. It hands out
//! [`Frame`]s that borrow the reader (its buffer, or the mapped file); a frame
//! must be dropped before the next one is read. Memory use is constant
//! whatever the file size.
//!
//! The reader does not judge link types: a frame of a link type the decoder
//! does not support is still delivered, and [`crate::wire::decode`] reports it
//! (`DecodeError::UnsupportedLinktype`, naming the type and listing the
//! supported ones). A pcapng file may mix supported and unsupported
//! interfaces, and the rows of the supported ones stay useful. Callers who
//! prefer to refuse a whole file can check [`Linktype::is_supported`] on
//! [`CaptureReader::interfaces`].

mod error;
mod mapped;
mod parse;
mod reader;

pub use error::{CaptureError, RecordRef};
pub use mapped::{CaptureBytes, Prefaulter};
pub use parse::RecordSpan;
pub use reader::{CaptureReader, Interface, MAX_RECORD, ResumePoint};

use crate::time::Timestamp;
use std::fmt;

/// A link-layer type number as used in pcap headers and pcapng IDBs
/// (LINKTYPE_* values from tcpdump.org).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Linktype(pub u16);

impl Linktype {
    pub const NULL: Linktype = Linktype(0);
    pub const ETHERNET: Linktype = Linktype(1);
    pub const RAW: Linktype = Linktype(101);
    pub const LOOP: Linktype = Linktype(108);
    pub const LINUX_SLL: Linktype = Linktype(113);
    pub const IPV4: Linktype = Linktype(228);
    pub const IPV6: Linktype = Linktype(229);
    pub const LINUX_SLL2: Linktype = Linktype(276);
    pub const PPP: Linktype = Linktype(9);
    pub const NFLOG: Linktype = Linktype(239);

    /// The link types [`crate::wire::decode`] understands.
    pub const SUPPORTED: &'static [Linktype] = &[
        Linktype::NULL,
        Linktype::ETHERNET,
        Linktype::RAW,
        Linktype::LOOP,
        Linktype::LINUX_SLL,
        Linktype::IPV4,
        Linktype::IPV6,
        Linktype::LINUX_SLL2,
    ];

    /// The tcpdump.org LINKTYPE_ name (without the prefix), for messages.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0 => "NULL",
            1 => "ETHERNET",
            9 => "PPP",
            12 | 14 | 101 => "RAW",
            50 => "PPP_HDLC",
            51 => "PPP_ETHER",
            105 => "IEEE802_11",
            108 => "LOOP",
            113 => "LINUX_SLL",
            127 => "IEEE802_11_RADIOTAP",
            147..=162 => "USER",
            228 => "IPV4",
            229 => "IPV6",
            239 => "NFLOG",
            252 => "WIRESHARK_UPPER_PDU",
            276 => "LINUX_SLL2",
            _ => return None,
        })
    }

    pub fn is_supported(self) -> bool {
        Linktype::SUPPORTED.contains(&self)
    }

    /// "0 (NULL), 1 (ETHERNET), …" — the list error messages quote.
    pub fn supported_list() -> &'static str {
        "0 (NULL), 1 (ETHERNET), 101 (RAW), 108 (LOOP), 113 (LINUX_SLL), 228 (IPV4), 229 (IPV6), 276 (LINUX_SLL2)"
    }
}

impl fmt::Display for Linktype {
    /// `239 (NFLOG)`, or the bare number for types without a known name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{} ({n})", self.0),
            None => write!(f, "{}", self.0),
        }
    }
}

/// One captured packet, borrowed from the reader.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// 1-based position in the capture, counting only packet records.
    pub index: u64,
    pub ts: Timestamp,
    pub linktype: Linktype,
    /// Length of the packet on the wire (may exceed `data.len()` when the
    /// snap length cut it).
    pub orig_len: u32,
    /// pcapng interface, numbered file-wide across sections (see
    /// [`Interface::id`]); 0 for pcap.
    pub interface: u32,
    /// The pcapng `if_name` of that interface, if the capture gives one.
    pub interface_name: Option<&'a str>,
    /// The captured bytes, starting at the link-layer header.
    pub data: &'a [u8],
}
