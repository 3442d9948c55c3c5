//! Stage 4: vifs. Clones each vif's frontend, backend and libxl dirs
//! (frontend first: netback's probe checks the other end exists), then
//! handles netback's `online` uevent: enslave into the parent's bond over
//! rtnetlink, bring up, write `hotplug-status=connected`.

use super::{Clone, CloneError, CopyItem, Env, StageError, VifSlot, VifState};
use crate::netlink::{MasterKind, NetOps};
use crate::parent::{ParentInfo, ParentVif};
use ::xenstore::{Client, CloneOp, TxId, paths};
use std::time::Instant;

/// The three dirs of one vif, in order (pure).
pub fn vif_items(parent: u16, child: u16, v: &ParentVif) -> Vec<CopyItem> {
    let mut items = vec![
        CopyItem {
            op: CloneOp::DevVif,
            src: v.frontend.clone(),
            dst: paths::frontend_dir(child, "vif", v.devid),
            overrides: vec![],
            mark_cloned: false,
            optional: false,
        },
        CopyItem {
            op: CloneOp::DevVif,
            src: v.backend.clone(),
            dst: paths::backend_dir(v.backend_id, "vif", child, v.devid),
            overrides: vec![],
            mark_cloned: true,
            optional: false,
        },
    ];
    // Whether it exists is part of the parent's description: no request.
    if v.has_libxl {
        items.push(CopyItem {
            op: CloneOp::DevVif,
            src: paths::libxl_device_dir(parent, "vif", v.devid),
            dst: paths::libxl_device_dir(child, "vif", v.devid),
            overrides: vec![],
            mark_cloned: false,
            optional: false,
        });
    }
    items
}

/// Why a vif's master cannot take clones, if it cannot (pure).
pub fn refuse_master(bridge: Option<&str>, kind: MasterKind) -> Option<String> {
    match (bridge, kind) {
        (None, _) => Some("parent vif has no 'bridge' (bond) in its backend".into()),
        (Some(_), MasterKind::Bond) => None,
        (Some(b), MasterKind::Bridge) => Some(format!(
            "{b} is a Linux bridge: clones share the parent's MAC, which a bridge cannot forward to several ports; use a bond"
        )),
        (Some(b), MasterKind::Missing) => Some(format!("{b}: no such network device")),
        (Some(b), MasterKind::Other) => Some(format!("{b} is neither a bond nor a bridge")),
    }
}

/// Refuses the clone before anything is written for it if a parent vif's
/// master cannot take clones (a Linux bridge, no `bridge`, a missing
/// device): each such vif gets a failed slot (counted, named in the
/// error), nothing is written to Xenstore (no backend, so netback maps
/// nothing for a child that will never run), and the error names the
/// child, the backend and the reason.
pub fn check_masters(
    env: &mut Env<'_>,
    c: &mut Clone,
    parent: &ParentInfo,
) -> Result<(), CloneError> {
    let mut first: Option<String> = None;
    for v in &parent.vifs {
        let bond = v.bridge.clone().unwrap_or_default();
        let Some(why) = refuse_master(v.bridge.as_deref(), env.net.master_kind(&bond)) else {
            continue;
        };
        let backend = paths::backend_dir(v.backend_id, "vif", c.child(), v.devid);
        let why = format!(
            "vif {} ({backend}): {why}; nothing written for the clone",
            v.devid
        );
        tracing::error!("{}", c.err("vif", StageError::Refused(why.clone())));
        c.vifs.push(VifSlot {
            devid: v.devid,
            ifname: paths::vif_ifname(c.child(), v.handle),
            backend,
            bond,
            state: VifState::Failed(why.clone()),
            deadline: Instant::now(),
            arp: None,
        });
        first.get_or_insert(why);
    }
    match first {
        Some(why) => Err(c.err("vif", StageError::Refused(why))),
        None => Ok(()),
    }
}

