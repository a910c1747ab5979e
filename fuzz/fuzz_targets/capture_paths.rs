//! Arbitrary bytes as a capture, read in place and streamed: both ways must
//! give the same frames, the same errors and the same offsets, and never
//! panic.
#![no_main]

use ctsim::capture::CaptureReader;
use libfuzzer_sys::fuzz_target;

/// What one reader says, step by step.
fn steps<R: std::io::Read>(
    opened: Result<CaptureReader<R>, ctsim::capture::CaptureError>,
    bound: usize,
) -> Vec<String> {
    let mut r = match opened {
        Ok(r) => r,
        Err(e) => return vec![format!("open: {e}")],
    };
    let mut out = Vec::new();
    for _ in 0..bound {
        let s = match r.next_frame() {
            Ok(Some(f)) => format!(
                "{} {} {} {} {} {:?} {:?}",
                f.index, f.ts.0, f.linktype.0, f.orig_len, f.interface, f.interface_name, f.data
            ),
            Ok(None) => {
                out.push("end".into());
                break;
            }
            Err(e) => {
                let stop = !e.is_resumable();
                out.push(format!("{e} @{}", r.offset()));
                if stop {
                    break;
                }
                continue;
            }
        };
        out.push(format!("{s} @{}", r.offset()));
    }
    out.push(format!("{:?}", r.interfaces()));
    out
}

fuzz_target!(|data: &[u8]| {
    let bound = data.len() + 2;
    let mapped = steps(CaptureReader::from_bytes(data.to_vec(), "fuzz"), bound);
    let streamed = steps(CaptureReader::new(data, "fuzz"), bound);
    assert_eq!(mapped, streamed);
});
