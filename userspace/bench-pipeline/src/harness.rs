//! The daemon pipeline of `xencloned/tests/pipeline.rs`, parameterised for
//! the benchmark: a real C xenstored, a parent domain with `vifs` vifs, a
//! simulated clone device ([`SimSource`]), the scripted hypervisor and
//! network ([`FakeHypervisor`], [`FakeNet`]) and a simulated netback that
//! answers each cloned vif backend with a kernel-format `online` uevent.
//!
//! The parent tree, the netback behaviour and the daemon configuration are
//! those of the integration test (`build_parent`, `spawn_netback` with
//! `Netback::Normal`, `harness`), so the benchmark measures the code path
//! the tests check.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use xen_clone_abi::{XEN_CLONE_ABI_VERSION, XenCloneEntry, XenCloneInfo};
use xencloned::clone::{Options, XsMode};
use xencloned::daemon::{Config, Daemon, Deps};
use xencloned::hypervisor::StartInfo;
use xencloned::netlink::MasterKind;
use xencloned::sim::{FakeHypervisor, FakeNet};
use xencloned::source::{SimHandle, SimSource};
use xencloned::uevent::SimUevents;
use xenstore::testing::{NepheleProxy, Xenstored};
use xenstore::{Client, Dialect, Endpoint, Perms, TxId, paths};

/// The parent domain.
pub const P: u16 = 3;
const P_SI: u64 = 0x100;
/// First child domid.
pub const FIRST_CHILD: u16 = 10;

/// Marker paths read (ENOENT) by the benchmark's own Xenstore connections,
/// so that their requests can be told apart from the daemon's in the trace.
pub const MARK_SETUP: &str = "/bench-marker/setup";
pub const MARK_NETBACK: &str = "/bench-marker/netback";

/// How the harness is set up.
#[derive(Clone, Debug)]
pub struct Setup {
    pub name: String,
    pub vifs: u32,
    pub mode: XsMode,
    /// Start xenstored with `-T` (trace file).
    pub trace: bool,
    /// Spawn the simulated netback (false: vif uevents withheld, clones
    /// wait on their devices until `vif_timeout`).
    pub netback: bool,
    /// Put a request-counting forwarder between the daemon and xenstored.
    pub count: bool,
    pub vif_timeout: Duration,
    /// Unrelated domains introduced to xenstored before the parent (each
    /// with one node): C xenstored's per-request work grows with them.
    pub predomains: u16,
    /// The daemon's `--cache` (parent descriptions kept between clones).
    pub cache: bool,
}

/// First domid of the [`Setup::predomains`] (below `DOMID_FIRST_RESERVED`).
const PREDOMAIN_BASE: u16 = 20000;

pub struct Harness {
    pub xs: Xenstored,
    pub hv: FakeHypervisor,
    pub sim: SimHandle,
    pub daemon: Daemon,
    /// The setup connection, kept open: xenstored reuses the addresses
    /// that name connections in its trace once they are closed.
    _setup: Client,
    pub counter: Option<crate::counter::Counter>,
    /// Kept alive: the Nephele-dialect `XS_CLONE` emulation (xs_clone mode).
    _proxy: Option<NepheleProxy>,
    stop: Arc<AtomicBool>,
    /// Cloned backends whose frontend did not exist when netback probed them.
    pub netback_violations: Arc<AtomicU64>,
    next_id: u32,
    next_child: u16,
}

fn perms(v: &[&str]) -> Perms {
    Perms::parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("static perms")
}

fn w(c: &mut Client, path: &str, v: &str) {
    c.write_str(TxId::NONE, path, v)
        .unwrap_or_else(|e| panic!("setup: write {path}: {e}"));
}