/// The clone's slot for parent vif `v`, whose dirs exist: waits for
/// netback's `online` uevent, or fails at once if the parent's master
/// cannot take clones.
pub fn add_slot(env: &mut Env<'_>, c: &mut Clone, v: &ParentVif) {
    let backend = paths::backend_dir(v.backend_id, "vif", c.child(), v.devid);
    let ifname = paths::vif_ifname(c.child(), v.handle);
    let bond = v.bridge.clone().unwrap_or_default();
    let refused = refuse_master(v.bridge.as_deref(), env.net.master_kind(&bond));
    let mut slot = VifSlot {
        devid: v.devid,
        ifname,
        backend,
        bond,
        state: VifState::WaitingOnline,
        deadline: Instant::now() + env.opts.vif_timeout,
        arp: env
            .opts
            .garp
            .then(|| v.ip.as_deref().and_then(crate::netlink::parse_backend_ip))
            .flatten()
            .and_then(|(ip, gw)| gw.map(|gw| (gw, ip))),
    };
    if let Some(why) = refused {
        let e = c.err("vif", StageError::Refused(why.clone()));
        tracing::error!("{e}");
        write_hotplug_error(env.xs, &slot.backend, &why);
        slot.state = VifState::Failed(why);
    } else if c.redelivered() {
        clear_own_stale_error(env.xs, &slot.backend);
        if env.net.exists(&slot.ifname) {
            // Re-delivered entry whose vif already exists: its uevent is gone.
            connect_slot(env, c, &mut slot);
        }
    }
    c.vifs.push(slot);
}

/// A re-delivered entry's vif: an error the previous daemon wrote (its
/// timeout) is removed, so the retried vif waits afresh instead of failing
/// on a stale status. Netback's own errors are kept.
fn clear_own_stale_error(xs: &mut Client, backend: &str) {
    let read = |xs: &mut Client, k: &str| {
        xs.read_opt(TxId::NONE, &paths::join(backend, k))
            .ok()
            .flatten()
    };
    if read(xs, "hotplug-status").as_deref() != Some("error")
        || !read(xs, "hotplug-error").is_some_and(|e| e.starts_with(OWN_ERROR_PREFIX))
    {
        return;
    }
    tracing::info!(
        path = backend,
        "re-delivered entry: removing the previous daemon's vif error"
    );
    for k in ["hotplug-status", "hotplug-error"] {
        if let Err(e) = xs.rm(TxId::NONE, &paths::join(backend, k)) {
            tracing::warn!(path = backend, "cannot remove {k}: {e}");
        }
    }
}

/// How `hotplug-error` messages written by xencloned start.
pub const OWN_ERROR_PREFIX: &str = "xencloned error: ";

/// `hotplug-status=error` + `hotplug-error` (best effort, logged).
pub fn write_hotplug_error(xs: &mut Client, backend: &str, why: &str) {
    let msg = format!("{OWN_ERROR_PREFIX}{why}");
    let r = xs
        .write_str(TxId::NONE, &paths::join(backend, "hotplug-error"), &msg)
        .and_then(|_| xs.write_str(TxId::NONE, &paths::join(backend, "hotplug-status"), "error"));
    if let Err(e) = r {
        tracing::error!(path = backend, "cannot write hotplug-error: {e}");
    }
}

/// Enslaves (if needed) and brings up `ifname` in `bond`.
pub fn enslave(net: &mut dyn NetOps, ifname: &str, bond: &str) -> Result<(), StageError> {
    if net.master_of(ifname).as_deref() != Some(bond) {
        // Bonds refuse slaves that are up: enslave first, then up.
        net.set_master(ifname, bond)?;
    }
    net.set_up(ifname)?;
    Ok(())
}

/// Netback created the vif: enslave, up, `hotplug-status=connected`.
pub fn connect_slot(env: &mut Env<'_>, c: &Clone, slot: &mut VifSlot) {
    let r = enslave(env.net, &slot.ifname, &slot.bond).and_then(|()| {
        env.xs
            .write_str(
                TxId::NONE,
                &paths::join(&slot.backend, "hotplug-status"),
                "connected",
            )
            .map_err(StageError::from)
    });
    match r {
        Ok(()) => {
            tracing::info!(child = c.child(), ifname = %slot.ifname, bond = %slot.bond, "vif connected");
            slot.state = VifState::Connected;
            if let Some((sender, target)) = slot.arp
                && let Err(e) = env.net.send_arp(&slot.ifname, sender, target)
            {
                tracing::warn!(ifname = %slot.ifname, "gratuitous ARP: {e}");
            }
        }
        Err(e) => {
            let e = c.err("vif hotplug", e);
            tracing::error!(path = %slot.backend, "{e}");
            write_hotplug_error(env.xs, &slot.backend, &e.to_string());
            slot.state = VifState::Failed(e.to_string());
        }
    }
}

/// What an `online` uevent (or a late vif found in sysfs) did to a clone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Online {
    /// The clone has no such vif.
    NotOurs,
    /// A waiting vif was connected.
    Connected,
    /// A vif that had failed (timeout, netback's error, an enslave error)
    /// is connected now: late success wins.
    LateConnected,
    /// Nothing changed (already connected, or connecting failed again).
    Unchanged,
}

