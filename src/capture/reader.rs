//! The capture reader: pcap (both byte orders, micro- and nanosecond
//! timestamps, the "modified" Kuznetzov format) and pcapng (several sections,
//! several interfaces, Enhanced, Simple and the obsolete Packet Block).
//!
//! Two ways in, one parser ([`super::parse`]):
//!
//! * [`CaptureReader::open`] maps a regular file into memory and parses its
//!   records in place ([`super::mapped`], which also explains the one
//!   caveat of mapping). [`CaptureReader::from_bytes`] does the same for a
//!   capture already in memory.
//! * Anything else — a pipe, `/dev/stdin`, any [`Read`] given to
//!   [`CaptureReader::new`], or a file opened with
//!   [`CaptureReader::open_streaming`] — is streamed through a bounded
//!   buffer: small at first, so that opening a tiny capture is cheap,
//!   growing to [`STEADY_BUFFER`], and beyond only for a record that does
//!   not fit, up to [`MAX_RECORD`].
//!
//! The parser looks at each record's header before it parses the record, so
//! that a record cut short by the end of the file, an absurd length or a
//! packet block that contradicts its own length is reported precisely (file,
//! record number, byte offset) — and so that a truncated *last* record is an
//! error after all complete records were delivered, never a silent end of
//! file. Both ways give the same frames and the same errors.
//!
//! What it does not do: decode link layers (that is [`crate::wire`]), reorder
//! packets by time, or read compressed files.

#[cfg(test)]
use super::RecordRef;
use super::mapped::{CaptureBytes, MemWindow};
#[cfg(test)]
use super::parse::{BYTE_ORDER_MAGIC, EPB_TYPE, PB_TYPE, SHB_TYPE, SPB_TYPE};
use super::parse::{FrameMeta, Parser, RecordSpan, Window};
use super::{CaptureError, Frame, Linktype};
#[cfg(test)]
use crate::time::Timestamp;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;

/// Buffer size the streaming reader starts with: small, so that opening a
/// tiny capture is cheap. It doubles on every refill up to
/// [`STEADY_BUFFER`], and beyond that only for records that do not fit, up
/// to [`MAX_RECORD`].
const INITIAL_BUFFER: usize = 2 * 1024;
/// Buffer size for streaming a large file (fewer, larger reads).
const STEADY_BUFFER: usize = 256 * 1024;

/// Largest record (pcap packet record or pcapng block) accepted. Far above any
/// packet Linux produces (64 KiB GSO, ~512 KiB BIG TCP), small enough that a
/// corrupt length cannot make the reader allocate without bound.
pub const MAX_RECORD: usize = 16 << 20;

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

enum Source<R> {
    Stream(StreamBuf<R>),
    Memory(MemWindow),
}

/// Reads the packet records of a pcap or pcapng file, in constant memory.
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
    parser: Parser,
    src: Source<R>,
    /// Size of the input, when it is known.
    size: Option<u64>,
}

impl CaptureReader<File> {
    /// Opens a capture file; the format is detected from its magic number.
    /// A regular file is mapped into memory (see [`CaptureBytes`] for the
    /// caveat); anything else, or a file the system refuses to map, is
    /// streamed.
    pub fn open(path: &Path) -> Result<Self, CaptureError> {
        Self::open_with(path, true)
    }

    /// Opens a capture file and streams it, never mapping it.
    pub fn open_streaming(path: &Path) -> Result<Self, CaptureError> {
        Self::open_with(path, false)
    }

    fn open_with(path: &Path, map: bool) -> Result<Self, CaptureError> {
        let name = path.display().to_string();
        let f = File::open(path).map_err(|source| CaptureError::Io {
            file: name.clone(),
            source,
        })?;
        let size = f.metadata().ok().filter(|m| m.is_file()).map(|m| m.len());
        // An empty file cannot be mapped; streaming it says so.
        if map
            && size.is_some_and(|n| n > 0)
            && let Ok(bytes) = CaptureBytes::map(&f)
        {
            return Self::from_shared(Arc::new(bytes), name);
        }
        let mut r = Self::new(f, name)?;
        r.size = size;
        Ok(r)
    }

