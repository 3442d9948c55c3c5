//! The whole clone pipeline against Debian's real C xenstored: a simulated
//! clone device (same ABI as /dev/xen/clone), a scripted hypervisor and
//! network, and a fake netback that watches Xenstore for cloned backends
//! and answers with kernel-format uevents.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use xen_clone_abi::{
    XEN_CLONE_ABI_VERSION, XEN_CLONE_ENTRY_AUTO_COMPLETED, XEN_CLONE_ENTRY_REDELIVERED,
    XenCloneEntry, XenCloneInfo,
};
use xencloned::clone::{Options, XsMode};
use xencloned::daemon::{Config, Daemon, Deps};
use xencloned::hypervisor::StartInfo;
use xencloned::netlink::MasterKind;
use xencloned::sim::{FakeHypervisor, FakeNet};
use xencloned::source::{SimHandle, SimSource};
use xencloned::uevent::{self, SimUevents};
use xenstore::testing::Xenstored;
use xenstore::{Client, Dialect, Perms, TxId, paths};

const P: u16 = 3;
const P_SI: u64 = 0x100;

#[derive(Clone, Copy, PartialEq)]
enum Netback {
    /// Creates the netdev and sends the online uevent.
    Normal,
    /// Creates the netdev, the uevent is lost.
    LostUevent,
    /// Never creates anything.
    Dead,
    /// Refuses the vif like netback_clone does: hotplug-error + status.
    Refuses,
}

struct Harness {
    xs: Xenstored,
    hv: FakeHypervisor,
    net: FakeNet,
    sim: SimHandle,
    daemon: Daemon,
    stats_file: std::path::PathBuf,
    stop: Arc<AtomicBool>,
    proxy: Option<xenstore::testing::NepheleProxy>,
    /// The test's own end of the simulated uevent socket.
    uev: std::os::unix::net::UnixDatagram,
}

fn w(c: &mut Client, path: &str, v: &str) {
    c.write_str(TxId::NONE, path, v)
        .unwrap_or_else(|e| panic!("write {path}: {e}"));
}

fn r(c: &mut Client, path: &str) -> String {
    c.read_string(TxId::NONE, path)
        .unwrap_or_else(|e| panic!("read {path}: {e}"))
}

fn perms(v: &[&str]) -> Perms {
    Perms::parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("perms")
}

fn build_parent(c: &mut Client, bridge: &str) {
    c.introduce(P, 0x3000, 1, None).expect("introduce parent");
    let home = paths::domain_path(P);
    for (k, v) in [
        ("", ""),
        ("name", "web"),
        ("domid", "3"),
        ("vm", "/vm/0000-1111"),
        ("store/port", "1"),
        ("store/ring-ref", "12288"),
        ("control/shutdown", ""),
        ("data/app", "nginx"),
        ("console/ring-ref", "12289"),
        ("console/port", "2"),
        ("console/backend", "/local/domain/0/backend/console/3/0"),
        ("console/backend-id", "0"),
        ("device/vif/0/backend", "/local/domain/0/backend/vif/3/0"),
        ("device/vif/0/backend-id", "0"),
        ("device/vif/0/mac", "00:16:3e:00:00:03"),
        ("device/vif/0/handle", "0"),
        ("device/vif/0/tx-ring-ref", "8"),
        ("device/vif/0/rx-ring-ref", "9"),
        ("device/vif/0/event-channel", "4"),
        ("device/vif/0/request-rx-copy", "1"),
        ("device/vif/0/state", "4"),
    ] {
        w(c, &paths::join(&home, k), v);
    }
    c.set_perms(TxId::NONE, &home, &perms(&["n0", "r3"]))
        .expect("perms");
    c.set_perms(TxId::NONE, &paths::join(&home, "data"), &perms(&["b3"]))
        .expect("perms");
    c.set_perms(
        TxId::NONE,
        &paths::join(&home, "device/vif/0"),
        &perms(&["n3", "r0"]),
    )
    .expect("perms");
    let be = "/local/domain/0/backend/vif/3/0";
    for (k, v) in [
        ("frontend", "/local/domain/3/device/vif/0"),
        ("frontend-id", "3"),
        ("online", "1"),
        ("state", "4"),
        ("script", "/etc/xen/scripts/vif-bridge"),
        ("mac", "00:16:3e:00:00:03"),
        ("ip", "10.8.0.3 255.255.255.0 10.8.0.1"),
        ("bridge", bridge),
        ("handle", "0"),
        ("type", "vif"),
        ("feature-sg", "1"),
        ("hotplug-status", "connected"),
    ] {
        w(c, &paths::join(be, k), v);
    }
    c.set_perms(TxId::NONE, be, &perms(&["n0", "r3"]))
        .expect("perms");
    let cbe = "/local/domain/0/backend/console/3/0";
    for (k, v) in [
        ("frontend", "/local/domain/3/console"),
        ("frontend-id", "3"),
        ("state", "1"),
        ("protocol", "vt100"),
    ] {
        w(c, &paths::join(cbe, k), v);
    }
    for (k, v) in [
        ("type", "pv"),
        ("dm-version", "qemu_xen"),
        ("device/vif/0/frontend", "/local/domain/3/device/vif/0"),
        ("device/vif/0/backend", "/local/domain/0/backend/vif/3/0"),
        ("device/console/0/frontend", "/local/domain/3/console"),
    ] {
        w(c, &paths::join("/libxl/3", k), v);
    }
}

/// Fake netback: on every cloned vif backend that appears, act per `mode`.
fn spawn_netback(
    xs: &Xenstored,
    net: FakeNet,
    tx: std::os::unix::net::UnixDatagram,
    mode: Netback,
    stop: Arc<AtomicBool>,
) {
    let mut c = xs.connect();
    c.watch("/local/domain/0/backend/vif", "nb")
        .expect("netback watch");
    std::thread::spawn(move || {
        let mut seen = std::collections::HashSet::new();
        while let Ok(ev) = c.wait_event() {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            let Some((d, n)) = xencloned::sim::vif_backend_of_event(&ev.path) else {
                continue;
            };
            let be = format!("/local/domain/0/backend/vif/{d}/{n}");
            if seen.contains(&(d, n))
                || c.read_opt(TxId::NONE, &format!("{be}/cloned"))
                    .ok()
                    .flatten()
                    .as_deref()
                    != Some("true")
            {
                continue;
            }
            // Netback's probe checks the frontend exists.
            let fe = c
                .read_opt(TxId::NONE, &format!("{be}/frontend"))
                .ok()
                .flatten()
                .unwrap_or_default();
            assert!(
                c.exists(TxId::NONE, &fe).unwrap_or(false),
                "frontend {fe} must exist before backend {be}"
            );
            seen.insert((d, n));
            let ifname = format!("vif{d}.{n}");
            if mode == Netback::Refuses {
                let _ = c.write_str(
                    TxId::NONE,
                    &format!("{be}/hotplug-error"),
                    "rx-ring-ref: grant 9 not mappable",
                );
                let _ = c.write_str(TxId::NONE, &format!("{be}/hotplug-status"), "error");
                continue;
            }
            if mode != Netback::Dead {
                net.add_dev(&ifname);
            }
            if mode == Netback::Normal {
                let _ = tx.send(&xencloned::sim::cloned_online_uevent(d, n));
            }
        }
    });
}

