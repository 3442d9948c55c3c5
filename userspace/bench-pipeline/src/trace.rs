//! Counting requests in C xenstored's `-T` trace file.
//!
//! Every request a connection sends is one line
//! `IN <conn> <date> <time> <OP> (<payload>)`; replies are `OUT`, and
//! connections appear as `CREATE connection <conn>` /
//! `DESTROY connection <conn>` (addresses may be reused after a DESTROY).
//! The benchmark's own connections tag themselves by reading a marker
//! path (`harness::MARK_*`); every other connection active in a window
//! is the daemon's.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// Current size of the trace (a window starts or ends here).
pub fn offset(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// The trace text in `[from, to)`.
pub fn read_range(path: &Path, from: u64, to: u64) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    f.seek(SeekFrom::Start(from))?;
    let mut buf = Vec::new();
    f.take(to.saturating_sub(from)).read_to_end(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// `(connection, operation, payload)` of an `IN` line.
fn parse_in(line: &str) -> Option<(&str, &str, &str)> {
    let rest = line.strip_prefix("IN ")?;
    let mut it = rest.splitn(5, ' ');
    let conn = it.next()?;
    let _date = it.next()?;
    let _time = it.next()?;
    let op = it.next()?;
    Some((conn, op, it.next().unwrap_or("")))
}

/// Connections that read `marker` (the benchmark's own connections).
pub fn marked_connections(text: &str, markers: &[&str]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if let Some((conn, "READ", payload)) = parse_in(line)
            && markers
                .iter()
                .any(|m| payload.starts_with(&format!("({m} ")))
        {
            out.insert(conn.to_string());
        }
    }
    out
}

/// Requests in `text`, by operation: `(daemon's, marked connections')`,
/// where the daemon's are those of every connection not in `marked`.
pub type OpCounts = BTreeMap<String, u64>;

pub fn count_requests(text: &str, marked: &BTreeSet<String>) -> (OpCounts, OpCounts) {
    let (mut daemon, mut others) = (OpCounts::new(), OpCounts::new());
    for line in text.lines() {
        if let Some((conn, op, _)) = parse_in(line) {
            let m = if marked.contains(conn) {
                &mut others
            } else {
                &mut daemon
            };
            *m.entry(op.to_string()).or_insert(0) += 1;
        }
    }
    (daemon, others)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_trace_lines() {
        let t = "CREATE connection 0x1\n\
                 IN 0x1 20261123 18:56:05 READ (/bench-marker/setup )\n\
                 OUT 0x1 20261123 18:56:05 ERROR (ENOENT )\n\
                 wrl: dom    0      0  msec      10000 credit       91200 reserve          0 discard\n\
                 IN 0x2 20261123 18:56:05 WRITE (/a/b c)\n\
                 IN 0x2 20261123 18:56:05 TRANSACTION_START ()\n\
                 IN 0x1 20261123 18:56:05 READ (/x )\n";
        let marked = marked_connections(t, &["/bench-marker/setup"]);
        assert_eq!(marked.iter().collect::<Vec<_>>(), vec!["0x1"]);
        let (d, o) = count_requests(t, &marked);
        assert_eq!(d.get("WRITE"), Some(&1));
        assert_eq!(d.get("TRANSACTION_START"), Some(&1));
        assert_eq!(d.values().sum::<u64>(), 2);
        assert_eq!(o.get("READ"), Some(&2));
    }
}
