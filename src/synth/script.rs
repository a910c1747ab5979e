//! A timeline of packets: the in-memory form of a small capture.
//!
//! Scenarios and fuzz cases are short (tens of packets), so they are kept as a
//! list of [`Record`]s and written out at the end; the benchmark generator,
//! which is not short, writes straight to a [`PcapWriter`] instead.
//!
//! Time is explicit and deterministic: each packet is stamped with the
//! script's clock, which then moves on by the script's step (1 ms unless
//! changed); [`Script::wait`] inserts longer gaps.

use std::io::Write;

use crate::capture::Linktype;
use crate::synth::SynthError;
use crate::synth::packet::{self, Pkt};
use crate::synth::pcap::{PcapWriter, TsPrecision};
use crate::time::{Duration, Timestamp};

/// Link layer the captured bytes start with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Ethernet II, MACs derived from the IP addresses
    /// ([`packet::mac_for`]), frames padded to 60 bytes.
    Ethernet,
    /// Raw IP (LINKTYPE_RAW): the bytes start with the IP header.
    Raw,
}

impl Link {
    pub fn linktype(self) -> Linktype {
        match self {
            Link::Ethernet => Linktype::ETHERNET,
            Link::Raw => Linktype::RAW,
        }
    }
}

/// One captured packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub ts: Timestamp,
    /// Captured bytes, from the link-layer header on.
    pub data: Vec<u8>,
    /// Length on the wire (larger than `data.len()` for a snapped record).
    pub orig_len: u32,
    /// What the kernel is expected to make of the packet, in words (crafted
    /// scenarios), or empty.
    pub note: &'static str,
}

/// Fixed start time of crafted captures: 2024-01-01 00:00:00 UTC.
pub const EPOCH: Timestamp = Timestamp::from_secs_nanos(1_704_067_200, 0);

/// Packets on a timeline.
#[derive(Debug, Clone)]
pub struct Script {
    link: Link,
    now: Timestamp,
    step: Duration,
    records: Vec<Record>,
}

impl Script {
    pub fn new(link: Link, start: Timestamp) -> Self {
        Script {
            link,
            now: start,
            step: Duration::from_millis(1),
            records: Vec::new(),
        }
    }

    pub fn link(&self) -> Link {
        self.link
    }

    /// The time the next packet will get.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// Sets how far the clock moves after each packet.
    pub fn set_step(&mut self, step: Duration) {
        self.step = step;
    }

    /// Lets time pass before the next packet.
    pub fn wait(&mut self, d: Duration) {
        self.now = self.now.add(d);
    }

    pub fn wait_ms(&mut self, ms: u64) {
        self.wait(Duration::from_millis(ms));
    }

    pub fn records(&self) -> &[Record] {
        &self.records
    }

    pub fn into_records(self) -> Vec<Record> {
        self.records
    }

    /// Builds `pkt` and appends it, framed for the script's link type.
    pub fn send(&mut self, pkt: &Pkt<'_>, note: &'static str) -> Result<(), SynthError> {
        let d = pkt.build()?;
        self.send_datagram(&d, note)
    }

    /// Appends an already-built IP datagram (a fragment, say).
    pub fn send_datagram(&mut self, datagram: &[u8], note: &'static str) -> Result<(), SynthError> {
        let data = self.frame(datagram)?;
        let orig_len = data.len() as u32;
        self.push(data, orig_len, note);
        Ok(())
    }

    /// Appends `pkt` as a snapped record: only the first `caplen` bytes of the
    /// frame are kept, the record's original length is the full frame's.
    pub fn send_truncated(
        &mut self,
        pkt: &Pkt<'_>,
        caplen: usize,
        note: &'static str,
    ) -> Result<(), SynthError> {
        let mut data = self.frame(&pkt.build()?)?;
        let orig_len = data.len() as u32;
        data.truncate(caplen);
        self.push(data, orig_len, note);
        Ok(())
    }

    /// Appends link-layer bytes as they are (ARP, say). Only on Ethernet.
    pub fn send_frame(&mut self, frame: Vec<u8>, note: &'static str) -> Result<(), SynthError> {
        if self.link != Link::Ethernet {
            return Err(SynthError::FrameOnRawLink);
        }
        let orig_len = frame.len() as u32;
        self.push(frame, orig_len, note);
        Ok(())
    }

    fn frame(&self, datagram: &[u8]) -> Result<Vec<u8>, SynthError> {
        match self.link {
            Link::Ethernet => packet::ethernet_frame(datagram),
            Link::Raw => Ok(datagram.to_vec()),
        }
    }

    fn push(&mut self, data: Vec<u8>, orig_len: u32, note: &'static str) {
        self.records.push(Record {
            ts: self.now,
            data,
            orig_len,
            note,
        });
        self.now = self.now.add(self.step);
    }

    /// Writes the records as a pcap file.
    pub fn write_pcap<W: Write>(&self, out: W, precision: TsPrecision) -> Result<W, SynthError> {
        write_records(out, self.link, precision, &self.records)
    }
}

/// Writes `records` as a pcap file with snap length 262144 (tcpdump's
/// default).
pub fn write_records<W: Write>(
    out: W,
    link: Link,
    precision: TsPrecision,
    records: &[Record],
) -> Result<W, SynthError> {
    let mut w = PcapWriter::new(out, link.linktype(), precision, 262_144)?;
    for r in records {
        w.write(r.ts, &r.data, r.orig_len)?;
    }
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn clock_steps_and_waits() {
        let mut s = Script::new(Link::Raw, EPOCH);
        let p = Pkt::udp(
            (Ipv4Addr::new(10, 9, 1, 2), Ipv4Addr::new(10, 9, 2, 2)),
            1,
            2,
        );
        s.send(&p, "a").unwrap();
        s.wait_ms(40_000);
        s.send(&p, "b").unwrap();
        s.send_truncated(&p, 10, "c").unwrap();
        let r = s.records();
        assert_eq!(r[0].ts, EPOCH);
        assert_eq!(r[1].ts, EPOCH.add(Duration::from_millis(40_001)));
        assert_eq!(r[2].ts.since(r[1].ts), Duration::from_millis(1));
        assert_eq!((r[2].data.len(), r[2].orig_len), (10, 28));
        assert!(s.send_frame(vec![0; 60], "arp").is_err());
    }
}
