//! The progress bar of `ctsim replay`: drawn on stderr when stderr is a
//! terminal (here a pseudo-terminal), cleared before the summary; never
//! written into a redirected stderr, nor with `-q`.

use ctsim::synth::bench::{BenchConfig, generate};
use std::ffi::CStr;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A capture of more frames than one progress report covers (4096).
fn capture(dir: &Path) -> PathBuf {
    let path = dir.join("bar.pcap");
    let cfg = BenchConfig {
        packets: 12_000,
        flows: 50,
        seed: 3,
        ..BenchConfig::default()
    };
    let f = io::BufWriter::new(File::create(&path).unwrap());
    generate(&cfg, f).unwrap();
    path
}

fn args<'a>(capture: &'a Path, out: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "replay",
        capture.to_str().unwrap(),
        "--rules",
        "rulesets/accept-all.rules",
        "-o",
        out.to_str().unwrap(),
    ];
    v.extend_from_slice(extra);
    v
}

fn ctsim() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ctsim"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

/// A pseudo-terminal: (master, slave).
fn pty() -> (File, File) {
    // SAFETY: plain libc calls on a descriptor this function owns; the
    // name buffer is large enough and NUL-terminated by ptsname_r.
    unsafe {
        let fd = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        assert!(fd >= 0, "posix_openpt: {}", io::Error::last_os_error());
        let master = File::from(OwnedFd::from_raw_fd(fd));
        assert_eq!(libc::grantpt(fd), 0);
        assert_eq!(libc::unlockpt(fd), 0);
        let mut name = [0 as libc::c_char; 128];
        assert_eq!(libc::ptsname_r(fd, name.as_mut_ptr(), name.len()), 0);
        let path = CStr::from_ptr(name.as_ptr()).to_str().unwrap().to_string();
        let slave = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap();
        (master, slave)
    }
}

/// Runs ctsim with stderr on a pseudo-terminal; what it wrote there.
fn on_terminal(args: &[&str]) -> String {
    let (mut master, slave) = pty();
    let mut child = ctsim()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(slave))
        .spawn()
        .expect("run ctsim");
    // The command holds the only slave descriptor now: reading the master
    // ends (EIO) when ctsim exits.
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match master.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
        out
    });
    let status = child.wait().unwrap();
    let out = String::from_utf8_lossy(&reader.join().unwrap()).into_owned();
    assert!(status.success(), "{args:?} failed:\n{out}");
    out
}

#[test]
fn bar_on_a_terminal_is_cleared_before_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let cap = capture(dir.path());
    let csv = dir.path().join("out.csv");
    for jobs in ["1", "2"] {
        let out = on_terminal(&args(&cap, &csv, &["--jobs", jobs]));
        let bar = out
            .rfind("packets/s")
            .unwrap_or_else(|| panic!("--jobs {jobs}: no bar drawn:\n{out:?}"));
        assert!(out.contains("] "), "--jobs {jobs}: {out:?}");
        assert!(out.contains("ETA "), "--jobs {jobs}: {out:?}");
        let clear = out[bar..]
            .find("\r\x1b[K")
            .map(|i| bar + i)
            .unwrap_or_else(|| panic!("--jobs {jobs}: bar not cleared:\n{out:?}"));
        let summary = out
            .find("12000 packets:")
            .unwrap_or_else(|| panic!("--jobs {jobs}: no summary:\n{out:?}"));
        assert!(
            clear < summary,
            "--jobs {jobs}: summary before the bar was cleared:\n{out:?}"
        );
    }
}

#[test]
fn no_bar_with_quiet_even_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let cap = capture(dir.path());
    let csv = dir.path().join("out.csv");
    let out = on_terminal(&args(&cap, &csv, &["-q"]));
    assert!(out.is_empty(), "-q wrote {out:?}");
}

#[test]
fn no_bar_when_stderr_is_not_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let cap = capture(dir.path());
    let csv = dir.path().join("out.csv");
    for jobs in ["1", "2"] {
        let o = ctsim()
            .args(args(&cap, &csv, &["--jobs", jobs]))
            .output()
            .unwrap();
        assert!(o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.starts_with("12000 packets:"), "{err:?}");
        assert!(
            !err.contains('\r') && !err.contains('\x1b') && !err.contains("packets/s"),
            "a bar in a redirected stderr: {err:?}"
        );
    }
}

#[test]
fn no_mmap_gives_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    let cap = capture(dir.path());
    let (a, b) = (dir.path().join("a.csv"), dir.path().join("b.csv"));
    for (out, extra) in [(&a, &["-q"][..]), (&b, &["-q", "--no-mmap"][..])] {
        let o = ctsim().args(args(&cap, out, extra)).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let (a, b) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    assert!(a.len() > 12_000 * 50);
    assert!(a == b, "--no-mmap changed the rows");
}
