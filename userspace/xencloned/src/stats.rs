//! Counters and per-clone timings, written as JSON to the stats file
//! (`/run/xencloned/stats.json` by default) and printed by
//! `xencloned status`.

use std::collections::VecDeque;
use std::fmt::Write as _;
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
    d.as_secs_f64() * 1000.0
}

/// `s` as a JSON string literal (quoted and escaped).
pub fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
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

    pub fn to_json(&self) -> String {
        let mut o = String::from("{\n");
        let counters: [(&str, u64); 25] = [
            ("started_unix", self.started_unix),
            ("clones_started", self.clones_started),
            ("clones_completed", self.clones_completed),
            ("clones_failed", self.clones_failed),
            ("redelivered", self.redelivered),
            ("vifs_connected", self.vifs_connected),
            ("vifs_failed", self.vifs_failed),
            ("vifs_released", self.vifs_released),
            ("uevent_timeouts", self.uevent_timeouts),
            ("uevents_recovered", self.uevents_recovered),
            ("orphan_vifs_adopted", self.orphan_vifs_adopted),
            ("uevents_foreign_dropped", self.uevents_foreign_dropped),
            ("vifs_late", self.vifs_late),
            ("clones_recovered_late", self.clones_recovered_late),
            ("late_waiting", self.late_waiting as u64),
            ("completion_errors", self.completion_errors),
            ("unpause_errors", self.unpause_errors),
            ("cache_hits", self.cache_hits),
            ("cache_misses", self.cache_misses),
            ("cache_invalidations", self.cache_invalidations),
            ("in_flight", self.in_flight as u64),
            ("tree_hits", self.trees.hits),
            ("tree_reads", self.trees.reads),
            ("tree_invalidations", self.trees.invalidations),
            ("tree_descriptions", self.trees.descriptions),
        ];
        for (k, v) in counters {
            let _ = writeln!(o, "  \"{k}\": {v},");
        }
        let mean = if self.latency_count > 0 {
            ms(self.latency_sum) / self.latency_count as f64
        } else {
            0.0
        };
        let _ = writeln!(
            o,
            "  \"latency_ms\": {{\"count\": {}, \"mean\": {:.3}, \"min\": {:.3}, \"max\": {:.3}}},",
            self.latency_count,
            mean,
            self.latency_min.map_or(0.0, ms),
            ms(self.latency_max)
        );
        o.push_str("  \"stages_mean_ms\": {");
        let stages: Vec<String> = self
            .stage_totals
            .iter()
            .map(|(n, d, c)| format!("\"{n}\": {:.3}", ms(*d) / (*c).max(1) as f64))
            .collect();
        o.push_str(&stages.join(", "));
        o.push_str("},\n  \"recent\": [");
        let recent: Vec<String> = self
            .recent
            .iter()
            .map(|r| {
                let stages: Vec<String> = r
                    .stages
                    .iter()
                    .map(|(n, d)| format!("\"{n}\": {:.3}", ms(*d)))
                    .collect();
                format!(
                    "\n    {{\"id\": {}, \"parent\": {}, \"child\": {}, \"ok\": {}, \"error\": {}, \"latency_ms\": {:.3}, \"stages_ms\": {{{}}}}}",
                    r.id,
                    r.parent,
                    r.child,
                    r.ok,
                    r.error.as_deref().map_or("null".to_string(), json_str),
                    ms(r.latency),
                    stages.join(", ")
                )
            })
            .collect();
        o.push_str(&recent.join(","));
        o.push_str("\n  ]\n}\n");
        o
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
        assert!(j.contains("\"mean\": 20.000"), "{j}");
        assert!(j.contains("\"xenstore\": 5.000"), "{j}");
        assert!(j.contains("timeout \\\"vif\\\""), "{j}");
        for _ in 0..40 {
            s.record(s.recent[0].clone());
        }
        assert_eq!(s.recent.len(), RECENT);
    }
}