fn harness(
    test: &str,
    bridge: &str,
    mode: Netback,
    opts: Options,
    cache: bool,
    client_dialect: Dialect,
) -> Option<Harness> {
    let xs = Xenstored::start(test)?;
    let mut c = xs.connect();
    build_parent(&mut c, bridge);
    let hv = FakeHypervisor::default();
    hv.set_start_info(
        P,
        P_SI,
        StartInfo {
            store_mfn: 0x3000,
            store_evtchn: 1,
            console_mfn: 0x3001,
            console_evtchn: 2,
        },
    );
    let net = FakeNet::default();
    net.add_master("bond0", MasterKind::Bond);
    net.add_master("br0", MasterKind::Bridge);
    let (source, sim) = SimSource::new(XenCloneInfo {
        version: XEN_CLONE_ABI_VERSION,
        ring_pages: 1,
        entries_num: 128,
        ..Default::default()
    })
    .expect("sim source");
    let (uevents, tx) = SimUevents::pair().expect("uevents");
    let stop = Arc::new(AtomicBool::new(false));
    let uev = tx.try_clone().expect("clone uevent sender");
    spawn_netback(&xs, net.clone(), tx, mode, stop.clone());
    let stats_file = xs.run_dir().join("stats.json");
    // The Nephele dialect is served by a proxy emulating oxenstored's XS_CLONE
    // on top of the real daemon; the "upstream" one is the real daemon.
    let proxy =
        (client_dialect == Dialect::Nephele && opts.mode == XsMode::XsClone && !opts.skip_io)
            .then(|| xenstore::testing::NepheleProxy::start(&xs));
    let endpoint = proxy
        .as_ref()
        .map_or_else(|| xs.endpoint(), |p| p.endpoint());
    let dxs = Client::connect(&endpoint, client_dialect).expect("daemon xenstore");
    dxs.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let daemon = Daemon::new(
        Deps {
            source: Box::new(source),
            uevents: Box::new(uevents),
            xs: dxs,
            hv: Box::new(hv.clone()),
            net: Box::new(net.clone()),
        },
        Config {
            opts,
            cache,
            stats_file: Some(stats_file.clone()),
            signals: false,
        },
    )
    .expect("daemon");
    Some(Harness {
        xs,
        hv,
        net,
        sim,
        daemon,
        stats_file,
        stop,
        proxy,
        uev,
    })
}

impl Harness {
    fn push(&self, id: u32, child: u16, flags: u32) {
        self.hv.set_start_info(
            child,
            0x200 + u64::from(child),
            StartInfo {
                store_mfn: 0x9000 + u64::from(child),
                store_evtchn: 1,
                console_mfn: 0xa000 + u64::from(child),
                console_evtchn: 2,
            },
        );
        self.sim.push(XenCloneEntry {
            version: XEN_CLONE_ABI_VERSION,
            flags,
            id,
            parent_domid: P,
            child_domid: child,
            parent_start_info_mfn: P_SI,
            child_start_info_mfn: 0x200 + u64::from(child),
        });
    }

