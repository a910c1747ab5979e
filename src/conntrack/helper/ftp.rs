//! The FTP helper (`nf_conntrack_ftp` semantics). To be written: see issue 4.

use super::{HelpCtx, HelpVerdict};
use crate::conntrack::expect::Expectation;

pub fn help(_cx: &mut HelpCtx<'_, '_>, _out: &mut Vec<Expectation>) -> HelpVerdict {
    HelpVerdict::Accept
}
