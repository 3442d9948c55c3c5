// SPDX-License-Identifier: GPL-2.0

//! Netback clone shortcut.
//!
//! When a cloning hypervisor (Nephele) clones a VM, the toolstack copies the
//! parent's vif backend node for the child with `state = 4` and
//! `cloned = "true"`, next to a frontend that is already Connected: its ring
//! grant references and event-channel ports are the parent's numbers,
//! pointing at the child's private copies, with the ports left unbound
//! toward this domain. xenbus registers that node (linux-patches/0001) and
//! netback hands it to this module (linux-patches/0003), which:
//!
//! 1. validates the node and its frontend without touching any grant
//!    (`validate.rs`), and checks with the hypervisor that every port is
//!    unbound toward us;
//! 2. creates `vif<child>.<handle>`, connects every queue to the frontend's
//!    existing rings and binds its ports, makes sure the guest hears about
//!    the next responses, turns the carrier on, watches `hotplug-status` and
//!    announces the vif (`online` uevent with `cloned=1`);
//! 3. on any error, releases everything and writes a `hotplug-error` naming
//!    the key or grant that failed.
//!
//! Counters and per-attach latencies are in `/sys/kernel/debug/netback_clone/`.

use kernel::{
    debugfs::Scope,
    fmt,
    prelude::*,
    str::CString,
    sync::atomic::{Atomic, Relaxed},
    time::{Instant, Monotonic},
};

mod netback;
mod validate;

use netback::Backend;
use validate::{check_port, Key, KeyError, Problem, Side, Store, Value};

module! {
    type: NetbackClone,
    name: "netback_clone",
    authors: ["xen-clone developers"],
    description: "Xen netback clone shortcut: attach cloned vifs to their existing rings",
    license: "GPL",
}

/// Number of recent attaches kept for debugfs.
const RECENT: usize = 16;

/// One attach, as shown in debugfs (`attaches`).
struct AttachRecord {
    seq: Atomic<u64>,
    domid: Atomic<u32>,
    handle: Atomic<u32>,
    queues: Atomic<u32>,
    latency_ns: Atomic<u64>,
    errno: Atomic<i32>,
}

impl AttachRecord {
    const fn new() -> Self {
        AttachRecord {
            seq: Atomic::new(0),
            domid: Atomic::new(0),
            handle: Atomic::new(0),
            queues: Atomic::new(0),
            latency_ns: Atomic::new(0),
            errno: Atomic::new(0),
        }
    }
}

/// What failed, for the counters.
#[derive(Clone, Copy)]
enum FailClass {
    /// A key of the node or frontend.
    Validation,
    /// The hypervisor's view of a port.
    Port,
    /// Mapping a ring grant.
    Grant,
    /// Anything else (creating the vif, binding, memory).
    Other,
}

/// Counters of the module.
///
/// Attaches and detaches run from xenbus probe and remove, one at a time per
/// device; the counters are atomics so that debugfs readers and concurrent
/// probes of different devices never race.
struct Stats {
    attempts: Atomic<u64>,
    attached: Atomic<u64>,
    detached: Atomic<u64>,
    failed_validation: Atomic<u64>,
    failed_port: Atomic<u64>,
    failed_grant: Atomic<u64>,
    failed_other: Atomic<u64>,
    latency_last_ns: Atomic<u64>,
    latency_min_ns: Atomic<u64>,
    latency_max_ns: Atomic<u64>,
    latency_total_ns: Atomic<u64>,
    /// Of the last successful attach: time spent validating (store reads,
    /// port checks) before the first grant was touched.
    validate_last_ns: Atomic<u64>,
    recent: [AttachRecord; RECENT],
}

static STATS: Stats = Stats {
    attempts: Atomic::new(0),
    attached: Atomic::new(0),
    detached: Atomic::new(0),
    failed_validation: Atomic::new(0),
    failed_port: Atomic::new(0),
    failed_grant: Atomic::new(0),
    failed_other: Atomic::new(0),
    latency_last_ns: Atomic::new(0),
    latency_min_ns: Atomic::new(u64::MAX),
    latency_max_ns: Atomic::new(0),
    latency_total_ns: Atomic::new(0),
    validate_last_ns: Atomic::new(0),
    recent: [const { AttachRecord::new() }; RECENT],
};