    /// Reads a capture that is already in memory, in place.
    pub fn from_bytes(
        bytes: Vec<u8>,
        name_for_errors: impl Into<String>,
    ) -> Result<Self, CaptureError> {
        Self::from_shared(Arc::new(CaptureBytes::from_vec(bytes)), name_for_errors)
    }

    /// Another reader of the same capture in memory, from its start: the
    /// bytes (a mapped file's pages) are shared, not read again. `None` for
    /// a streamed capture, whose bytes are gone once read.
    pub fn reopen_shared(&self) -> Option<Result<Self, CaptureError>> {
        let bytes = self.bytes()?.clone();
        Some(Self::from_shared(bytes, self.parser.file.clone()))
    }

    fn from_shared(
        bytes: Arc<CaptureBytes>,
        name_for_errors: impl Into<String>,
    ) -> Result<Self, CaptureError> {
        let size = Some(bytes.len() as u64);
        let mut w = MemWindow::new(bytes);
        let parser = Parser::open(&mut w, name_for_errors.into())?;
        Ok(CaptureReader {
            parser,
            src: Source::Memory(w),
            size,
        })
    }
}

impl<R: Read> CaptureReader<R> {
    /// Streams a capture from any byte stream; `name_for_errors` is what
    /// error messages call it.
    pub fn new(r: R, name_for_errors: impl Into<String>) -> Result<Self, CaptureError> {
        let mut w = StreamBuf::new(r);
        let parser = Parser::open(&mut w, name_for_errors.into())?;
        Ok(CaptureReader {
            parser,
            src: Source::Stream(w),
            size: None,
        })
    }

    /// The name used in error messages.
    pub fn file_name(&self) -> &str {
        &self.parser.file
    }

    /// `"pcap"` or `"pcapng"`.
    pub fn format(&self) -> &'static str {
        self.parser.format()
    }

    /// Interfaces seen so far (for pcapng, those whose description block has
    /// been read: all of them once the capture is read to the end).
    pub fn interfaces(&self) -> &[Interface] {
        &self.parser.interfaces
    }

    /// The pcapng `if_name` of a file-wide interface number.
    pub fn interface_name(&self, id: u32) -> Option<&str> {
        self.parser.interfaces.get(id as usize)?.name.as_deref()
    }

    /// Byte offset in the file of the next unread record.
    pub fn offset(&self) -> u64 {
        let at = match &self.src {
            Source::Stream(w) => w.offset(),
            Source::Memory(w) => w.offset(),
        };
        at + self.parser.pending() as u64
    }

    /// Size of the capture in bytes, when known (a regular file, or a
    /// capture in memory).
    pub fn size(&self) -> Option<u64> {
        self.size
    }

    /// The memory the frames borrow from, when the capture is read in place
    /// (mapped, or [`CaptureReader::from_bytes`]); `None` when streamed.
    /// Where a frame lies in it: [`CaptureBytes::span_of`].
    pub fn bytes(&self) -> Option<&Arc<CaptureBytes>> {
        match &self.src {
            Source::Memory(w) => Some(w.bytes()),
            Source::Stream(_) => None,
        }
    }

    /// For a capture in memory: how many bytes behind the read position
    /// stay mapped, because frames there are still in use (see
    /// [`CaptureBytes`]; the default is 4 MiB). Pages
    /// further behind are unmapped and read again from the page cache if
    /// touched. No effect on a streamed capture.
    pub fn keep_behind(&mut self, bytes: usize) {
        if let Source::Memory(w) = &mut self.src {
            w.keep_behind(bytes);
        }
    }

    /// The next packet record, or `None` at the end of the capture.
    ///
    /// Errors name the record; see [`CaptureError::is_resumable`] for
    /// whether calling again goes on.
    #[inline]
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, CaptureError> {
        let CaptureReader { parser, src, .. } = self;
        let (meta, data) = match src {
            Source::Memory(w) => match parser.next(w)? {
                Some(m) => (m, w.data()),
                None => return Ok(None),
            },
            Source::Stream(w) => match parser.next(w)? {
                Some(m) => (m, w.data()),
                None => return Ok(None),
            },
        };
        Ok(Some(frame(parser, meta, data)))
    }
}

