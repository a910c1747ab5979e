//! Record framing and parsing, shared by both ways of reading a capture: the
//! streaming buffer ([`super::reader`]) and a capture held whole in memory
//! (a file mapping or an owned buffer, [`super::mapped`]).
//!
//! Both give the parser a [`Window`]: the bytes from the current record on.
//! The parser asks for the record's fixed header, reads its length, asks for
//! the whole record, and parses exactly that slice. Nothing here depends on
//! how many bytes happen to follow the record, so the two ways of reading
//! give the same frames and the same errors, byte for byte.
//!
//! Packet records (pcap records, pcapng EPB, SPB and the obsolete PB) are
//! parsed here, field by field. The rare pcapng blocks (section and
//! interface descriptions, statistics, name resolution, …) go through
//! pcap-parser's block parsers, on the record's exact slice.
//!
//! What it does not do: buffering or I/O (the windows do that), decoding
//! link layers.

use super::{CaptureError, Interface, Linktype, MAX_RECORD, RecordRef};
use crate::time::Timestamp;
use pcap_parser::PcapError;
use pcap_parser::nom;
use pcap_parser::pcapng::{Block, parse_block_be, parse_block_le, parse_sectionheaderblock};
use std::io;

pub(super) const SHB_TYPE: u32 = 0x0A0D_0D0A;
pub(super) const IDB_TYPE: u32 = 0x0000_0001;
pub(super) const PB_TYPE: u32 = 0x0000_0002;
pub(super) const SPB_TYPE: u32 = 0x0000_0003;
pub(super) const EPB_TYPE: u32 = 0x0000_0006;
pub(super) const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;
const OPT_IF_TSOFFSET: u16 = 14;

/// The bytes under the parser, from the start of the current record.
pub(super) trait Window {
    /// The bytes available from the current record on.
    fn data(&self) -> &[u8];
    /// Makes at least `want` bytes available, or as many as the input still
    /// has when it ends first.
    fn fill(&mut self, want: usize) -> io::Result<()>;
    /// Moves past `n` bytes of [`Window::data`].
    fn consume(&mut self, n: usize);
    /// Byte offset in the file of [`Window::data`]'s first byte.
    fn offset(&self) -> u64;
    /// The record at the window's start is `len` bytes long: a window over
    /// memory may start fetching the one after it while this one is used.
    #[inline]
    fn next_record_at(&self, len: usize) {
        let _ = len;
    }
}

#[derive(Debug, Clone, Copy)]
enum Format {
    Pcap {
        big_endian: bool,
        nanos: bool,
        /// 16, or 24 for the "modified" (Kuznetzov) format.
        header_len: usize,
    },
    Ng,
}

/// What the parser learned from a record's fixed header.
#[derive(Debug, Clone, Copy)]
pub(super) struct RecordHead {
    /// Total length of the record in the file.
    pub(super) len: usize,
    /// pcapng block type in native order (0 for pcap records).
    pub(super) block_type: u32,
    pub(super) is_packet: bool,
}

/// A delivered frame: its metadata, and where its bytes lie in the window.
#[derive(Debug, Clone, Copy)]
pub(super) struct FrameMeta {
    pub(super) index: u64,
    pub(super) ts: Timestamp,
    pub(super) linktype: Linktype,
    pub(super) orig_len: u32,
    pub(super) interface: u32,
    /// Start of the captured bytes, relative to [`Window::data`].
    pub(super) data_start: usize,
    pub(super) caplen: usize,
}

/// A pcap record whose bytes lie whole in a capture in memory, as
/// [`super::CaptureReader::next_records`] hands it out: the frame's
/// metadata, and where its captured bytes lie in the capture. Its interface
/// is 0, which has no name (a pcap file's only interface).
#[derive(Debug, Clone, Copy)]
pub struct RecordSpan {
    pub index: u64,
    pub ts: Timestamp,
    pub linktype: Linktype,
    pub orig_len: u32,
    pub start: usize,
    pub end: usize,
}

/// The fields of a pcap record header that the short path uses.
struct PcapHead {
    caplen: usize,
    ts: Timestamp,
    orig_len: u32,
}

