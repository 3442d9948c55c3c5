//! The `xencloned` binary itself: start-up against a real xenstored with a
//! simulated device (`--simulate`), sd_notify READY, stats file, clean exit
//! on SIGTERM through the signalfd, `status` subcommand.

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use xenstore::testing::Xenstored;

#[test]
fn starts_notifies_and_stops_cleanly_on_sigterm() {
    let Some(xs) = Xenstored::start("starts_notifies_and_stops_cleanly_on_sigterm") else {
        return;
    };
    let dir = xs.run_dir().to_path_buf();
    let notify = dir.join("notify");
    let rx = UnixDatagram::bind(&notify).expect("bind notify");
    rx.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let stats = dir.join("stats.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_xencloned"))
        .arg("--simulate")
        .arg("--cache")
        .arg("--xenstore")
        .arg(xs.socket())
        .arg("--stats-file")
        .arg(&stats)
        .env("NOTIFY_SOCKET", &notify)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn xencloned");
    let mut buf = [0u8; 256];
    let n = rx.recv(&mut buf).expect("READY notification");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.starts_with("READY=1"), "{msg}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !stats.exists() {
        assert!(Instant::now() < deadline, "stats file never written");
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = Command::new(env!("CARGO_BIN_EXE_xencloned"))
        .args(["status", "--stats-file"])
        .arg(&stats)
        .output()
        .expect("status");
    assert!(status.status.success());
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.lines()
            .any(|l| l.split_whitespace().eq(["clones_started", "0"])),
        "{text}"
    );
    let status = Command::new(env!("CARGO_BIN_EXE_xencloned"))
        .args(["status", "--json", "--stats-file"])
        .arg(&stats)
        .output()
        .expect("status --json");
    assert!(status.status.success());
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status --json");
    assert_eq!(v["stats"]["clones_started"], 0, "{v}");
    // SAFETY: signalling our own child process.
    let r = unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(r, 0);
    let deadline = Instant::now() + Duration::from_secs(5);
    let st = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "xencloned did not exit on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().expect("output");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(st.success(), "exit {st}: {log}");
    assert!(
        log.contains("stopping on signal") && log.contains("stopped"),
        "{log}"
    );
    assert!(
        log.contains("upstream dialect"),
        "dialect probe logged: {log}"
    );
    let n = rx.recv(&mut buf).expect("STOPPING notification");
    assert_eq!(&buf[..n], b"STOPPING=1");
}