/// A place between two records of a pcap file in memory, from which any
/// reader of the same bytes can go on ([`CaptureReader::resume`]): the
/// sharded replay's workers read a capture in turns, batch by batch, each
/// going on from where the one before stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumePoint {
    offset: usize,
    records: u64,
}

impl CaptureReader {
    /// Where this reader stands, for another reader of the same bytes to go
    /// on from. `None` unless it reads a pcap file in memory that has not
    /// ended (a pcapng file carries sections and interfaces along, a stream
    /// cannot be shared).
    pub fn resume_point(&mut self) -> Option<ResumePoint> {
        let CaptureReader { parser, src, .. } = self;
        let Source::Memory(w) = src else {
            return None;
        };
        let records = parser.pcap_records_read()?;
        if parser.pending() != 0 {
            w.consume(parser.take_pending());
        }
        Some(ResumePoint {
            offset: w.offset() as usize,
            records,
        })
    }

    /// Goes on from `p`, which a reader of the same bytes gave: the next
    /// frame is the one that reader would have read next. Returns false, and
    /// changes nothing, where that cannot be done: `p` is behind this reader,
    /// or this reader is not one that [`CaptureReader::resume_point`] serves.
    pub fn resume(&mut self, p: ResumePoint) -> bool {
        let Some(here) = self.resume_point() else {
            return false;
        };
        let Source::Memory(w) = &mut self.src else {
            return false;
        };
        if p.offset < here.offset || p.offset > w.bytes().len() {
            return false;
        }
        w.consume(p.offset - here.offset);
        self.parser.resume_pcap(p.records);
        true
    }
}

impl<R: Read> CaptureReader<R> {
    /// Many frames at once, for the common case of a pcap file in memory:
    /// hands `each` the records that lie whole in it, with their bytes,
    /// until `max_frames` frames or `max_bytes` captured bytes have been
    /// handed out, or a record comes that needs [`CaptureReader::next_frame`]
    /// (a pcapng block, a record cut short, the end of the capture, a
    /// streamed capture). Returns how many it handed out; 0 means: ask
    /// `next_frame`. Mixing the two gives the frames, in order, that
    /// `next_frame` alone gives.
    ///
    /// It exists for speed: one call per batch instead of one per frame,
    /// and the capture fetched into cache linearly, a few kilobytes ahead
    /// of the frame handed out.
    pub fn next_records(
        &mut self,
        max_frames: usize,
        max_bytes: usize,
        mut each: impl FnMut(RecordSpan, &[u8]),
    ) -> usize {
        let CaptureReader { parser, src, .. } = self;
        let Source::Memory(w) = src else {
            return 0;
        };
        if parser.pending() != 0 {
            w.consume(parser.take_pending());
        }
        // Cloned so that the window can move on while its bytes are read.
        let bytes = Arc::clone(w.bytes());
        let from = w.offset() as usize;
        let (n, to) = parser.pcap_run(&bytes, from, max_frames, max_bytes, &mut |r, data| {
            w.fetch_ahead(r.end);
            each(r, data)
        });
        w.consume(to - from);
        n
    }
}

#[inline]
fn frame<'a>(parser: &'a Parser, m: FrameMeta, window: &'a [u8]) -> Frame<'a> {
    Frame {
        index: m.index,
        ts: m.ts,
        linktype: m.linktype,
        orig_len: m.orig_len,
        interface: m.interface,
        interface_name: parser
            .interfaces
            .get(m.interface as usize)
            .and_then(|i| i.name.as_deref()),
        data: &window[m.data_start..m.data_start + m.caplen],
    }
}

/// The streaming window: a buffer refilled from the input. A record is
/// always whole in it before it is parsed; only the unread tail is moved to
/// the front at a refill, so each byte is copied once, by `read()`.
struct StreamBuf<R> {
    inner: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// File offset of `buf[start]`.
    base: u64,
    eof: bool,
}

impl<R: Read> StreamBuf<R> {
    fn new(inner: R) -> Self {
        StreamBuf {
            inner,
            buf: Vec::new(),
            start: 0,
            end: 0,
            base: 0,
            eof: false,
        }
    }

