//! The conntrack event trace (`--trace FILE`): NEW / UPDATE / DESTROY and
//! expectation events in the order they happened, like `conntrack -E`.

use crate::conntrack::{Event, EventKind};
use std::fmt::Write as _;
use std::io::{self, Write};

pub const TRACE_HEADER: &str =
    "packet,time,event,conn,proto,orig,reply,tcp_state,status,timeout,helper";

pub struct TraceWriter<W: Write> {
    out: csv::Writer<W>,
    buf: String,
}

impl<W: Write> TraceWriter<W> {
    pub fn new(w: W) -> io::Result<Self> {
        let mut out = csv::WriterBuilder::new().has_headers(false).from_writer(w);
        out.write_record(TRACE_HEADER.split(','))
            .map_err(io::Error::other)?;
        Ok(TraceWriter {
            out,
            buf: String::new(),
        })
    }

    pub fn write(&mut self, e: &Event) -> io::Result<()> {
        let b = &mut self.buf;
        b.clear();
        let _ = write!(b, "{}", e.packet);
        let packet = b.len();
        let _ = write!(b, "{}", e.time);
        let time = b.len();
        b.push_str(e.kind.name());
        let kind = b.len();
        let _ = write!(b, "{}", e.conn_uid);
        let conn = b.len();
        b.push_str(crate::conntrack::tuple::proto_name(e.orig.proto).unwrap_or("unknown"));
        let proto = b.len();
        let _ = write!(b, "{}", e.orig);
        let orig = b.len();
        if !matches!(
            e.kind,
            EventKind::ExpectNew | EventKind::ExpectMatch | EventKind::ExpectDestroy
        ) {
            let _ = write!(b, "{}", e.reply);
        }
        let reply = b.len();
        if let Some(t) = e.tcp_state {
            b.push_str(t.name());
        }
        let tcp = b.len();
        for (i, name) in e.status.set_names().enumerate() {
            if i > 0 {
                b.push('|');
            }
            b.push_str(name);
        }
        let status = b.len();
        let _ = write!(b, "{}", e.timeout);
        let timeout = b.len();
        if let Some(h) = e.helper {
            b.push_str(h.name());
        }
        let ends = [
            packet,
            time,
            kind,
            conn,
            proto,
            orig,
            reply,
            tcp,
            status,
            timeout,
            b.len(),
        ];
        let mut start = 0;
        for end in ends {
            self.out
                .write_field(&b.as_bytes()[start..end])
                .map_err(io::Error::other)?;
            start = end;
        }
        self.out
            .write_record(None::<&[u8]>)
            .map_err(io::Error::other)
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
