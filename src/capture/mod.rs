//! Capture reading: pcap and pcapng files streamed record by record.
//!
//! This layer knows file formats and link types, nothing about IP. It hands out
//! [`Frame`]s that borrow the reader's buffer; a frame must be dropped before the
//! next one is read. Memory use is constant whatever the file size.

use crate::time::Timestamp;

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
    /// pcapng interface id (0 for pcap).
    pub interface: u32,
    /// The captured bytes, starting at the link-layer header.
    pub data: &'a [u8],
}