    /// Moves the unread bytes to the front, makes room and reads until the
    /// buffer is full or the input ends (a short read at open time would
    /// otherwise look like a short file).
    fn refill(&mut self) -> io::Result<()> {
        let avail = self.end - self.start;
        let cap = self.buf.len();
        // Doubling (never jumping to a record's claimed length) keeps the
        // allocation within twice the bytes really present, so a corrupt
        // length costs nothing.
        let new_cap = if cap == 0 {
            INITIAL_BUFFER
        } else if avail >= cap || cap < STEADY_BUFFER {
            cap * 2
        } else {
            cap
        };
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.start = 0;
            self.end = avail;
        }
        if new_cap > cap {
            self.buf.resize(new_cap, 0);
        }
        while self.end < self.buf.len() {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(k) => self.end += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl<R: Read> Window for StreamBuf<R> {
    #[inline]
    fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    fn fill(&mut self, want: usize) -> io::Result<()> {
        while self.end - self.start < want && !self.eof {
            self.refill()?;
        }
        Ok(())
    }

    #[inline]
    fn consume(&mut self, n: usize) {
        self.start += n;
        self.base += n as u64;
    }

    #[inline]
    fn offset(&self) -> u64 {
        self.base
    }
}

/// The integration tests' capture mutator, shared with the unit tests below.
#[cfg(test)]
#[path = "../../tests/common/mutate.rs"]
mod mutate;

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

    use super::mutate;

    /// What `next_frame` hands out next, with the offset after it, and
    /// whether the capture has ended there.
    fn next_item<R: Read>(r: &mut CaptureReader<R>) -> (String, bool) {
        let item = match r.next_frame() {
            Ok(Some(f)) => format!(
                "{} {:?} {} {} {} {:?} {:?}",
                f.index, f.ts, f.linktype.0, f.orig_len, f.interface, f.interface_name, f.data
            ),
            Ok(None) => "end".to_string(),
            Err(e) => format!("error {e} {}", e.is_resumable()),
        };
        let done = item == "end" || (item.starts_with("error") && item.ends_with("false"));
        (format!("{item} @{}", r.offset()), done)
    }

    /// Everything a reader hands out, frame by frame and error by error,
    /// with the offset after each.
    fn transcript<R: Read>(mut r: CaptureReader<R>, short_path: bool) -> Vec<String> {
        r.parser.short_path = short_path;
        let mut out = Vec::new();
        for _ in 0..100_000 {
            let (item, done) = next_item(&mut r);
            out.push(item);
            if done {
                break;
            }
        }
        out
    }

    /// As [`transcript`], reading runs of records with `next_records` (at
    /// most `run` at a time) and single frames where it hands out none.
    fn transcript_in_runs(mut r: CaptureReader, run: usize) -> Vec<String> {
        let mut out = Vec::new();
        for _ in 0..100_000 {
            let got = r.next_records(run, usize::MAX, |s, data| {
                out.push(format!(
                    "{} {:?} {} {} 0 None {:?} @{}",
                    s.index, s.ts, s.linktype.0, s.orig_len, data, s.end
                ))
            });
            assert!(got <= run);
            if got > 0 {
                assert_eq!(
                    out.last().unwrap().rsplit('@').next().unwrap(),
                    r.offset().to_string()
                );
                continue;
            }
            let (item, done) = next_item(&mut r);
            out.push(item);
            if done {
                break;
            }
        }
        out
    }

    /// The short record path gives what the general parser gives, on every
    /// repo capture and on thousands of damaged ones, mapped and streamed.
    #[test]
    fn short_record_path_agrees_with_the_general_parser() {
        let root = env!("CARGO_MANIFEST_DIR");
        let mut seeds = Vec::new();
        for dir in ["captures", "captures/crafted", "tests/data/malformed"] {
            for e in std::fs::read_dir(format!("{root}/{dir}"))
                .unwrap()
                .flatten()
            {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "pcap" || x == "pcapng") {
                    seeds.push(std::fs::read(&p).unwrap());
                }
            }
        }
        // Big-endian, nanosecond and modified-format files too.
        for (magic, be) in [
            (0xa1b2_3c4d, true),
            (0xa1b2_cd34, false),
            (0xa1b2_c3d4, true),
        ] {
            let mut b = pcap_header(magic, be, 1);
            for i in 0..40u32 {
                let data = vec![i as u8; (i as usize * 53) % 300];
                b.extend(pcap_record(be, i, i * 7, &data, 300));
                if magic == 0xa1b2_cd34 {
                    // ifindex, protocol, packet type, padding.
                    b.extend_from_slice(&[0; 8]);
                    let at = b.len() - 8 - data.len();
                    b.copy_within(at..at + data.len(), at + 8);
                    b[at..at + 8].fill(0);
                }
            }
            seeds.push(b);
        }
        let pcaps = seeds.iter().filter(|s| s.first() != Some(&0x0a)).count();
        assert!(pcaps >= 30, "{pcaps} pcap seeds");
        let mut rng = mutate::Rng(0x5eed_cafe);
        let mut compared = 0;
        for seed in &seeds {
            let mut inputs = vec![seed.clone()];
            for _ in 0..60 {
                inputs.push(mutate::mutate(seed, &mut rng));
            }
            for b in inputs {
                let (Ok(fast), Ok(general)) = (
                    CaptureReader::from_bytes(b.clone(), "m"),
                    CaptureReader::from_bytes(b.clone(), "m"),
                ) else {
                    continue;
                };
                let want = transcript(general, false);
                assert_eq!(transcript(fast, true), want, "mapped");
                let streamed = CaptureReader::new(&b[..], "m").unwrap();
                assert_eq!(transcript(streamed, true), want, "streamed");
                for run in [1, 3, 1000] {
                    let r = CaptureReader::from_bytes(b.clone(), "m").unwrap();
                    assert_eq!(transcript_in_runs(r, run), want, "runs of {run}");
                }
                compared += 1;
            }
        }
        assert!(compared > 1500, "{compared}");
    }

