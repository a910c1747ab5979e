//! Reports: the per-packet CSV, the conntrack event trace and the summary.
//!
//! Rows arrive as typed values ([`Row`]); text is made only here, into
//! reused buffers, so the per-packet path never formats strings.

pub mod row;
pub mod summary;
pub mod trace;

pub use row::{HEADER, Notes, Row, RowFlags, RowPacket, RowVerdict, RowWriter};
