//! The streaming reader: pcap (both byte orders, micro- and nanosecond
//! timestamps, the "modified" Kuznetzov format) and pcapng (several sections,
//! several interfaces, Enhanced, Simple and the obsolete Packet Block).
//!
//! Framing and buffering are pcap-parser's (`LegacyPcapReader`,
//! `PcapNGReader`: a bounded circular buffer refilled from the file). Before
//! handing a record to pcap-parser the reader looks at its header itself, so
//! that a record cut short by the end of the file, an absurd length or a
//! packet block that contradicts its own length is reported precisely (file,
//! record number, byte offset) instead of as pcap-parser's generic
//! "incomplete" — and so that a truncated *last* record is an error after all
//! complete records were delivered, never a silent end of file.
//!
//! What it does not do: decode link layers (that is [`crate::wire`]), reorder
//! packets by time, or read compressed files.

use super::{CaptureError, Frame, Linktype, RecordRef};
use crate::time::Timestamp;
use pcap_parser::pcapng::Block;
use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::{LegacyPcapReader, PcapBlockOwned, PcapNGReader};
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// Buffer size the reader starts with: small, so that opening a tiny
/// capture is cheap. It doubles on every refill up to [`STEADY_BUFFER`], and
/// beyond that only for records that do not fit, up to [`MAX_RECORD`].
const INITIAL_BUFFER: usize = 2 * 1024;
/// Buffer size for streaming a large file (fewer, larger reads).
const STEADY_BUFFER: usize = 256 * 1024;

/// Largest record (pcap packet record or pcapng block) accepted. Far above any
/// packet Linux produces (64 KiB GSO, ~512 KiB BIG TCP), small enough that a
/// corrupt length cannot make the reader allocate without bound.
pub const MAX_RECORD: usize = 16 << 20;

const SHB_TYPE: u32 = 0x0A0D_0D0A;
const PB_TYPE: u32 = 0x0000_0002;
const SPB_TYPE: u32 = 0x0000_0003;
const EPB_TYPE: u32 = 0x0000_0006;
const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;
const OPT_IF_TSOFFSET: u16 = 14;

/// One capture interface: the pcap file itself, or a pcapng Interface
/// Description Block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// File-wide interface number ([`Frame::interface`]): interfaces of later
    /// pcapng sections are numbered after those of earlier ones, as Wireshark
    /// does, so the number is unique in the file.
    pub id: u32,
    /// 0-based pcapng section (always 0 for pcap).
    pub section: u32,
    pub linktype: Linktype,
    /// Snap length (0 = unlimited).
    pub snaplen: u32,
    /// The pcapng `if_name` option.
    pub name: Option<String>,
    /// Timestamp units per second (`if_tsresol`; 10^6 by default).
    pub ts_units_per_sec: u64,
    /// Seconds added to every timestamp (`if_tsoffset`).
    pub ts_offset_secs: i64,
}

enum Inner<R: Read> {
    Pcap {
        reader: LegacyPcapReader<Source<R>>,
        big_endian: bool,
        nanos: bool,
        header_len: usize,
    },
    Ng(PcapNGReader<Source<R>>),
}

impl<R: Read> Inner<R> {
    fn it(&self) -> &dyn PcapReaderIterator {
        match self {
            Inner::Pcap { reader, .. } => reader,
            Inner::Ng(reader) => reader,
        }
    }
    fn it_mut(&mut self) -> &mut dyn PcapReaderIterator {
        match self {
            Inner::Pcap { reader, .. } => reader,
            Inner::Ng(reader) => reader,
        }
    }
}

/// What the reader learned from a record's header before parsing it.
#[derive(Debug, Clone, Copy)]
struct RecordHead {
    /// Total length of the record in the file.
    len: usize,
    /// pcapng block type in native order (0 for pcap records).
    block_type: u32,
    is_packet: bool,
}

/// Where a delivered frame lies in the buffer, and its metadata.
#[derive(Debug, Clone, Copy)]
struct FrameMeta {
    index: u64,
    ts: Timestamp,
    linktype: Linktype,
    orig_len: u32,
    interface: u32,
    data_start: usize,
    caplen: usize,
}

/// Streams the packet records of a pcap or pcapng file with constant memory.
///
/// ```no_run
/// # use ctsim::capture::CaptureReader;
/// let mut r = CaptureReader::open("trace.pcap".as_ref())?;
/// while let Some(frame) = r.next_frame()? {
///     println!("{} {} bytes", frame.index, frame.data.len());
/// }
/// # Ok::<(), ctsim::capture::CaptureError>(())
/// ```
pub struct CaptureReader<R: Read = File> {
    file: String,
    inner: Inner<R>,
    /// Bytes of the record last handed out, consumed on the next call (the
    /// frame borrowed them until then).
    pending: usize,
    /// Packet records seen so far (delivered or reported as errors).
    packets: u64,
    finished: bool,
    interfaces: Vec<Interface>,
    /// Index into `interfaces` of the current pcapng section's interface 0.
    section_start: usize,
    sections: u32,
    big_endian: bool,
    last_ts: Timestamp,
    /// Size of pcap-parser's buffer.
    capacity: usize,
}

