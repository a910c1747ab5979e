//! Arbitrary bytes as a capture file: the reader must return frames or
//! errors, never panic, and stop in bounded time. Every frame is decoded and
//! fed to the defragmenter too.
#![no_main]

use ctsim::capture::CaptureReader;
use ctsim::conntrack::defrag::{Defrag, DefragOutcome, DefragTimeouts};
use ctsim::wire;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(mut reader) = CaptureReader::new(data, "fuzz") else {
        return;
    };
    let mut defrag = Defrag::new();
    for _ in 0..data.len() + 2 {
        match reader.next_frame() {
            Ok(Some(frame)) => {
                if let Ok(pkt) = wire::decode(&frame) {
                    let _ = pkt.l4_checksum_ok();
                    let _ = pkt.inner();
                    if let DefragOutcome::Complete(c) =
                        defrag.push(&pkt, frame.index, frame.ts, DefragTimeouts::default())
                    {
                        let _ = wire::decode_ip(&c.datagram, c.link);
                    }
                }
            }
            Ok(None) => break,
            Err(e) if e.is_resumable() => continue,
            Err(_) => break,
        }
    }
});