/// Removes `hotplug-error` (best effort): a vif that came up after all.
fn clear_hotplug_error(xs: &mut Client, backend: &str) {
    let path = paths::join(backend, "hotplug-error");
    match xs.rm(TxId::NONE, &path) {
        Ok(()) => {}
        Err(e) if e.errno() == Some(::xenstore::wire::errno::ENOENT) => {}
        Err(e) => tracing::warn!(path = %path, "cannot clear hotplug-error: {e}"),
    }
}

/// Online uevent for vif `devid` of clone `c` (in flight, or completed as
/// failed and kept for late vifs). A waiting vif is connected; so is one
/// that failed before: enslaved, up, `hotplug-status=connected`, and the
/// `hotplug-error` left by the failure removed.
pub fn on_online(env: &mut Env<'_>, c: &mut Clone, devid: u32) -> Online {
    let Some(i) = c.vifs.iter().position(|v| v.devid == devid) else {
        return Online::NotOurs;
    };
    let late = match &c.vifs[i].state {
        VifState::Connected => return Online::Unchanged,
        VifState::WaitingOnline => false,
        VifState::Failed(why) => {
            tracing::warn!(
                parent = c.parent(),
                child = c.child(),
                ifname = %c.vifs[i].ifname,
                "vif came up after it failed ({why}): connecting it"
            );
            true
        }
    };
    let mut slot = c.vifs[i].clone();
    connect_slot(env, c, &mut slot);
    let connected = slot.state == VifState::Connected;
    if connected && late {
        clear_hotplug_error(env.xs, &slot.backend);
    }
    c.vifs[i] = slot;
    match (connected, late) {
        (true, true) => Online::LateConnected,
        (true, false) => Online::Connected,
        (false, _) => Online::Unchanged,
    }
}

/// The watched `hotplug-status` of vif `devid` changed. If netback wrote
/// `error` while the daemon still waits, the vif fails now with netback's
/// `hotplug-error`. Returns whether the vif changed state.
pub fn on_hotplug_status(env: &mut Env<'_>, c: &mut Clone, devid: u32) -> bool {
    let Some(i) = c.vifs.iter().position(|v| v.devid == devid) else {
        return false;
    };
    if c.vifs[i].state != VifState::WaitingOnline {
        return false;
    }
    let backend = c.vifs[i].backend.clone();
    let status = env
        .xs
        .read_opt(TxId::NONE, &paths::join(&backend, "hotplug-status"))
        .ok()
        .flatten();
    if status.as_deref() != Some("error") {
        return false;
    }
    let why = env
        .xs
        .read_opt(TxId::NONE, &paths::join(&backend, "hotplug-error"))
        .ok()
        .flatten()
        .unwrap_or_else(|| "hotplug-status=error without hotplug-error".into());
    tracing::error!(
        "{}",
        c.err("vif", StageError::Refused(format!("netback: {why}")))
    );
    c.vifs[i].state = VifState::Failed(format!("netback: {why}"));
    true
}

/// A vif whose uevent did not arrive in time: re-check sysfs (lost
/// uevent) and Xenstore, else fail it. Returns whether it was recovered.
pub fn on_timeout(env: &mut Env<'_>, c: &mut Clone, devid: u32) -> bool {
    let Some(i) = c.vifs.iter().position(|v| v.devid == devid) else {
        return false;
    };
    let mut slot = c.vifs[i].clone();
    let status = env
        .xs
        .read_opt(TxId::NONE, &paths::join(&slot.backend, "hotplug-status"))
        .ok()
        .flatten();
    let recovered = if env.net.exists(&slot.ifname) {
        tracing::warn!(child = c.child(), ifname = %slot.ifname, "online uevent lost; vif found in sysfs");
        connect_slot(env, c, &mut slot);
        true
    } else if status.as_deref() == Some("connected") {
        slot.state = VifState::Connected;
        true
    } else if status.as_deref() == Some("error") {
        // Netback (or netback_clone) refused the vif and said why: keep
        // its message.
        let why = env
            .xs
            .read_opt(TxId::NONE, &paths::join(&slot.backend, "hotplug-error"))
            .ok()
            .flatten()
            .unwrap_or_else(|| "hotplug-status=error without hotplug-error".into());
        tracing::error!(
            "{}",
            c.err("vif", StageError::Refused(format!("netback: {why}")))
        );
        slot.state = VifState::Failed(format!("netback: {why}"));
        false
    } else {
        let why = format!(
            "timeout after {:?} waiting for netback's online uevent for {} ({})",
            env.opts.vif_timeout, slot.ifname, slot.backend
        );
        tracing::error!("{}", c.err("vif", StageError::Refused(why.clone())));
        write_hotplug_error(env.xs, &slot.backend, &why);
        slot.state = VifState::Failed(why);
        false
    };
    c.vifs[i] = slot;
    recovered
}