impl CaptureReader<File> {
    /// Opens a capture file; the format is detected from its magic number.
    pub fn open(path: &Path) -> Result<Self, CaptureError> {
        let name = path.display().to_string();
        let f = File::open(path).map_err(|source| CaptureError::Io {
            file: name.clone(),
            source,
        })?;
        Self::new(f, name)
    }
}

impl<R: Read> CaptureReader<R> {
    /// Reads a capture from any byte stream; `name_for_errors` is what error
    /// messages call it.
    pub fn new(r: R, name_for_errors: impl Into<String>) -> Result<Self, CaptureError> {
        let file = name_for_errors.into();
        let io_err = |source| CaptureError::Io {
            file: file.clone(),
            source,
        };
        let mut src = Source::new(r);
        src.prefetch(4).map_err(io_err)?;
        let magic: [u8; 4] = match src.head.get(..4) {
            Some(m) => [m[0], m[1], m[2], m[3]],
            None => {
                let magic = if src.head.is_empty() {
                    "nothing: the file is empty".to_string()
                } else {
                    hex(&src.head)
                };
                return Err(CaptureError::BadMagic { file, magic });
            }
        };
        match magic {
            [0xd4, 0xc3, 0xb2, 0xa1]
            | [0xa1, 0xb2, 0xc3, 0xd4]
            | [0x4d, 0x3c, 0xb2, 0xa1]
            | [0xa1, 0xb2, 0x3c, 0x4d]
            | [0x34, 0xcd, 0xb2, 0xa1] => Self::new_pcap(src, file, magic),
            [0x0a, 0x0d, 0x0d, 0x0a] => Self::new_pcapng(src, file),
            _ => Err(CaptureError::BadMagic {
                file,
                magic: hex(&magic),
            }),
        }
    }

    fn new_pcap(mut src: Source<R>, file: String, magic: [u8; 4]) -> Result<Self, CaptureError> {
        src.prefetch(24).map_err(|source| CaptureError::Io {
            file: file.clone(),
            source,
        })?;
        if src.head.len() < 24 {
            return Err(CaptureError::Truncated {
                file,
                record: RecordRef::FileHeader,
                offset: 0,
                expected: 24,
                found: src.head.len() as u64,
            });
        }
        let big_endian = magic[0] == 0xa1;
        let nanos = matches!(magic, [0x4d, 0x3c, ..] | [.., 0x3c, 0x4d]);
        let header_len = if magic == [0x34, 0xcd, 0xb2, 0xa1] {
            24
        } else {
            16
        };
        let mut reader =
            LegacyPcapReader::new(INITIAL_BUFFER, src).map_err(|e| CaptureError::Corrupt {
                file: file.clone(),
                record: RecordRef::FileHeader,
                offset: 0,
                why: e.to_string(),
                resumable: false,
            })?;
        let (linktype, snaplen, used) = match reader.next() {
            Ok((used, PcapBlockOwned::LegacyHeader(h))) => (h.network.0, h.snaplen, used),
            _ => {
                return Err(CaptureError::Corrupt {
                    file,
                    record: RecordRef::FileHeader,
                    offset: 0,
                    why: "unreadable pcap file header".into(),
                    resumable: false,
                });
            }
        };
        reader.consume(used);
        let interfaces = vec![Interface {
            id: 0,
            section: 0,
            // The upper 16 bits of the pcap link-type field carry FCS
            // information (LINKTYPE_* only use the lower 16).
            linktype: Linktype(linktype as u32 as u16),
            snaplen,
            name: None,
            ts_units_per_sec: if nanos { 1_000_000_000 } else { 1_000_000 },
            ts_offset_secs: 0,
        }];
        Ok(CaptureReader {
            file,
            inner: Inner::Pcap {
                reader,
                big_endian,
                nanos,
                header_len,
            },
            pending: 0,
            packets: 0,
            finished: false,
            interfaces,
            section_start: 0,
            sections: 1,
            big_endian,
            last_ts: Timestamp(0),
            capacity: INITIAL_BUFFER,
        })
    }