    /// Steps the daemon until `id` is completed (panics after 10 s).
    fn run_until_completed(&mut self, id: u32) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.sim.completed().contains(&id) {
            assert!(
                Instant::now() < deadline,
                "clone {id} never completed (in flight: {})",
                self.daemon.in_flight()
            );
            self.daemon
                .step(Some(Duration::from_millis(20)))
                .expect("step");
        }
    }

    /// Steps the daemon until the stats file contains `needle` (at most
    /// 2 s); returns the file.
    fn wait_stats(&mut self, needle: &str) -> String {
        self.wait_stats_within(needle, Duration::from_secs(2)).0
    }

    /// [`Harness::wait_stats`] within `limit`; also returns how long it took.
    fn wait_stats_within(&mut self, needle: &str, limit: Duration) -> (String, Duration) {
        let t0 = Instant::now();
        loop {
            let json = std::fs::read_to_string(&self.stats_file).unwrap_or_default();
            if json.contains(needle) {
                return (json, t0.elapsed());
            }
            assert!(
                t0.elapsed() < limit,
                "stats file without {needle} after {:?}: {json}",
                t0.elapsed()
            );
            self.daemon
                .step(Some(Duration::from_millis(10)))
                .expect("step");
        }
    }

    fn client(&self) -> Client {
        self.xs.connect()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn opts(mode: XsMode) -> Options {
    Options {
        mode,
        skip_io: false,
        leave_paused: false,
        vif_timeout: Duration::from_secs(5),
        garp: false,
        ..Options::default()
    }
}

#[test]
fn full_pipeline_deep_copy_with_cache() {
    let Some(mut h) = harness(
        "full_pipeline_deep_copy_with_cache",
        "bond0",
        Netback::Normal,
        opts(XsMode::DeepCopy),
        true,
        Dialect::Upstream,
    ) else {
        return;
    };
    h.push(1, 9, 0);
    h.run_until_completed(1);
    assert_eq!(h.sim.completed(), vec![1]);
    assert!(h.sim.bad_completions().is_empty());
    assert_eq!(h.hv.unpaused(), vec![9]);
    let copies = h.hv.copies();
    assert!(
        copies.contains(&(3, 0x3000, 9, 0x9009)),
        "xenstore page copied: {copies:x?}"
    );
    assert!(
        copies.contains(&(3, 0x3001, 9, 0xa009)),
        "console page copied: {copies:x?}"
    );
    let mut c = h.client();
    // Basic tree with rewrites and the child's own MFN.
    assert_eq!(r(&mut c, "/local/domain/9/name"), "web-child-9");
    assert_eq!(r(&mut c, "/local/domain/9/domid"), "9");
    assert_eq!(r(&mut c, "/local/domain/9/data/app"), "nginx");
    assert_eq!(
        r(&mut c, "/local/domain/9/store/ring-ref"),
        (0x9009u64).to_string()
    );
    assert!(c.is_domain_introduced(9).expect("introduced"));
    assert_eq!(
        c.get_perms(TxId::NONE, "/local/domain/9")
            .expect("perms")
            .to_strings(),
        vec!["n0", "r9"]
    );
    assert_eq!(
        c.get_perms(TxId::NONE, "/local/domain/9/data")
            .expect("perms")
            .to_strings(),
        vec!["b9"]
    );
    // Console.
    assert_eq!(
        r(&mut c, "/local/domain/9/console/ring-ref"),
        (0xa009u64).to_string()
    );
    assert_eq!(
        r(&mut c, "/local/domain/9/console/backend"),
        "/local/domain/0/backend/console/9/0"
    );
    assert_eq!(
        r(&mut c, "/local/domain/0/backend/console/9/0/frontend"),
        "/local/domain/9/console"
    );
    assert_eq!(
        r(&mut c, "/local/domain/0/backend/console/9/0/frontend-id"),
        "9"
    );
    assert!(
        !c.exists(TxId::NONE, "/local/domain/0/backend/console/9/0/cloned")
            .expect("exists")
    );
    // Vif.
    let be = "/local/domain/0/backend/vif/9/0";
    assert_eq!(r(&mut c, "/local/domain/9/device/vif/0/backend"), be);
    assert_eq!(
        r(&mut c, "/local/domain/9/device/vif/0/mac"),
        "00:16:3e:00:00:03"
    );
    assert_eq!(
        c.get_perms(TxId::NONE, "/local/domain/9/device/vif/0")
            .expect("perms")
            .to_strings(),
        vec!["n9", "r0"]
    );
    assert_eq!(
        r(&mut c, &format!("{be}/frontend")),
        "/local/domain/9/device/vif/0"
    );
    assert_eq!(r(&mut c, &format!("{be}/frontend-id")), "9");
    assert_eq!(r(&mut c, &format!("{be}/cloned")), "true");
    assert_eq!(r(&mut c, &format!("{be}/state")), "4");
    assert_eq!(r(&mut c, &format!("{be}/hotplug-status")), "connected");
    assert_eq!(
        c.get_perms(TxId::NONE, be).expect("perms").to_strings(),
        vec!["n0", "r9"]
    );
    // libxl.
    assert_eq!(r(&mut c, "/libxl/9/type"), "pv");
    assert_eq!(r(&mut c, "/libxl/9/device/vif/0/backend"), be);
    assert_eq!(
        r(&mut c, "/libxl/9/device/console/0/frontend"),
        "/local/domain/9/console"
    );
    // Network: enslaved while down, then up.
    assert_eq!(h.net.master("vif9.0").as_deref(), Some("bond0"));
    assert_eq!(h.net.calls(), vec!["master vif9.0 bond0", "up vif9.0"]);
    // Stats.
    assert_eq!(h.daemon.stats.clones_completed, 1);
    assert_eq!(h.daemon.stats.vifs_connected, 1);
    assert_eq!(h.daemon.stats.cache_misses, 1);
    let json = h.wait_stats("\"clones_completed\": 1,");
    for stage in [
        "parent",
        "child_start_info",
        "xenstore",
        "console",
        "vif_xenstore",
        "devices",
        "completion",
        "unpause",
    ] {
        assert!(
            json.contains(&format!("\"{stage}\"")),
            "stage {stage} missing: {json}"
        );
    }

    // A second clone of the same parent hits the cache.
    h.push(2, 10, 0);
    h.run_until_completed(2);
    assert_eq!(h.daemon.stats.cache_hits, 1);
    assert_eq!(h.hv.unpaused(), vec![9, 10]);
    assert_eq!(h.net.master("vif10.0").as_deref(), Some("bond0"));
    // Netback removing the clone's vif: released from the bond.
    h.uev
        .send(&uevent::encode(
            "offline",
            "/devices/vif-9-0",
            &[
                ("SUBSYSTEM", "xen-backend"),
                ("XENBUS_PATH", "backend/vif/9/0"),
                ("vif", "vif9.0"),
                ("cloned", "1"),
            ],
        ))
        .expect("send offline");
    let deadline = Instant::now() + Duration::from_secs(5);
    while h.daemon.stats.vifs_released == 0 {
        assert!(Instant::now() < deadline, "vif never released");
        h.daemon
            .step(Some(Duration::from_millis(20)))
            .expect("step");
    }
    assert_eq!(h.net.master("vif9.0"), None);
    assert_eq!(
        h.net.master("vif10.0").as_deref(),
        Some("bond0"),
        "other clones untouched"
    );
    // The parent going away invalidates its cache entry (watch).
    c.rm(TxId::NONE, "/local/domain/3/control").expect("rm");
    let deadline = Instant::now() + Duration::from_secs(5);
    while h.daemon.stats.cache_invalidations == 0 {
        assert!(Instant::now() < deadline, "cache never invalidated");
        h.daemon
            .step(Some(Duration::from_millis(20)))
            .expect("step");
    }
}

#[test]
fn xs_clone_mode_falls_back_to_deep_copy_on_upstream_xenstored() {
    let Some(mut h) = harness(
        "xs_clone_mode_falls_back",
        "bond0",
        Netback::Normal,
        opts(XsMode::XsClone),
        false,
        Dialect::Upstream,
    ) else {
        return;
    };
    // Nephele numbering forced on the real upstream daemon: XS_CLONE (22)
    // reaches it as DIRECTORY_PART and is refused.
    h.daemon.set_xenstore_dialect(Dialect::Nephele);
    h.push(5, 11, 0);
    h.run_until_completed(5);
    assert_eq!(
        h.daemon.options().mode,
        XsMode::DeepCopy,
        "fell back after the daemon's error reply: {:?}",
        h.daemon.stats.recent
    );
    assert_eq!(h.hv.unpaused(), vec![11]);
    let mut c = h.client();
    assert_eq!(r(&mut c, "/local/domain/11/name"), "web-child-11");
    assert_eq!(
        r(&mut c, "/local/domain/0/backend/vif/11/0/hotplug-status"),
        "connected"
    );
}

#[test]
fn linux_bridge_is_refused_before_anything_is_written() {
    let Some(mut h) = harness(
        "linux_bridge_is_refused",
        "br0",
        Netback::Normal,
        opts(XsMode::DeepCopy),
        false,
        Dialect::Upstream,
    ) else {
        return;
    };
    h.push(1, 9, 0);
    h.run_until_completed(1);
    assert!(h.hv.unpaused().is_empty(), "failed child stays paused");
    let mut c = h.client();
    // Refused before anything was written: no backend with cloned=true for
    // netback to attach, no trees, no page copied for a child that will
    // never run.
    for path in [
        "/local/domain/0/backend/vif/9",
        "/local/domain/9",
        "/libxl/9",
        "/local/domain/0/backend/console/9",
    ] {
        assert!(
            !c.exists(TxId::NONE, path).expect("exists"),
            "{path} written"
        );
    }
    assert!(h.hv.copies().is_empty(), "{:x?}", h.hv.copies());
    let err = h
        .daemon
        .stats
        .recent
        .back()
        .and_then(|r| r.error.clone())
        .unwrap_or_default();
    assert!(
        err.contains("Linux bridge")
            && err.contains("br0")
            && err.contains("3->9")
            && err.contains("/local/domain/0/backend/vif/9/0"),
        "{err}"
    );
    assert_eq!(h.daemon.stats.clones_failed, 1);
    assert_eq!(h.daemon.stats.vifs_failed, 1);
    assert!(
        h.net.calls().is_empty(),
        "nothing enslaved: {:?}",
        h.net.calls()
    );
}

#[test]
fn lost_uevent_is_recovered_from_sysfs() {
    let mut o = opts(XsMode::DeepCopy);
    o.vif_timeout = Duration::from_millis(300);
    let Some(mut h) = harness(
        "lost_uevent_is_recovered",
        "bond0",
        Netback::LostUevent,
        o,
        false,
        Dialect::Upstream,
    ) else {
        return;
    };
    h.push(1, 9, 0);
    h.run_until_completed(1);
    assert_eq!(h.hv.unpaused(), vec![9]);
    assert_eq!(h.daemon.stats.uevent_timeouts, 1);
    assert_eq!(h.daemon.stats.uevents_recovered, 1);
    assert_eq!(h.net.master("vif9.0").as_deref(), Some("bond0"));
    let mut c = h.client();
    assert_eq!(
        r(&mut c, "/local/domain/0/backend/vif/9/0/hotplug-status"),
        "connected"
    );
}

impl Harness {
    /// Steps the daemon until nothing is in flight (panics after 10 s).
    fn run_until_idle(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.daemon.in_flight() > 0
            || self.sim.state.lock().is_ok_and(|s| !s.queued.is_empty())
        {
            assert!(Instant::now() < deadline, "clones still in flight");
            self.daemon
                .step(Some(Duration::from_millis(20)))
                .expect("step");
        }
    }
}

/// Issue 12 item 2: a completion the hypervisor does not accept yet
/// (`EAGAIN`) is tried again until it is accepted; the child is unpaused
/// only then.
#[test]
fn completion_not_accepted_yet_is_retried() {
    let Some(mut h) = harness(
        "completion_not_accepted_yet",
        "bond0",
        Netback::Normal,
        opts(XsMode::DeepCopy),
        false,
        Dialect::Upstream,
    ) else {
        return;
    };
    h.sim.refuse(1, libc::EAGAIN, 3);
    h.push(1, 9, 0);
    h.run_until_completed(1);
    assert_eq!(h.sim.refused(), vec![(1, libc::EAGAIN); 3]);
    assert_eq!(h.hv.unpaused(), vec![9]);
    assert_eq!(h.daemon.stats.completion_retries, 3);
    assert_eq!(h.daemon.stats.completion_errors, 0);
    assert_eq!(h.daemon.completing(), 0);
    assert!(h.sim.bad_completions().is_empty());
}

/// Issue 12 item 2: a completion the hypervisor refused for good
/// (`ECANCELED`: the module released the entry) fails the clone: the child
/// stays paused, the reason is recorded.
#[test]
fn completion_refused_for_good_leaves_the_child_paused() {
    let Some(mut h) = harness(
        "completion_refused_for_good",
        "bond0",
        Netback::Normal,
        opts(XsMode::DeepCopy),
        false,
        Dialect::Upstream,
    ) else {
        return;
    };
    h.sim.refuse(1, libc::EAGAIN, 2);
    h.sim.refuse(1, libc::ECANCELED, 1);
    h.push(1, 9, 0);
    h.run_until_idle();
    assert_eq!(
        h.sim.refused(),
        vec![(1, libc::EAGAIN), (1, libc::EAGAIN), (1, libc::ECANCELED)]
    );
    assert!(h.sim.completed().is_empty());
    assert!(h.hv.unpaused().is_empty());
    assert_eq!(h.daemon.stats.completions_rejected, 1);
    assert_eq!(h.daemon.stats.clones_failed, 1);
    let last = h
        .daemon
        .stats
        .recent
        .back()
        .and_then(|r| r.error.clone())
        .unwrap_or_default();
    assert!(last.contains("refused by the hypervisor"), "{last}");
    assert!(h.sim.bad_completions().is_empty());
}

/// Issue 12 item 6: an entry the module auto-completed while no daemon
/// was reading is set up and its child unpaused, without completing it
/// again.
#[test]
fn auto_completed_entry_is_set_up_not_completed_again() {
    let Some(mut h) = harness(
        "auto_completed_entry",
        "bond0",
        Netback::Normal,
        opts(XsMode::DeepCopy),
        false,
        Dialect::Upstream,
    ) else {
        return;
    };
    h.push(1, 9, XEN_CLONE_ENTRY_AUTO_COMPLETED);
    h.push(2, 10, 0);
    h.run_until_completed(2);
    h.run_until_idle();
    assert_eq!(h.sim.completed(), vec![2]);
    assert!(h.sim.bad_completions().is_empty());
    let mut unpaused = h.hv.unpaused();
    unpaused.sort();
    assert_eq!(unpaused, vec![9, 10]);
    assert_eq!(h.daemon.stats.auto_completed, 1);
    assert_eq!(h.daemon.stats.completion_errors, 0);
    let mut c = h.client();
    assert_eq!(
        r(&mut c, "/local/domain/0/backend/vif/9/0/hotplug-status"),
        "connected"
    );
}

#[test]
fn dead_netback_times_out_and_still_completes() {
    let mut o = opts(XsMode::DeepCopy);
    o.vif_timeout = Duration::from_millis(200);
    let Some(mut h) = harness(
        "dead_netback_times_out",
        "bond0",
        Netback::Dead,
        o,
        false,
        Dialect::Upstream,
    ) else {
        return;
    };
    h.push(1, 9, 0);
    h.run_until_completed(1);
    assert!(h.hv.unpaused().is_empty());
    let mut c = h.client();
    let be = "/local/domain/0/backend/vif/9/0";
    assert_eq!(r(&mut c, &format!("{be}/hotplug-status")), "error");
    assert!(r(&mut c, &format!("{be}/hotplug-error")).contains("timeout"));
    assert_eq!(h.daemon.stats.uevent_timeouts, 1);
    assert_eq!(h.daemon.stats.uevents_recovered, 0);
    assert_eq!(h.daemon.stats.clones_failed, 1);
}

#[test]
fn bad_entries_complete_with_errors() {
    let Some(mut h) = harness(
        "bad_entries_complete_with_errors",
        "bond0",
        Netback::Normal,
        opts(XsMode::DeepCopy),
        false,
        Dialect::Upstream,
    ) else {
        return;
    };
    // Unknown parent: no Xenstore tree, no start_info.
    h.sim.push(XenCloneEntry {
        version: XEN_CLONE_ABI_VERSION,
        flags: 0,
        id: 7,
        parent_domid: 77,
        child_domid: 78,
        parent_start_info_mfn: 1,
        child_start_info_mfn: 2,
    });
    h.run_until_completed(7);
    // Bad child MFN (the hypervisor refuses the mapping).
    h.sim.push(XenCloneEntry {
        version: XEN_CLONE_ABI_VERSION,
        flags: 0,
        id: 8,
        parent_domid: P,
        child_domid: 12,
        parent_start_info_mfn: P_SI,
        child_start_info_mfn: 0xdead,
    });
    h.run_until_completed(8);
    assert!(h.hv.unpaused().is_empty());
    assert_eq!(h.daemon.stats.clones_failed, 2);
    let recent: Vec<_> = h
        .daemon
        .stats
        .recent
        .iter()
        .map(|r| r.error.clone().unwrap_or_default())
        .collect();
    assert!(recent[0].contains("77"), "{recent:?}");
    assert!(
        recent[1].contains("0xdead") && recent[1].contains("12"),
        "{recent:?}"
    );
    let mut c = h.client();
    assert!(!c.exists(TxId::NONE, "/local/domain/12").expect("exists"));
}

#[test]
fn redelivered_entry_is_idempotent_and_duplicate_fails() {
    let Some(mut h) = harness(
        "redelivered_entry_is_idempotent",
        "bond0",
        Netback::Normal,
        opts(XsMode::DeepCopy),
        false,
        Dialect::Upstream,
    ) else {
        return;
    };
    h.push(1, 9, 0);
    h.run_until_completed(1);
    // The same child again, flagged re-delivered (daemon restart after the
    // work but before completion): accepted, vif connected from sysfs.
    let mut c = h.client();
    c.rm(TxId::NONE, "/local/domain/0/backend/vif/9/0/hotplug-status")
        .expect("rm");
    h.push(2, 9, XEN_CLONE_ENTRY_REDELIVERED);
    h.run_until_completed(2);
    assert_eq!(h.hv.unpaused(), vec![9, 9]);
    assert_eq!(h.daemon.stats.redelivered, 1);
    assert_eq!(
        r(&mut c, "/local/domain/0/backend/vif/9/0/hotplug-status"),
        "connected"
    );
    // Not flagged: the existing destination is an error (EEXIST), reported.
    h.push(3, 9, 0);
    h.run_until_completed(3);
    assert_eq!(h.hv.unpaused(), vec![9, 9]);
    let last = h
        .daemon
        .stats
        .recent
        .back()
        .and_then(|r| r.error.clone())
        .unwrap_or_default();
    assert!(
        last.contains("EEXIST") && last.contains("/local/domain/9"),
        "{last}"
    );
}

#[test]
fn no_io_skips_vifs_and_completes_at_once() {
    let mut o = opts(XsMode::DeepCopy);
    o.skip_io = true;
    o.leave_paused = true;
    let Some(mut h) = harness(
        "no_io_skips_vifs",
        "bond0",
        Netback::Dead,
        o,
        false,
        Dialect::Upstream,
    ) else {
        return;
    };
    h.push(1, 9, 0);
    h.run_until_completed(1);
    assert!(h.hv.unpaused().is_empty(), "-p leaves the child paused");
    assert_eq!(h.daemon.stats.clones_completed, 1);
    let mut c = h.client();
    assert!(
        c.exists(TxId::NONE, "/local/domain/9/console")
            .expect("exists")
    );
    assert!(
        !c.exists(TxId::NONE, "/local/domain/9/device")
            .expect("exists")
    );
    assert!(
        !c.exists(TxId::NONE, "/local/domain/0/backend/vif/9")
            .expect("exists")
    );
}

#[test]
fn reconcile_adopts_online_cloned_vifs() {
    let Some(mut h) = harness(
        "reconcile_adopts_online_cloned_vifs",
        "bond0",
        Netback::Dead,
        opts(XsMode::DeepCopy),
        false,
        Dialect::Upstream,
    ) else {
        return;
    };
    let mut c = h.client();
    let be = "/local/domain/0/backend/vif/20/0";
    for (k, v) in [
        ("frontend-id", "20"),
        ("handle", "0"),
        ("bridge", "bond0"),
        ("cloned", "true"),
        ("state", "4"),
    ] {
        w(&mut c, &paths::join(be, k), v);
    }
    h.net.add_dev("vif20.0");
    h.daemon.reconcile();
    assert_eq!(h.daemon.stats.orphan_vifs_adopted, 1);
    assert_eq!(h.net.master("vif20.0").as_deref(), Some("bond0"));
    assert_eq!(r(&mut c, &format!("{be}/hotplug-status")), "connected");
    // Already connected: not adopted twice.
    h.daemon.reconcile();
    assert_eq!(h.daemon.stats.orphan_vifs_adopted, 1);
}

/// What `--adopt-only` serves: netback's online uevent for a cloned vif no
/// clone is waiting for is adopted (bond from the backend's `bridge`,
/// `hotplug-status=connected`), once; vifs that are not clones are left to
/// the toolstack's script.
#[test]
fn online_uevent_of_unknown_cloned_vif_is_adopted() {
    let Some(mut h) = harness(
        "online_uevent_of_unknown_cloned_vif_is_adopted",
        "bond0",
        Netback::Dead,
        opts(XsMode::DeepCopy),
        false,
        Dialect::Upstream,
    ) else {
        return;
    };
    let mut c = h.client();
    for (d, cloned) in [(21, "true"), (22, "false")] {
        let be = format!("/local/domain/0/backend/vif/{d}/0");
        let fe = format!("/local/domain/{d}/device/vif/0");
        w(&mut c, &paths::join(&fe, "state"), "4");
        let id = d.to_string();
        for (k, v) in [
            ("frontend", fe.as_str()),
            ("frontend-id", id.as_str()),
            ("handle", "0"),
            ("bridge", "bond0"),
            ("cloned", cloned),
            ("state", "4"),
        ] {
            w(&mut c, &paths::join(&be, k), v);
        }
        h.net.add_dev(&format!("vif{d}.0"));
    }
    let online = |d: u16| {
        uevent::encode(
            "online",
            &format!("/devices/vif-{d}-0"),
            &[
                ("SUBSYSTEM", "xen-backend"),
                ("XENBUS_PATH", &format!("backend/vif/{d}/0")),
                ("vif", &format!("vif{d}.0")),
                ("cloned", "1"),
            ],
        )
    };
    for d in [21, 22, 21] {
        h.uev.send(&online(d)).expect("send online");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while h.daemon.stats.orphan_vifs_adopted == 0 {
        assert!(Instant::now() < deadline, "vif21.0 never adopted");
        h.daemon
            .step(Some(Duration::from_millis(20)))
            .expect("step");
    }
    // Let the other two uevents through too.
    for _ in 0..10 {
        h.daemon
            .step(Some(Duration::from_millis(20)))
            .expect("step");
    }
    assert_eq!(h.daemon.stats.orphan_vifs_adopted, 1, "adopted once");
    assert_eq!(h.net.master("vif21.0").as_deref(), Some("bond0"));
    assert_eq!(
        r(&mut c, "/local/domain/0/backend/vif/21/0/hotplug-status"),
        "connected"
    );
    assert_eq!(h.net.master("vif22.0"), None, "not a clone: not adopted");
    assert!(
        c.read_opt(
            TxId::NONE,
            "/local/domain/0/backend/vif/22/0/hotplug-status"
        )
        .expect("read")
        .is_none()
    );
}

#[test]
fn full_pipeline_xs_clone_mode_nephele_dialect() {
    let Some(mut h) = harness(
        "full_pipeline_xs_clone_mode",
        "bond0",
        Netback::Normal,
        Options {
            garp: true,
            ..opts(XsMode::XsClone)
        },
        false,
        Dialect::Nephele,
    ) else {
        return;
    };
    h.push(1, 9, 0);
    h.run_until_completed(1);
    assert_eq!(h.daemon.options().mode, XsMode::XsClone, "no fallback");
    assert_eq!(h.hv.unpaused(), vec![9]);
    let sent = h
        .proxy
        .as_ref()
        .map(|p| p.clones.lock().expect("lock").clone())
        .unwrap_or_default();
    let sent: Vec<String> = sent
        .iter()
        .map(|b| String::from_utf8_lossy(b).replace('\0', " "))
        .collect();
    assert_eq!(
        sent,
        vec![
            // The home first, then the vif's frontend and backend (netback
            // starts attaching while the rest is sent), libxl, console.
            "3 9 1 /local/domain/3 /local/domain/9",
            "3 9 3 /local/domain/3/device/vif/0 /local/domain/9/device/vif/0",
            "3 9 3 /local/domain/0/backend/vif/3/0 /local/domain/0/backend/vif/9/0",
            "3 9 1 /libxl/3 /libxl/9",
            "3 9 3 /libxl/3/device/vif/0 /libxl/9/device/vif/0",
            "3 9 2 /local/domain/3/console /local/domain/9/console",
            "3 9 2 /local/domain/0/backend/console/3/0 /local/domain/0/backend/console/9/0",
            "3 9 2 /libxl/3/device/console/0 /libxl/9/device/console/0",
        ]
    );
    // A second clone pipelines all its requests (the first XS_CLONE went
    // alone): same trees, same order.
    h.push(2, 10, 0);
    h.run_until_completed(2);
    assert_eq!(h.hv.unpaused(), vec![9, 10]);
    let n = h
        .proxy
        .as_ref()
        .map(|p| p.clones.lock().expect("lock").len())
        .unwrap_or_default();
    assert_eq!(n, 16, "8 XS_CLONEs per clone");
    let mut c = h.client();
    // The stale parent MFNs XS_CLONE copies are fixed up by the daemon.
    assert_eq!(
        r(&mut c, "/local/domain/9/store/ring-ref"),
        (0x9009u64).to_string()
    );
    assert_eq!(
        r(&mut c, "/local/domain/9/console/ring-ref"),
        (0xa009u64).to_string()
    );
    assert_eq!(
        r(&mut c, "/local/domain/0/backend/vif/9/0/hotplug-status"),
        "connected"
    );
    assert_eq!(h.net.master("vif9.0").as_deref(), Some("bond0"));
    assert_eq!(
        h.net.calls(),
        vec![
            "master vif9.0 bond0",
            "up vif9.0",
            "arp vif9.0 10.8.0.1 10.8.0.3",
            "master vif10.0 bond0",
            "up vif10.0",
            "arp vif10.0 10.8.0.1 10.8.0.3"
        ],
        "enslave while down, up, then the gratuitous ARP"
    );
}

#[test]
fn netback_refusal_keeps_its_message_and_completes() {
    let mut o = opts(XsMode::DeepCopy);
    o.vif_timeout = Duration::from_secs(30);
    let Some(mut h) = harness(
        "netback_refusal_keeps_its_message",
        "bond0",
        Netback::Refuses,
        o,
        false,
        Dialect::Upstream,
    ) else {
        return;
    };
    h.push(1, 9, 0);
    h.run_until_completed(1);
    assert!(h.hv.unpaused().is_empty());
    let mut c = h.client();
    let be = "/local/domain/0/backend/vif/9/0";
    assert_eq!(
        r(&mut c, &format!("{be}/hotplug-error")),
        "rx-ring-ref: grant 9 not mappable"
    );
    let err = h
        .daemon
        .stats
        .recent
        .back()
        .and_then(|r| r.error.clone())
        .unwrap_or_default();
    assert!(err.contains("netback: rx-ring-ref: grant 9"), "{err}");
    // Failed through the hotplug-status watch, long before the timeout.
    assert_eq!(h.daemon.stats.uevent_timeouts, 0);
    let latency = h
        .daemon
        .stats
        .recent
        .back()
        .map(|r| r.latency)
        .unwrap_or_default();
    assert!(latency < Duration::from_secs(5), "{latency:?}");
}

/// Deep copy keeps the parent's source trees between clones (no second
/// read), yet never copies a stale one: a change made before the clone's
/// transaction starts (while the clone is under way, its watch events not
/// read yet) reaches that clone, and one made while the daemon idles is
/// seen at once. With and without --cache.
#[test]
fn deep_copy_keeps_parent_trees_but_copies_changes_made_just_before_a_clone() {
    for cache in [false, true] {
        let Some(mut h) = harness(
            &format!("deep_copy_keeps_parent_trees_{cache}"),
            "bond0",
            Netback::Normal,
            opts(XsMode::DeepCopy),
            cache,
            Dialect::Upstream,
        ) else {
            return;
        };
        let mut c = h.client();
        h.push(1, 9, 0);
        h.run_until_completed(1);
        let first = h.daemon.stats.trees;
        assert!(first.reads >= 3, "home, libxl and backends read: {first:?}");
        h.push(2, 10, 0);
        h.run_until_completed(2);
        let second = h.daemon.stats.trees;
        assert_eq!(
            second.reads, first.reads,
            "kept trees read again: {second:?}"
        );
        assert!(second.hits > first.hits, "{second:?}");
        assert_eq!(r(&mut c, "/local/domain/10/data/app"), "nginx");
        // Changes made while clone 11 is under way, after its last
        // Xenstore request before the copy (right after its console page
        // copy): the daemon has not read their watch events; only the check
        // at the start of the copy's transaction can see them.
        let xs_path = h.xs.endpoint();
        if let Ok(mut l) = h.hv.0.lock() {
            l.after_copy = Some(xencloned::sim::CopyHook(Box::new(move |_, dst| {
                if dst != 11 {
                    return;
                }
                let mut c = Client::connect(&xs_path, Dialect::Upstream).expect("connect");
                w(&mut c, "/local/domain/3/data/app", "v2");
                w(&mut c, "/local/domain/3/data/new", "n");
                c.set_perms(TxId::NONE, "/local/domain/3/data", &perms(&["b3", "r0"]))
                    .expect("perms");
                w(&mut c, "/local/domain/0/backend/vif/3/0/feature-sg", "0");
                w(&mut c, "/libxl/3/dm-version", "qemu_xen_traditional");
            })));
        }
        h.push(3, 11, 0);
        h.run_until_completed(3);
        assert_eq!(r(&mut c, "/local/domain/11/data/app"), "v2");
        assert_eq!(r(&mut c, "/local/domain/11/data/new"), "n");
        assert_eq!(
            c.get_perms(TxId::NONE, "/local/domain/11/data")
                .expect("perms")
                .to_strings(),
            vec!["b11", "r0"]
        );
        assert_eq!(
            r(&mut c, "/local/domain/0/backend/vif/11/0/feature-sg"),
            "0"
        );
        assert_eq!(r(&mut c, "/libxl/11/dm-version"), "qemu_xen_traditional");
        // The earlier child is untouched.
        assert_eq!(r(&mut c, "/local/domain/10/data/app"), "nginx");
        let third = h.daemon.stats.trees;
        assert!(
            third.invalidations > second.invalidations && third.reads > second.reads,
            "{third:?}"
        );
        // A change while the daemon idles is read off the socket at once.
        w(&mut c, "/local/domain/3/data/app", "v3");
        let deadline = Instant::now() + Duration::from_secs(5);
        while h.daemon.stats.trees.invalidations == third.invalidations {
            assert!(Instant::now() < deadline, "idle change never seen");
            h.daemon
                .step(Some(Duration::from_millis(20)))
                .expect("step");
        }
        h.push(4, 12, 0);
        h.run_until_completed(4);
        assert_eq!(r(&mut c, "/local/domain/12/data/app"), "v3");
        assert_eq!(h.daemon.stats.clones_failed, 0);
        assert_eq!(h.sim.completed(), vec![1, 2, 3, 4]);
        if cache {
            continue;
        }
        // Without --cache the parent description is kept under the same
        // watches (clone 3 used it)...
        assert!(
            h.daemon.stats.trees.descriptions >= 1,
            "{:?}",
            h.daemon.stats.trees
        );
        // ... and a change to what it was read from is seen by the next
        // clone: the vif's master becomes a Linux bridge, which is refused.
        h.push(5, 13, 0);
        h.run_until_completed(5);
        assert_eq!(h.daemon.stats.clones_failed, 0);
        w(&mut c, "/local/domain/0/backend/vif/3/0/bridge", "br0");
        h.push(6, 14, 0);
        h.run_until_completed(6);
        assert_eq!(h.daemon.stats.clones_failed, 1, "stale description used");
        let err = h
            .daemon
            .stats
            .recent
            .back()
            .and_then(|r| r.error.clone())
            .unwrap_or_default();
        assert!(err.contains("br0 is a Linux bridge"), "{err}");
        assert!(
            !c.exists(TxId::NONE, "/local/domain/0/backend/vif/14")
                .expect("exists")
        );
    }
}

/// `(path, token)` of every `WATCH` (`true`) and `UNWATCH` (`false`) request
/// in xenstored's `-T` trace whose token is a vif's (`vif:<child>:<devid>`),
/// in order.
fn vif_watch_requests(h: &Harness) -> Vec<(bool, String)> {
    let text = std::fs::read_to_string(h.xs.trace_file()).expect("xenstored trace");
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("IN ") else {
            continue;
        };
        let mut it = rest.splitn(5, ' ');
        let (_conn, _date, _time) = (it.next(), it.next(), it.next());
        let (Some(op), Some(payload)) = (it.next(), it.next()) else {
            continue;
        };
        let watch = match op {
            "WATCH" => true,
            "UNWATCH" => false,
            _ => continue,
        };
        if payload.contains(" vif:") {
            out.push((watch, payload.to_string()));
        }
    }
    out
}

/// A second entry with an id still in flight replaces the first clone:
/// the old clone's watch goes with it, and no watch of any clone is left
/// once the new one completed.
#[test]
fn duplicate_id_drops_the_old_clone_with_its_watches() {
    let mut o = opts(XsMode::DeepCopy);
    o.vif_timeout = Duration::from_millis(400);
    let Some(mut h) = harness(
        "duplicate_id_drops_the_old_clone_with_its_watches",
        "bond0",
        Netback::Dead,
        o,
        false,
        Dialect::Upstream,
    ) else {
        return;
    };
    h.push(1, 9, 0);
    // Clone 9 set up, waiting for its vif (netback is dead).
    for _ in 0..3 {
        h.daemon
            .step(Some(Duration::from_millis(20)))
            .expect("step");
    }
    assert_eq!(h.daemon.in_flight(), 1);
    h.push(1, 10, 0);
    h.run_until_completed(1);
    assert_eq!(h.daemon.in_flight(), 0, "old clone dropped");
    let reqs = vif_watch_requests(&h);
    let watched: Vec<&String> = reqs.iter().filter(|(w, _)| *w).map(|(_, p)| p).collect();
    assert_eq!(watched.len(), 2, "{reqs:?}");
    for p in watched {
        assert!(
            reqs.iter().any(|(w, q)| !*w && q == p),
            "watch {p} never removed: {reqs:?}"
        );
    }
}

/// Inotify events `IN_MOVED_TO` for `name` in `fd` (non-blocking drain).
fn renames_to(fd: &std::os::fd::OwnedFd, name: &str) -> usize {
    use std::os::fd::AsRawFd;
    let mut n = 0;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: valid fd and a live buffer.
        let got = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if got <= 0 {
            return n;
        }
        let got = got as usize;
        let mut off = 0;
        let head = std::mem::size_of::<libc::inotify_event>();
        while off + head <= got {
            // SAFETY: the kernel wrote a whole inotify_event header at off.
            let ev: libc::inotify_event =
                unsafe { std::ptr::read_unaligned(buf[off..].as_ptr().cast()) };
            let len = ev.len as usize;
            let raw = &buf[off + head..(off + head + len).min(got)];
            let ev_name = raw.split(|b| *b == 0).next().unwrap_or(&[]);
            if ev.mask & libc::IN_MOVED_TO != 0 && ev_name == name.as_bytes() {
                n += 1;
            }
            off += head + len;
        }
    }
}

