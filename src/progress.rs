//! The progress bar of `ctsim replay`: one line on stderr with packets,
//! bytes, rate and time left, redrawn at most four times a second, and
//! cleared at the end so that the summary prints cleanly.
//!
//! The time left is estimated from the bytes read against the capture's
//! size (packet sizes vary along a capture; bytes are what the reader goes
//! through). It costs the replay nothing per packet: the pipeline reports
//! every few thousand frames ([`crate::pipeline::Progress`]), and a report
//! within a quarter second of the last drawing only reads the clock.
//!
//! What it does not do: decide whether to draw. The command line makes a
//! bar only when stderr is a terminal and `-q` is not given
//! ([`ProgressBar::stderr`] checks the first); a bar written into a
//! redirected stderr would be noise in a log.

use std::fmt::Write as _;
use std::io::{self, IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Least time between two drawings.
pub const REFRESH: Duration = Duration::from_millis(250);

/// Cells of the bar itself.
const BAR_CELLS: usize = 20;

/// A progress line on a terminal (or any writer, for tests).
pub struct ProgressBar<W: Write + Send = io::Stderr> {
    start: Instant,
    total: Option<u64>,
    state: Mutex<State<W>>,
}

struct State<W> {
    out: W,
    last: Option<Instant>,
    drawn: bool,
}

impl ProgressBar<io::Stderr> {
    /// A bar on stderr for a capture of `total` bytes (if known), or `None`
    /// when stderr is not a terminal.
    pub fn stderr(total: Option<u64>) -> Option<Self> {
        io::stderr()
            .is_terminal()
            .then(|| ProgressBar::new(io::stderr(), total))
    }
}

impl<W: Write + Send> ProgressBar<W> {
    /// A bar drawn on `out`; the clock starts now.
    pub fn new(out: W, total: Option<u64>) -> Self {
        ProgressBar {
            start: Instant::now(),
            total,
            state: Mutex::new(State {
                out,
                last: None,
                drawn: false,
            }),
        }
    }

    /// `frames` read so far, `bytes` of the capture passed: redraws unless
    /// the last drawing is less than [`REFRESH`] old.
    pub fn update(&self, frames: u64, bytes: u64) {
        self.update_at(Instant::now(), frames, bytes);
    }

    fn update_at(&self, now: Instant, frames: u64, bytes: u64) {
        let mut st = match self.state.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        if st
            .last
            .is_some_and(|t| now.saturating_duration_since(t) < REFRESH)
        {
            return;
        }
        st.last = Some(now);
        let line = render(
            frames,
            bytes,
            self.total,
            now.saturating_duration_since(self.start),
        );
        // A terminal that went away is no reason to stop a replay.
        let _ = write!(st.out, "\r{line}\x1b[K");
        let _ = st.out.flush();
        st.drawn = true;
    }

    /// Clears the line, if anything was drawn.
    pub fn finish(&self) {
        let mut st = match self.state.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        if std::mem::take(&mut st.drawn) {
            let _ = write!(st.out, "\r\x1b[K");
            let _ = st.out.flush();
        }
    }

    /// The writer, with everything drawn on it.
    pub fn into_inner(self) -> W {
        match self.state.into_inner() {
            Ok(s) => s.out,
            Err(poisoned) => poisoned.into_inner().out,
        }
    }
}

/// The progress line, without terminal control codes:
/// `[#######.............]  36%  1.25M packets  301.2 MiB / 844.2 MiB  2.46M packets/s  ETA 0:01`.
/// Without a known size: packets, bytes and rate only.
pub fn render(frames: u64, bytes: u64, total: Option<u64>, elapsed: Duration) -> String {
    let mut s = String::with_capacity(96);
    let secs = elapsed.as_secs_f64();
    if let Some(total) = total.filter(|&t| t > 0) {
        let done = bytes.min(total);
        let cells = (done as u128 * BAR_CELLS as u128 / total as u128) as usize;
        s.push('[');
        s.extend(std::iter::repeat_n('#', cells));
        s.extend(std::iter::repeat_n('.', BAR_CELLS - cells));
        let pct = done as u128 * 100 / total as u128;
        let _ = write!(s, "] {pct:>3}%  ");
        push_count(&mut s, frames);
        s.push_str(" packets  ");
        push_bytes(&mut s, bytes);
        s.push_str(" / ");
        push_bytes(&mut s, total);
    } else {
        push_count(&mut s, frames);
        s.push_str(" packets  ");
        push_bytes(&mut s, bytes);
    }
    s.push_str("  ");
    if secs > 0.0 {
        push_count(&mut s, (frames as f64 / secs) as u64);
        s.push_str(" packets/s");
    } else {
        s.push_str("- packets/s");
    }
    if let Some(total) = total.filter(|&t| t > 0) {
        s.push_str("  ETA ");
        if bytes == 0 || secs <= 0.0 {
            s.push('?');
        } else {
            let left = total.saturating_sub(bytes) as f64 * secs / bytes as f64;
            push_duration(&mut s, left.round() as u64);
        }
    }
    s
}

/// 4096, 123.4k, 1.25M, 3.10G.
fn push_count(s: &mut String, n: u64) {
    let _ = match n {
        0..10_000 => write!(s, "{n}"),
        10_000..1_000_000 => write!(s, "{:.1}k", n as f64 / 1e3),
        1_000_000..1_000_000_000 => write!(s, "{:.2}M", n as f64 / 1e6),
        _ => write!(s, "{:.2}G", n as f64 / 1e9),
    };
}

/// 512 B, 3.0 KiB, 301.2 MiB, 7.9 GiB.
fn push_bytes(s: &mut String, n: u64) {
    const K: u64 = 1024;
    let _ = match n {
        0..K => write!(s, "{n} B"),
        K..0x10_0000 => write!(s, "{:.1} KiB", n as f64 / K as f64),
        0x10_0000..0x4000_0000 => write!(s, "{:.1} MiB", n as f64 / (K * K) as f64),
        _ => write!(s, "{:.1} GiB", n as f64 / (K * K * K) as f64),
    };
}

/// 0:07, 12:34, 1:02:03.
fn push_duration(s: &mut String, secs: u64) {
    let (h, m, sec) = (secs / 3600, secs / 60 % 60, secs % 60);
    let _ = if h > 0 {
        write!(s, "{h}:{m:02}:{sec:02}")
    } else {
        write!(s, "{m}:{sec:02}")
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_with_a_known_size() {
        // 300 MiB of 900 MiB in 2 s: a third done, 4 s to go.
        let mib = 1 << 20;
        let line = render(
            1_250_000,
            300 * mib,
            Some(900 * mib),
            Duration::from_secs(2),
        );
        assert_eq!(
            line,
            "[######..............]  33%  1.25M packets  300.0 MiB / 900.0 MiB  625.0k packets/s  ETA 0:04"
        );
        let done = render(4096, 10_000, Some(10_000), Duration::from_millis(500));
        assert_eq!(
            done,
            "[####################] 100%  4096 packets  9.8 KiB / 9.8 KiB  8192 packets/s  ETA 0:00"
        );
    }

    #[test]
    fn line_without_a_size_or_time() {
        assert_eq!(
            render(8192, 5_000_000, None, Duration::from_secs(4)),
            "8192 packets  4.8 MiB  2048 packets/s"
        );
        assert_eq!(
            render(0, 0, Some(100), Duration::ZERO),
            "[....................]   0%  0 packets  0 B / 100 B  - packets/s  ETA ?"
        );
    }

    #[test]
    fn long_times_and_large_counts() {
        let gib = 1u64 << 30;
        // 1 GiB of 100 GiB in 100 s: 9900 s left.
        let line = render(
            3_100_000_000,
            gib,
            Some(100 * gib),
            Duration::from_secs(100),
        );
        assert!(
            line.ends_with("3.10G packets  1.0 GiB / 100.0 GiB  31.00M packets/s  ETA 2:45:00"),
            "{line}"
        );
    }

    #[test]
    fn draws_at_most_four_times_a_second_and_clears_at_the_end() {
        let bar = ProgressBar::new(Vec::new(), Some(1000));
        let t0 = bar.start;
        bar.update_at(t0 + Duration::from_millis(10), 4096, 100);
        bar.update_at(t0 + Duration::from_millis(200), 8192, 200);
        bar.update_at(t0 + Duration::from_millis(300), 12288, 300);
        bar.finish();
        let out = String::from_utf8(bar.into_inner()).unwrap();
        let draws: Vec<&str> = out.split('\r').filter(|s| !s.is_empty()).collect();
        assert_eq!(draws.len(), 3, "{out:?}");
        assert!(draws[0].contains("4096 packets"), "{out:?}");
        assert!(draws[1].contains("12.3k packets"), "{out:?}");
        assert_eq!(draws[2], "\x1b[K", "the last write clears the line");
    }

    #[test]
    fn nothing_drawn_nothing_cleared() {
        let bar = ProgressBar::new(Vec::new(), None);
        bar.finish();
        assert!(bar.into_inner().is_empty());
    }
}