    fn new_pcapng(mut src: Source<R>, file: String) -> Result<Self, CaptureError> {
        let io_err = |source| CaptureError::Io {
            file: file.clone(),
            source,
        };
        src.prefetch(12).map_err(io_err)?;
        let truncated = |found: usize, expected: usize| CaptureError::Truncated {
            file: file.clone(),
            record: RecordRef::FileHeader,
            offset: 0,
            expected: expected as u64,
            found: found as u64,
        };
        if src.head.len() < 12 {
            return Err(truncated(src.head.len(), 28));
        }
        let big_endian =
            match u32::from_le_bytes([src.head[8], src.head[9], src.head[10], src.head[11]]) {
                BYTE_ORDER_MAGIC => false,
                m if m.swap_bytes() == BYTE_ORDER_MAGIC => true,
                _ => {
                    return Err(CaptureError::Corrupt {
                        file,
                        record: RecordRef::FileHeader,
                        offset: 0,
                        why: "section header has no valid byte-order magic".into(),
                        resumable: false,
                    });
                }
            };
        let shb_len = read_u32(&src.head[4..8], big_endian) as usize;
        if shb_len < 28 || !shb_len.is_multiple_of(4) || shb_len > MAX_RECORD {
            return Err(CaptureError::Corrupt {
                file,
                record: RecordRef::FileHeader,
                offset: 0,
                why: format!("section header block length {shb_len} is invalid"),
                resumable: false,
            });
        }
        src.prefetch(shb_len).map_err(io_err)?;
        if src.head.len() < shb_len {
            return Err(truncated(src.head.len(), shb_len));
        }
        let capacity = INITIAL_BUFFER.max(shb_len.next_power_of_two());
        let reader = PcapNGReader::new(capacity, src).map_err(|e| CaptureError::Corrupt {
            file: file.clone(),
            record: RecordRef::FileHeader,
            offset: 0,
            why: e.to_string(),
            resumable: false,
        })?;
        Ok(CaptureReader {
            file,
            inner: Inner::Ng(reader),
            pending: 0,
            packets: 0,
            finished: false,
            interfaces: Vec::new(),
            section_start: 0,
            sections: 0,
            big_endian,
            last_ts: Timestamp(0),
            capacity,
        })
    }

    /// The name used in error messages.
    pub fn file_name(&self) -> &str {
        &self.file
    }