/// A cloned vif nobody is waiting for (daemon restarted, or clone already
/// completed): adopt it if its backend is a clone not yet connected.
/// Returns `true` if it was adopted.
pub fn adopt_orphan(xs: &mut Client, net: &mut dyn NetOps, backend: &str, ifname: &str) -> bool {
    let cloned = xs
        .read_opt(TxId::NONE, &paths::join(backend, "cloned"))
        .ok()
        .flatten();
    let status = xs
        .read_opt(TxId::NONE, &paths::join(backend, "hotplug-status"))
        .ok()
        .flatten();
    // Not yet connected, or failed earlier (a timeout of this or a previous
    // daemon, netback's error): a vif that is online now wins.
    let failed = match status.as_deref() {
        None => false,
        Some("error") => true,
        Some(_) => return false,
    };
    if cloned.as_deref() != Some("true") {
        return false;
    }
    let Some(bond) = xs
        .read_opt(TxId::NONE, &paths::join(backend, "bridge"))
        .ok()
        .flatten()
    else {
        write_hotplug_error(xs, backend, "no 'bridge' in the backend");
        return false;
    };
    if let Some(why) = refuse_master(Some(&bond), net.master_kind(&bond)) {
        write_hotplug_error(xs, backend, &why);
        return false;
    }
    match enslave(net, ifname, &bond).and_then(|()| {
        xs.write_str(
            TxId::NONE,
            &paths::join(backend, "hotplug-status"),
            "connected",
        )
        .map_err(StageError::from)
    }) {
        Ok(()) => {
            if failed {
                clear_hotplug_error(xs, backend);
                tracing::warn!(
                    ifname,
                    bond = %bond,
                    path = backend,
                    "adopted a cloned vif that had failed: its clone is unknown to this daemon, so its child may still be paused (xl unpause it if its other devices are up)"
                );
            } else {
                tracing::info!(ifname, bond = %bond, "adopted cloned vif");
            }
            true
        }
        Err(e) => {
            tracing::error!(path = backend, ifname, "adopting cloned vif: {e}");
            write_hotplug_error(xs, backend, &e.to_string());
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vif_dirs_in_order() {
        let v = ParentVif {
            devid: 1,
            frontend: "/local/domain/3/device/vif/1".into(),
            backend: "/local/domain/0/backend/vif/3/1".into(),
            backend_id: 0,
            handle: 1,
            bridge: Some("bond0".into()),
            mac: None,
            ip: None,
            has_libxl: true,
        };
        let items = vif_items(3, 9, &v);
        let pairs: Vec<(&str, &str)> = items
            .iter()
            .map(|i| (i.src.as_str(), i.dst.as_str()))
            .collect();
        assert_eq!(
            pairs,
            vec![
                (
                    "/local/domain/3/device/vif/1",
                    "/local/domain/9/device/vif/1"
                ),
                (
                    "/local/domain/0/backend/vif/3/1",
                    "/local/domain/0/backend/vif/9/1"
                ),
                ("/libxl/3/device/vif/1", "/libxl/9/device/vif/1"),
            ]
        );
        assert_eq!(
            items.iter().map(|i| i.mark_cloned).collect::<Vec<_>>(),
            vec![false, true, false]
        );
        assert!(items.iter().all(|i| !i.optional), "no exists request");
        let no_libxl = vif_items(
            3,
            9,
            &ParentVif {
                has_libxl: false,
                ..v
            },
        );
        assert_eq!(no_libxl.len(), 2, "no libxl dir in the parent: none cloned");
    }

    #[test]
    fn master_policy() {
        assert_eq!(refuse_master(Some("bond0"), MasterKind::Bond), None);
        let br = refuse_master(Some("br0"), MasterKind::Bridge).expect("refused");
        assert!(br.contains("Linux bridge") && br.contains("MAC"), "{br}");
        assert!(refuse_master(Some("x"), MasterKind::Missing).is_some());
        assert!(refuse_master(None, MasterKind::Bond).is_some());
        assert!(refuse_master(Some("eth0"), MasterKind::Other).is_some());
    }
}
