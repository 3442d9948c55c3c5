//! Counters and per-clone timings, written as JSON to the stats file
//! (`/run/xencloned/stats.json` by default) and printed by
//! `xencloned status`.

use serde::Serialize;
use serde_json::ser::Formatter;
use std::collections::VecDeque;
use std::io;
use std::path::Path;
use std::time::Duration;

/// One finished clone, for the "recent" list.
#[derive(Clone, Debug, PartialEq)]
pub struct CloneRecord {
    pub id: u32,
    pub parent: u16,
    pub child: u16,
    pub ok: bool,
    pub error: Option<String>,
    /// Notification read → completion.
    pub latency: Duration,
    pub stages: Vec<(&'static str, Duration)>,
}

#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub started_unix: u64,
    pub clones_started: u64,
    pub clones_completed: u64,
    pub clones_failed: u64,
    pub redelivered: u64,
    pub vifs_connected: u64,
    pub vifs_failed: u64,
    pub vifs_released: u64,
    pub uevent_timeouts: u64,
    pub uevents_recovered: u64,
    pub orphan_vifs_adopted: u64,
    /// Uevent datagrams dropped because the kernel did not send them.
    pub uevents_foreign_dropped: u64,
    /// Vifs connected after they had failed (timeout, netback's error).
    pub vifs_late: u64,
    /// Clones completed as failed whose child was unpaused once its late
    /// vifs were all connected.
    pub clones_recovered_late: u64,
    /// Clones completed as failed still waiting for late vifs.
    pub late_waiting: usize,
    pub completion_errors: u64,
    /// Tries of a completion the hypervisor did not accept yet (`EAGAIN`).
    pub completion_retries: u64,
    /// Completions the hypervisor refused for good (`ECANCELED`).
    pub completions_rejected: u64,
    /// Entries completed by the module's orphan policy, set up on arrival.
    pub auto_completed: u64,
    pub unpause_errors: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub cache_invalidations: u64,
    pub latency_count: u64,
    pub latency_sum: Duration,
    pub latency_min: Option<Duration>,
    pub latency_max: Duration,
    pub stage_totals: Vec<(&'static str, Duration, u64)>,
    pub recent: VecDeque<CloneRecord>,
    pub in_flight: usize,
    /// Kept source trees of deep copy (`crate::trees`).
    pub trees: crate::trees::TreeStats,
}

const RECENT: usize = 32;

fn ms(d: Duration) -> f64 {
    round3(d.as_secs_f64() * 1000.0)
}

/// Three decimals are plenty for milliseconds.
fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// `name: ms` pairs in their order (stage names), as a JSON object.
struct MsMap<'a>(Vec<(&'a str, f64)>);

impl Serialize for MsMap<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

#[derive(Serialize)]
struct LatencyJson {
    count: u64,
    mean: f64,
    min: f64,
    max: f64,
}

#[derive(Serialize)]
struct RecentJson<'a> {
    id: u32,
    parent: u16,
    child: u16,
    ok: bool,
    error: Option<&'a str>,
    latency_ms: f64,
    stages_ms: MsMap<'a>,
}

/// The stats file. Field order is the file's key order; readers (the QEMU
/// scenarios) take the counters with `sed`, one `"name": value,` a line,
/// and each "recent" entry from its one line.
#[derive(Serialize)]
struct StatsJson<'a> {
    started_unix: u64,
    clones_started: u64,
    clones_completed: u64,
    clones_failed: u64,
    redelivered: u64,
    vifs_connected: u64,
    vifs_failed: u64,
    vifs_released: u64,
    uevent_timeouts: u64,
    uevents_recovered: u64,
    orphan_vifs_adopted: u64,
    uevents_foreign_dropped: u64,
    vifs_late: u64,
    clones_recovered_late: u64,
    late_waiting: usize,
    completion_errors: u64,
    unpause_errors: u64,
    completion_retries: u64,
    completions_rejected: u64,
    auto_completed: u64,
    cache_hits: u64,
    cache_misses: u64,
    cache_invalidations: u64,
    in_flight: usize,
    tree_hits: u64,
    tree_reads: u64,
    tree_invalidations: u64,
    tree_descriptions: u64,
    latency_ms: LatencyJson,
    stages_mean_ms: MsMap<'a>,
    recent: Vec<RecentJson<'a>>,
}

/// `serde_json`'s pretty layout for the top-level object (one key a line)
/// and for the elements of its arrays (one a line), everything deeper on
/// that line, with the pretty separators (`", "`, `": "`).
struct StatsFormatter {
    depth: usize,
    array_lines: bool,
}