impl Stats {
    fn record(
        &self,
        domid: u32,
        handle: u32,
        queues: u32,
        ns: u64,
        result: Result<(), (FailClass, Error)>,
    ) {
        let seq = self.attempts.fetch_add(1, Relaxed) + 1;
        let errno = match result {
            Ok(()) => {
                self.attached.fetch_add(1, Relaxed);
                self.latency_last_ns.store(ns, Relaxed);
                self.latency_total_ns.fetch_add(ns, Relaxed);
                let mut min = self.latency_min_ns.load(Relaxed);
                while ns < min {
                    match self.latency_min_ns.cmpxchg(min, ns, Relaxed) {
                        Ok(_) => break,
                        Err(cur) => min = cur,
                    }
                }
                let mut max = self.latency_max_ns.load(Relaxed);
                while ns > max {
                    match self.latency_max_ns.cmpxchg(max, ns, Relaxed) {
                        Ok(_) => break,
                        Err(cur) => max = cur,
                    }
                }
                0
            }
            Err((class, err)) => {
                let counter = match class {
                    FailClass::Validation => &self.failed_validation,
                    FailClass::Port => &self.failed_port,
                    FailClass::Grant => &self.failed_grant,
                    FailClass::Other => &self.failed_other,
                };
                counter.fetch_add(1, Relaxed);
                err.to_errno()
            }
        };
        let slot = usize::try_from(seq % RECENT as u64).unwrap_or(0);
        if let Some(r) = self.recent.get(slot) {
            r.seq.store(0, Relaxed);
            r.domid.store(domid, Relaxed);
            r.handle.store(handle, Relaxed);
            r.queues.store(queues, Relaxed);
            r.latency_ns.store(ns, Relaxed);
            r.errno.store(errno, Relaxed);
            r.seq.store(seq, Relaxed);
        }
    }

    fn show(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let attached = self.attached.load(Relaxed);
        let detached = self.detached.load(Relaxed);
        writeln!(f, "attempts: {}", self.attempts.load(Relaxed))?;
        writeln!(f, "attached: {attached}")?;
        writeln!(f, "detached: {detached}")?;
        writeln!(f, "active: {}", attached.saturating_sub(detached))?;
        writeln!(
            f,
            "failed_validation: {}",
            self.failed_validation.load(Relaxed)
        )?;
        writeln!(f, "failed_port: {}", self.failed_port.load(Relaxed))?;
        writeln!(f, "failed_grant: {}", self.failed_grant.load(Relaxed))?;
        writeln!(f, "failed_other: {}", self.failed_other.load(Relaxed))?;
        let min = self.latency_min_ns.load(Relaxed);
        writeln!(
            f,
            "latency_last_us: {}",
            self.latency_last_ns.load(Relaxed) / 1000
        )?;
        writeln!(
            f,
            "latency_min_us: {}",
            if attached == 0 { 0 } else { min / 1000 }
        )?;
        writeln!(
            f,
            "latency_max_us: {}",
            self.latency_max_ns.load(Relaxed) / 1000
        )?;
        let avg = self
            .latency_total_ns
            .load(Relaxed)
            .checked_div(attached)
            .unwrap_or(0);
        writeln!(f, "latency_avg_us: {}", avg / 1000)?;
        writeln!(
            f,
            "validate_last_us: {}",
            self.validate_last_ns.load(Relaxed) / 1000
        )
    }

    fn show_recent(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "seq vif queues latency_us result")?;
        let last = self.attempts.load(Relaxed);
        let first = last.saturating_sub(RECENT as u64 - 1).max(1);
        for seq in first..=last {
            let slot = usize::try_from(seq % RECENT as u64).unwrap_or(0);
            let Some(r) = self.recent.get(slot) else {
                continue;
            };
            if r.seq.load(Relaxed) != seq {
                continue;
            }
            writeln!(
                f,
                "{} vif{}.{} {} {} {}",
                seq,
                r.domid.load(Relaxed),
                r.handle.load(Relaxed),
                r.queues.load(Relaxed),
                r.latency_ns.load(Relaxed) / 1000,
                r.errno.load(Relaxed)
            )?;
        }
        Ok(())
    }
}

/// Why an attach failed.
enum Failure {
    /// A key of the backend node or of the frontend.
    Key(KeyError),
    /// A ring grant could not be mapped.
    Grant { key: Key, gref: u32, err: Error },
    /// Connecting a queue failed although both its grants map: binding.
    Bind {
        queue: u32,
        rings: validate::QueueRings,
        err: Error,
    },
    /// Another step.
    Step { what: &'static str, err: Error },
}

impl From<KeyError> for Failure {
    fn from(e: KeyError) -> Self {
        Failure::Key(e)
    }
}

impl Failure {
    fn error(&self) -> Error {
        match self {
            Failure::Key(e) => e.problem.errno(),
            Failure::Grant { err, .. } | Failure::Bind { err, .. } | Failure::Step { err, .. } => {
                *err
            }
        }
    }