    /// `"pcap"` or `"pcapng"`.
    pub fn format(&self) -> &'static str {
        match self.inner {
            Inner::Pcap { .. } => "pcap",
            Inner::Ng(_) => "pcapng",
        }
    }

    /// Interfaces seen so far (for pcapng, those whose description block has
    /// been read: all of them once the capture is read to the end).
    pub fn interfaces(&self) -> &[Interface] {
        &self.interfaces
    }

    /// The pcapng `if_name` of a file-wide interface number.
    pub fn interface_name(&self, id: u32) -> Option<&str> {
        self.interfaces.get(id as usize)?.name.as_deref()
    }

    /// Byte offset in the file of the next unread record.
    pub fn offset(&self) -> u64 {
        (self.inner.it().consumed() + self.pending) as u64
    }

    /// The next packet record, or `None` at the end of the capture.
    ///
    /// Errors name the record; see [`CaptureError::is_resumable`] for
    /// whether calling again goes on.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, CaptureError> {
        if self.pending != 0 {
            let p = std::mem::take(&mut self.pending);
            // No shift here: `consume` would move the unread half of the
            // buffer to its front every time the read position passes the
            // middle, copying every byte of the capture once more. Refill
            // shifts, and then only the tail of one partial record is left.
            self.inner.it_mut().consume_noshift(p);
        }
        if self.finished {
            return Ok(None);
        }
        let meta = loop {
            let head = match self.ensure_record() {
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
            match self.parse_record(head) {
                Ok(Some(meta)) => break meta,
                Ok(None) => continue,
                Err(e) => {
                    if !e.is_resumable() {
                        self.finished = true;
                    }
                    return Err(e);
                }
            }
        };
        let data = &self.inner.it().data()[meta.data_start..meta.data_start + meta.caplen];
        Ok(Some(Frame {
            index: meta.index,
            ts: meta.ts,
            linktype: meta.linktype,
            orig_len: meta.orig_len,
            interface: meta.interface,
            interface_name: self
                .interfaces
                .get(meta.interface as usize)
                .and_then(|i| i.name.as_deref()),
            data,
        }))
    }

    fn offset_now(&self) -> u64 {
        self.inner.it().consumed() as u64
    }

    fn record_ref(&self, head: &RecordHead) -> RecordRef {
        if head.is_packet {
            RecordRef::Packet(self.packets + 1)
        } else {
            RecordRef::Block(head.block_type)
        }
    }

    /// Makes sure the next record is whole in the buffer. `None` at a clean
    /// end of file (between records).
    fn ensure_record(&mut self) -> Result<Option<RecordHead>, CaptureError> {
        let fixed = match &self.inner {
            Inner::Pcap { header_len, .. } => *header_len,
            Inner::Ng(_) => 12,
        };
        let mut head: Option<RecordHead> = None;
        loop {
            let avail = self.inner.it().data().len();
            if head.is_none() && avail >= fixed {
                head = Some(self.peek_head()?);
            }
            let want = head.map_or(fixed, |h| h.len);
            if avail >= want {
                return Ok(head);
            }
            if self.inner.it().reader_exhausted() {
                if avail == 0 && head.is_none() {
                    return Ok(None);
                }
                let record = match &head {
                    Some(h) => self.record_ref(h),
                    // Not even the fixed header: for pcap that is surely a
                    // packet record; for pcapng we cannot tell.
                    None => match self.inner {
                        Inner::Pcap { .. } => RecordRef::Packet(self.packets + 1),
                        Inner::Ng(_) => RecordRef::Block(0),
                    },
                };
                return Err(CaptureError::Truncated {
                    file: self.file.clone(),
                    record,
                    offset: self.offset_now(),
                    expected: want as u64,
                    found: avail as u64,
                });
            }
            if avail >= self.capacity {
                // The buffer is full and the record still does not fit.
                // Doubling (rather than jumping to the claimed length) keeps
                // the allocation within twice the bytes really present, so a
                // corrupt length field costs nothing.
                let target = (self.capacity * 2).min((want + fixed).next_power_of_two());
                if self.inner.it_mut().grow(target) {
                    self.capacity = target;
                }
            }
            if self.capacity < STEADY_BUFFER && self.inner.it_mut().grow(self.capacity * 2) {
                self.capacity *= 2;
            }
            let it = self.inner.it_mut();
            it.refill().map_err(|_| CaptureError::Io {
                file: self.file.clone(),
                source: io::Error::other("read failed"),
            })?;
        }
    }

    /// Reads the fixed header of the record at the buffer's start.
    fn peek_head(&self) -> Result<RecordHead, CaptureError> {
        let data = self.inner.it().data();
        match &self.inner {
            Inner::Pcap {
                big_endian,
                header_len,
                ..
            } => {
                let caplen = read_u32(&data[8..12], *big_endian) as usize;
                if caplen > MAX_RECORD {
                    return Err(CaptureError::CaplenTooLarge {
                        file: self.file.clone(),
                        record: RecordRef::Packet(self.packets + 1),
                        offset: self.offset_now(),
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
            Inner::Ng(_) => {
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
                        offset: self.offset_now(),
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

    /// Parses the whole record at the buffer's start. `Ok(None)`: it was not
    /// a packet and has been consumed.
    fn parse_record(&mut self, head: RecordHead) -> Result<Option<FrameMeta>, CaptureError> {
        let record = self.record_ref(&head);
        let offset = self.offset_now();
        if head.is_packet {
            self.packets += 1;
        }
        let index = self.packets;
        let corrupt = |file: &str, why: String| CaptureError::Corrupt {
            file: file.to_string(),
            record,
            offset,
            why,
            resumable: true,
        };
        if let Inner::Ng(_) = self.inner {
            // Checks pcap-parser leaves to its streaming logic, where a packet
            // block contradicting its own length would read as "incomplete".
            let data = self.inner.it().data();
            match head.block_type {
                EPB_TYPE | PB_TYPE => {
                    let caplen = if head.len >= 32 {
                        read_u32(&data[20..24], self.big_endian) as usize
                    } else {
                        usize::MAX
                    };
                    if caplen == usize::MAX || caplen.div_ceil(4) * 4 + 32 > head.len {
                        let why = if caplen == usize::MAX {
                            format!(
                                "packet block length {} is below the minimum of 32",
                                head.len
                            )
                        } else {
                            format!(
                                "packet block claims {caplen} captured bytes but is only {} bytes long",
                                head.len
                            )
                        };
                        self.inner.it_mut().consume(head.len);
                        return Err(corrupt(&self.file, why));
                    }
                    if head.block_type == PB_TYPE {
                        return self.parse_obsolete_packet_block(head, index, record, offset);
                    }
                }
                SPB_TYPE if head.len < 16 => {
                    self.inner.it_mut().consume(head.len);
                    return Err(corrupt(
                        &self.file,
                        format!(
                            "simple packet block length {} is below the minimum of 16",
                            head.len
                        ),
                    ));
                }
                _ => {}
            }
        }
        let file = &self.file;
        let (used, meta) = match &mut self.inner {
            Inner::Pcap {
                reader,
                nanos,
                header_len,
                ..
            } => {
                let nanos = *nanos;
                let header_len = *header_len;
                match reader.next() {
                    Ok((used, PcapBlockOwned::Legacy(b))) => {
                        let sub = if nanos {
                            b.ts_usec as u64
                        } else {
                            b.ts_usec as u64 * 1000
                        };
                        let ts = Timestamp((b.ts_sec as u64) * 1_000_000_000 + sub);
                        (
                            used,
                            Some(FrameMeta {
                                index,
                                ts,
                                linktype: self.interfaces[0].linktype,
                                orig_len: b.origlen,
                                interface: 0,
                                data_start: header_len,
                                caplen: b.caplen as usize,
                            }),
                        )
                    }
                    Ok((used, _)) => (used, None),
                    Err(e) => {
                        let why = e.to_string();
                        reader.consume(head.len);
                        return Err(corrupt(file, why));
                    }
                }
            }
            Inner::Ng(reader) => match reader.next() {
                Ok((used, PcapBlockOwned::NG(block))) => match block {
                    Block::SectionHeader(shb) => {
                        self.section_start = self.interfaces.len();
                        self.sections += 1;
                        self.big_endian = shb.big_endian();
                        (used, None)
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
                            reader.consume(used);
                            return Err(corrupt(file, why));
                        }
                        (used, None)
                    }
                    Block::EnhancedPacket(epb) => {
                        let local = epb.if_id;
                        let Some(iface) =
                            section_interface(&self.interfaces, self.section_start, local)
                        else {
                            let defined = (self.interfaces.len() - self.section_start) as u32;
                            reader.consume(used);
                            return Err(CaptureError::UnknownInterface {
                                file: file.clone(),
                                record,
                                offset,
                                interface: local,
                                defined,
                            });
                        };
                        let units = ((epb.ts_high as u64) << 32) | epb.ts_low as u64;
                        let ts = to_timestamp(units, iface.ts_units_per_sec, iface.ts_offset_secs);
                        (
                            used,
                            Some(FrameMeta {
                                index,
                                ts,
                                linktype: iface.linktype,
                                orig_len: epb.origlen,
                                interface: iface.id,
                                data_start: 28,
                                caplen: epb.caplen as usize,
                            }),
                        )
                    }
                    Block::SimplePacket(spb) => {
                        let Some(iface) =
                            section_interface(&self.interfaces, self.section_start, 0)
                        else {
                            reader.consume(used);
                            return Err(CaptureError::UnknownInterface {
                                file: file.clone(),
                                record,
                                offset,
                                interface: 0,
                                defined: 0,
                            });
                        };
                        // The block holds min(original length, snap length)
                        // bytes plus padding; it has no caplen field.
                        let mut caplen = (spb.origlen as usize).min(spb.data.len());
                        if iface.snaplen != 0 {
                            caplen = caplen.min(iface.snaplen as usize);
                        }
                        (
                            used,
                            Some(FrameMeta {
                                index,
                                // No timestamp: it keeps the previous packet's.
                                ts: self.last_ts,
                                linktype: iface.linktype,
                                orig_len: spb.origlen,
                                interface: iface.id,
                                data_start: 12,
                                caplen,
                            }),
                        )
                    }
                    _ => (used, None),
                },
                Ok((used, _)) => (used, None),
                Err(e) => {
                    let why = e.to_string();
                    reader.consume(head.len);
                    return Err(corrupt(file, why));
                }
            },
        };
        match meta {
            Some(m) => {
                self.pending = used;
                self.last_ts = m.ts;
                Ok(Some(m))
            }
            None => {
                self.inner.it_mut().consume(used);
                Ok(None)
            }
        }
    }

    /// The pcapng Packet Block (type 2), obsoleted by the EPB but still
    /// written by old tools; pcap-parser does not parse it.
    fn parse_obsolete_packet_block(
        &mut self,
        head: RecordHead,
        index: u64,
        record: RecordRef,
        offset: u64,
    ) -> Result<Option<FrameMeta>, CaptureError> {
        let data = self.inner.it().data();
        let be = self.big_endian;
        let local = if be {
            u16::from_be_bytes([data[8], data[9]])
        } else {
            u16::from_le_bytes([data[8], data[9]])
        } as u32;
        let ts_units =
            ((read_u32(&data[12..16], be) as u64) << 32) | read_u32(&data[16..20], be) as u64;
        let caplen = read_u32(&data[20..24], be) as usize;
        let orig_len = read_u32(&data[24..28], be);
        let Some(iface) = section_interface(&self.interfaces, self.section_start, local) else {
            let defined = (self.interfaces.len() - self.section_start) as u32;
            self.inner.it_mut().consume(head.len);
            return Err(CaptureError::UnknownInterface {
                file: self.file.clone(),
                record,
                offset,
                interface: local,
                defined,
            });
        };
        let meta = FrameMeta {
            index,
            ts: to_timestamp(ts_units, iface.ts_units_per_sec, iface.ts_offset_secs),
            linktype: iface.linktype,
            orig_len,
            interface: iface.id,
            data_start: 28,
            caplen,
        };
        self.pending = head.len;
        self.last_ts = meta.ts;
        Ok(Some(meta))
    }
}

/// Interface `local` of the section whose interface 0 is `start`.
fn section_interface(interfaces: &[Interface], start: usize, local: u32) -> Option<&Interface> {
    interfaces.get(start.checked_add(local as usize)?)
}

/// `if_tsresol`: bit 7 clear, a negative power of 10; set, a negative power
/// of 2. (pcap-parser's own `ts_resolution` rejects every power-of-2 value,
/// because it compares the whole byte, flag included, with 63.)
fn ts_units_per_sec(tsresol: u8) -> Option<u64> {
    let n = (tsresol & 0x7f) as u32;
    if tsresol & 0x80 == 0 {
        10u64.checked_pow(n)
    } else {
        1u64.checked_shl(n).filter(|_| n < 64)
    }
}

/// Converts interface time units to nanoseconds since the epoch, adding the
/// interface's offset in seconds; times before the epoch become 0.
fn to_timestamp(units: u64, per_sec: u64, offset_secs: i64) -> Timestamp {
    let per_sec = per_sec.max(1);
    let secs = (units / per_sec) as i128 + offset_secs as i128;
    let frac = units % per_sec;
    let nanos = (frac as u128 * 1_000_000_000 / per_sec as u128) as i128;
    let total = secs * 1_000_000_000 + nanos;
    Timestamp(total.clamp(0, u64::MAX as i128) as u64)
}

fn read_u32(b: &[u8], big_endian: bool) -> u32 {
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

/// The byte stream under pcap-parser: first the bytes the format detection
/// already read, then the rest of the input. Every `read` fills the buffer as
/// far as the input allows, because pcap-parser's readers take a short read
/// at open time as a short file.
struct Source<R> {
    head: Vec<u8>,
    pos: usize,
    inner: R,
    eof: bool,
}

impl<R: Read> Source<R> {
    fn new(inner: R) -> Self {
        Source {
            head: Vec::new(),
            pos: 0,
            inner,
            eof: false,
        }
    }

    /// Reads ahead until `head` holds `n` bytes or the input ends.
    fn prefetch(&mut self, n: usize) -> io::Result<()> {
        while self.head.len() < n && !self.eof {
            let have = self.head.len();
            self.head.resize(n, 0);
            match self.inner.read(&mut self.head[have..]) {
                Ok(0) => {
                    self.head.truncate(have);
                    self.eof = true;
                }
                Ok(k) => self.head.truncate(have + k),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => self.head.truncate(have),
                Err(e) => {
                    self.head.truncate(have);
                    return Err(e);
                }
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for Source<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        if self.pos < self.head.len() {
            let k = (self.head.len() - self.pos).min(buf.len());
            buf[..k].copy_from_slice(&self.head[self.pos..self.pos + k]);
            self.pos += k;
            n = k;
            if self.pos == self.head.len() {
                self.head = Vec::new();
                self.pos = 0;
            }
        }
        while n < buf.len() && !self.eof {
            match self.inner.read(&mut buf[n..]) {
                Ok(0) => self.eof = true,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if n == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcap_header(magic: u32, be: bool, linktype: u32) -> Vec<u8> {
        let mut v = Vec::new();
        let w32 = |v: &mut Vec<u8>, x: u32| {
            v.extend_from_slice(&if be { x.to_be_bytes() } else { x.to_le_bytes() })
        };
        w32(&mut v, magic);
        let (maj, min) = (2u16, 4u16);
        v.extend_from_slice(&if be {
            maj.to_be_bytes()
        } else {
            maj.to_le_bytes()
        });
        v.extend_from_slice(&if be {
            min.to_be_bytes()
        } else {
            min.to_le_bytes()
        });
        w32(&mut v, 0);
        w32(&mut v, 0);
        w32(&mut v, 65535);
        w32(&mut v, linktype);
        v
    }

    fn pcap_record(be: bool, sec: u32, frac: u32, data: &[u8], orig: u32) -> Vec<u8> {
        let mut v = Vec::new();
        for x in [sec, frac, data.len() as u32, orig] {
            v.extend_from_slice(&if be { x.to_be_bytes() } else { x.to_le_bytes() });
        }
        v.extend_from_slice(data);
        v
    }

    fn read_all<R: Read>(
        r: &mut CaptureReader<R>,
    ) -> Vec<(u64, Timestamp, u16, u32, Vec<u8>, u32)> {
        let mut out = Vec::new();
        while let Some(f) = r.next_frame().unwrap() {
            out.push((
                f.index,
                f.ts,
                f.linktype.0,
                f.orig_len,
                f.data.to_vec(),
                f.interface,
            ));
        }
        out
    }

    #[test]
    fn pcap_big_endian_nanoseconds() {
        let mut b = pcap_header(0xa1b2_3c4d, true, 101);
        b.extend(pcap_record(true, 10, 999_999_999, &[0x45, 1, 2], 3));
        b.extend(pcap_record(true, 11, 5, &[0x60; 7], 1500));
        let mut r = CaptureReader::new(&b[..], "be-ns").unwrap();
        let got = read_all(&mut r);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].1, Timestamp::from_secs_nanos(10, 999_999_999));
        assert_eq!(got[1].1, Timestamp::from_secs_nanos(11, 5));
        assert_eq!((got[1].2, got[1].3, got[1].4.len()), (101, 1500, 7));
        assert_eq!(r.format(), "pcap");
    }

    #[test]
    fn pcap_little_endian_microseconds_in_small_reads() {
        // A reader that hands out 3 bytes at a time must not change anything.
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = buf.len().min(3).min(self.0.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut b = pcap_header(0xa1b2_c3d4, false, 1);
        for i in 0..100u32 {
            b.extend(pcap_record(
                false,
                i,
                250_000,
                &vec![i as u8; (i as usize * 37) % 1600],
                1600,
            ));
        }
        let mut r = CaptureReader::new(Trickle(&b), "trickle").unwrap();
        let got = read_all(&mut r);
        assert_eq!(got.len(), 100);
        assert_eq!(got[99].0, 100);
        assert_eq!(got[7].1, Timestamp(7_250_000_000));
        assert_eq!(got[42].4, vec![42u8; 42 * 37]);
    }

    fn block(be: bool, t: u32, body: &[u8]) -> Vec<u8> {
        let w = |x: u32| if be { x.to_be_bytes() } else { x.to_le_bytes() };
        let len = 12 + body.len() as u32;
        let mut v = w(t).to_vec();
        v.extend_from_slice(&w(len));
        v.extend_from_slice(body);
        v.extend_from_slice(&w(len));
        v
    }

    fn shb(be: bool) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&if be {
            BYTE_ORDER_MAGIC.to_be_bytes()
        } else {
            BYTE_ORDER_MAGIC.to_le_bytes()
        });
        body.extend_from_slice(&if be {
            1u16.to_be_bytes()
        } else {
            1u16.to_le_bytes()
        });
        body.extend_from_slice(&[0, 0]);
        body.extend_from_slice(&(-1i64).to_le_bytes());
        block(be, SHB_TYPE, &body)
    }

    fn option(be: bool, code: u16, value: &[u8]) -> Vec<u8> {
        let w16 = |x: u16| if be { x.to_be_bytes() } else { x.to_le_bytes() };
        let mut v = w16(code).to_vec();
        v.extend_from_slice(&w16(value.len() as u16));
        v.extend_from_slice(value);
        while !v.len().is_multiple_of(4) {
            v.push(0);
        }
        v
    }

    fn idb(be: bool, linktype: u16, snaplen: u32, opts: &[Vec<u8>]) -> Vec<u8> {
        let mut body = if be {
            linktype.to_be_bytes()
        } else {
            linktype.to_le_bytes()
        }
        .to_vec();
        body.extend_from_slice(&[0, 0]);
        body.extend_from_slice(&if be {
            snaplen.to_be_bytes()
        } else {
            snaplen.to_le_bytes()
        });
        for o in opts {
            body.extend_from_slice(o);
        }
        if !opts.is_empty() {
            body.extend_from_slice(&[0, 0, 0, 0]);
        }
        block(be, IDB_TYPE_FOR_TESTS, &body)
    }

    const IDB_TYPE_FOR_TESTS: u32 = 1;

    fn padded(data: &[u8]) -> Vec<u8> {
        let mut v = data.to_vec();
        while !v.len().is_multiple_of(4) {
            v.push(0);
        }
        v
    }

    fn epb(be: bool, ifid: u32, ts: u64, data: &[u8], orig: u32) -> Vec<u8> {
        let w = |x: u32| if be { x.to_be_bytes() } else { x.to_le_bytes() };
        let mut body = Vec::new();
        for x in [ifid, (ts >> 32) as u32, ts as u32, data.len() as u32, orig] {
            body.extend_from_slice(&w(x));
        }
        body.extend(padded(data));
        block(be, EPB_TYPE, &body)
    }

    #[test]
    fn pcapng_sections_interfaces_resolutions_and_packet_blocks() {
        let mut b = shb(false);
        // Interface 0: Ethernet, named, 2^-10 s units, offset +100 s.
        b.extend(idb(
            false,
            1,
            0,
            &[
                option(false, 2, b"eth0"),
                option(false, 9, &[0x8a]),
                option(false, 14, &100i64.to_le_bytes()),
            ],
        ));
        // Interface 1: raw IP, nanoseconds, snaplen 4.
        b.extend(idb(false, 101, 4, &[option(false, 9, &[9])]));
        b.extend(epb(false, 0, 1024 * 5 + 512, &[1, 2, 3], 3));
        b.extend(epb(false, 1, 1_500_000_000, &[0x45, 0, 0, 20, 9], 20));
        // Simple packet block on interface 0 (snaplen 0: all 6 bytes; padded to 8).
        let mut spb = 6u32.to_le_bytes().to_vec();
        spb.extend(padded(&[6, 6, 6, 6, 6, 6]));
        b.extend(block(false, SPB_TYPE, &spb));
        // Obsolete packet block on interface 1.
        let mut pb = Vec::new();
        pb.extend_from_slice(&1u16.to_le_bytes());
        pb.extend_from_slice(&0u16.to_le_bytes());
        pb.extend_from_slice(&0u32.to_le_bytes());
        pb.extend_from_slice(&2_000_000_000u32.to_le_bytes());
        pb.extend_from_slice(&2u32.to_le_bytes());
        pb.extend_from_slice(&40u32.to_le_bytes());
        pb.extend(padded(&[0x60, 0]));
        b.extend(block(false, PB_TYPE, &pb));
        // A custom/unknown block is skipped.
        b.extend(block(false, 0x0000_0bad, &[1, 2, 3, 4]));
        // Second section, big-endian: its interface 0 is file-wide interface 2.
        b.extend(shb(true));
        b.extend(idb(true, 113, 0, &[option(true, 2, b"any")]));
        b.extend(epb(true, 0, 7_000_000, &[0; 16], 16));

        let mut r = CaptureReader::new(&b[..], "ng").unwrap();
        let got = read_all(&mut r);
        assert_eq!(r.format(), "pcapng");
        assert_eq!(got.len(), 5);
        assert_eq!(
            got.iter().map(|g| g.0).collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5]
        );
        // 5.5 s in 1/1024 units + 100 s offset.
        assert_eq!(got[0].1, Timestamp::from_secs_nanos(105, 500_000_000));
        assert_eq!((got[0].2, got[0].5), (1, 0));
        assert_eq!(got[1].1, Timestamp::from_secs_nanos(1, 500_000_000));
        assert_eq!((got[1].2, got[1].3, got[1].5), (101, 20, 1));
        // SPB: no timestamp, keeps the previous one.
        assert_eq!(
            (got[2].1, got[2].4.clone(), got[2].5),
            (got[1].1, vec![6; 6], 0)
        );
        assert_eq!(
            (got[3].1, got[3].4.clone(), got[3].3),
            (Timestamp::from_secs_nanos(2, 0), vec![0x60, 0], 40)
        );
        assert_eq!(
            (got[4].2, got[4].5, got[4].1),
            (113, 2, Timestamp::from_secs_nanos(7, 0))
        );
        assert_eq!(r.interfaces().len(), 3);
        assert_eq!(r.interface_name(0), Some("eth0"));
        assert_eq!(r.interface_name(1), None);
        assert_eq!(r.interface_name(2), Some("any"));
        assert_eq!(r.interfaces()[2].section, 1);
    }

    fn malformed(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/data/malformed/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(path).unwrap()
    }

    #[test]
    fn truncated_last_record_is_an_error_after_the_complete_ones() {
        let b = malformed("truncated-last-record.pcap");
        let mut r = CaptureReader::new(&b[..], "cut.pcap").unwrap();
        assert_eq!(r.next_frame().unwrap().unwrap().index, 1);
        assert_eq!(r.next_frame().unwrap().unwrap().index, 2);
        let e = r.next_frame().unwrap_err();
        assert_eq!(
            e.to_string(),
            "cut.pcap: capture ended inside record 3 at byte offset 176: expected 76 bytes, found 41"
        );
        assert!(!e.is_resumable());
        assert!(r.next_frame().unwrap().is_none());
    }

    #[test]
    fn bad_files_are_named_precisely() {
        let e = CaptureReader::new(&malformed("bad-magic.pcap")[..], "x")
            .err()
            .unwrap();
        assert_eq!(
            e.to_string(),
            "x: not a pcap or pcapng file (it starts with 47 49 46 38)"
        );
        let e = CaptureReader::new(&[][..], "empty").err().unwrap();
        assert_eq!(
            e.to_string(),
            "empty: not a pcap or pcapng file (it starts with nothing: the file is empty)"
        );
        let e = CaptureReader::new(&malformed("short-header.pcap")[..], "s")
            .err()
            .unwrap();
        assert_eq!(
            e.to_string(),
            "s: capture ended inside the file header at byte offset 0: expected 24 bytes, found 10"
        );
        let b = malformed("absurd-caplen.pcap");
        let mut r = CaptureReader::new(&b[..], "a").unwrap();
        assert!(r.next_frame().unwrap().is_some());
        let e = r.next_frame().unwrap_err();
        assert!(matches!(
            e,
            CaptureError::CaplenTooLarge {
                record: RecordRef::Packet(2),
                caplen: 0x7fff_ffff,
                ..
            }
        ));
    }

    #[test]
    fn bad_pcapng_packet_blocks_are_skipped_with_an_error() {
        let b = malformed("unknown-interface.pcapng");
        let mut r = CaptureReader::new(&b[..], "u").unwrap();
        let e = r.next_frame().unwrap_err();
        assert_eq!(
            e.to_string(),
            "u: record 1 at byte offset 48 names interface 3, but its section describes 1 interface(s)"
        );
        assert!(e.is_resumable());
        let f = r.next_frame().unwrap().unwrap();
        assert_eq!((f.index, f.data.len()), (2, 60));
        assert!(r.next_frame().unwrap().is_none());

        let b = malformed("epb-caplen-exceeds-block.pcapng");
        let mut r = CaptureReader::new(&b[..], "c").unwrap();
        let e = r.next_frame().unwrap_err();
        assert!(
            e.to_string()
                .contains("packet block claims 500 captured bytes but is only 92 bytes long")
        );
        assert_eq!(r.next_frame().unwrap().unwrap().index, 2);
    }

    #[test]
    fn records_larger_than_the_initial_buffer() {
        let mut b = pcap_header(0xa1b2_c3d4, false, 1);
        let big = vec![7u8; STEADY_BUFFER * 3];
        b.extend(pcap_record(false, 1, 0, &big, big.len() as u32));
        b.extend(pcap_record(false, 2, 0, &[1, 2, 3], 3));
        let mut r = CaptureReader::new(&b[..], "big").unwrap();
        assert_eq!(
            r.next_frame().unwrap().unwrap().data.len(),
            STEADY_BUFFER * 3
        );
        assert_eq!(r.next_frame().unwrap().unwrap().data, &[1, 2, 3]);
        assert!(r.next_frame().unwrap().is_none());
    }
}