impl Formatter for StatsFormatter {
    fn begin_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.depth += 1;
        w.write_all(b"{")
    }
    fn end_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.depth -= 1;
        w.write_all(if self.depth == 0 { b"\n}" } else { b"}" })
    }
    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        match (self.depth, first) {
            (1, true) => w.write_all(b"\n  "),
            (1, false) => w.write_all(b",\n  "),
            (_, true) => Ok(()),
            (_, false) => w.write_all(b", "),
        }
    }
    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }
    fn begin_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.depth += 1;
        if self.depth == 2 {
            self.array_lines = false;
        }
        w.write_all(b"[")
    }
    fn end_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.depth -= 1;
        if self.depth == 1 && self.array_lines {
            w.write_all(b"\n  ]")
        } else {
            w.write_all(b"]")
        }
    }
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if self.depth == 2 {
            self.array_lines = true;
            w.write_all(if first { b"\n    " } else { b",\n    " })
        } else if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }
}

impl Stats {
    pub fn record(&mut self, r: CloneRecord) {
        if r.ok {
            self.clones_completed += 1;
        } else {
            self.clones_failed += 1;
        }
        self.latency_count += 1;
        self.latency_sum += r.latency;
        self.latency_min = Some(self.latency_min.map_or(r.latency, |m| m.min(r.latency)));
        self.latency_max = self.latency_max.max(r.latency);
        for (name, d) in &r.stages {
            match self.stage_totals.iter_mut().find(|(n, _, _)| n == name) {
                Some(t) => {
                    t.1 += *d;
                    t.2 += 1;
                }
                None => self.stage_totals.push((name, *d, 1)),
            }
        }
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(r);
    }

    fn to_serde(&self) -> StatsJson<'_> {
        let mean = if self.latency_count > 0 {
            round3(self.latency_sum.as_secs_f64() * 1000.0 / self.latency_count as f64)
        } else {
            0.0
        };
        let stages =
            |v: &[(&'static str, Duration)]| MsMap(v.iter().map(|(n, d)| (*n, ms(*d))).collect());
        StatsJson {
            started_unix: self.started_unix,
            clones_started: self.clones_started,
            clones_completed: self.clones_completed,
            clones_failed: self.clones_failed,
            redelivered: self.redelivered,
            vifs_connected: self.vifs_connected,
            vifs_failed: self.vifs_failed,
            vifs_released: self.vifs_released,
            uevent_timeouts: self.uevent_timeouts,
            uevents_recovered: self.uevents_recovered,
            orphan_vifs_adopted: self.orphan_vifs_adopted,
            uevents_foreign_dropped: self.uevents_foreign_dropped,
            vifs_late: self.vifs_late,
            clones_recovered_late: self.clones_recovered_late,
            late_waiting: self.late_waiting,
            completion_errors: self.completion_errors,
            unpause_errors: self.unpause_errors,
            completion_retries: self.completion_retries,
            completions_rejected: self.completions_rejected,
            auto_completed: self.auto_completed,
            cache_hits: self.cache_hits,
            cache_misses: self.cache_misses,
            cache_invalidations: self.cache_invalidations,
            in_flight: self.in_flight,
            tree_hits: self.trees.hits,
            tree_reads: self.trees.reads,
            tree_invalidations: self.trees.invalidations,
            tree_descriptions: self.trees.descriptions,
            latency_ms: LatencyJson {
                count: self.latency_count,
                mean,
                min: self.latency_min.map_or(0.0, ms),
                max: ms(self.latency_max),
            },
            stages_mean_ms: MsMap(
                self.stage_totals
                    .iter()
                    .map(|(n, d, c)| {
                        let mean = d.as_secs_f64() * 1000.0 / (*c).max(1) as f64;
                        (*n, round3(mean))
                    })
                    .collect(),
            ),
            recent: self
                .recent
                .iter()
                .map(|r| RecentJson {
                    id: r.id,
                    parent: r.parent,
                    child: r.child,
                    ok: r.ok,
                    error: r.error.as_deref(),
                    latency_ms: ms(r.latency),
                    stages_ms: stages(&r.stages),
                })
                .collect(),
        }
    }

    /// The stats file's JSON: one top-level key a line, one line per
    /// "recent" entry (see [`StatsFormatter`]).
    pub fn to_json(&self) -> String {
        let mut out = Vec::new();
        let mut ser = serde_json::Serializer::with_formatter(
            &mut out,
            StatsFormatter {
                depth: 0,
                array_lines: false,
            },
        );
        self.to_serde()
            .serialize(&mut ser)
            .expect("serializing to memory cannot fail");
        out.push(b'\n');
        String::from_utf8(out).expect("serde_json writes UTF-8")
    }

    /// Writes the JSON atomically (temp file + rename).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, self.to_json())?;
        std::fs::rename(tmp, path)
    }
}