/// The parent of `tests/pipeline.rs::build_parent`, with `vifs` vifs
/// (devid = handle = 0..vifs) instead of exactly one.
pub fn build_parent(c: &mut Client, vifs: u32) {
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
    ] {
        w(c, &paths::join(&home, k), v);
    }
    c.set_perms(TxId::NONE, &home, &perms(&["n0", "r3"]))
        .expect("perms");
    c.set_perms(TxId::NONE, &paths::join(&home, "data"), &perms(&["b3"]))
        .expect("perms");
    for i in 0..vifs {
        let fe = paths::join(&home, &format!("device/vif/{i}"));
        let be = format!("/local/domain/0/backend/vif/3/{i}");
        let mac = format!("00:16:3e:00:{:02x}:03", i);
        for (k, v) in [
            ("backend", be.as_str()),
            ("backend-id", "0"),
            ("mac", &mac),
            ("handle", &i.to_string()),
            ("tx-ring-ref", "8"),
            ("rx-ring-ref", "9"),
            ("event-channel", "4"),
            ("request-rx-copy", "1"),
            ("state", "4"),
        ] {
            w(c, &paths::join(&fe, k), v);
        }
        c.set_perms(TxId::NONE, &fe, &perms(&["n3", "r0"]))
            .expect("perms");
        for (k, v) in [
            ("frontend", fe.as_str()),
            ("frontend-id", "3"),
            ("online", "1"),
            ("state", "4"),
            ("script", "/etc/xen/scripts/vif-bridge"),
            ("mac", &mac),
            ("ip", "10.8.0.3 255.255.255.0 10.8.0.1"),
            ("bridge", "bond0"),
            ("handle", &i.to_string()),
            ("type", "vif"),
            ("feature-sg", "1"),
            ("hotplug-status", "connected"),
        ] {
            w(c, &paths::join(&be, k), v);
        }
        c.set_perms(TxId::NONE, &be, &perms(&["n0", "r3"]))
            .expect("perms");
        w(c, &format!("/libxl/3/device/vif/{i}/frontend"), &fe);
        w(c, &format!("/libxl/3/device/vif/{i}/backend"), &be);
    }
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
        ("device/console/0/frontend", "/local/domain/3/console"),
    ] {
        w(c, &paths::join("/libxl/3", k), v);
    }
}

/// `tests/pipeline.rs::spawn_netback` in its `Netback::Normal` mode: on
/// every cloned vif backend that appears, check the frontend exists (as
/// netback's probe does), create the netdev and send the `online` uevent.
fn spawn_netback(
    xs: &Xenstored,
    net: FakeNet,
    tx: std::os::unix::net::UnixDatagram,
    stop: Arc<AtomicBool>,
    violations: Arc<AtomicU64>,
) {
    let mut c = xs.connect();
    // Bursts keep netback blocked on the uevent socket for a long time.
    c.set_read_timeout(None).expect("netback read timeout");
    let _ = c.read_opt(TxId::NONE, MARK_NETBACK);
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
            let fe = c
                .read_opt(TxId::NONE, &format!("{be}/frontend"))
                .ok()
                .flatten()
                .unwrap_or_default();
            if !c.exists(TxId::NONE, &fe).unwrap_or(false) {
                violations.fetch_add(1, Ordering::SeqCst);
            }
            seen.insert((d, n));
            let ifname = format!("vif{d}.{n}");
            net.add_dev(&ifname);
            let _ = tx.send(&xencloned::sim::cloned_online_uevent(d, n));
        }
    });
}

impl Harness {
    /// Starts xenstored, builds the parent, the seams and the daemon.
    /// `None` if no xenstored is installed (see `xenstore::testing`).
    pub fn new(s: &Setup) -> Option<Harness> {
        let xs = Xenstored::start_with(&s.name, s.trace)?;
        let mut c = xs.connect();
        let _ = c.read_opt(TxId::NONE, MARK_SETUP);
        for k in 0..s.predomains.min(0x7ff0 - PREDOMAIN_BASE) {
            let d = PREDOMAIN_BASE + k;
            c.introduce(d, 0x7_0000 + u64::from(d), 1, None)
                .unwrap_or_else(|e| panic!("setup: introduce domain {d}: {e}"));
            w(&mut c, &format!("{}/name", paths::domain_path(d)), "other");
        }
        build_parent(&mut c, s.vifs);
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
        let (source, sim) = SimSource::new(XenCloneInfo {
            version: XEN_CLONE_ABI_VERSION,
            ring_pages: 1,
            entries_num: 128,
            ..Default::default()
        })
        .expect("sim source");
        let (uevents, tx) = SimUevents::pair().expect("uevent socket pair");
        let stop = Arc::new(AtomicBool::new(false));
        let violations = Arc::new(AtomicU64::new(0));
        if s.netback {
            spawn_netback(&xs, net.clone(), tx, stop.clone(), violations.clone());
        }
        let dialect = match s.mode {
            XsMode::XsClone => Dialect::Nephele,
            XsMode::DeepCopy => Dialect::Upstream,
        };
        let proxy = (s.mode == XsMode::XsClone).then(|| NepheleProxy::start(&xs));
        let endpoint = proxy
            .as_ref()
            .map_or_else(|| xs.endpoint(), NepheleProxy::endpoint);
        let counter = s
            .count
            .then(|| crate::counter::Counter::start(&endpoint, xs.run_dir(), dialect));
        let endpoint: Endpoint = counter
            .as_ref()
            .map_or(endpoint, crate::counter::Counter::endpoint);
        let dxs = Client::connect(&endpoint, dialect).expect("daemon xenstore connection");
        dxs.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("read timeout");
        let daemon = Daemon::new(
            Deps {
                source: Box::new(source),
                uevents: Box::new(uevents),
                xs: dxs,
                hv: Box::new(hv.clone()),
                net: Box::new(net),
            },
            Config {
                opts: Options {
                    mode: s.mode,
                    skip_io: false,
                    leave_paused: false,
                    vif_timeout: s.vif_timeout,
                    garp: false,
                    ..Options::default()
                },
                // Nephele's recommended `xencloned --cache` (the benchmark's
                // setting; the request-count test also runs without it).
                cache: s.cache,
                stats_file: Some(xs.run_dir().join("stats.json")),
                signals: false,
            },
        )
        .expect("daemon");
        Some(Harness {
            xs,
            hv,
            sim,
            daemon,
            _setup: c,
            counter,
            _proxy: proxy,
            stop,
            netback_violations: violations,
            next_id: 1,
            next_child: FIRST_CHILD,
        })
    }