/// A burst of clones does not rewrite the stats file once per clone: it
/// is written on the event loop's timer, at most every 200 ms while it
/// changes, and is current within 250 ms of the last change.
#[test]
fn stats_file_is_written_on_a_timer_not_per_clone() {
    use std::os::fd::FromRawFd;
    let mut o = opts(XsMode::DeepCopy);
    o.skip_io = true;
    let Some(mut h) = harness(
        "stats_file_is_written_on_a_timer_not_per_clone",
        "bond0",
        Netback::Dead,
        o,
        true,
        Dialect::Upstream,
    ) else {
        return;
    };
    let dir =
        std::ffi::CString::new(h.xs.run_dir().as_os_str().as_encoded_bytes()).expect("run dir");
    // SAFETY: plain inotify_init1; the result is checked and owned.
    let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
    assert!(
        raw >= 0,
        "inotify_init1: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: `raw` is a fresh fd we own.
    let ino = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) };
    // SAFETY: valid inotify fd and C string.
    // IN_CLOSE_WRITE of the temporary file between two renames keeps the
    // kernel from merging identical consecutive IN_MOVED_TO events.
    let wd = unsafe {
        libc::inotify_add_watch(raw, dir.as_ptr(), libc::IN_MOVED_TO | libc::IN_CLOSE_WRITE)
    };
    assert!(
        wd >= 0,
        "inotify_add_watch: {}",
        std::io::Error::last_os_error()
    );
    let n = 40u32;
    let t0 = Instant::now();
    for i in 0..n {
        h.push(100 + i, 30 + i as u16, 0);
    }
    h.run_until_completed(100 + n - 1);
    while h.sim.completed().len() < n as usize {
        h.daemon
            .step(Some(Duration::from_millis(10)))
            .expect("step");
    }
    // Current within 250 ms of the last change (the timer's promise), plus
    // scheduling slack.
    h.wait_stats_within(
        &format!("\"clones_completed\": {n},"),
        Duration::from_millis(500),
    );
    let elapsed = t0.elapsed();
    let writes = renames_to(&ino, "stats.json");
    // One write per STATS_MIN_INTERVAL at most, plus the first.
    let bound = (elapsed.as_millis() / 200) as usize + 2;
    assert!(
        writes <= bound,
        "{writes} stats file writes for {n} clones in {elapsed:?} (at most {bound})"
    );
    assert!(writes >= 1, "stats file never written");
    // On demand (and at shutdown: Daemon::run) it is written at once.
    h.push(200, 90, 0);
    h.run_until_completed(200);
    h.daemon.flush_stats();
    let json = std::fs::read_to_string(&h.stats_file).expect("stats file");
    assert!(
        json.contains(&format!("\"clones_completed\": {},", n + 1)),
        "{json}"
    );
}