    fn class(&self) -> FailClass {
        match self {
            Failure::Key(KeyError {
                problem: Problem::PortState { .. } | Problem::NoSuchPort { .. },
                ..
            }) => FailClass::Port,
            Failure::Key(KeyError {
                problem: Problem::NoMemory | Problem::Read(_),
                ..
            }) => FailClass::Other,
            Failure::Key(_) => FailClass::Validation,
            Failure::Grant { .. } => FailClass::Grant,
            Failure::Bind { .. } | Failure::Step { .. } => FailClass::Other,
        }
    }

    /// The `hotplug-error` text: names the key (with its full path) or grant.
    fn message(&self, be: &Backend<'_>) -> Result<CString> {
        let dir = |key: &Key| match key.side {
            Side::Frontend => be.otherend(),
            Side::Backend => be.nodename(),
        };
        match self {
            Failure::Key(e) => CString::try_from_fmt(fmt!(
                "netback_clone: {}/{}: {}",
                dir(&e.key),
                e.key,
                e.problem
            )),
            Failure::Grant { key, gref, err } => CString::try_from_fmt(fmt!(
                "netback_clone: {}/{}: grant {} of domain {} cannot be mapped ({})",
                dir(key),
                key,
                gref,
                be.otherend_id(),
                err.to_errno()
            )),
            Failure::Bind { queue, rings, err } => CString::try_from_fmt(fmt!(
                "netback_clone: {}: queue {}: binding event channels tx {} rx {} of domain {} failed ({})",
                be.otherend(),
                queue,
                rings.tx_port,
                rings.rx_port,
                be.otherend_id(),
                err.to_errno()
            )),
            Failure::Step { what, err } => CString::try_from_fmt(fmt!(
                "netback_clone: {}: {} failed ({})",
                be.nodename(),
                what,
                err.to_errno()
            )),
        }
    }
}

/// The cloned backend node and its frontend, read through xenbus.
struct NodeStore<'a, 'b> {
    be: &'b Backend<'a>,
}

impl Store for NodeStore<'_, '_> {
    fn read(&self, key: Key) -> Result<Option<Value>, KeyError> {
        let dir = match key.side {
            Side::Frontend => self.be.otherend(),
            Side::Backend => self.be.nodename(),
        };
        let node = CString::try_from_fmt(fmt!("{}", key)).map_err(|_| KeyError {
            key,
            problem: Problem::NoMemory,
        })?;
        netback::xs_read(dir, &node).map_err(|errno| KeyError {
            key,
            problem: if errno == E2BIG.to_errno() {
                Problem::Malformed("a shorter value")
            } else {
                Problem::Read(errno)
            },
        })
    }
}

/// Tears the vif down unless the attach completed.
///
/// # Invariants
///
/// While `armed`, the vif of `be` exists and has not been announced.
struct VifGuard<'a, 'b> {
    be: &'b Backend<'a>,
    armed: bool,
}

impl Drop for VifGuard<'_, '_> {
    fn drop(&mut self) {
        if self.armed {
            self.be.destroy();
        }
    }
}

/// This domain's id (the peer every cloned port must be unbound toward).
fn own_domid() -> u32 {
    match netback::xs_read(c"domid", c"") {
        Ok(Some(v)) => validate::parse_u32(v.as_bytes()).unwrap_or(0),
        _ => 0,
    }
}

/// What [`attach_steps`] produces on success, for the log.
struct Attached {
    queues: u32,
    ports: u32,
    /// When validation ended and the first grant was about to be mapped.
    validated: Instant<Monotonic>,
}

fn attach_steps(be: &Backend<'_>, cfg: &validate::CloneConfig) -> Result<Attached, Failure> {
    let fe_domid = be.otherend_id();

    // The hypervisor must have left every port unbound toward us.
    let self_domid = own_domid();
    let mut ports = 0u32;
    cfg.for_each_port(|key, port| {
        ports += 1;
        check_port(
            key,
            port,
            netback::evtchn_status(fe_domid, port),
            self_domid,
        )
    })?;

    let validated = Instant::<Monotonic>::now();
    let nq = u32::try_from(cfg.queues.len()).map_err(|_| Failure::Step {
        what: "counting queues",
        err: EINVAL,
    })?;
    be.create(cfg.handle, &cfg.mac, nq)
        .map_err(|err| Failure::Step {
            what: "creating the vif",
            err,
        })?;
    let mut guard = VifGuard { be, armed: true };

    let multi = nq > 1;
    for (i, rings) in (0u32..).zip(cfg.queues.iter()) {
        if let Err(err) = be.connect_queue(i, rings) {
            // Name the grant that does not map, if one does not.
            let queue = if multi { Some(i) } else { None };
            for (key, gref) in [
                (validate::TX_RING_REF, rings.tx_ring_ref),
                (validate::RX_RING_REF, rings.rx_ring_ref),
            ] {
                if let Err(gerr) = be.probe_grant(gref) {
                    return Err(Failure::Grant {
                        key: Key { queue, ..key },
                        gref,
                        err: gerr,
                    });
                }
            }
            return Err(Failure::Bind {
                queue: i,
                rings: *rings,
                err,
            });
        }
    }
    if let Some((gref, port)) = cfg.ctrl {
        be.connect_ctrl(gref, port).map_err(|err| Failure::Step {
            what: "connecting the control ring",
            err,
        })?;
    }
    be.notify().map_err(|err| Failure::Step {
        what: "notifying the frontend",
        err,
    })?;
    be.start().map_err(|err| Failure::Step {
        what: "starting the vif",
        err,
    })?;
    // INVARIANT: the vif is announced and owned by netback from here on.
    guard.armed = false;

    Ok(Attached {
        queues: nq,
        ports,
        validated,
    })
}

/// Attaches a cloned vif backend; on error everything is released and the
/// error is in `hotplug-error`.
pub(crate) fn attach(be: &Backend<'_>) -> Result {
    let start = Instant::<Monotonic>::now();
    let domid = be.otherend_id();

    let store = NodeStore { be };
    let result = validate::validate(&store, netback::max_queues())
        .map_err(Failure::from)
        .and_then(|cfg| attach_steps(be, &cfg).map(|a| (cfg.handle, a)));

    let ns = u64::try_from(start.elapsed().as_nanos()).unwrap_or(0);
    match result {
        Ok((handle, a)) => {
            let validate_ns =
                ns.saturating_sub(u64::try_from(a.validated.elapsed().as_nanos()).unwrap_or(0));
            STATS.validate_last_ns.store(validate_ns, Relaxed);
            STATS.record(domid, handle, a.queues, ns, Ok(()));
            pr_info!(
                "vif{}.{}: attached to cloned frontend {} ({} queue(s), {} port(s)) in {} us ({} us validating)\n",
                domid,
                handle,
                be.otherend(),
                a.queues,
                a.ports,
                ns / 1000,
                validate_ns / 1000
            );
            Ok(())
        }
        Err(f) => {
            let err = f.error();
            let handle = store
                .read(validate::HANDLE)
                .ok()
                .flatten()
                .and_then(|v| validate::parse_u32(v.as_bytes()))
                .unwrap_or(u32::MAX);
            STATS.record(domid, handle, 0, ns, Err((f.class(), err)));
            match f.message(be) {
                Ok(msg) => {
                    pr_err!("{}\n", msg.to_str().unwrap_or("attach failed"));
                    be.fail(err, &msg);
                }
                Err(_) => be.fail(
                    err,
                    c"netback_clone: attach failed (no memory for the message)",
                ),
            }
            Err(err)
        }
    }
}

/// An attached clone's backend has been torn down (node removed, guest gone).
pub(crate) fn detach(be: &Backend<'_>) {
    STATS.detached.fetch_add(1, Relaxed);
    pr_info!("{}: cloned vif released\n", be.nodename());
}

struct NetbackClone {
    // Dropped in this order: no new attach, then the debugfs files.
    _registration: netback::Registration,
    _debugfs: Pin<KBox<Scope<()>>>,
}

impl kernel::Module for NetbackClone {
    fn init(module: &'static ThisModule) -> Result<Self> {
        // `/sys/kernel/debug/netback_clone/`: the files read the static `STATS`.
        let debugfs = KBox::pin_init(
            Scope::dir((), c"netback_clone", |data, dir| {
                dir.read_callback_file(c"stats", data, &|(): &(), f| STATS.show(f));
                dir.read_callback_file(c"attaches", data, &|(): &(), f| STATS.show_recent(f));
            }),
            GFP_KERNEL,
        )?;
        let registration = netback::Registration::new(module)?;
        pr_info!(
            "registered as netback's clone handler (max {} queues)\n",
            netback::max_queues()
        );
        Ok(NetbackClone {
            _registration: registration,
            _debugfs: debugfs,
        })
    }
}
