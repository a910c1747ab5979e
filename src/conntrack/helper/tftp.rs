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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conntrack::expect::HelpState;
    use crate::conntrack::{Conn, CtState, ProtoState, Status};
    use crate::time::Timestamp;
    use crate::wire::{Family, Packet, PktType, Udp};
    use std::net::IpAddr;

    const NOW: Timestamp = Timestamp(7_000_000_000);

    fn conn() -> Conn {
        let (c, s): (IpAddr, IpAddr) = ("10.0.1.2".parse().unwrap(), "10.0.2.2".parse().unwrap());
        let t = |src, dst, sport, dport| Tuple {
            src,
            dst,
            sport,
            dport,
            proto: ipproto::UDP,
        };
        Conn {
            uid: 1,
            tuple: [t(c, s, 5555, 69), t(s, c, 69, 5555)],
            status: Status(Status::HELPER),
            expires: NOW,
            timer: Timestamp(0),
            proto: ProtoState::Generic,
            mark: 0,
            master: None,
            helper: Some(HelperKind::Tftp),
            help: HelpState::default(),
        }
    }

    /// Runs the helper on a UDP datagram of `len` payload bytes, of which
    /// the capture holds `payload`.
    fn run(dir: Dir, state: CtState, payload: &[u8], len: u32) -> Vec<Expectation> {
        let mut c = conn();
        let t = c.tuple[dir.index()];
        let mut ip = vec![0u8; 28];
        ip.extend_from_slice(payload);
        let pkt = Packet {
            family: Family::Ipv4,
            src: t.src,
            dst: t.dst,
            proto: ipproto::UDP,
            ttl: 64,
            tos: 0,
            ip_len: 28 + len,
            l4_offset: 20,
            frag: None,
            ip: &ip,
            truncated: (payload.len() as u32) < len,
            ipv4_csum_ok: true,
            src_mac: None,
            pkttype: PktType::Host,
            l4: L4::Udp(Udp {
                sport: t.sport,
                dport: t.dport,
                length: (8 + len) as u16,
                checksum: 0,
                payload: &ip[28..],
            }),
        };
        let mut out = Vec::new();
        let mut cx = HelpCtx {
            conn: &mut c,
            dir,
            state,
            pkt: &pkt,
            now: NOW,
        };
        assert_eq!(help(&mut cx, &mut out), HelpVerdict::Accept);
        out
    }

    fn whole(payload: &[u8]) -> Vec<Expectation> {
        run(Dir::Original, CtState::New, payload, payload.len() as u32)
    }

    /// What `conntrack -L expect` showed after the request
    /// (tests/helper_kernel_check): src=10.0.2.2 dst=10.0.1.2 sport=0
    /// dport=5555 proto=17, mask on the source port 0, helper tftp.
    fn kernel_expectation() -> Expectation {
        let s: IpAddr = "10.0.2.2".parse().unwrap();
        Expectation {
            tuple: Tuple {
                src: s,
                dst: "10.0.1.2".parse().unwrap(),
                sport: 0,
                dport: 5555,
                proto: ipproto::UDP,
            },
            any_sport: true,
            src: Some(s),
            master: 0,
            master_uid: 0,
            helper: HelperKind::Tftp,
            expires: NOW.add(Duration::from_secs(300)),
        }
    }

    #[test]
    fn read_and_write_requests_kernel() {
        assert_eq!(
            whole(b"\x00\x01file\x00octet\x00"),
            vec![kernel_expectation()]
        );
        assert_eq!(
            whole(b"\x00\x02file\x00octet\x00"),
            vec![kernel_expectation()]
        );
    }

    #[test]
    fn data_opcode_expects_nothing_kernel() {
        assert_eq!(whole(b"\x00\x03\x00\x01x"), vec![]);
    }

    #[test]
    fn other_opcodes_and_short_payloads_expect_nothing() {
        for p in [
            &b"\x00\x04\x00\x01"[..],
            b"\x00\x05\x00\x01err\x00",
            b"\x01\x01",
            b"\x00",
            b"",
        ] {
            assert_eq!(whole(p), vec![], "{p:?}");
        }
    }

    #[test]
    fn any_direction_and_state() {
        let rrq = b"\x00\x01f\x00octet\x00";
        let n = rrq.len() as u32;
        for st in [CtState::New, CtState::Established, CtState::Related] {
            for dir in [Dir::Original, Dir::Reply] {
                assert_eq!(run(dir, st, rrq, n), vec![kernel_expectation()]);
            }
        }
    }

    #[test]
    fn opcode_cut_by_capture_expects_nothing() {
        assert_eq!(run(Dir::Original, CtState::New, b"\x00", 20), vec![]);
        // Opcode captured, the rest cut: still a request.
        assert_eq!(
            run(Dir::Original, CtState::New, b"\x00\x01", 20),
            vec![kernel_expectation()]
        );
    }
}
