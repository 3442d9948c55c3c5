//! The clone pipeline. One [`Clone`] per notification, created by
//! [`start`] (called by the daemon for each entry read from the device):
//!
//! 1. child start_info (privcmd) — here;
//! 2. domain trees, Xenstore page, `XS_INTRODUCE` — [`xenstore`];
//! 3. console page and dirs — [`console`];
//! 4. vif frontend, backend, libxl dirs — [`vif`]; then the clone waits
//!    for netback's `online` uevents ([`vif::on_online`]) or their timeout;
//! 5. completion through the device and unpause — `crate::completion`.
//!
//! Any failure is recorded in the clone, which still completes: a parent
//! is never left blocked. A failed child is left paused (see
//! `crate::completion` for why).

pub mod console;
pub mod vif;
pub mod xenstore;

use crate::hypervisor::{HvError, Hypervisor};
use crate::netlink::{NetError, NetOps};
use crate::parent::{ParentError, ParentInfo};
use crate::trees::TreeCache;
use ::xenstore::Client;
use std::time::{Duration, Instant};
use xen_clone_abi::{XEN_CLONE_ENTRY_REDELIVERED, XenCloneEntry};

/// How Xenstore trees are cloned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XsMode {
    /// Nephele's `XS_CLONE` (oxenstored with Nephele's patches).
    XsClone,
    /// Node-by-node copy inside a transaction (`-d`, or any xenstored
    /// without `XS_CLONE`).
    DeepCopy,
}

/// Default `--vif-timeout-ms`. Netback's attach of a cloned vif takes well
/// under a second on hardware, but its tail under QEMU's TCG reaches 36 s;
/// a vif later than this still wins (see `clone::vif::on_online` and the
/// daemon's late list), so the timeout only bounds how long the parent
/// waits for its completion.
pub const DEFAULT_VIF_TIMEOUT_MS: u64 = 60_000;

/// Pipeline options (from the command line).
#[derive(Clone, Debug)]
pub struct Options {
    pub mode: XsMode,
    /// `-n`: no vif (or 9pfs) cloning.
    pub skip_io: bool,
    /// `-p`: leave children paused after completion.
    pub leave_paused: bool,
    /// How long a vif may wait for netback's `online` uevent.
    pub vif_timeout: Duration,
    /// Send an ARP request (gateway → guest) through each connected vif.
    pub garp: bool,
    /// Benchmark only (`--bench-xs-floor`): per clone, only the requests no
    /// `XS_CLONE` daemon can do without (the `XS_CLONE`s of the basic and
    /// console trees and `XS_INTRODUCE`, pipelined), no page copy, no
    /// fix-up, no vif, no unpause: the lowest Dom0 overhead of cloning
    /// through `XS_CLONE`.
    pub xs_floor: bool,
    /// xenstored has answered an `XS_CLONE` of ours with success: later
    /// clones pipeline all their requests (the first one goes alone, so a
    /// daemon without `XS_CLONE` is found out before anything else is
    /// sent; see [`xs_clone_items`]).
    pub xs_clone_confirmed: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            mode: XsMode::DeepCopy,
            skip_io: false,
            leave_paused: false,
            vif_timeout: Duration::from_millis(DEFAULT_VIF_TIMEOUT_MS),
            garp: false,
            xs_floor: false,
            xs_clone_confirmed: false,
        }
    }
}

