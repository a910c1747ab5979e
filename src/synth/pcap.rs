//! A streaming writer for classic libpcap files.
//!
//! Hand-written rather than taken from `pcap-parser`'s `serialize` feature:
//! the format is a 24-byte file header and a 16-byte record header, and the
//! feature would pull in `cookie-factory` for those few bytes. Writing goes
//! through a caller-supplied `Write` (wrap files in a `BufWriter`), one record
//! at a time, so a ten-million-packet capture never sits in memory.
//!
//! Only little-endian classic pcap is written; pcapng is not.

use std::io::Write;

use crate::capture::Linktype;
use crate::synth::SynthError;
use crate::time::Timestamp;

/// Timestamp resolution of the file, chosen by its magic number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsPrecision {
    /// Magic a1b2c3d4: the second field counts microseconds.
    Micro,
    /// Magic a1b23c4d: the second field counts nanoseconds.
    Nano,
}

impl TsPrecision {
    fn magic(self) -> u32 {
        match self {
            TsPrecision::Micro => 0xa1b2_c3d4,
            TsPrecision::Nano => 0xa1b2_3c4d,
        }
    }
}

/// Writes pcap records to `W` as they come.
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    out: W,
    precision: TsPrecision,
    snaplen: u32,
    records: u64,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the file header. `snaplen` is recorded in the header; records
    /// longer than it are still written whole (their caplen is what the caller
    /// gives).
    pub fn new(
        mut out: W,
        linktype: Linktype,
        precision: TsPrecision,
        snaplen: u32,
    ) -> Result<Self, SynthError> {
        let mut hdr = [0u8; 24];
        hdr[0..4].copy_from_slice(&precision.magic().to_le_bytes());
        hdr[4..6].copy_from_slice(&2u16.to_le_bytes());
        hdr[6..8].copy_from_slice(&4u16.to_le_bytes());
        // thiszone and sigfigs stay zero, as every modern writer leaves them.
        hdr[16..20].copy_from_slice(&snaplen.to_le_bytes());
        hdr[20..24].copy_from_slice(&(linktype.0 as u32).to_le_bytes());
        out.write_all(&hdr)?;
        Ok(PcapWriter {
            out,
            precision,
            snaplen,
            records: 0,
        })
    }

    /// Appends one record. `data` is what was captured; `orig_len` the length
    /// on the wire, which must not be shorter than `data`.
    pub fn write(&mut self, ts: Timestamp, data: &[u8], orig_len: u32) -> Result<(), SynthError> {
        self.write_parts(ts, &[data], orig_len)
    }

    /// Appends one record whose captured bytes are the concatenation of
    /// `parts` (headers built in a scratch buffer, payload borrowed from
    /// elsewhere), sparing the caller a copy.
    pub fn write_parts(
        &mut self,
        ts: Timestamp,
        parts: &[&[u8]],
        orig_len: u32,
    ) -> Result<(), SynthError> {
        let caplen: usize = parts.iter().map(|p| p.len()).sum();
        let caplen = u32::try_from(caplen).map_err(|_| SynthError::TooLong { len: caplen })?;
        if orig_len < caplen {
            return Err(SynthError::OrigLenShort { caplen, orig_len });
        }
        let frac = match self.precision {
            TsPrecision::Micro => ts.subsec_nanos() / 1000,
            TsPrecision::Nano => ts.subsec_nanos(),
        };
        let secs = u32::try_from(ts.secs()).map_err(|_| SynthError::TimestampRange { ts })?;
        let mut rec = [0u8; 16];
        rec[0..4].copy_from_slice(&secs.to_le_bytes());
        rec[4..8].copy_from_slice(&(frac as u32).to_le_bytes());
        rec[8..12].copy_from_slice(&caplen.to_le_bytes());
        rec[12..16].copy_from_slice(&orig_len.to_le_bytes());
        self.out.write_all(&rec)?;
        for p in parts {
            self.out.write_all(p)?;
        }
        self.records += 1;
        Ok(())
    }

    pub fn records(&self) -> u64 {
        self.records
    }

    pub fn snaplen(&self) -> u32 {
        self.snaplen
    }

    /// Flushes and hands back the underlying writer.
    pub fn finish(mut self) -> Result<W, SynthError> {
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pcap_parser::traits::PcapReaderIterator;
    use pcap_parser::{LegacyPcapReader, PcapBlockOwned, PcapError};

    /// (seconds, fraction, original length, bytes) of one record.
    type Rec = (u32, u32, u32, Vec<u8>);

    fn read_back(bytes: &[u8]) -> (u32, i32, Vec<Rec>) {
        let mut rdr = LegacyPcapReader::new(65536, bytes).unwrap();
        let mut magic = 0;
        let mut lt = 0;
        let mut recs = vec![];
        loop {
            match rdr.next() {
                Ok((off, block)) => {
                    match block {
                        PcapBlockOwned::LegacyHeader(h) => {
                            magic = h.magic_number;
                            lt = h.network.0;
                        }
                        PcapBlockOwned::Legacy(b) => {
                            recs.push((b.ts_sec, b.ts_usec, b.origlen, b.data.to_vec()))
                        }
                        PcapBlockOwned::NG(_) => panic!("pcapng block in a pcap file"),
                    }
                    rdr.consume(off);
                }
                Err(PcapError::Eof) => break,
                Err(PcapError::Incomplete(_)) => rdr.refill().unwrap(),
                Err(e) => panic!("{e:?}"),
            }
        }
        (magic, lt, recs)
    }

    #[test]
    fn pcap_parser_reads_what_we_write() {
        for (prec, magic, frac) in [
            (TsPrecision::Micro, 0xa1b2c3d4u32, 123_456u32),
            (TsPrecision::Nano, 0xa1b23c4d, 123_456_789),
        ] {
            let mut w = PcapWriter::new(Vec::new(), Linktype::RAW, prec, 65535).unwrap();
            let ts = Timestamp::from_secs_nanos(1_700_000_000, 123_456_789);
            w.write(ts, &[0x45, 0, 0, 20], 20).unwrap();
            w.write_parts(ts, &[&[1, 2], &[3]], 3).unwrap();
            assert_eq!(w.records(), 2);
            let bytes = w.finish().unwrap();
            let (m, lt, recs) = read_back(&bytes);
            assert_eq!(m, magic);
            assert_eq!(lt, 101);
            assert_eq!(recs.len(), 2);
            assert_eq!(recs[0], (1_700_000_000, frac, 20, vec![0x45, 0, 0, 20]));
            assert_eq!(recs[1].3, vec![1, 2, 3]);
        }
    }

    #[test]
    fn rejects_orig_len_shorter_than_caplen() {
        let mut w =
            PcapWriter::new(Vec::new(), Linktype::ETHERNET, TsPrecision::Micro, 65535).unwrap();
        let e = w.write(Timestamp(0), &[0; 10], 5).unwrap_err();
        assert!(matches!(
            e,
            SynthError::OrigLenShort {
                caplen: 10,
                orig_len: 5
            }
        ));
    }
}
