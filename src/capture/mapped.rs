//! Captures held whole in memory: a read-only map of the capture file, or an
//! owned buffer.
//!
//! Streaming a file means one `read()` copy of every byte from the page
//! cache into the reader's buffer, and the sharded replay then copied every
//! frame once more into the batch its workers share. A map needs neither:
//! records are parsed in place, [`Frame`](super::Frame)s borrow the map, and
//! the sharded replay gives its workers offsets into one shared
//! [`CaptureBytes`]. [`CaptureReader::open`](super::CaptureReader::open)
//! maps every regular file; pipes, `/dev/stdin` and other streams are read
//! through the streaming buffer, with the same parser and the same results.
//!
//! # The caveat of mapping
//!
//! A map shows the file as it is on disk, page by page, while it is read. If
//! another process truncates the file during a replay, touching a page past
//! its new end raises `SIGBUS` and ctsim dies with it: there is no way to
//! turn that into an error in safe Rust. (ripgrep documents the same
//! hazard for its `--mmap` and answers it the same way: maps where they pay,
//! and a switch to turn them off.) Writing *into* the file during a replay
//! changes the bytes under the parser, which may then report a corrupt
//! record; appending is harmless, the map keeps the length the file had when
//! it was opened. For a capture that may shrink or be rewritten while it is
//! replayed — a ring buffer tcpdump is rotating — use `ctsim replay
//! --no-mmap` ([`CaptureReader::open_streaming`](super::CaptureReader::open_streaming)).
//!
//! # Memory
//!
//! Mapped pages count toward the process's resident set. The reader tells
//! the kernel it reads sequentially, and what lies more than [`KEEP`] behind
//! it (or what [`CaptureReader::keep_behind`](super::CaptureReader::keep_behind)
//! asks for) is unmapped (`MADV_DONTNEED`; the pages stay in the page
//! cache), so the resident set does not grow with the file. Where several
//! readers share one map (the sharded replay's workers), only what all of
//! them have left behind goes, each range once. A frame still in use behind
//! that mark is just faulted in again, with the same bytes.
//!
//! A [`Prefaulter`] thread can take the page faults and the unmapping off
//! the readers: it faults pages in a few MiB ahead of the furthest reader
//! and unmaps behind the slowest.

use super::parse::Window;
use memmap2::{Advice, Mmap, UncheckedAdvice};
use std::cell::Cell;
use std::fs::File;
use std::io;
use std::ops::{Deref, Range};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::Thread;

/// How far behind the read position mapped pages stay mapped, unless the
/// reader is told otherwise: room for a few large frames still in use.
pub const KEEP: usize = 4 << 20;
/// What lies too far behind is unmapped every this many bytes.
const STEP: usize = 2 << 20;

/// The bytes of a whole capture: a read-only map of its file, or a buffer.
/// Shared (in an `Arc`) by the reader and the sharded replay's workers.
///
/// # Caveat
///
/// A map shows the file as it is on disk while it is read. If another
/// process truncates the file meanwhile, touching a page past its new end
/// raises `SIGBUS` and the process dies (no error can be returned in safe
/// Rust); bytes rewritten meanwhile may read as a corrupt record. Appending
/// is harmless. For a capture that may shrink while it is replayed (a ring
/// buffer being rotated), stream it: `ctsim replay --no-mmap`,
/// [`CaptureReader::open_streaming`](super::CaptureReader::open_streaming).
pub struct CaptureBytes {
    repr: Repr,
    /// Where each reader of these bytes is, and what has been unmapped.
    readers: Mutex<Readers>,
    /// The furthest any reader has got, as of its last step.
    lead: AtomicUsize,
    /// The thread faulting pages in ahead of the readers, if one runs: a
    /// reader's step wakes it.
    prefaulter: OnceLock<Thread>,
}

/// The readers of one [`CaptureBytes`] (the sharded replay's workers each
/// read the same map): pages are unmapped only behind the slowest of them,
/// and each range once. A reader ahead of another that unmapped what lies
/// behind itself would make the other fault every page in again, and both
/// would ask the kernel to unmap the same range.
#[derive(Debug, Default)]
struct Readers {
    /// The first byte each reader may still read, as of its last step;
    /// `usize::MAX` once it is gone.
    from: Vec<usize>,
    /// Bytes before this have been unmapped.
    released: usize,
}

enum Repr {
    Map(Mmap),
    Owned(Vec<u8>),
}

impl std::fmt::Debug for CaptureBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.repr {
            Repr::Map(_) => "map",
            Repr::Owned(_) => "buffer",
        };
        write!(f, "CaptureBytes({kind}, {} bytes)", self.len())
    }
}