/// What a pipeline stage can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error(transparent)]
    Xs(#[from] ::xenstore::Error),
    #[error(transparent)]
    Hv(#[from] HvError),
    #[error(transparent)]
    Parent(#[from] ParentError),
    #[error(transparent)]
    Net(#[from] NetError),
    #[error("{0}")]
    Refused(String),
}

/// A failed stage, naming the clone.
#[derive(Debug, thiserror::Error)]
#[error("clone {parent}->{child} (id {id}) {stage}: {source}")]
pub struct CloneError {
    pub parent: u16,
    pub child: u16,
    pub id: u32,
    pub stage: &'static str,
    #[source]
    pub source: StageError,
}

/// Everything a stage may touch.
pub struct Env<'a> {
    pub xs: &'a mut Client,
    pub hv: &'a mut dyn Hypervisor,
    pub net: &'a mut dyn NetOps,
    pub opts: &'a mut Options,
    /// Parents' source trees for deep copy (watched on `xs`).
    pub trees: &'a mut TreeCache,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VifState {
    WaitingOnline,
    Connected,
    Failed(String),
}

/// One vif of a clone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VifSlot {
    pub devid: u32,
    pub ifname: String,
    /// The child's backend dir.
    pub backend: String,
    pub bond: String,
    pub state: VifState,
    pub deadline: Instant,
    /// `--garp`: (sender = gateway, target = guest) of the ARP request
    /// sent once the vif is connected.
    pub arp: Option<(std::net::Ipv4Addr, std::net::Ipv4Addr)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Cloning,
    WaitingDevices,
    Completed,
}

/// Per-clone state machine.
#[derive(Clone, Debug)]
pub struct Clone {
    pub entry: XenCloneEntry,
    pub started: Instant,
    stage_start: Instant,
    pub stages: Vec<(&'static str, Duration)>,
    pub vifs: Vec<VifSlot>,
    pub error: Option<String>,
    pub phase: Phase,
    /// `XS_CLONE` destinations this clone asked for, in order (made, found
    /// made on a re-delivered entry, or failed): what [`rollback`] removes.
    pub xs_dests: Vec<XsDest>,
    /// The completion went through (or the module had auto-completed the
    /// entry): the child may be unpaused.
    pub completed: bool,
}

/// One `XS_CLONE` destination of a clone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XsDest {
    pub path: String,
    /// The tree is this clone's (made by it, or by its previous delivery).
    pub ours: bool,
}

impl Clone {
    pub fn new(entry: XenCloneEntry, now: Instant) -> Clone {
        Clone {
            entry,
            started: now,
            stage_start: now,
            stages: Vec::new(),
            vifs: Vec::new(),
            error: None,
            phase: Phase::Cloning,
            xs_dests: Vec::new(),
            completed: false,
        }
    }

    pub fn parent(&self) -> u16 {
        self.entry.parent_domid
    }

    pub fn child(&self) -> u16 {
        self.entry.child_domid
    }

    pub fn redelivered(&self) -> bool {
        self.entry.flags & XEN_CLONE_ENTRY_REDELIVERED != 0
    }

    /// Closes the current stage's timing.
    pub fn stage_done(&mut self, name: &'static str) {
        let now = Instant::now();
        self.stages.push((name, now - self.stage_start));
        self.stage_start = now;
    }

    /// Records the first failure (later ones are only logged).
    pub fn fail(&mut self, msg: String) {
        if self.error.is_none() {
            self.error = Some(msg);
        }
    }

    pub fn err(&self, stage: &'static str, source: impl Into<StageError>) -> CloneError {
        CloneError {
            parent: self.parent(),
            child: self.child(),
            id: self.entry.id,
            stage,
            source: source.into(),
        }
    }

    pub fn vif_mut(&mut self, devid: u32) -> Option<&mut VifSlot> {
        self.vifs.iter_mut().find(|v| v.devid == devid)
    }

    /// Cloning finished and no vif is still waiting.
    pub fn ready(&self) -> bool {
        self.phase == Phase::WaitingDevices
            && self.vifs.iter().all(|v| v.state != VifState::WaitingOnline)
    }

    /// Success: no error and every vif connected.
    pub fn ok(&self) -> bool {
        self.error.is_none() && self.vifs.iter().all(|v| v.state == VifState::Connected)
    }

    /// Failed with vif failures only (no stage or completion error): a vif
    /// that comes up late can still make the child whole.
    pub fn recoverable(&self) -> bool {
        self.error.is_none()
            && self
                .vifs
                .iter()
                .any(|v| matches!(v.state, VifState::Failed(_)))
    }

    /// Vifs still waiting whose deadline passed.
    pub fn expired(&self, now: Instant) -> Vec<u32> {
        self.vifs
            .iter()
            .filter(|v| v.state == VifState::WaitingOnline && v.deadline <= now)
            .map(|v| v.devid)
            .collect()
    }

    /// The earliest pending deadline, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.vifs
            .iter()
            .filter(|v| v.state == VifState::WaitingOnline)
            .map(|v| v.deadline)
            .min()
    }
}