/// Adds a second vif (devid 1, bond0) to the parent built by `build_parent`.
fn add_parent_vif1(c: &mut Client) {
    let fe = "/local/domain/3/device/vif/1";
    let be = "/local/domain/0/backend/vif/3/1";
    for (k, v) in [
        ("backend", be),
        ("backend-id", "0"),
        ("mac", "00:16:3e:00:01:03"),
        ("handle", "1"),
        ("tx-ring-ref", "10"),
        ("rx-ring-ref", "11"),
        ("event-channel", "5"),
        ("request-rx-copy", "1"),
        ("state", "4"),
    ] {
        w(c, &paths::join(fe, k), v);
    }
    c.set_perms(TxId::NONE, fe, &perms(&["n3", "r0"]))
        .expect("perms");
    for (k, v) in [
        ("frontend", fe),
        ("frontend-id", "3"),
        ("online", "1"),
        ("state", "4"),
        ("script", "/etc/xen/scripts/vif-bridge"),
        ("mac", "00:16:3e:00:01:03"),
        ("bridge", "bond0"),
        ("handle", "1"),
        ("type", "vif"),
        ("hotplug-status", "connected"),
    ] {
        w(c, &paths::join(be, k), v);
    }
    c.set_perms(TxId::NONE, be, &perms(&["n0", "r3"]))
        .expect("perms");
    w(c, "/libxl/3/device/vif/1/frontend", fe);
    w(c, "/libxl/3/device/vif/1/backend", be);
}