/// `xencloned status`'s table of a stats file (read back as JSON, so a
/// file of another version still prints): one `name  value` row per
/// counter, the latency and stage means on a row each, then the recent
/// clones, oldest first.
pub fn render_table(source: &str, v: &serde_json::Value) -> String {
    use serde_json::Value;
    let mut o = format!("# xencloned ({source})\n");
    let Some(m) = v.as_object() else {
        o.push_str(&format!("{v}\n"));
        return o;
    };
    let inline = |v: &Value| match v.as_object() {
        Some(m) => m
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join("  "),
        None => v.to_string(),
    };
    for (k, v) in m {
        match v {
            Value::Array(_) => {}
            Value::Object(_) => o.push_str(&format!("{k:<24} {}\n", inline(v))),
            Value::String(s) => o.push_str(&format!("{k:<24} {s}\n")),
            v => o.push_str(&format!("{k:<24} {v}\n")),
        }
    }
    if let Some(recent) = m.get("recent").and_then(Value::as_array) {
        o.push_str(&format!(
            "recent clones ({}, oldest first):\n{:>8} {:>6} {:>6} {:>3} {:>11}  stages ms / error\n",
            recent.len(),
            "id",
            "parent",
            "child",
            "ok",
            "latency_ms"
        ));
        for r in recent {
            let f = |k: &str| r.get(k).map_or_else(|| "-".to_string(), |v| v.to_string());
            let ok = match r.get("ok") {
                Some(Value::Bool(true)) => "yes",
                Some(Value::Bool(false)) => "NO",
                _ => "-",
            };
            let detail = match r.get("error").and_then(Value::as_str) {
                Some(e) => e.to_string(),
                None => r.get("stages_ms").map_or_else(String::new, inline),
            };
            o.push_str(&format!(
                "{:>8} {:>6} {:>6} {:>3} {:>11}  {detail}\n",
                f("id"),
                f("parent"),
                f("child"),
                ok,
                f("latency_ms")
            ));
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_serializes() {
        let mut s = Stats::default();
        s.record(CloneRecord {
            id: 1,
            parent: 3,
            child: 9,
            ok: true,
            error: None,
            latency: Duration::from_millis(10),
            stages: vec![("xenstore", Duration::from_millis(4))],
        });
        s.record(CloneRecord {
            id: 2,
            parent: 3,
            child: 10,
            ok: false,
            error: Some("timeout \"vif\"".into()),
            latency: Duration::from_millis(30),
            stages: vec![("xenstore", Duration::from_millis(6))],
        });
        assert_eq!((s.clones_completed, s.clones_failed), (1, 1));
        assert_eq!(s.latency_min, Some(Duration::from_millis(10)));
        assert_eq!(s.latency_max, Duration::from_millis(30));
        assert_eq!(
            s.stage_totals,
            vec![("xenstore", Duration::from_millis(10), 2)]
        );
        let j = s.to_json();
        assert!(j.contains("\"clones_failed\": 1,"), "{j}");
        assert!(j.contains("\"mean\": 20.0"), "{j}");
        assert!(j.contains("\"xenstore\": 5.0"), "{j}");
        assert!(j.contains("timeout \\\"vif\\\""), "{j}");
        // What the QEMU scenarios take with sed: one counter a line, one
        // line per recent entry with its child and latency.
        assert!(j.lines().any(|l| l == "  \"clones_completed\": 1,"), "{j}");
        assert!(
            j.lines().any(|l| l.contains("\"child\": 9,")
                && l.contains("\"latency_ms\": 10.0, \"stages_ms\": {\"xenstore\": 4.0}")),
            "{j}"
        );
        // Plain decimals, never an exponent (the scenarios' sed takes
        // `[0-9.]*`): from a microsecond to hours.
        let mut t = Stats::default();
        for us in [1, 1_500, 123_456_789, 7_200_000_000] {
            t.record(CloneRecord {
                latency: Duration::from_micros(us),
                ..s.recent[0].clone()
            });
        }
        let tj = t.to_json();
        for want in ["0.001", "1.5", "123456.789", "7200000.0"] {
            assert!(
                tj.contains(&format!("\"latency_ms\": {want}, \"stages_ms\"")),
                "{want} in {tj}"
            );
        }
        let v: serde_json::Value = serde_json::from_str(&j).expect("valid JSON");
        assert_eq!(v["recent"][1]["error"], "timeout \"vif\"");
        assert_eq!(v["latency_ms"]["max"], 30.0);
        // The table keeps what the scenarios grep: `clones_completed[": ]+N`.
        let t = render_table("f", &v);
        assert!(
            t.lines()
                .any(|l| l.split_whitespace().eq(["clones_completed", "1"])),
            "{t}"
        );
        assert!(t.contains("count 2  mean 20.0  min 10.0  max 30.0"), "{t}");
        assert!(t.contains("timeout \"vif\""), "{t}");
        for _ in 0..40 {
            s.record(s.recent[0].clone());
        }
        assert_eq!(s.recent.len(), RECENT);
    }
}
