//! Conntrack helpers: protocol parsers that read a connection's payload and
//! announce the connections it will open (expectations).
//!
//! A helper is attached to a connection only through a raw-table
//! `CT --helper NAME` rule matching its first packet (the kernel has not
//! assigned helpers by port since 6.0). It runs at the confirm hook, so it
//! sees only packets every chain accepted. This module dispatches to the
//! helpers; each helper's parsing lives in its own file.

pub mod ftp;
pub mod tftp;

use super::expect::Expectation;
use super::{Conn, CtState, Dir, HelperKind};
use crate::time::Timestamp;
use crate::wire::Packet;

/// What a helper decided about the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelpVerdict {
    Accept,
    /// The helper drops the packet (FTP: a partial or malformed command).
    /// The text says why, for the row's reason column.
    Drop(&'static str),
}

/// Everything a helper may look at for one packet.
pub struct HelpCtx<'a, 'p> {
    /// The connection (its tuples, helper scratch state). For the first
    /// packet of a connection this is the still-unconfirmed entry.
    pub conn: &'a mut Conn,
    /// Direction of the packet within `conn`.
    pub dir: Dir,
    /// The state the packet was given (NEW, ESTABLISHED, RELATED).
    pub state: CtState,
    pub pkt: &'a Packet<'p>,
    pub now: Timestamp,
}

/// Runs the connection's helper. Expectations to create are pushed to
/// `out` with `master`/`master_uid` left for the caller to fill.
pub fn help(kind: HelperKind, cx: &mut HelpCtx<'_, '_>, out: &mut Vec<Expectation>) -> HelpVerdict {
    match kind {
        HelperKind::Ftp => ftp::help(cx, out),
        HelperKind::Tftp => tftp::help(cx, out),
    }
}