/// A vif that comes up after its timeout still wins: it is enslaved,
/// `hotplug-status=connected`, its `hotplug-error` removed and, since it
/// was the clone's only failure, the child (left paused at completion) is
/// unpaused. Also when its online uevent is lost too (sysfs re-check).
#[test]
fn late_vif_after_timeout_is_connected_and_the_child_unpaused() {
    let mut o = opts(XsMode::DeepCopy);
    o.vif_timeout = Duration::from_millis(200);
    let Some(mut h) = harness(
        "late_vif_after_timeout_is_connected",
        "bond0",
        Netback::Dead,
        o,
        false,
        Dialect::Upstream,
    ) else {
        return;
    };
    let mut c = h.client();
    for (id, child) in [(1, 9u16), (2, 10)] {
        h.push(id, child, 0);
        h.run_until_completed(id);
        let be = format!("/local/domain/0/backend/vif/{child}/0");
        assert_eq!(r(&mut c, &format!("{be}/hotplug-status")), "error");
        assert!(r(&mut c, &format!("{be}/hotplug-error")).contains("timeout"));
    }
    assert!(h.hv.unpaused().is_empty(), "failed children left paused");
    assert_eq!(h.daemon.stats.clones_failed, 2);
    assert_eq!(h.daemon.late_waiting(), 2);
    // Netback brings vif9.0 up late, with its uevent...
    h.net.add_dev("vif9.0");
    h.uev
        .send(&xencloned::sim::cloned_online_uevent(9, 0))
        .expect("send online");
    // ... and vif10.0 with its uevent lost.
    h.net.add_dev("vif10.0");
    let deadline = Instant::now() + Duration::from_secs(5);
    while h.daemon.stats.clones_recovered_late < 2 {
        assert!(
            Instant::now() < deadline,
            "late vifs never won: {:?}",
            h.daemon.stats
        );
        h.daemon
            .step(Some(Duration::from_millis(20)))
            .expect("step");
    }
    for child in [9u16, 10] {
        let be = format!("/local/domain/0/backend/vif/{child}/0");
        assert_eq!(r(&mut c, &format!("{be}/hotplug-status")), "connected");
        assert!(
            !c.exists(TxId::NONE, &format!("{be}/hotplug-error"))
                .expect("exists"),
            "hotplug-error of {child} not cleared"
        );
        assert_eq!(
            h.net.master(&format!("vif{child}.0")).as_deref(),
            Some("bond0")
        );
    }
    assert_eq!(h.hv.unpaused(), vec![9, 10]);
    assert_eq!(h.daemon.stats.vifs_late, 2);
    assert_eq!(h.daemon.late_waiting(), 0);
    let json = h.wait_stats("\"clones_recovered_late\": 2,");
    assert!(json.contains("\"late_waiting\": 0,"), "{json}");
}