/// Runs the synchronous part of a clone (stages 1-4). Never fails: errors
/// are recorded in the returned clone, which is then waiting for its
/// devices (or ready to complete at once).
pub fn start(
    env: &mut Env<'_>,
    entry: XenCloneEntry,
    parent: Result<ParentInfo, ParentError>,
    started: Instant,
) -> Clone {
    let mut c = Clone::new(entry, started);
    c.stage_done("parent");
    if let Err(e) = run_stages(env, &mut c, parent) {
        tracing::error!(
            parent = c.parent(),
            child = c.child(),
            id = c.entry.id,
            "{e}"
        );
        c.fail(e.to_string());
        // A clone that failed to set up completes at once: its vifs do not
        // wait, and what XS_CLONE made for it is removed, so a retry meets
        // no partial trees and netback no backend of a child that never
        // runs. (Deep copy makes all trees in one transaction: nothing.)
        for v in &mut c.vifs {
            if v.state == VifState::WaitingOnline {
                v.state = VifState::Failed(format!("clone failed: {e}"));
            }
        }
        rollback(env, &c);
    }
    c.phase = Phase::WaitingDevices;
    c
}

/// The directory of `path` that holds only child `child`'s nodes
/// (`/local/domain/<c>`, `/libxl/<c>`, `/local/domain/<b>/backend/<type>/<c>`),
/// if `path` is at or below one (pure).
pub fn child_root(path: &str, child: u16) -> Option<String> {
    let c = child.to_string();
    let parts: Vec<&str> = path.split('/').collect();
    let end = match parts.as_slice() {
        ["", "local", "domain", d, ..] if *d == c => 4,
        ["", "libxl", d, ..] if *d == c => 3,
        ["", "local", "domain", _, "backend", _, d, ..] if *d == c => 7,
        _ => return None,
    };
    Some(parts[..end].join("/"))
}

/// Removes what `XS_CLONE` made for a clone that failed: its trees (newest
/// first), then the child's own directories the requests left behind
/// (oxenstored makes a destination's parents even when the clone fails)
/// if nothing else is in them. Trees the clone found and did not make (an
/// `EEXIST` on a first delivery) are kept. Best effort: errors are logged.
pub fn rollback(env: &mut Env<'_>, c: &Clone) {
    use ::xenstore::TxId;
    if c.xs_dests.is_empty() {
        return;
    }
    let (p, ch, id) = (c.parent(), c.child(), c.entry.id);
    let mut removed = 0;
    for d in c.xs_dests.iter().rev().filter(|d| d.ours) {
        match env.xs.rm(TxId::NONE, &d.path) {
            Ok(()) => removed += 1,
            Err(e) if e.is_enoent() => {}
            Err(e) => tracing::error!(parent = p, child = ch, id, "rollback: rm {}: {e}", d.path),
        }
    }
    let mut roots: Vec<String> = c
        .xs_dests
        .iter()
        .filter_map(|d| child_root(&d.path, ch))
        .collect();
    roots.sort();
    roots.dedup();
    // Deepest first: a backend dir before the domain's home.
    roots.sort_by_key(|r| std::cmp::Reverse(r.len()));
    for r in roots {
        let empty = match env.xs.directory(TxId::NONE, &r) {
            Ok(kids) => kids.is_empty(),
            Err(e) if e.is_enoent() => continue,
            Err(e) => {
                tracing::error!(parent = p, child = ch, id, "rollback: directory {r}: {e}");
                continue;
            }
        };
        if empty {
            match env.xs.rm(TxId::NONE, &r) {
                Ok(()) => removed += 1,
                Err(e) if e.is_enoent() => {}
                Err(e) => tracing::error!(parent = p, child = ch, id, "rollback: rm {r}: {e}"),
            }
        }
    }
    tracing::warn!(
        parent = p,
        child = ch,
        id,
        removed,
        "clone failed: removed the Xenstore trees XS_CLONE made for child {ch}"
    );
}

