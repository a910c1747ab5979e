//! Arbitrary bytes as one frame of each supported link type (the first byte
//! picks it): decoding, checksum verification and ICMP inner parsing must
//! never panic.
#![no_main]

use ctsim::capture::{Frame, Linktype};
use ctsim::time::Timestamp;
use ctsim::wire::{self, LinkInfo};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let linktype = Linktype::SUPPORTED[pick as usize % Linktype::SUPPORTED.len()];
    // Half the inputs claim a longer wire length than captured (snap length).
    let orig_len = if pick & 0x80 != 0 {
        rest.len() as u32 + (pick as u32)
    } else {
        rest.len() as u32
    };
    let frame = Frame {
        index: 1,
        ts: Timestamp(0),
        linktype,
        orig_len,
        interface: 0,
        interface_name: None,
        data: rest,
    };
    if let Ok(p) = wire::decode(&frame) {
        let _ = p.l4_checksum_ok();
        let _ = p.inner();
        let _ = p.l4_bytes();
    }
    if let Ok(p) = wire::decode_ip(rest, LinkInfo::default()) {
        let _ = p.l4_checksum_ok();
        let _ = p.inner();
    }
});
