//! What `xencloned info` and `xencloned status` report about the kernel
//! module, without opening `/dev/xen/clone`: the device is exclusive-open, so
//! while the daemon runs any other open fails with `EBUSY`. The module's
//! debugfs files (`rust/xen_clone_dev`, `Device::fmt_state` and
//! `Device::fmt_counters`) can be read at any time:
//!
//! - `<debugfs>/state`: `simulated`, `ring_pages`, `entries_num`,
//!   `enable_flags` (hex), `prod_idx`, `cons_idx`, `queued`, `outstanding`,
//!   `open`, `orphan_timeout`;
//! - `<debugfs>/counters`: `notifications`, `completions`, `redeliveries`,
//!   `auto_completions`, `ring_full`, `bad_ids`, `ring_corruptions`,
//!   `hypervisor_errors`;
//!
//! one `name value` pair per line. Only when they cannot be read is the
//! device's `INFO` ioctl used (which works only while no daemon holds it),
//! and when neither works the error names both paths.

use crate::source::{CloneSource, DeviceSource};
use std::io;
use std::path::Path;
use xen_clone_abi::{XEN_CLONE_INFO_SIMULATED, XenCloneInfo};

/// The module's debugfs directory.
pub const DEBUGFS_DIR: &str = "/sys/kernel/debug/xen_clone";
/// Present while `xen_clone_dev` is loaded.
pub const MODULE_SYSFS: &str = "/sys/module/xen_clone_dev";

/// `name value` pairs, in file order.
pub type Fields = Vec<(String, String)>;

/// Parses a debugfs file of `name value` lines (blank lines skipped).
pub fn parse_fields(text: &str) -> Result<Fields, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match line.split_once(' ') {
            Some((k, v)) if !k.is_empty() && !v.trim().is_empty() && !v.trim().contains(' ') => {
                out.push((k.to_string(), v.trim().to_string()));
            }
            _ => return Err(format!("line {}: {line:?} is not 'name value'", i + 1)),
        }
    }
    Ok(out)
}

/// Reads and parses one debugfs file; the error names the path.
pub fn read_fields(path: &Path) -> Result<Fields, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse_fields(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The module's state and counters, and where they were read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub source: String,
    pub state: Fields,
    pub counters: Fields,
}

fn kv(k: &str, v: impl ToString) -> (String, String) {
    (k.to_string(), v.to_string())
}

/// The counters of an `INFO` ioctl, with the debugfs names.
pub fn counter_fields(i: &XenCloneInfo) -> Fields {
    let c = &i.counters;
    vec![
        kv("notifications", c.notifications),
        kv("completions", c.completions),
        kv("redeliveries", c.redeliveries),
        kv("auto_completions", c.auto_completions),
        kv("ring_full", c.ring_full),
        kv("bad_ids", c.bad_ids),
        kv("ring_corruptions", c.ring_corruptions),
        kv("hypervisor_errors", c.hypervisor_errors),
    ]
}

impl Report {
    /// From the device's `INFO` ioctl, with the debugfs names (plus `abi`).
    pub fn from_info(i: &XenCloneInfo, source: String) -> Report {
        Report {
            source,
            state: vec![
                kv("abi", i.version),
                kv(
                    "simulated",
                    u8::from(i.flags & XEN_CLONE_INFO_SIMULATED != 0),
                ),
                kv("ring_pages", i.ring_pages),
                kv("entries_num", i.entries_num),
                kv("enable_flags", format!("{:#x}", i.enable_flags)),
                kv("prod_idx", i.prod_idx),
                kv("cons_idx", i.cons_idx),
                kv("queued", i.queued),
                kv("outstanding", i.outstanding),
                kv("orphan_timeout", i.orphan_timeout_secs),
            ],
            counters: counter_fields(i),
        }
    }

    /// `# xen_clone_dev (<source>)` and one `name value` line per field, the
    /// debugfs format (so `sed -n 's/^notifications //p'` works on it too).
    pub fn render(&self) -> String {
        let mut o = format!("# xen_clone_dev ({})\n", self.source);
        for (k, v) in self.state.iter().chain(&self.counters) {
            o.push_str(&format!("{k} {v}\n"));
        }
        o
    }