    /// Two readers of the same bytes, taking turns of a few frames each and
    /// each going on from where the other stopped, read what one reader
    /// reads: every frame and the error that ends the capture.
    #[test]
    fn readers_taking_turns_read_what_one_reader_reads() {
        let root = env!("CARGO_MANIFEST_DIR");
        let mut rng = mutate::Rng(0x7e11_0a5e);
        let mut compared = 0;
        for e in std::fs::read_dir(format!("{root}/captures"))
            .unwrap()
            .flatten()
        {
            if !e.path().is_file() {
                continue;
            }
            let seed = std::fs::read(e.path()).unwrap();
            let mut inputs = vec![seed.clone()];
            for _ in 0..20 {
                inputs.push(mutate::mutate(&seed, &mut rng));
            }
            for b in inputs {
                let Ok(one) = CaptureReader::from_bytes(b.clone(), "m") else {
                    continue;
                };
                let Ok(mut a) = CaptureReader::from_bytes(b.clone(), "m") else {
                    continue;
                };
                let mut want = transcript(one, true);
                let pcap = a.format() == "pcap";
                let mut b2 = a.reopen_shared().unwrap().unwrap();
                let mut got = Vec::new();
                let mut turn = 0;
                'turns: loop {
                    let (r, other) = if turn % 2 == 0 {
                        (&mut a, &mut b2)
                    } else {
                        (&mut b2, &mut a)
                    };
                    for _ in 0..(turn % 4 + 1) {
                        let (item, _) = next_item(r);
                        // Turns end at the capture's end or at any error.
                        let done = !item.starts_with(|c: char| c.is_ascii_digit());
                        got.push(item);
                        if done {
                            break 'turns;
                        }
                    }
                    match r.resume_point() {
                        Some(p) => assert!(other.resume(p), "resume"),
                        None => {
                            assert!(!pcap, "a pcap reader gives a point");
                            break;
                        }
                    }
                    turn += 1;
                }
                if pcap {
                    want.truncate(got.len());
                    assert_eq!(got, want);
                    compared += 1;
                }
            }
        }
        assert!(compared > 300, "{compared}");
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