/// The record at the start of `d`, if the short path takes it: its 16-byte
/// header reads, its caplen is within [`MAX_RECORD`] and the whole record
/// lies in `d`.
#[inline(always)]
fn pcap_whole(d: &[u8], big_endian: bool, nanos: bool, header_len: usize) -> Option<PcapHead> {
    let h: &[u8; 16] = d.first_chunk::<16>()?;
    let field = |i: usize| {
        let v = u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        if big_endian { v.swap_bytes() } else { v }
    };
    let caplen = field(8) as usize;
    // `header_len + caplen <= d.len()` also covers the 24-byte modified
    // header.
    if caplen > MAX_RECORD || header_len + caplen > d.len() {
        return None;
    }
    let sub = if nanos {
        u64::from(field(4))
    } else {
        u64::from(field(4)) * 1000
    };
    Some(PcapHead {
        caplen,
        ts: Timestamp(u64::from(field(0)) * 1_000_000_000 + sub),
        orig_len: field(12),
    })
}

/// The format state of one capture: byte order, interfaces, sections, the
/// packet count, and the record handed out last.
#[derive(Debug)]
pub(super) struct Parser {
    pub(super) file: String,
    format: Format,
    /// Packet records seen so far (delivered or reported as errors).
    packets: u64,
    pub(super) interfaces: Vec<Interface>,
    /// Index into `interfaces` of the current pcapng section's interface 0.
    section_start: usize,
    sections: u32,
    /// Byte order of the current pcapng section.
    big_endian: bool,
    last_ts: Timestamp,
    /// Length of the record last handed out: the frame borrows it until the
    /// next call, which consumes it.
    pending: usize,
    finished: bool,
    /// Tests turn the short path off to compare it with the general one.
    #[cfg(test)]
    pub(super) short_path: bool,
}

impl Parser {
    /// Reads the file header (pcap) or checks the first section header
    /// (pcapng; it stays in the window and is parsed as the first record).
    pub(super) fn open(w: &mut impl Window, file: String) -> Result<Parser, CaptureError> {
        let io_err = |file: &String, source| CaptureError::Io {
            file: file.clone(),
            source,
        };
        w.fill(4).map_err(|e| io_err(&file, e))?;
        let head = w.data();
        let magic: [u8; 4] = match head.get(..4) {
            Some(m) => [m[0], m[1], m[2], m[3]],
            None => {
                let magic = if head.is_empty() {
                    "nothing: the file is empty".to_string()
                } else {
                    hex(head)
                };
                return Err(CaptureError::BadMagic { file, magic });
            }
        };
        match magic {
            [0xd4, 0xc3, 0xb2, 0xa1]
            | [0xa1, 0xb2, 0xc3, 0xd4]
            | [0x4d, 0x3c, 0xb2, 0xa1]
            | [0xa1, 0xb2, 0x3c, 0x4d]
            | [0x34, 0xcd, 0xb2, 0xa1] => {}
            [0x0a, 0x0d, 0x0d, 0x0a] => return Self::open_pcapng(w, file),
            _ => {
                return Err(CaptureError::BadMagic {
                    file,
                    magic: hex(&magic),
                });
            }
        }
        w.fill(24).map_err(|e| io_err(&file, e))?;
        let h = w.data();
        if h.len() < 24 {
            return Err(CaptureError::Truncated {
                file,
                record: RecordRef::FileHeader,
                offset: 0,
                expected: 24,
                found: h.len() as u64,
            });
        }
        let big_endian = magic[0] == 0xa1;
        let nanos = matches!(magic, [0x4d, 0x3c, ..] | [.., 0x3c, 0x4d]);
        let header_len = if magic == [0x34, 0xcd, 0xb2, 0xa1] {
            24
        } else {
            16
        };
        let snaplen = read_u32(&h[16..20], big_endian);
        // The upper 16 bits of the pcap link-type field carry FCS
        // information (LINKTYPE_* only use the lower 16).
        let linktype = Linktype(read_u32(&h[20..24], big_endian) as u16);
        w.consume(24);
        Ok(Parser {
            file,
            format: Format::Pcap {
                big_endian,
                nanos,
                header_len,
            },
            packets: 0,
            interfaces: vec![Interface {
                id: 0,
                section: 0,
                linktype,
                snaplen,
                name: None,
                ts_units_per_sec: if nanos { 1_000_000_000 } else { 1_000_000 },
                ts_offset_secs: 0,
            }],
            section_start: 0,
            sections: 1,
            big_endian,
            last_ts: Timestamp(0),
            pending: 0,
            finished: false,
            #[cfg(test)]
            short_path: true,
        })
    }

