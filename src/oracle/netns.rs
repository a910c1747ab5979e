//! Throw-away network namespaces and the commands run inside them.
//!
//! Namespaces are created with `ip netns add` (so `ip netns exec` can run
//! `nft` and `iptables` in them) and entered by the oracle's worker thread
//! with `setns(2)`. Every namespace is named `ctsimo-<pid>-<run>-<role>`;
//! [`Namespaces`] deletes its own on drop, and [`remove_stale`] deletes those
//! of processes that no longer exist (a run killed with SIGKILL). SIGINT and
//! SIGTERM are caught while a run is active so that teardown happens.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use super::OracleError;

const PREFIX: &str = "ctsimo-";
const NETNS_DIR: &str = "/run/netns";

static RUN_COUNTER: AtomicU32 = AtomicU32::new(0);

/// The namespaces of one run; deleted on drop.
pub(crate) struct Namespaces {
    pub fw: String,
    pub peers: Vec<String>,
    created: Vec<String>,
}

impl Namespaces {
    /// Creates the firewall namespace and `n_peers` peer namespaces.
    pub fn create(n_peers: usize) -> Result<Self, OracleError> {
        let run = RUN_COUNTER.fetch_add(1, Ordering::Relaxed);
        let base = format!("{PREFIX}{}-{run}", std::process::id());
        let mut ns = Namespaces {
            fw: format!("{base}-fw"),
            peers: (0..n_peers).map(|i| format!("{base}-p{i}")).collect(),
            created: Vec::new(),
        };
        for name in std::iter::once(ns.fw.clone()).chain(ns.peers.clone()) {
            let out = Command::new("ip")
                .args(["netns", "add", &name])
                .stdin(Stdio::null())
                .output()
                .map_err(|e| tool_error("ip", e))?;
            if !out.status.success() {
                return Err(OracleError::NoNetns(
                    String::from_utf8_lossy(&out.stderr).trim().to_string(),
                ));
            }
            ns.created.push(name);
        }
        Ok(ns)
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in self.created.drain(..).rev() {
            let _ = Command::new("ip")
                .args(["netns", "del", &name])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

pub(crate) fn tool_error(tool: &str, e: std::io::Error) -> OracleError {
    if e.kind() == std::io::ErrorKind::NotFound {
        OracleError::ToolMissing(tool.to_string())
    } else {
        OracleError::Io {
            what: format!("running {tool}"),
            source: e,
        }
    }
}

/// Deletes namespaces left behind by oracle processes that are gone.
pub(crate) fn remove_stale() {
    let Ok(dir) = std::fs::read_dir(NETNS_DIR) else {
        return;
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip")
                .args(["netns", "del", &name])
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Moves the calling thread into namespace `name` (network namespace only).
pub(crate) fn enter(name: &str) -> Result<(), OracleError> {
    let path = format!("{NETNS_DIR}/{name}");
    let f = File::open(&path).map_err(|e| OracleError::Io {
        what: format!("opening {path}"),
        source: e,
    })?;
    // SAFETY: setns on a valid namespace fd; affects only this thread.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(OracleError::NoNetns(format!(
            "setns {name}: {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok(())
}

/// Writes a sysctl of the calling thread's namespace (`/proc/sys/` path).
pub(crate) fn write_sysctl(rel: &str, value: &str) -> Result<(), OracleError> {
    let path = format!("/proc/sys/{rel}");
    std::fs::write(&path, value).map_err(|e| OracleError::Sysctl {
        name: rel.replace('/', "."),
        msg: e.to_string(),
    })
}

/// Runs `cmd args…` inside namespace `ns` (with `ip netns exec`), feeding
/// `stdin`; returns stdout, or the command's stderr as the error.
pub(crate) fn exec_in(
    ns: &str,
    cmd: &str,
    args: &[&str],
    stdin: Option<&[u8]>,
) -> Result<String, OracleError> {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, cmd]).args(args);
    c.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = c.spawn().map_err(|e| tool_error("ip", e))?;
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A command that exits early closes its stdin; its status says why.
        let _ = pipe.write_all(data);
    }
    let out = child.wait_with_output().map_err(|e| tool_error(cmd, e))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if out.status.code() == Some(255) && err.contains("No such file") {
            return Err(OracleError::ToolMissing(cmd.to_string()));
        }
        return Err(OracleError::Command {
            cmd: format!("{cmd} {}", args.join(" ")),
            msg: err,
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `ip [-n NS] -batch -` with the given commands, one per line.
pub(crate) fn ip_batch(ns: Option<&str>, lines: &str) -> Result<(), OracleError> {
    if lines.is_empty() {
        return Ok(());
    }
    let mut cmd = Command::new("ip");
    if let Some(ns) = ns {
        cmd.args(["-n", ns]);
    }
    let mut child = cmd
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| tool_error("ip", e))?;
    if let Some(mut pipe) = child.stdin.take() {
        let _ = pipe.write_all(lines.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| tool_error("ip", e))?;
    if !out.status.success() {
        return Err(OracleError::Command {
            cmd: "ip -batch".into(),
            msg: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static HANDLERS: Mutex<(usize, Option<[libc::sigaction; 2]>)> = Mutex::new((0, None));

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// True once SIGINT/SIGTERM arrived during a run.
pub(crate) fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Catches SIGINT and SIGTERM while alive (nested guards share one
/// installation), so that an interrupted run still tears down.
pub(crate) struct SignalGuard;

impl SignalGuard {
    pub fn install() -> SignalGuard {
        let mut h = HANDLERS.lock().unwrap_or_else(|e| e.into_inner());
        if h.0 == 0 {
            INTERRUPTED.store(false, Ordering::SeqCst);
            // SAFETY: sigaction structs are plain data; the handler only
            // stores to an atomic, which is async-signal-safe. No SA_RESTART,
            // so a blocked recv returns EINTR.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
                libc::sigemptyset(&mut sa.sa_mask);
                let mut old: [libc::sigaction; 2] = std::mem::zeroed();
                libc::sigaction(libc::SIGINT, &sa, &mut old[0]);
                libc::sigaction(libc::SIGTERM, &sa, &mut old[1]);
                h.1 = Some(old);
            }
        }
        h.0 += 1;
        SignalGuard
    }
}

impl Drop for SignalGuard {
    fn drop(&mut self) {
        let mut h = HANDLERS.lock().unwrap_or_else(|e| e.into_inner());
        h.0 -= 1;
        if h.0 == 0
            && let Some(old) = h.1.take()
        {
            // SAFETY: restores the actions saved at install time.
            unsafe {
                libc::sigaction(libc::SIGINT, &old[0], std::ptr::null_mut());
                libc::sigaction(libc::SIGTERM, &old[1], std::ptr::null_mut());
            }
        }
    }
}