    /// `{"source": ..., "state": {...}, "counters": {...}}`, numbers as
    /// JSON numbers (for `--json`).
    pub fn to_json(&self) -> serde_json::Value {
        let fields = |f: &Fields| -> serde_json::Map<String, serde_json::Value> {
            f.iter()
                .map(|(k, v)| {
                    let v = v
                        .parse::<u64>()
                        .map_or_else(|_| serde_json::Value::from(v.as_str()), Into::into);
                    (k.clone(), v)
                })
                .collect()
        };
        serde_json::json!({
            "source": self.source,
            "state": fields(&self.state),
            "counters": fields(&self.counters),
        })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.state
            .iter()
            .chain(&self.counters)
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `<dir>/state` and `<dir>/counters`.
pub fn read_debugfs(dir: &Path) -> Result<Report, String> {
    let state = read_fields(&dir.join("state"))?;
    let counters = read_fields(&dir.join("counters"))?;
    Ok(Report {
        source: format!("{}/{{state,counters}}", dir.display()),
        state,
        counters,
    })
}

/// The device's `INFO` ioctl (needs an open of the device: `EBUSY` while a
/// daemon holds it).
pub fn read_device(device: &Path) -> Result<Report, String> {
    let mut d = DeviceSource::open(device).map_err(|e| {
        let busy = matches!(&e, crate::source::SourceError::Io { source, .. }
            if source.raw_os_error() == Some(libc::EBUSY));
        if busy {
            format!("{e} (held by the running xencloned: the device is exclusive-open)")
        } else {
            e.to_string()
        }
    })?;
    match d.info() {
        Ok(Some(i)) => Ok(Report::from_info(
            &i,
            format!("{} INFO ioctl", device.display()),
        )),
        Ok(None) => Err(format!("{}: no information", device.display())),
        Err(e) => Err(e.to_string()),
    }
}

/// debugfs first, the device's `INFO` ioctl only if debugfs cannot be read;
/// the error names every path tried.
pub fn module_report(debugfs: &Path, device: &Path) -> Result<Report, String> {
    let dfs = match read_debugfs(debugfs) {
        Ok(r) => return Ok(r),
        Err(e) => e,
    };
    match read_device(device) {
        Ok(r) => {
            tracing::debug!("debugfs unavailable ({dfs}): used the device");
            Ok(r)
        }
        Err(dev) => Err(format!(
            "no information about xen_clone_dev: {dfs} (is xen_clone_dev loaded and debugfs mounted on /sys/kernel/debug?); {dev}"
        )),
    }
}

/// The counters alone, for `xencloned status`: `<debugfs>/counters`, else
/// the device's `INFO` ioctl.
pub fn module_counters(debugfs: &Path, device: &Path) -> Result<Report, String> {
    let path = debugfs.join("counters");
    let dfs = match read_fields(&path) {
        Ok(counters) => {
            return Ok(Report {
                source: path.display().to_string(),
                state: Vec::new(),
                counters,
            });
        }
        Err(e) => e,
    };
    match read_device(device) {
        Ok(r) => Ok(Report {
            state: Vec::new(),
            ..r
        }),
        Err(dev) => Err(format!(
            "no xen_clone_dev counters: {dfs} (is xen_clone_dev loaded and debugfs mounted on /sys/kernel/debug?); {dev}"
        )),
    }
}

/// Whether `xen_clone_dev` is loaded (`/sys/module/xen_clone_dev` exists).
pub fn module_loaded(sysfs_module: &Path) -> io::Result<bool> {
    match std::fs::metadata(sysfs_module) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exactly what `Device::fmt_counters` and `Device::fmt_state` print.
    const COUNTERS: &str = "notifications 5\ncompletions 4\nredeliveries 1\nauto_completions 0\nring_full 0\nbad_ids 2\nring_corruptions 0\nhypervisor_errors 0\n";
    const STATE: &str = "simulated 0\nring_pages 1\nentries_num 128\nenable_flags 0x1\nprod_idx 5\ncons_idx 5\nqueued 0\noutstanding 1\nopen 1\norphan_timeout 30\n";

    #[test]
    fn parses_the_module_debugfs_format() {
        let c = parse_fields(COUNTERS).expect("counters");
        assert_eq!(c.len(), 8);
        assert_eq!(c[0], kv("notifications", 5));
        assert_eq!(c[7], kv("hypervisor_errors", 0));
        let s = parse_fields(STATE).expect("state");
        assert_eq!(s[3], kv("enable_flags", "0x1"));
        assert_eq!(s[8], kv("open", 1));
        assert!(parse_fields("notifications\n").is_err());
        assert!(parse_fields("a b c\n").is_err());
        let e = parse_fields("ok 1\n\nbad\n").expect_err("bad line");
        assert!(e.contains("line 3"), "{e}");
    }

    #[test]
    fn info_ioctl_renders_with_the_debugfs_names() {
        let mut i = XenCloneInfo {
            version: 1,
            ring_pages: 2,
            entries_num: 256,
            enable_flags: 1,
            prod_idx: 9,
            cons_idx: 9,
            queued: 0,
            outstanding: 3,
            orphan_timeout_secs: 30,
            flags: XEN_CLONE_INFO_SIMULATED,
            ..Default::default()
        };
        i.counters.notifications = 9;
        i.counters.hypervisor_errors = 1;
        let r = Report::from_info(&i, "dev".into());
        let text = r.render();
        assert!(text.starts_with("# xen_clone_dev (dev)\n"), "{text}");
        for line in [
            "simulated 1",
            "entries_num 256",
            "enable_flags 0x1",
            "outstanding 3",
            "notifications 9",
            "hypervisor_errors 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in {text}");
        }
        let s = parse_fields(STATE).expect("state");
        for (k, _) in &s {
            assert!(k == "open" || r.get(k).is_some(), "{k} missing");
        }
    }

    #[test]
    fn debugfs_is_read_without_the_device() {
        let dir = std::env::temp_dir().join(format!("xcd-devinfo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("state"), STATE).expect("state");
        std::fs::write(dir.join("counters"), COUNTERS).expect("counters");
        let r = module_report(&dir, Path::new("/nonexistent/clone")).expect("debugfs");
        assert_eq!(r.get("notifications"), Some("5"));
        assert_eq!(r.get("entries_num"), Some("128"));
        let c = module_counters(&dir, Path::new("/nonexistent/clone")).expect("counters");
        assert!(c.state.is_empty());
        assert_eq!(c.get("bad_ids"), Some("2"));
        std::fs::remove_file(dir.join("state")).expect("rm");
        let e = module_report(&dir, Path::new("/nonexistent/clone")).expect_err("none");
        assert!(
            e.contains(&format!("{}/state", dir.display())) && e.contains("/nonexistent/clone"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