    fn open_pcapng(w: &mut impl Window, file: String) -> Result<Parser, CaptureError> {
        w.fill(12).map_err(|source| CaptureError::Io {
            file: file.clone(),
            source,
        })?;
        let truncated = |file: String, found: usize, expected: usize| CaptureError::Truncated {
            file,
            record: RecordRef::FileHeader,
            offset: 0,
            expected: expected as u64,
            found: found as u64,
        };
        let corrupt = |file: String, why: String| CaptureError::Corrupt {
            file,
            record: RecordRef::FileHeader,
            offset: 0,
            why,
            resumable: false,
        };
        let h = w.data();
        if h.len() < 12 {
            return Err(truncated(file, h.len(), 28));
        }
        let big_endian = match u32::from_le_bytes([h[8], h[9], h[10], h[11]]) {
            BYTE_ORDER_MAGIC => false,
            m if m.swap_bytes() == BYTE_ORDER_MAGIC => true,
            _ => {
                return Err(corrupt(
                    file,
                    "section header has no valid byte-order magic".into(),
                ));
            }
        };
        let shb_len = read_u32(&h[4..8], big_endian) as usize;
        if shb_len < 28 || !shb_len.is_multiple_of(4) || shb_len > MAX_RECORD {
            return Err(corrupt(
                file,
                format!("section header block length {shb_len} is invalid"),
            ));
        }
        w.fill(shb_len).map_err(|source| CaptureError::Io {
            file: file.clone(),
            source,
        })?;
        let h = w.data();
        if h.len() < shb_len {
            return Err(truncated(file, h.len(), shb_len));
        }
        if let Err(e) = parse_sectionheaderblock(&h[..shb_len]) {
            let why = parser_why(e, shb_len);
            return Err(corrupt(file, why));
        }
        Ok(Parser {
            file,
            format: Format::Ng,
            packets: 0,
            interfaces: Vec::new(),
            section_start: 0,
            sections: 0,
            big_endian,
            last_ts: Timestamp(0),
            pending: 0,
            finished: false,
            #[cfg(test)]
            short_path: true,
        })
    }