fn run_stages(
    env: &mut Env<'_>,
    c: &mut Clone,
    parent: Result<ParentInfo, ParentError>,
) -> Result<(), CloneError> {
    let parent = parent.map_err(|e| c.err("parent", e))?;
    let io = !(env.opts.skip_io || parent.skip_network);
    // Before anything is written: a vif whose master cannot take clones
    // fails the clone here, so no backend with `cloned=true` makes
    // netback map the rings of a child that will never run.
    if io {
        vif::check_masters(env, c, &parent)?;
    }
    let child_si = env
        .hv
        .start_info(c.child(), c.entry.child_start_info_mfn)
        .map_err(|e| c.err("child start_info", e))?;
    c.stage_done("child_start_info");
    if !io {
        tracing::debug!(child = c.child(), "I/O cloning skipped");
    }
    // Both ring pages before any Xenstore request: xenstored serves the
    // child once it is introduced, xenconsoled maps its console once the
    // console's keys exist. (Not for the XS_CLONE floor, which measures
    // the Xenstore requests alone.)
    if !env.opts.xs_floor {
        copy_ring_pages(env, c, &parent, &child_si)?;
        c.stage_done("pages");
    }
    if env.opts.mode == XsMode::XsClone && xenstore::clone_all_xs(env, c, &parent, &child_si, io)? {
        c.stage_done("xenstore");
        if io {
            for v in &parent.vifs {
                vif::add_slot(env, c, v);
            }
        }
        return Ok(());
    }
    // Deep copy: the child is introduced first (C xenstored refuses
    // permissions naming a domain it does not know), then every tree of the
    // clone is made in ONE transaction: basic, console, vifs (frontends
    // before backends, all visible at once at the commit).
    xenstore::introduce(env, c, &parent, &child_si)?;
    c.stage_done("introduce");
    let mut items = xenstore::basic_items(&parent, c.child(), &child_si);
    if parent.has_console {
        items.extend(
            console::console_items(&parent, c.child(), &child_si)
                .map_err(|e| c.err("console", StageError::Refused(e)))?,
        );
    }
    if io {
        for v in &parent.vifs {
            items.extend(vif::vif_items(parent.domid, c.child(), v));
        }
    }
    deep_copy_items(env, c, "xenstore trees", &items)?;
    c.stage_done("xenstore");
    c.stage_done("console");
    if io {
        for v in &parent.vifs {
            vif::add_slot(env, c, v);
        }
        c.stage_done("vif_xenstore");
    }
    Ok(())
}

/// The parent's Xenstore and console ring pages (indices and pending
/// data) into the child's, before xenstored and xenconsoled serve it: one
/// mapping of each domain's pages.
fn copy_ring_pages(
    env: &mut Env<'_>,
    c: &Clone,
    parent: &ParentInfo,
    child_si: &crate::hypervisor::StartInfo,
) -> Result<(), CloneError> {
    let mut pages = Vec::new();
    if parent.start_info.store_mfn != 0 && child_si.store_mfn != 0 {
        pages.push((parent.start_info.store_mfn, child_si.store_mfn));
    }
    if parent.has_console && parent.start_info.console_mfn != 0 && child_si.console_mfn != 0 {
        pages.push((parent.start_info.console_mfn, child_si.console_mfn));
    }
    env.hv
        .copy_pages(parent.domid, c.child(), &pages)
        .map_err(|e| c.err("ring pages", e))
}