/// A clone still in flight whose vif failed (netback's error) and then
/// came up anyway counts that vif as connected: the clone succeeds.
#[test]
fn late_vif_of_a_clone_in_flight_counts() {
    let mut o = opts(XsMode::DeepCopy);
    o.vif_timeout = Duration::from_secs(20);
    let Some(mut h) = harness(
        "late_vif_of_a_clone_in_flight_counts",
        "bond0",
        Netback::Dead,
        o,
        false,
        Dialect::Upstream,
    ) else {
        return;
    };
    let mut c = h.client();
    add_parent_vif1(&mut c);
    h.push(1, 9, 0);
    let be1 = "/local/domain/0/backend/vif/9/1";
    let deadline = Instant::now() + Duration::from_secs(5);
    while !c.exists(TxId::NONE, be1).expect("exists") {
        assert!(Instant::now() < deadline, "vif 1 never cloned");
        h.daemon
            .step(Some(Duration::from_millis(20)))
            .expect("step");
    }
    // Netback fails vif 1 (seen through the hotplug-status watch)...
    w(&mut c, &format!("{be1}/hotplug-error"), "slow attach");
    w(&mut c, &format!("{be1}/hotplug-status"), "error");
    for _ in 0..10 {
        h.daemon
            .step(Some(Duration::from_millis(20)))
            .expect("step");
    }
    assert_eq!(h.daemon.in_flight(), 1, "vif 0 still waiting");
    // ... then brings it up after all, and vif 0 too.
    for n in [1, 0] {
        h.net.add_dev(&format!("vif9.{n}"));
        h.uev
            .send(&xencloned::sim::cloned_online_uevent(9, n))
            .expect("send online");
    }
    h.run_until_completed(1);
    assert_eq!(h.hv.unpaused(), vec![9], "{:?}", h.daemon.stats.recent);
    assert_eq!(h.daemon.stats.clones_failed, 0);
    assert_eq!(h.daemon.stats.vifs_connected, 2);
    assert_eq!(h.daemon.stats.vifs_late, 1);
    assert_eq!(r(&mut c, &format!("{be1}/hotplug-status")), "connected");
    assert!(
        !c.exists(TxId::NONE, &format!("{be1}/hotplug-error"))
            .expect("exists")
    );
    assert_eq!(h.net.master("vif9.1").as_deref(), Some("bond0"));
}