    /// `"pcap"` or `"pcapng"`.
    pub(super) fn format(&self) -> &'static str {
        match self.format {
            Format::Pcap { .. } => "pcap",
            Format::Ng => "pcapng",
        }
    }

    /// Bytes of the record handed out last, not yet consumed.
    pub(super) fn pending(&self) -> usize {
        self.pending
    }

    /// For a pcap file, the count of records read: with the position in
    /// the file, all the state there is between records (its header gave
    /// the rest). `None` for pcapng, whose sections and interfaces are state
    /// too, and once the capture has ended.
    pub(super) fn pcap_records_read(&self) -> Option<u64> {
        (matches!(self.format, Format::Pcap { .. }) && !self.finished).then_some(self.packets)
    }

    /// Goes on as if `packets` records had been read (see
    /// [`Parser::pcap_records_read`]); the window is moved by the caller.
    pub(super) fn resume_pcap(&mut self, packets: u64) {
        debug_assert!(matches!(self.format, Format::Pcap { .. }));
        debug_assert_eq!(self.pending, 0);
        self.packets = packets;
    }

    /// The record handed out last is done with: its length, for the
    /// window to consume.
    pub(super) fn take_pending(&mut self) -> usize {
        std::mem::take(&mut self.pending)
    }

    /// The next packet record, or `None` at the end of the capture.
    #[inline]
    pub(super) fn next(&mut self, w: &mut impl Window) -> Result<Option<FrameMeta>, CaptureError> {
        if self.pending != 0 {
            w.consume(std::mem::take(&mut self.pending));
        }
        if self.finished {
            return Ok(None);
        }
        #[cfg(test)]
        let short = self.short_path;
        #[cfg(not(test))]
        let short = true;
        if short && let Some(meta) = self.next_pcap_whole(w) {
            return Ok(Some(meta));
        }
        loop {
            let head = match self.ensure_record(w) {
                Ok(Some(h)) => h,
                Ok(None) => {
                    self.finished = true;
                    return Ok(None);
                }
                Err(e) => {
                    self.finished = true;
                    return Err(e);
                }
            };
            w.next_record_at(head.len);
            let offset = w.offset();
            match self.parse_record(&w.data()[..head.len], head, offset) {
                Ok(Some(meta)) => {
                    self.pending = head.len;
                    self.last_ts = meta.ts;
                    return Ok(Some(meta));
                }
                Ok(None) => w.consume(head.len),
                Err(e) => {
                    // Every error of a whole record leaves its boundaries
                    // known: skip it, so that the caller can go on.
                    debug_assert!(e.is_resumable());
                    w.consume(head.len);
                    return Err(e);
                }
            }
        }
    }

    /// For a pcap file: its byte order, whether timestamps are in
    /// nanoseconds, and its record header's length.
    #[inline(always)]
    fn pcap_layout(&self) -> Option<(bool, bool, usize)> {
        match self.format {
            Format::Pcap {
                big_endian,
                nanos,
                header_len,
            } => Some((big_endian, nanos, header_len)),
            Format::Ng => None,
        }
    }

    /// The short path for the common case: a pcap record that lies whole in
    /// the window with a caplen within [`MAX_RECORD`]. It gives exactly what
    /// [`Parser::ensure_record`] and [`Parser::parse_record`] give for such
    /// a record (both succeed without a look at anything else); `None`
    /// leaves everything as it was, for them to handle whatever the record
    /// is (pcapng, cut short, an absurd caplen, the end of the capture).
    #[inline(always)]
    fn next_pcap_whole(&mut self, w: &impl Window) -> Option<FrameMeta> {
        let (big_endian, nanos, header_len) = self.pcap_layout()?;
        let r = pcap_whole(w.data(), big_endian, nanos, header_len)?;
        let len = header_len + r.caplen;
        w.next_record_at(len);
        self.packets += 1;
        self.pending = len;
        self.last_ts = r.ts;
        Some(FrameMeta {
            index: self.packets,
            ts: r.ts,
            linktype: self.interfaces[0].linktype,
            orig_len: r.orig_len,
            interface: 0,
            data_start: header_len,
            caplen: r.caplen,
        })
    }

    /// The short path over a run of records of a capture in memory: from
    /// `pos` in `all` (the whole capture), every pcap record
    /// [`Parser::next_pcap_whole`] would take, until `max_frames` of them or
    /// `max_bytes` of captured bytes have been handed to `each`, or a record
    /// it would not take comes. Each gets what that path gives, with its
    /// bytes' place in `all`. Returns how many records were handed out and
    /// the position after the last; the record there (if any) is for
    /// [`Parser::next`]. Nothing is pending before or after.
    #[inline]
    pub(super) fn pcap_run(
        &mut self,
        all: &[u8],
        mut pos: usize,
        max_frames: usize,
        max_bytes: usize,
        each: &mut impl FnMut(RecordSpan, &[u8]),
    ) -> (usize, usize) {
        debug_assert_eq!(self.pending, 0);
        #[cfg(test)]
        if !self.short_path {
            return (0, pos);
        }
        let Some((big_endian, nanos, header_len)) = self.pcap_layout() else {
            return (0, pos);
        };
        if self.finished {
            return (0, pos);
        }
        let linktype = self.interfaces[0].linktype;
        let (mut n, mut bytes) = (0, 0);
        while n < max_frames && bytes < max_bytes {
            let Some(r) = all
                .get(pos..)
                .and_then(|d| pcap_whole(d, big_endian, nanos, header_len))
            else {
                break;
            };
            self.packets += 1;
            self.last_ts = r.ts;
            let start = pos + header_len;
            let end = start + r.caplen;
            let span = RecordSpan {
                index: self.packets,
                ts: r.ts,
                linktype,
                orig_len: r.orig_len,
                start,
                end,
            };
            each(span, &all[start..end]);
            pos = end;
            n += 1;
            bytes += r.caplen;
        }
        (n, pos)
    }

    fn record_ref(&self, head: &RecordHead) -> RecordRef {
        if head.is_packet {
            RecordRef::Packet(self.packets + 1)
        } else {
            RecordRef::Block(head.block_type)
        }
    }

    /// Makes sure the next record is whole in the window. `None` at a clean
    /// end of file (between records).
    #[inline]
    fn ensure_record(&mut self, w: &mut impl Window) -> Result<Option<RecordHead>, CaptureError> {
        let fixed = match self.format {
            Format::Pcap { header_len, .. } => header_len,
            Format::Ng => 12,
        };
        let io_err = |file: &String, source| CaptureError::Io {
            file: file.clone(),
            source,
        };
        if w.data().len() < fixed {
            w.fill(fixed).map_err(|e| io_err(&self.file, e))?;
        }
        let avail = w.data().len();
        if avail < fixed {
            if avail == 0 {
                return Ok(None);
            }
            // Not even the fixed header: for pcap that is surely a packet
            // record; for pcapng we cannot tell.
            let record = match self.format {
                Format::Pcap { .. } => RecordRef::Packet(self.packets + 1),
                Format::Ng => RecordRef::Block(0),
            };
            return Err(self.truncated(w, record, fixed, avail));
        }
        let head = self.peek_head(&w.data()[..fixed], w.offset())?;
        if avail < head.len {
            w.fill(head.len).map_err(|e| io_err(&self.file, e))?;
            let avail = w.data().len();
            if avail < head.len {
                return Err(self.truncated(w, self.record_ref(&head), head.len, avail));
            }
        }
        Ok(Some(head))
    }

    #[cold]
    fn truncated(
        &self,
        w: &impl Window,
        record: RecordRef,
        expected: usize,
        found: usize,
    ) -> CaptureError {
        CaptureError::Truncated {
            file: self.file.clone(),
            record,
            offset: w.offset(),
            expected: expected as u64,
            found: found as u64,
        }
    }

    /// Reads the fixed header of a record.
    #[inline]
    fn peek_head(&self, data: &[u8], offset: u64) -> Result<RecordHead, CaptureError> {
        match self.format {
            Format::Pcap {
                big_endian,
                header_len,
                ..
            } => {
                let caplen = read_u32(&data[8..12], big_endian) as usize;
                if caplen > MAX_RECORD {
                    return Err(CaptureError::CaplenTooLarge {
                        file: self.file.clone(),
                        record: RecordRef::Packet(self.packets + 1),
                        offset,
                        caplen: caplen as u64,
                        limit: MAX_RECORD as u64,
                    });
                }
                Ok(RecordHead {
                    len: header_len + caplen,
                    block_type: 0,
                    is_packet: true,
                })
            }
            Format::Ng => {
                let raw_type = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
                let (block_type, big_endian) = if raw_type == SHB_TYPE {
                    let bom = u32::from_le_bytes([data[8], data[9], data[10], data[11]]);
                    (SHB_TYPE, bom != BYTE_ORDER_MAGIC)
                } else {
                    (read_u32(&data[0..4], self.big_endian), self.big_endian)
                };
                let len = read_u32(&data[4..8], big_endian) as usize;
                let is_packet = matches!(block_type, EPB_TYPE | SPB_TYPE | PB_TYPE);
                let head = RecordHead {
                    len,
                    block_type,
                    is_packet,
                };
                if len < 12 || !len.is_multiple_of(4) || len > MAX_RECORD {
                    return Err(CaptureError::Corrupt {
                        file: self.file.clone(),
                        record: self.record_ref(&head),
                        offset,
                        why: format!(
                            "block length {len} is not a multiple of 4 between 12 and {MAX_RECORD}"
                        ),
                        resumable: false,
                    });
                }
                Ok(head)
            }
        }
    }

    /// Parses one whole record (`rec` is exactly its bytes). `Ok(None)`: it
    /// was not a packet.
    #[inline]
    fn parse_record(
        &mut self,
        rec: &[u8],
        head: RecordHead,
        offset: u64,
    ) -> Result<Option<FrameMeta>, CaptureError> {
        let record = self.record_ref(&head);
        if head.is_packet {
            self.packets += 1;
        }
        let index = self.packets;
        match self.format {
            Format::Pcap {
                big_endian,
                nanos,
                header_len,
            } => {
                let sec = read_u32(&rec[0..4], big_endian) as u64;
                let frac = read_u32(&rec[4..8], big_endian) as u64;
                let sub = if nanos { frac } else { frac * 1000 };
                Ok(Some(FrameMeta {
                    index,
                    ts: Timestamp(sec * 1_000_000_000 + sub),
                    linktype: self.interfaces[0].linktype,
                    orig_len: read_u32(&rec[12..16], big_endian),
                    interface: 0,
                    data_start: header_len,
                    caplen: rec.len() - header_len,
                }))
            }
            Format::Ng => match head.block_type {
                EPB_TYPE | PB_TYPE => self.packet_block(rec, head, index, record, offset),
                SPB_TYPE => self.simple_packet_block(rec, index, record, offset),
                _ => self.other_block(rec, record, offset),
            },
        }
    }

    #[cold]
    fn corrupt(&self, record: RecordRef, offset: u64, why: String) -> CaptureError {
        CaptureError::Corrupt {
            file: self.file.clone(),
            record,
            offset,
            why,
            resumable: true,
        }
    }

    #[cold]
    fn unknown_interface(&self, record: RecordRef, offset: u64, local: u32) -> CaptureError {
        CaptureError::UnknownInterface {
            file: self.file.clone(),
            record,
            offset,
            interface: local,
            defined: (self.interfaces.len() - self.section_start) as u32,
        }
    }

    /// The Enhanced Packet Block, and the obsolete Packet Block (type 2)
    /// that old tools still write: the same layout up to the packet data,
    /// except that the PB's interface number is 16 bits followed by a drops
    /// count.
    #[inline]
    fn packet_block(
        &mut self,
        rec: &[u8],
        head: RecordHead,
        index: u64,
        record: RecordRef,
        offset: u64,
    ) -> Result<Option<FrameMeta>, CaptureError> {
        let be = self.big_endian;
        let len = rec.len();
        if len < 32 {
            let why = format!("packet block length {len} is below the minimum of 32");
            return Err(self.corrupt(record, offset, why));
        }
        let caplen = read_u32(&rec[20..24], be) as usize;
        if caplen.div_ceil(4) * 4 + 32 > len {
            let why =
                format!("packet block claims {caplen} captured bytes but is only {len} bytes long");
            return Err(self.corrupt(record, offset, why));
        }
        let local = if head.block_type == EPB_TYPE {
            if let Some(why) = trailer_mismatch(rec, be) {
                return Err(self.corrupt(record, offset, why));
            }
            read_u32(&rec[8..12], be)
        } else if be {
            u16::from_be_bytes([rec[8], rec[9]]) as u32
        } else {
            u16::from_le_bytes([rec[8], rec[9]]) as u32
        };
        let Some(iface) = section_interface(&self.interfaces, self.section_start, local) else {
            return Err(self.unknown_interface(record, offset, local));
        };
        let units = ((read_u32(&rec[12..16], be) as u64) << 32) | read_u32(&rec[16..20], be) as u64;
        Ok(Some(FrameMeta {
            index,
            ts: to_timestamp(units, iface.ts_units_per_sec, iface.ts_offset_secs),
            linktype: iface.linktype,
            orig_len: read_u32(&rec[24..28], be),
            interface: iface.id,
            data_start: 28,
            caplen,
        }))
    }

    fn simple_packet_block(
        &mut self,
        rec: &[u8],
        index: u64,
        record: RecordRef,
        offset: u64,
    ) -> Result<Option<FrameMeta>, CaptureError> {
        let len = rec.len();
        if len < 16 {
            let why = format!("simple packet block length {len} is below the minimum of 16");
            return Err(self.corrupt(record, offset, why));
        }
        let Some(iface) = section_interface(&self.interfaces, self.section_start, 0) else {
            return Err(CaptureError::UnknownInterface {
                file: self.file.clone(),
                record,
                offset,
                interface: 0,
                defined: 0,
            });
        };
        let orig_len = read_u32(&rec[8..12], self.big_endian);
        // The block holds min(original length, snap length) bytes plus
        // padding; it has no caplen field.
        let mut caplen = (orig_len as usize).min(len - 16);
        if iface.snaplen != 0 {
            caplen = caplen.min(iface.snaplen as usize);
        }
        Ok(Some(FrameMeta {
            index,
            // No timestamp: it keeps the previous packet's.
            ts: self.last_ts,
            linktype: iface.linktype,
            orig_len,
            interface: iface.id,
            data_start: 12,
            caplen,
        }))
    }

    /// Section headers, interface descriptions, and every other block,
    /// which is parsed (so that a malformed one is reported) and skipped.
    #[cold]
    fn other_block(
        &mut self,
        rec: &[u8],
        record: RecordRef,
        offset: u64,
    ) -> Result<Option<FrameMeta>, CaptureError> {
        let len = rec.len();
        if CHECKED_TRAILER.contains(&read_u32(&rec[0..4], self.big_endian))
            && let Some(why) = trailer_mismatch(rec, self.big_endian)
        {
            return Err(self.corrupt(record, offset, why));
        }
        let parsed = if self.big_endian {
            parse_block_be(rec)
        } else {
            parse_block_le(rec)
        };
        let block = match parsed {
            Ok((_, b)) => b,
            Err(e) => {
                let why = parser_why(e, len);
                return Err(self.corrupt(record, offset, why));
            }
        };
        match block {
            Block::SectionHeader(shb) => {
                self.section_start = self.interfaces.len();
                self.sections += 1;
                self.big_endian = shb.big_endian();
            }
            Block::InterfaceDescription(idb) => {
                let big_endian = self.big_endian;
                let ts_offset_secs = idb
                    .options
                    .iter()
                    .find(|o| o.code.0 == OPT_IF_TSOFFSET && o.value.len() >= 8)
                    .map(|o| {
                        let v: [u8; 8] = o.value[..8].try_into().unwrap_or([0; 8]);
                        if big_endian {
                            i64::from_be_bytes(v)
                        } else {
                            i64::from_le_bytes(v)
                        }
                    })
                    .unwrap_or(0);
                let units = ts_units_per_sec(idb.if_tsresol);
                self.interfaces.push(Interface {
                    id: self.interfaces.len() as u32,
                    section: self.sections.saturating_sub(1),
                    linktype: Linktype(idb.linktype.0 as u32 as u16),
                    snaplen: idb.snaplen,
                    name: idb.if_name().and_then(|r| r.ok()).map(str::to_string),
                    ts_units_per_sec: units.unwrap_or(1_000_000),
                    ts_offset_secs,
                });
                if units.is_none() || units == Some(0) {
                    let why = format!(
                        "interface {} has an unusable if_tsresol 0x{:02x}; microseconds assumed",
                        self.interfaces.len() - 1,
                        idb.if_tsresol
                    );
                    return Err(self.corrupt(record, offset, why));
                }
            }
            _ => {}
        }
        Ok(None)
    }
}