/// `--adopt-only` runs without any clone device (stock Xen, where
/// xen_clone_dev does not load) and without privcmd: ready, stats, clean stop.
#[test]
fn adopt_only_runs_without_a_clone_device() {
    let Some(xs) = Xenstored::start("adopt_only_runs_without_a_clone_device") else {
        return;
    };
    let dir = xs.run_dir().to_path_buf();
    let notify = dir.join("notify-a");
    let rx = UnixDatagram::bind(&notify).expect("bind notify");
    rx.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let stats = dir.join("stats-a.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_xencloned"))
        .arg("--adopt-only")
        .args(["--device", "/nonexistent/clone"])
        .args(["--privcmd", "/nonexistent/privcmd"])
        .arg("--xenstore")
        .arg(xs.socket())
        .arg("--stats-file")
        .arg(&stats)
        .env("NOTIFY_SOCKET", &notify)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn xencloned");
    let mut buf = [0u8; 256];
    let n = rx.recv(&mut buf).expect("READY notification");
    assert!(buf[..n].starts_with(b"READY=1"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !stats.exists() {
        assert!(Instant::now() < deadline, "stats file never written");
        std::thread::sleep(Duration::from_millis(20));
    }
    let json = std::fs::read_to_string(&stats).expect("stats");
    assert!(json.contains("\"orphan_vifs_adopted\": 0"), "{json}");
    // SAFETY: signalling our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + Duration::from_secs(5);
    while child.try_wait().expect("wait").is_none() {
        assert!(
            Instant::now() < deadline,
            "xencloned did not exit on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {}: {log}", out.status);
    assert!(
        log.contains("--adopt-only: no clone device") && log.contains("stopped"),
        "{log}"
    );
    assert!(!log.contains("/nonexistent"), "opened a device: {log}");
}

#[test]
fn status_without_stats_file_fails_clearly() {
    let out = Command::new(env!("CARGO_BIN_EXE_xencloned"))
        .args(["status", "--stats-file", "/nonexistent/stats.json"])
        .output()
        .expect("status");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/stats.json"));
}

#[test]
fn missing_device_is_a_clear_startup_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_xencloned"))
        .args(["--device", "/nonexistent/clone"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/clone"));
}

#[test]
fn daemon_mode_keeps_logs_in_the_log_file() {
    let Some(xs) = Xenstored::start("daemon_mode_keeps_logs_in_the_log_file") else {
        return;
    };
    let dir = xs.run_dir().to_path_buf();
    let notify = dir.join("notify-d");
    let rx = UnixDatagram::bind(&notify).expect("bind notify");
    rx.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let log = dir.join("xencloned.log");
    let st = Command::new(env!("CARGO_BIN_EXE_xencloned"))
        .arg("-D")
        .arg("--simulate")
        .arg("--xenstore")
        .arg(xs.socket())
        .arg("--stats-file")
        .arg(dir.join("stats-d.json"))
        .arg("--log-file")
        .arg(&log)
        .env("NOTIFY_SOCKET", &notify)
        .status()
        .expect("run -D");
    assert!(st.success(), "the foreground process exits once forked");
    let mut buf = [0u8; 256];
    let n = rx.recv(&mut buf).expect("READY from the background daemon");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    let pid: i32 = msg
        .lines()
        .find_map(|l| l.strip_prefix("MAINPID="))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no MAINPID in {msg:?}"));
    // SAFETY: signalling the daemon this test started (pid from its READY).
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("stopped") {
            assert!(text.contains("ready"), "{text}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no 'stopped' in {}: {text}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts `xencloned --simulate` on `socket` with no dialect flag, waits for
/// READY, stops it with SIGTERM and returns its log.
fn run_default_dialect(socket: &std::path::Path, dir: &std::path::Path, tag: &str) -> String {
    let notify = dir.join(format!("notify-{tag}"));
    let rx = UnixDatagram::bind(&notify).expect("bind notify");
    rx.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut child = Command::new(env!("CARGO_BIN_EXE_xencloned"))
        .arg("--simulate")
        .arg("--xenstore")
        .arg(socket)
        .arg("--stats-file")
        .arg(dir.join(format!("stats-{tag}.json")))
        .env("NOTIFY_SOCKET", &notify)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn xencloned");
    let mut buf = [0u8; 256];
    let ready = rx.recv(&mut buf);
    // SAFETY: signalling our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + Duration::from_secs(5);
    while child.try_wait().expect("wait").is_none() {
        assert!(
            Instant::now() < deadline,
            "xencloned did not exit on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(ready.is_ok(), "no READY: {log}");
    assert!(out.status.success(), "exit {}: {log}", out.status);
    log
}

/// No `--dialect`, no `-d`: on oxenstored (the proxy emulating its op table:
/// XS_CLONE = 22, nothing at 23) the daemon must choose XS_CLONE; on the C
/// xenstored, deep copy.
#[test]
fn default_dialect_is_xs_clone_on_oxenstored_and_deep_copy_on_c_xenstored() {
    let Some(xs) = Xenstored::start("default_dialect_is_xs_clone_on_oxenstored") else {
        return;
    };
    let dir = xs.run_dir().to_path_buf();
    let proxy = xenstore::testing::NepheleProxy::start(&xs);
    let xenstore::Endpoint::Socket(proxy_socket) = proxy.endpoint() else {
        panic!("proxy is a socket");
    };
    let log = run_default_dialect(&proxy_socket, &dir, "ox");
    assert!(
        log.contains("dialect=Nephele") && log.contains("mode=XsClone"),
        "oxenstored: {log}"
    );
    assert!(log.contains("EEXIST"), "probe answer logged: {log}");
    assert!(!log.contains("deep copy"), "{log}");
    let log = run_default_dialect(&xs.socket(), &dir, "c");
    assert!(
        log.contains("dialect=Upstream") && log.contains("mode=DeepCopy"),
        "C xenstored: {log}"
    );
    assert!(log.contains("EINVAL"), "probe answer logged: {log}");
}

/// A fake `/sys/kernel/debug/xen_clone` with what the module prints
/// (`Device::fmt_state`, `Device::fmt_counters` in rust/xen_clone_dev).
fn fake_debugfs(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("xc-debugfs-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(
        dir.join("state"),
        "simulated 0\nring_pages 1\nentries_num 128\nenable_flags 0x0\nprod_idx 7\ncons_idx 7\nqueued 0\noutstanding 2\nopen 1\norphan_timeout 30\n",
    )
    .expect("state");
    std::fs::write(
        dir.join("counters"),
        "notifications 7\ncompletions 5\nredeliveries 0\nauto_completions 0\nring_full 0\nbad_ids 0\nring_corruptions 0\nhypervisor_errors 0\n",
    )
    .expect("counters");
    dir
}

/// While the daemon runs, /dev/xen/clone cannot be opened (exclusive):
/// `info` must not need it when the module's debugfs files are there.
#[test]
fn info_reads_the_module_debugfs_without_opening_the_device() {
    let dir = fake_debugfs("info");
    let out = Command::new(env!("CARGO_BIN_EXE_xencloned"))
        .arg("info")
        .arg("--debugfs")
        .arg(&dir)
        .args(["--device", "/nonexistent/clone"])
        .output()
        .expect("info");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    for line in [
        "entries_num 128",
        "prod_idx 7",
        "outstanding 2",
        "open 1",
        "notifications 7",
        "completions 5",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in: {text}");
    }
    assert!(
        text.contains(&dir.display().to_string()),
        "source named: {text}"
    );
    assert!(
        !err.contains("/nonexistent/clone"),
        "opened the device: {err}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_xencloned"))
        .args(["info", "--json", "--debugfs"])
        .arg(&dir)
        .args(["--device", "/nonexistent/clone"])
        .output()
        .expect("info --json");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("info --json");
    assert_eq!(v["state"]["entries_num"], 128, "{v}");
    assert_eq!(v["counters"]["completions"], 5, "{v}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn info_without_debugfs_or_device_names_both_paths() {
    let out = Command::new(env!("CARGO_BIN_EXE_xencloned"))
        .args(["info", "--debugfs", "/nonexistent/xen_clone"])
        .args(["--device", "/nonexistent/clone"])
        .output()
        .expect("info");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/nonexistent/xen_clone/state")
            && err.contains("/nonexistent/clone")
            && err.contains("No such file"),
        "{err}"
    );
}

/// `status` while the daemon runs: its stats file, then the module's
/// counters from debugfs.
#[test]
fn status_shows_the_stats_file_and_the_module_counters_while_running() {
    let Some(xs) = Xenstored::start("status_shows_the_stats_file_and_the_module_counters") else {
        return;
    };
    let dir = xs.run_dir().to_path_buf();
    let notify = dir.join("notify-s");
    let rx = UnixDatagram::bind(&notify).expect("bind notify");
    rx.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let stats = dir.join("stats-s.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_xencloned"))
        .arg("--simulate")
        .arg("--xenstore")
        .arg(xs.socket())
        .arg("--stats-file")
        .arg(&stats)
        .env("NOTIFY_SOCKET", &notify)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn xencloned");
    let mut buf = [0u8; 256];
    rx.recv(&mut buf).expect("READY");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !stats.exists() {
        assert!(Instant::now() < deadline, "stats file never written");
        std::thread::sleep(Duration::from_millis(20));
    }
    let dfs = fake_debugfs("status");
    let out = Command::new(env!("CARGO_BIN_EXE_xencloned"))
        .args(["status", "--stats-file"])
        .arg(&stats)
        .arg("--debugfs")
        .arg(&dfs)
        .args(["--device", "/nonexistent/clone"])
        .output()
        .expect("status");
    // SAFETY: signalling our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let _ = child.wait();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // What the QEMU scenarios grep: `clones_completed[": ]+N` and the
    // module's `name value` lines.
    assert!(
        text.lines()
            .any(|l| l.split_whitespace().eq(["clones_completed", "0"])),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l == "notifications 7") && text.lines().any(|l| l == "completions 5"),
        "{text}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_xencloned"))
        .args(["status", "--json", "--stats-file"])
        .arg(&stats)
        .arg("--debugfs")
        .arg(&dfs)
        .args(["--device", "/nonexistent/clone"])
        .output()
        .expect("status --json");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status --json");
    assert_eq!(v["stats"]["clones_completed"], 0, "{v}");
    assert_eq!(v["module"]["counters"]["completions"], 5, "{v}");
    let _ = std::fs::remove_dir_all(&dfs);
}

fn run_reset(args: &[&std::ffi::OsStr]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xencloned"))
        .arg("-R")
        .args(["--device", "/nonexistent/clone"])
        .args(args)
        .output()
        .expect("xencloned -R");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `-R` with xen_clone_dev not loaded (no /dev/xen/clone: the module
/// refused to load over a stale ring) issues CLONEOP_disable through
/// privcmd. A regular file stands in for privcmd: its ioctl fails with
/// ENOTTY, which must be reported with the op, the path and the errno.
#[test]
fn reset_issues_clone_op_disable_through_privcmd_without_the_device() {
    let dir = std::env::temp_dir().join(format!("xc-reset-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("sys/module")).expect("mkdir");
    let privcmd = dir.join("privcmd");
    std::fs::write(&privcmd, b"").expect("fake privcmd");
    let (ok, out, err) = run_reset(&[
        "--privcmd".as_ref(),
        privcmd.as_os_str(),
        "--sysfs".as_ref(),
        dir.join("sys").as_os_str(),
    ]);
    assert!(!ok, "an ioctl error must fail: {out}{err}");
    assert!(
        err.contains("CLONEOP_disable")
            && err.contains("hypercall 43")
            && err.contains(&privcmd.display().to_string())
            && err.contains("os error 25"),
        "{err}"
    );
    assert!(
        !err.contains("/nonexistent/clone"),
        "opened the device: {err}"
    );
    let (ok, _, err) = run_reset(&[
        "--privcmd".as_ref(),
        "/nonexistent/privcmd".as_ref(),
        "--sysfs".as_ref(),
        dir.join("sys").as_os_str(),
    ]);
    assert!(!ok && err.contains("/nonexistent/privcmd"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// While xen_clone_dev is loaded it owns the ring: `-R` must not disable it
/// (nor touch privcmd), only show the module's state.
#[test]
fn reset_leaves_the_ring_of_a_loaded_module_alone() {
    let dir = std::env::temp_dir().join(format!("xc-reset-loaded-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("sys/module/xen_clone_dev")).expect("mkdir");
    let dfs = fake_debugfs("reset");
    let (ok, out, err) = run_reset(&[
        "--privcmd".as_ref(),
        "/nonexistent/privcmd".as_ref(),
        "--sysfs".as_ref(),
        dir.join("sys").as_os_str(),
        "--debugfs".as_ref(),
        dfs.as_os_str(),
    ]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("owns the clone ring") && out.lines().any(|l| l == "notifications 7"),
        "{out}"
    );
    assert!(
        !err.contains("privcmd") && !out.contains("CLONEOP_disable ("),
        "{out}{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&dfs);
}