impl CaptureBytes {
    /// Maps a file read-only.
    pub fn map(file: &File) -> io::Result<CaptureBytes> {
        // SAFETY: the map is read-only and only ever read through `&[u8]`.
        // Rust's aliasing rules assume those bytes do not change; another
        // process writing to or truncating the file breaks that (see the
        // module docs: changed bytes read as a corrupt record, truncation
        // raises SIGBUS). That is the accepted price of mapping, as in
        // every tool that maps its input; `--no-mmap` avoids it.
        let map = unsafe { Mmap::map(file)? };
        // Only advice: a kernel without it reads the file all the same.
        let _ = map.advise(Advice::Sequential);
        Ok(CaptureBytes {
            repr: Repr::Map(map),
            readers: Mutex::default(),
            lead: AtomicUsize::new(0),
            prefaulter: OnceLock::new(),
        })
    }

    /// Holds a capture that is already in memory.
    pub fn from_vec(bytes: Vec<u8>) -> CaptureBytes {
        CaptureBytes {
            repr: Repr::Owned(bytes),
            readers: Mutex::default(),
            lead: AtomicUsize::new(0),
            prefaulter: OnceLock::new(),
        }
    }

    /// Whether the bytes are a map of a file.
    pub fn is_map(&self) -> bool {
        matches!(self.repr, Repr::Map(_))
    }

    /// Where `data` lies in these bytes, if it is a part of them (a frame
    /// read from them, for instance).
    pub fn span_of(&self, data: &[u8]) -> Option<Range<usize>> {
        let base = self.as_ptr() as usize;
        let start = (data.as_ptr() as usize).checked_sub(base)?;
        let end = start.checked_add(data.len())?;
        (end <= self.len()).then_some(start..end)
    }

    fn readers(&self) -> std::sync::MutexGuard<'_, Readers> {
        // The lock guards plain numbers: a reader that panicked holding it
        // left them consistent.
        self.readers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new reader, at the start; returns its number.
    fn join(&self) -> usize {
        let mut r = self.readers();
        r.from.push(0);
        r.from.len() - 1
    }

    /// Reader `id` is gone: it holds nothing back any more.
    fn leave(&self, id: usize) {
        self.readers().from[id] = usize::MAX;
    }

    /// Reader `id` has reached `pos` and needs nothing more than `keep`
    /// bytes behind it. What every reader has left behind is unmapped: by
    /// the [`Prefaulter`] where one runs (woken here), on the spot
    /// otherwise.
    fn advance(&self, id: usize, pos: usize, keep: usize) {
        self.readers().from[id] = pos.saturating_sub(keep);
        self.lead.fetch_max(pos, Ordering::Release);
        match self.prefaulter.get() {
            Some(t) => t.unpark(),
            None => self.release_unneeded(),
        }
    }

    /// Unmaps what no reader needs any more and was not unmapped yet.
    fn release_unneeded(&self) {
        let range = {
            let mut r = self.readers();
            let upto = r.from.iter().copied().min().unwrap_or(0);
            if upto <= r.released || upto == usize::MAX {
                return;
            }
            let from = std::mem::replace(&mut r.released, upto);
            from..upto
        };
        self.release(range);
    }

    /// Bytes before this have been unmapped.
    #[cfg(test)]
    fn released(&self) -> usize {
        self.readers().released
    }

    /// Unmaps `range` from this process (the pages stay in the page cache).
    /// Bytes read there later are faulted in again from the file.
    fn release(&self, range: Range<usize>) {
        if let Repr::Map(m) = &self.repr
            && range.start < range.end
            && range.end <= m.len()
        {
            // SAFETY: for a shared read-only file map, MADV_DONTNEED only
            // drops this process's page-table entries; the next access
            // maps the same page-cache page again, so every live `&[u8]`
            // into the range still reads the same bytes. (It is unsafe in
            // memmap2 because on private or anonymous maps it zeroes
            // memory; this map is neither.)
            let _ = unsafe {
                m.unchecked_advise_range(
                    UncheckedAdvice::DontNeed,
                    range.start,
                    range.end - range.start,
                )
            };
        }
    }
}

/// Map bytes faulted in at a time by the [`Prefaulter`].
const PREFAULT_CHUNK: usize = 1 << 20;