/// Block types whose length repeated at their end pcap-parser checks
/// (besides the EPB, which is parsed here): interface description, name
/// resolution, interface statistics, decryption secrets, the two custom
/// blocks and process information. The check is made here first, so that
/// the message says what is wrong.
const CHECKED_TRAILER: [u32; 7] = [
    IDB_TYPE,
    0x0000_0004,
    0x0000_0005,
    0x0000_000A,
    0x0000_0BAD,
    0x4000_0BAD,
    0x8000_0001,
];

/// Whether a block's length at its end differs from the one at its start.
fn trailer_mismatch(rec: &[u8], big_endian: bool) -> Option<String> {
    let len = rec.len();
    let trailer = read_u32(&rec[len - 4..], big_endian) as usize;
    (trailer != len).then(|| {
        format!("block length {len} at its start but {trailer} at its end (the block is corrupt)")
    })
}

/// Why pcap-parser refused a whole block, without its dump of the input.
fn parser_why(e: nom::Err<PcapError<&[u8]>>, len: usize) -> String {
    match e {
        // A field (of the fixed part, or an option or record inside) runs
        // past the end of the block.
        nom::Err::Incomplete(n) => match n {
            nom::Needed::Size(n) => format!(
                "block length {len} is too short for what it holds ({} more bytes needed)",
                n.get()
            ),
            nom::Needed::Unknown => format!("block length {len} is too short for what it holds"),
        },
        nom::Err::Error(e) | nom::Err::Failure(e) => match e {
            PcapError::NomError(rest, kind) => format!(
                "pcap-parser cannot parse the block ({kind:?} check failed {} bytes before its end)",
                rest.len()
            ),
            other => other.to_string(),
        },
    }
}