    /// Scripts the start_info pages of the next `n` children (what the
    /// hypervisor would have created) without queueing anything.
    pub fn prepare_children(&self, n: u32) {
        for k in 0..n {
            let child = self.next_child + k as u16;
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
        }
    }

    /// Queues `n` clone notifications of the parent on the simulated
    /// device (after [`Harness::prepare_children`]); the daemon sees them
    /// at its next step.
    ///
    /// All but the last entry go straight into the device's queue, the
    /// last through [`SimHandle::push`], whose wake-up byte makes the
    /// device readable: one wake-up byte per entry would fill the socket
    /// pair's send buffer (about 300 one-byte writes) and block the
    /// benchmark before the daemon reads anything.
    pub fn queue(&mut self, n: u32) {
        for k in 0..n {
            let child = self.next_child;
            let e = XenCloneEntry {
                version: XEN_CLONE_ABI_VERSION,
                flags: 0,
                id: self.next_id,
                parent_domid: P,
                child_domid: child,
                parent_start_info_mfn: P_SI,
                child_start_info_mfn: 0x200 + u64::from(child),
            };
            if k + 1 == n {
                self.sim.push(e);
            } else {
                self.sim
                    .state
                    .lock()
                    .expect("simulated device state")
                    .queued
                    .push_back(e);
            }
            self.next_id += 1;
            self.next_child += 1;
        }
    }

    pub fn completed(&self) -> usize {
        self.sim
            .state
            .lock()
            .map(|s| s.completed.len())
            .unwrap_or(0)
    }

    /// Steps the daemon until `n` clones are completed in total.
    pub fn run_until_completed(&mut self, n: usize, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        while self.completed() < n {
            if Instant::now() > deadline {
                return Err(format!(
                    "only {} of {n} clones completed after {limit:?} (in flight: {})",
                    self.completed(),
                    self.daemon.in_flight()
                ));
            }
            self.daemon
                .step(Some(Duration::from_millis(20)))
                .map_err(|e| format!("daemon step: {e}"))?;
        }
        Ok(())
    }

    /// Steps the daemon for `d` (late watch events, etc.).
    pub fn idle(&mut self, d: Duration) -> Result<(), String> {
        let end = Instant::now() + d;
        while Instant::now() < end {
            self.daemon
                .step(Some(Duration::from_millis(10)))
                .map_err(|e| format!("daemon step: {e}"))?;
        }
        Ok(())
    }

    /// Everything went as in the test's happy path: every clone completed
    /// exactly once, successfully, unpaused, no vif timed out.
    pub fn check_clean(&self, n: usize) -> Result<(), String> {
        let st = &self.daemon.stats;
        let bad = self
            .sim
            .state
            .lock()
            .map(|s| s.bad_completions.len())
            .unwrap_or(0);
        let unpaused = self.hv.unpaused().len();
        let violations = self.netback_violations.load(Ordering::SeqCst);
        if self.completed() != n
            || bad != 0
            || st.clones_failed != 0
            || st.uevent_timeouts != 0
            || unpaused != n
            || violations != 0
        {
            return Err(format!(
                "pipeline not clean: completed {} of {n}, bad completions {bad}, failed {}, uevent timeouts {}, unpaused {unpaused}, backends before frontends {violations}, last error {:?}",
                self.completed(),
                st.clones_failed,
                st.uevent_timeouts,
                st.recent.back().and_then(|r| r.error.clone())
            ));
        }
        Ok(())
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}