/// A thread that faults a map's pages in ahead of its readers
/// (`MADV_POPULATE_READ`), so that they find their pages mapped instead of
/// taking a page fault every few frames. A capture is read once, so without
/// it every page of it is a fault on the reading thread's time; with it,
/// they are taken a megabyte at a time, on another core where there is one.
/// It stays `ahead` bytes in front of the furthest reader, so it adds that
/// much, at most, to the resident set. Stopped and joined when dropped.
pub struct Prefaulter {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Prefaulter {
    /// Starts one for `bytes`; `None` where there is nothing to fault in
    /// (a buffer, not a map) or it could not start (then readers fault
    /// pages in themselves, as they otherwise would).
    pub fn start(bytes: &Arc<CaptureBytes>, ahead: usize) -> Option<Prefaulter> {
        if !bytes.is_map() || bytes.prefaulter.get().is_some() {
            return None;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (b, halt) = (Arc::clone(bytes), Arc::clone(&stop));
        let thread = std::thread::Builder::new()
            .name("ctsim-prefault".into())
            .spawn(move || prefault(&b, ahead, &halt))
            .ok()?;
        let _ = bytes.prefaulter.set(thread.thread().clone());
        Some(Prefaulter {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Prefaulter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// The prefaulter's loop: unmap what the readers have left behind, fault
/// in up to `ahead` past the lead, then wait for a reader's step.
fn prefault(bytes: &CaptureBytes, ahead: usize, stop: &AtomicBool) {
    let Repr::Map(m) = &bytes.repr else { return };
    let mut done = 0;
    // Where the kernel refuses the advice (older than 5.14), the readers
    // take the faults themselves.
    let mut populate = true;
    while !stop.load(Ordering::Acquire) {
        bytes.release_unneeded();
        let want = bytes
            .lead
            .load(Ordering::Acquire)
            .saturating_add(ahead)
            .min(m.len());
        if !populate || done >= want {
            std::thread::park();
            continue;
        }
        let end = (done + PREFAULT_CHUNK).min(want);
        populate = m
            .advise_range(Advice::PopulateRead, done, end - done)
            .is_ok();
        done = end;
    }
}

impl Deref for CaptureBytes {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        match &self.repr {
            Repr::Map(m) => m,
            Repr::Owned(v) => v,
        }
    }
}

/// Most bytes of the next record fetched ahead.
const PREFETCH_MAX: usize = 2048;

/// Asks for the cache line holding `bytes[at]` (or, past the end, a line
/// the hint may as well ignore).
#[inline(always)]
fn prefetch(bytes: &[u8], at: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: a prefetch is only a hint; it never faults, whatever the
        // address (`wrapping_add` makes the pointer without any claim that
        // it points into `bytes`), and SSE, which it needs, is part of every
        // x86-64 CPU.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(bytes.as_ptr().wrapping_add(at).cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (bytes, at);
}

/// The parser's window over a capture in memory.
pub(super) struct MemWindow {
    bytes: Arc<CaptureBytes>,
    pos: usize,
    /// This reader's number among the bytes' readers.
    id: usize,
    /// The next position at which to look at what to release.
    next_step: usize,
    /// [`KEEP`] or as told; [`STEP`] (smaller in tests).
    keep: usize,
    step_len: usize,
    /// Prefetches have been issued for the bytes before this.
    fetched: Cell<usize>,
}

impl MemWindow {
    pub(super) fn new(bytes: Arc<CaptureBytes>) -> MemWindow {
        Self::with_steps(bytes, KEEP, STEP)
    }

    fn with_steps(bytes: Arc<CaptureBytes>, keep: usize, step_len: usize) -> MemWindow {
        MemWindow {
            id: bytes.join(),
            bytes,
            pos: 0,
            next_step: step_len,
            keep,
            step_len,
            fetched: Cell::new(0),
        }
    }

    pub(super) fn bytes(&self) -> &Arc<CaptureBytes> {
        &self.bytes
    }

    pub(super) fn keep_behind(&mut self, bytes: usize) {
        self.keep = bytes;
    }

    #[cold]
    fn step(&mut self) {
        self.next_step = self.pos + self.step_len;
        self.bytes.advance(self.id, self.pos, self.keep);
    }
}

impl Drop for MemWindow {
    fn drop(&mut self) {
        self.bytes.leave(self.id);
    }
}

/// How far ahead of the frame handed out [`MemWindow::fetch_ahead`] has
/// the capture fetched: a few frames, so that the memory's latency is
/// hidden.
const READ_AHEAD: usize = 8 << 10;

impl MemWindow {
    /// Asks for the lines from `from` (or from where the last request ended,
    /// if that is further) to `end`, and notes how far that went: bytes
    /// asked for already are not asked for again.
    #[inline]
    fn fetch(&self, from: usize, end: usize) {
        let bytes: &[u8] = &self.bytes;
        let mut at = self.fetched.get().max(from);
        // Four lines a step: fewer instructions, and at most three lines
        // fetched early that the next call would have fetched.
        while at < end {
            prefetch(bytes, at);
            prefetch(bytes, at + 64);
            prefetch(bytes, at + 128);
            prefetch(bytes, at + 192);
            at += 256;
        }
        self.fetched.set(at);
    }

    /// Fetches the capture into cache up to [`READ_AHEAD`] past `pos`, in
    /// order, each line once. Record lengths ahead are not known, but
    /// records lie back to back, so fetching the capture linearly at the
    /// pace it is read covers every frame's headers and payload. Only speed
    /// depends on it.
    #[inline]
    pub(super) fn fetch_ahead(&self, pos: usize) {
        let end = (pos + READ_AHEAD).min(self.bytes.len());
        self.fetch(pos & !63, end);
    }
}

impl Window for MemWindow {
    #[inline]
    fn data(&self) -> &[u8] {
        &self.bytes[self.pos..]
    }

    #[inline]
    fn fill(&mut self, _want: usize) -> io::Result<()> {
        // Everything there is, is there.
        Ok(())
    }

    #[inline]
    fn consume(&mut self, n: usize) {
        self.pos += n;
        if self.pos >= self.next_step {
            self.step();
        }
    }

    #[inline]
    fn offset(&self) -> u64 {
        self.pos as u64
    }

    #[inline]
    fn next_record_at(&self, len: usize) {
        // The next record, fetched while the caller works on this one: its
        // header, the packet headers the decoder reads, and the payload
        // the checksum reads. A record is read once, so without this each
        // of them is a wait on memory. Its length is not known yet; this
        // one's is a good guess (capped: a jumbo frame gets its start).
        // Bytes asked for already (small records share lines) are not
        // asked for again.
        let next = self.pos + len;
        let end = (next + len.clamp(128, PREFETCH_MAX)).min(self.bytes.len());
        self.fetch(next, end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn span_of_finds_parts_and_refuses_strangers() {
        let b = CaptureBytes::from_vec((0..100u8).collect());
        assert_eq!(b.span_of(&b[10..20]), Some(10..20));
        assert_eq!(b.span_of(&b[100..]), Some(100..100));
        let other = [1u8, 2, 3];
        assert_eq!(b.span_of(&other), None);
    }

    /// A temporary file of `len` varied bytes, and its map.
    fn mapped_file(len: u32) -> (Vec<u8>, Arc<CaptureBytes>) {
        let mut f = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..len)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        f.write_all(&data).unwrap();
        // The map outlives the file handle.
        (data, Arc::new(CaptureBytes::map(&f).unwrap()))
    }

    #[test]
    fn released_pages_read_the_same_bytes_again() {
        let (data, bytes) = mapped_file(8u32 << 20);
        assert!(bytes.is_map());
        let mut w = MemWindow::with_steps(Arc::clone(&bytes), 2 << 20, 1 << 20);
        let mut sum = 0u64;
        while !w.data().is_empty() {
            sum += u64::from(w.data()[0]);
            w.consume(4096.min(w.data().len()));
        }
        assert_eq!(bytes.released(), 6 << 20);
        // The released start of the map still holds the file's bytes.
        assert_eq!(&bytes[..1 << 20], &data[..1 << 20]);
        assert!(sum > 0);
    }

    #[test]
    fn pages_are_released_behind_the_slowest_reader_once() {
        let bytes = Arc::new(CaptureBytes::from_vec(vec![0; 16 << 20]));
        let mut fast = MemWindow::with_steps(Arc::clone(&bytes), 2 << 20, 1 << 20);
        let mut slow = MemWindow::with_steps(Arc::clone(&bytes), 2 << 20, 1 << 20);
        fast.consume(12 << 20);
        // The slow reader has not moved: nothing may go.
        assert_eq!(bytes.released(), 0);
        slow.consume(5 << 20);
        assert_eq!(bytes.released(), 3 << 20);
        fast.consume(1 << 20);
        assert_eq!(bytes.released(), 3 << 20);
        drop(slow);
        fast.consume(1 << 20);
        assert_eq!(bytes.released(), 12 << 20);
    }

    /// The prefaulter unmaps behind the reader and the bytes read are the
    /// file's; it starts only once per map, and never for a buffer.
    #[test]
    fn prefaulter_releases_behind_the_reader_and_the_bytes_stay_right() {
        let (data, bytes) = mapped_file(16u32 << 20);
        let pf = Prefaulter::start(&bytes, 4 << 20).expect("a map gets one");
        assert!(Prefaulter::start(&bytes, 4 << 20).is_none());
        let mut w = MemWindow::with_steps(Arc::clone(&bytes), 2 << 20, 1 << 20);
        let mut at = 0;
        while !w.data().is_empty() {
            let n = 4096.min(w.data().len());
            assert_eq!(&w.data()[..n], &data[at..at + n]);
            w.consume(n);
            at += n;
        }
        // Unmapping happens on the prefaulter's time: wait for it.
        let t = std::time::Instant::now();
        while bytes.released() < 14 << 20 && t.elapsed().as_secs() < 10 {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(bytes.released(), 14 << 20);
        drop(pf);
        let buffer = Arc::new(CaptureBytes::from_vec(vec![0; 100]));
        assert!(Prefaulter::start(&buffer, 1 << 20).is_none());
    }
}