/// One subtree to clone.
#[derive(Clone, Debug)]
pub struct CopyItem {
    pub op: ::xenstore::CloneOp,
    pub src: String,
    pub dst: String,
    pub overrides: Vec<(&'static str, String)>,
    pub mark_cloned: bool,
    /// Skip silently if the source does not exist.
    pub optional: bool,
}

/// Clones `items` in order: with `XS_CLONE` one atomic request each, in
/// deep-copy mode all of them in ONE transaction (retried on `EAGAIN`).
/// On a re-delivered entry an existing destination is accepted as done.
/// If the daemon refuses `XS_CLONE`, switches to deep copy for good.
pub fn copy_items(
    env: &mut Env<'_>,
    c: &mut Clone,
    stage: &'static str,
    items: &[CopyItem],
) -> Result<(), CloneError> {
    if env.opts.mode == XsMode::XsClone && xs_clone_items(env, c, stage, items)? {
        return Ok(());
    }
    deep_copy_items(env, c, stage, items)
}

/// `XS_CLONE` each item. `Ok(false)`: the daemon refused the first
/// request (no `XS_CLONE` there) before anything changed; the mode is now
/// [`XsMode::DeepCopy`] and the caller must deep-copy instead.
pub fn xs_clone_items(
    env: &mut Env<'_>,
    c: &mut Clone,
    stage: &'static str,
    items: &[CopyItem],
) -> Result<bool, CloneError> {
    use ::xenstore::wire::errno::{EINVAL, ENOSYS};
    let (p, ch, redelivered) = (c.parent(), c.child(), c.redelivered());
    for (i, it) in items.iter().enumerate() {
        if it.optional
            && !env
                .xs
                .exists(::xenstore::TxId::NONE, &it.src)
                .map_err(|e| c.err(stage, e))?
        {
            continue;
        }
        let r = env.xs.clone_tree(p, ch, it.op, &it.src, &it.dst);
        // Ours if made now, or by this entry's previous delivery (XS_CLONE
        // is atomic per tree: an existing destination is a whole tree).
        let ours = r.is_ok() || (redelivered && r.as_ref().is_err_and(|e| e.is_eexist()));
        c.xs_dests.push(XsDest {
            path: it.dst.clone(),
            ours,
        });
        match r {
            Ok(()) => env.opts.xs_clone_confirmed = true,
            Err(e) if e.is_eexist() && redelivered => {
                tracing::info!(child = ch, path = %it.dst, "already cloned (re-delivered entry)");
            }
            Err(e)
                if i == 0
                    && matches!(e.errno(), Some(EINVAL | ENOSYS))
                    && !env
                        .xs
                        .exists(::xenstore::TxId::NONE, &it.dst)
                        .unwrap_or(true) =>
            {
                tracing::warn!(
                    "xenstored refused XS_CLONE ({e}): falling back to deep copy for all clones"
                );
                env.opts.mode = XsMode::DeepCopy;
                c.xs_dests.pop();
                return Ok(false);
            }
            Err(e) => return Err(c.err(stage, e)),
        }
        for (rel, v) in &it.overrides {
            let path = ::xenstore::paths::join(&it.dst, rel);
            env.xs
                .write_str(::xenstore::TxId::NONE, &path, v)
                .map_err(|e| c.err(stage, e))?;
        }
    }
    Ok(true)
}

/// Deep-copies every item in one transaction, from the parent's kept trees
/// ([`TreeCache`]; a tree is read only if a change dropped it or it was
/// never read), with as few requests as [`xenstore::deepcopy::Batch`] can.
/// A missing optional source is skipped; on a re-delivered entry an
/// existing destination is left as is.
pub fn deep_copy_items(
    env: &mut Env<'_>,
    c: &Clone,
    stage: &'static str,
    items: &[CopyItem],
) -> Result<(), CloneError> {
    use ::xenstore::deepcopy::{Batch, CopySpec, Existing};
    let (p, ch, redelivered) = (c.parent(), c.child(), c.redelivered());
    let trees = &mut *env.trees;
    env.xs
        .transaction(::xenstore::client::TX_RETRIES, |xs, tx| {
            // Every change made before this transaction started has its
            // watch event queued by now: drop the trees it touched.
            trees.sync(xs);
            let mut batch = Batch::new();
            for it in items {
                let Some(src) = trees.source(xs, tx, p, &it.src)? else {
                    if it.optional {
                        continue;
                    }
                    return Err(::xenstore::Error::Xs {
                        op: ::xenstore::Op::Read,
                        path: it.src.clone(),
                        errno: ::xenstore::wire::errno::ENOENT,
                    });
                };
                let ov: Vec<(&str, String)> = it.overrides.iter().map(|(k, v)| (*k, v.clone())).collect();
                let spec = CopySpec {
                    op: it.op,
                    parent: p,
                    child: ch,
                    src: &it.src,
                    dst: &it.dst,
                    overrides: &ov,
                    mark_cloned: it.mark_cloned,
                };
                let existing = if redelivered {
                    Existing::Skip
                } else {
                    Existing::Fail
                };
                if batch.copy(xs, tx, &spec, &src, existing)?.is_none() {
                    tracing::info!(child = ch, path = %it.dst, "already cloned (re-delivered entry)");
                }
            }
            Ok(())
        })
        .map_err(|e| c.err(stage, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use xen_clone_abi::XEN_CLONE_ABI_VERSION;

    fn entry() -> XenCloneEntry {
        XenCloneEntry {
            version: XEN_CLONE_ABI_VERSION,
            flags: 0,
            id: 4,
            parent_domid: 3,
            child_domid: 9,
            parent_start_info_mfn: 1,
            child_start_info_mfn: 2,
        }
    }

    fn slot(devid: u32, deadline: Instant) -> VifSlot {
        VifSlot {
            devid,
            ifname: format!("vif9.{devid}"),
            backend: format!("/local/domain/0/backend/vif/9/{devid}"),
            bond: "bond0".into(),
            state: VifState::WaitingOnline,
            deadline,
            arp: None,
        }
    }

    #[test]
    fn completes_only_when_all_devices_settled() {
        let now = Instant::now();
        let mut c = Clone::new(entry(), now);
        assert!(!c.ready(), "still cloning");
        c.vifs.push(slot(0, now + Duration::from_secs(1)));
        c.vifs.push(slot(1, now + Duration::from_secs(2)));
        c.phase = Phase::WaitingDevices;
        assert!(!c.ready());
        assert_eq!(c.next_deadline(), Some(now + Duration::from_secs(1)));
        c.vif_mut(0).expect("vif 0").state = VifState::Connected;
        assert!(!c.ready());
        assert!(c.expired(now + Duration::from_millis(1500)).is_empty());
        assert_eq!(c.expired(now + Duration::from_secs(3)), vec![1]);
        c.vif_mut(1).expect("vif 1").state = VifState::Connected;
        assert!(c.ready());
        assert!(c.ok());
        assert_eq!(c.next_deadline(), None);
    }

    #[test]
    fn failures_still_complete_but_are_not_ok() {
        let now = Instant::now();
        let mut c = Clone::new(entry(), now);
        c.vifs.push(slot(0, now));
        c.phase = Phase::WaitingDevices;
        c.vif_mut(0).expect("vif").state = VifState::Failed("timeout".into());
        assert!(c.ready());
        assert!(!c.ok());
        let mut d = Clone::new(entry(), now);
        d.fail("first".into());
        d.fail("second".into());
        d.phase = Phase::WaitingDevices;
        assert_eq!(d.error.as_deref(), Some("first"));
        assert!(d.ready() && !d.ok(), "no devices: ready at once");
    }

    #[test]
    fn child_roots_of_clone_destinations() {
        assert_eq!(
            child_root("/local/domain/9/device/vif/0", 9).as_deref(),
            Some("/local/domain/9")
        );
        assert_eq!(
            child_root("/local/domain/9", 9).as_deref(),
            Some("/local/domain/9")
        );
        assert_eq!(
            child_root("/libxl/9/device/vif/0", 9).as_deref(),
            Some("/libxl/9")
        );
        assert_eq!(
            child_root("/local/domain/0/backend/vif/9/0", 9).as_deref(),
            Some("/local/domain/0/backend/vif/9")
        );
        // Not the child's: never removed by a rollback.
        assert_eq!(child_root("/local/domain/0/backend/vif/3/0", 9), None);
        assert_eq!(child_root("/local/domain/0", 9), None);
        assert_eq!(child_root("/local/domain/90", 9), None);
        assert_eq!(child_root("/libxl", 9), None);
    }

    #[test]
    fn redelivery_flag_and_error_context() {
        let mut e = entry();
        e.flags = XEN_CLONE_ENTRY_REDELIVERED;
        let c = Clone::new(e, Instant::now());
        assert!(c.redelivered());
        let err = c.err("vif", StageError::Refused("bridge".into()));
        assert_eq!(err.to_string(), "clone 3->9 (id 4) vif: bridge");
    }
}