/// A daemon restarted after a vif of its predecessor timed out: the vif
/// that is online now is adopted despite `hotplug-status=error`, and the
/// error is cleared.
#[test]
fn reconcile_adopts_a_vif_that_failed_before_a_restart() {
    let Some(mut h) = harness(
        "reconcile_adopts_a_vif_that_failed_before_a_restart",
        "bond0",
        Netback::Dead,
        opts(XsMode::DeepCopy),
        false,
        Dialect::Upstream,
    ) else {
        return;
    };
    let mut c = h.client();
    let be = "/local/domain/0/backend/vif/20/0";
    for (k, v) in [
        ("frontend-id", "20"),
        ("handle", "0"),
        ("bridge", "bond0"),
        ("cloned", "true"),
        ("state", "4"),
        ("hotplug-status", "error"),
        (
            "hotplug-error",
            "xencloned error: timeout after 10s waiting for netback's online uevent",
        ),
    ] {
        w(&mut c, &paths::join(be, k), v);
    }
    h.net.add_dev("vif20.0");
    h.daemon.reconcile();
    assert_eq!(h.daemon.stats.orphan_vifs_adopted, 1);
    assert_eq!(h.net.master("vif20.0").as_deref(), Some("bond0"));
    assert_eq!(r(&mut c, &format!("{be}/hotplug-status")), "connected");
    assert!(
        !c.exists(TxId::NONE, &format!("{be}/hotplug-error"))
            .expect("exists")
    );
}

/// `XS_CLONE` mode makes a clone's trees one request each, outside any
/// transaction. A failure in the middle (here the vif backend's
/// `XS_CLONE`) must not leave partial trees: they are removed, so a retry
/// of the same child meets no `EEXIST`. A re-delivered entry whose first
/// delivery stopped in the middle (daemon killed) finishes the clone.
#[test]
fn xs_clone_failure_midway_is_rolled_back_and_retries_succeed() {
    let Some(mut h) = harness(
        "xs_clone_failure_midway_is_rolled_back",
        "bond0",
        Netback::Normal,
        opts(XsMode::XsClone),
        false,
        Dialect::Nephele,
    ) else {
        return;
    };
    let Some(proxy) = h.proxy.as_ref() else {
        panic!("no Nephele proxy");
    };
    proxy.fail_clone("/local/domain/0/backend/vif/9/0", "EIO");
    let nephele = proxy.endpoint();
    h.push(1, 9, 0);
    h.run_until_completed(1);
    assert!(h.hv.unpaused().is_empty());
    assert_eq!(h.daemon.stats.clones_failed, 1);
    let err = h
        .daemon
        .stats
        .recent
        .back()
        .and_then(|r| r.error.clone())
        .unwrap_or_default();
    assert!(err.contains("3->9") && err.contains("EIO"), "{err}");
    let mut c = h.client();
    for path in [
        "/local/domain/9",
        "/libxl/9",
        "/local/domain/0/backend/console/9",
        "/local/domain/0/backend/vif/9",
    ] {
        assert!(
            !c.exists(TxId::NONE, path).expect("exists"),
            "{path} left behind by the failed clone"
        );
    }
    // The same child again (a retry): no EEXIST from leftovers.
    h.push(2, 9, 0);
    h.run_until_completed(2);
    assert_eq!(h.hv.unpaused(), vec![9], "{:?}", h.daemon.stats.recent);
    assert_eq!(r(&mut c, "/local/domain/9/name"), "web-child-9");
    assert_eq!(
        r(&mut c, "/local/domain/0/backend/vif/9/0/hotplug-status"),
        "connected"
    );
    // A first delivery of child 11 stopped after its basic trees and the
    // console frontend (the daemon was killed): the re-delivered entry
    // finishes the clone, with the fix-ups the first one never wrote.
    let mut n = Client::connect(&nephele, Dialect::Nephele).expect("connect proxy");
    n.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    for (op, src, dst) in [
        (
            xenstore::CloneOp::Basic,
            "/local/domain/3",
            "/local/domain/11",
        ),
        (xenstore::CloneOp::Basic, "/libxl/3", "/libxl/11"),
        (
            xenstore::CloneOp::DevConsole,
            "/local/domain/3/console",
            "/local/domain/11/console",
        ),
    ] {
        n.clone_tree(3, 11, op, src, dst).expect("partial clone");
    }
    h.push(3, 11, XEN_CLONE_ENTRY_REDELIVERED);
    h.run_until_completed(3);
    assert_eq!(h.hv.unpaused(), vec![9, 11], "{:?}", h.daemon.stats.recent);
    assert_eq!(
        r(&mut c, "/local/domain/11/store/ring-ref"),
        (0x9000u64 + 11).to_string()
    );
    assert_eq!(
        r(&mut c, "/local/domain/11/console/ring-ref"),
        (0xa000u64 + 11).to_string()
    );
    assert_eq!(
        r(&mut c, "/local/domain/0/backend/console/11/0/frontend"),
        "/local/domain/11/console"
    );
    assert_eq!(
        r(&mut c, "/local/domain/0/backend/vif/11/0/hotplug-status"),
        "connected"
    );
    assert_eq!(h.daemon.stats.clones_failed, 1);
}