/// Interface `local` of the section whose interface 0 is `start`.
fn section_interface(interfaces: &[Interface], start: usize, local: u32) -> Option<&Interface> {
    interfaces.get(start.checked_add(local as usize)?)
}

/// `if_tsresol`: bit 7 clear, a negative power of 10; set, a negative power
/// of 2. (pcap-parser's own `ts_resolution` rejects every power-of-2 value,
/// because it compares the whole byte, flag included, with 63.)
pub(super) fn ts_units_per_sec(tsresol: u8) -> Option<u64> {
    let n = (tsresol & 0x7f) as u32;
    if tsresol & 0x80 == 0 {
        10u64.checked_pow(n)
    } else {
        1u64.checked_shl(n).filter(|_| n < 64)
    }
}

/// Converts interface time units to nanoseconds since the epoch, adding the
/// interface's offset in seconds; times before the epoch become 0.
#[inline]
fn to_timestamp(units: u64, per_sec: u64, offset_secs: i64) -> Timestamp {
    if offset_secs == 0 {
        // The common cases, without 128-bit arithmetic.
        if per_sec == 1_000_000_000 {
            return Timestamp(units);
        }
        if per_sec == 1_000_000 {
            return Timestamp(units.saturating_mul(1000));
        }
    }
    let per_sec = per_sec.max(1);
    let secs = (units / per_sec) as i128 + offset_secs as i128;
    let frac = units % per_sec;
    let nanos = (frac as u128 * 1_000_000_000 / per_sec as u128) as i128;
    let total = secs * 1_000_000_000 + nanos;
    Timestamp(total.clamp(0, u64::MAX as i128) as u64)
}

