//! The TFTP helper (`nf_conntrack_tftp` semantics): a read or write request
//! announces the server's transfer, which comes from a new server port to
//! the client's port, so that its first packet is RELATED.
//!
//! It looks at every packet of the connection, in both directions and in
//! any state, including the first. Only the 2-byte opcode is read; requests
//! (RRQ = 1, WRQ = 2) create the expectation, other opcodes are ignored.
//!
//! The opcode is read from the datagram as the IP header sizes it, as the
//! kernel does, whatever the UDP length field says. When the capture cut the
//! opcode off, nothing is expected (we cannot know it was a request).
//!
//! Not modelled: NAT mangling (`nf_nat_tftp`).

use super::{HelpCtx, HelpVerdict};
use crate::conntrack::expect::Expectation;
use crate::conntrack::tuple::Tuple;
use crate::conntrack::{Dir, HelperKind};
use crate::time::Duration;
use crate::wire::{L4, ipproto};

/// Lifetime of a TFTP expectation (the helper's policy: five minutes).
const EXPECT_TIMEOUT: Duration = Duration::from_secs(300);

const OPCODE_RRQ: u16 = 1;
const OPCODE_WRQ: u16 = 2;

/// Size of the UDP header that precedes the opcode.
const UDP_HEADER: usize = 8;

pub fn help(cx: &mut HelpCtx<'_, '_>, out: &mut Vec<Expectation>) -> HelpVerdict {
    let pkt = cx.pkt;
    if !matches!(pkt.l4, L4::Udp(_)) {
        return HelpVerdict::Accept;
    }
    let at = pkt.l4_offset as usize + UDP_HEADER;
    // The opcode must lie inside the datagram (IP length) and the capture.
    if pkt.l4_len() < (UDP_HEADER + 2) as u32 {
        return HelpVerdict::Accept;
    }
    let Some(op) = pkt.ip.get(at..at + 2) else {
        return HelpVerdict::Accept;
    };
    let opcode = u16::from_be_bytes([op[0], op[1]]);
    if opcode == OPCODE_RRQ || opcode == OPCODE_WRQ {
        // The server answers from a fresh port to the client's port: the
        // REPLY tuple with the server's source port left open.
        let reply = &cx.conn.tuple[Dir::Reply.index()];
        out.push(Expectation {
            tuple: Tuple {
                src: reply.src,
                dst: reply.dst,
                sport: 0,
                dport: reply.dport,
                proto: ipproto::UDP,
            },
            any_sport: true,
            src: Some(reply.src),
            master: 0,
            master_uid: 0,
            helper: HelperKind::Tftp,
            expires: cx.now.add(EXPECT_TIMEOUT),
        });
    }
    HelpVerdict::Accept
}