#[inline]
pub(super) fn read_u32(b: &[u8], big_endian: bool) -> u32 {
    let a = [b[0], b[1], b[2], b[3]];
    if big_endian {
        u32::from_be_bytes(a)
    } else {
        u32::from_le_bytes(a)
    }
}

fn hex(b: &[u8]) -> String {
    let mut s = String::new();
    for (i, x) in b.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(&format!("{x:02x}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_timestamp_paths_match_the_general_one() {
        let general = |units: u64, per_sec: u64| {
            let secs = (units / per_sec) as i128;
            let nanos = ((units % per_sec) as u128 * 1_000_000_000 / per_sec as u128) as i128;
            Timestamp((secs * 1_000_000_000 + nanos).clamp(0, u64::MAX as i128) as u64)
        };
        for units in [
            0,
            1,
            999_999,
            1_000_000,
            1_700_000_000_123_456,
            u64::MAX / 1000,
        ] {
            assert_eq!(to_timestamp(units, 1_000_000, 0), general(units, 1_000_000));
            assert_eq!(
                to_timestamp(units, 1_000_000_000, 0),
                general(units, 1_000_000_000)
            );
        }
        // Past the end of time (year 2554): clamped like the general path.
        assert_eq!(to_timestamp(u64::MAX, 1_000_000, 0), Timestamp(u64::MAX));
        assert_eq!(
            to_timestamp(5, 1_000_000, -10),
            Timestamp(0),
            "before the epoch"
        );
    }

    #[test]
    fn short_blocks_are_named_without_a_dump_of_the_input() {
        // An interface description of 16 bytes: its type needs 20.
        let mut b = 1u32.to_le_bytes().to_vec();
        b.extend_from_slice(&16u32.to_le_bytes());
        b.extend_from_slice(&[0; 4]);
        b.extend_from_slice(&16u32.to_le_bytes());
        let e = parse_block_le(&b).unwrap_err();
        assert_eq!(
            parser_why(e, 16),
            "block length 16 is too short for what it holds (4 more bytes needed)"
        );
    }
}
