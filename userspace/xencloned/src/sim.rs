//! Test doubles for the pipeline's seams: a hypervisor with scripted
//! start_info pages (recording page copies and unpauses) and a network
//! with scripted devices (recording enslave/up/release/ARP calls, and
//! refusing to enslave a device that is up, as bonding does).

use crate::hypervisor::{HvError, Hypervisor, StartInfo};
use crate::netlink::{MasterKind, NetError, NetOps};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

#[derive(Default, Debug)]
pub struct HvLog {
    pub start_infos: HashMap<(u16, u64), StartInfo>,
    pub copies: Vec<(u16, u64, u16, u64)>,
    pub unpaused: Vec<u16>,
    pub fail_unpause: bool,
    /// Called after each page copy (source domid, destination domid): lets
    /// a test act at a precise point of the pipeline.
    pub after_copy: Option<CopyHook>,
}

/// See [`HvLog::after_copy`].
pub struct CopyHook(pub Box<dyn FnMut(u16, u16) + Send>);

impl std::fmt::Debug for CopyHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CopyHook")
    }
}

/// Scripted hypervisor.
#[derive(Clone, Default)]
pub struct FakeHypervisor(pub Arc<Mutex<HvLog>>);

impl FakeHypervisor {
    pub fn set_start_info(&self, domid: u16, mfn: u64, si: StartInfo) {
        if let Ok(mut l) = self.0.lock() {
            l.start_infos.insert((domid, mfn), si);
        }
    }
    pub fn unpaused(&self) -> Vec<u16> {
        self.0
            .lock()
            .map(|l| l.unpaused.clone())
            .unwrap_or_default()
    }
    pub fn copies(&self) -> Vec<(u16, u64, u16, u64)> {
        self.0.lock().map(|l| l.copies.clone()).unwrap_or_default()
    }
}

fn bad(domid: u16, mfn: u64) -> HvError {
    HvError::Map {
        domid,
        mfn,
        source: std::io::Error::from_raw_os_error(libc::EFAULT),
    }
}

impl FakeHypervisor {
    /// One page of [`Hypervisor::copy_pages`]: recorded, then the
    /// `after_copy` hook runs.
    fn copy_page(
        &mut self,
        src_dom: u16,
        src_mfn: u64,
        dst_dom: u16,
        dst_mfn: u64,
    ) -> Result<(), HvError> {
        let mut hook = {
            let mut l = self.0.lock().map_err(|_| bad(src_dom, src_mfn))?;
            if src_mfn == 0 || dst_mfn == 0 {
                return Err(bad(dst_dom, dst_mfn));
            }
            l.copies.push((src_dom, src_mfn, dst_dom, dst_mfn));
            l.after_copy.take()
        };
        if let Some(h) = &mut hook {
            (h.0)(src_dom, dst_dom);
        }
        if let (Some(h), Ok(mut l)) = (hook, self.0.lock()) {
            l.after_copy.get_or_insert(h);
        }
        Ok(())
    }
}

impl Hypervisor for FakeHypervisor {
    fn start_info(&mut self, domid: u16, mfn: u64) -> Result<StartInfo, HvError> {
        let l = self.0.lock().map_err(|_| bad(domid, mfn))?;
        l.start_infos
            .get(&(domid, mfn))
            .copied()
            .ok_or_else(|| bad(domid, mfn))
    }
    fn copy_pages(
        &mut self,
        src_dom: u16,
        dst_dom: u16,
        pages: &[(u64, u64)],
    ) -> Result<(), HvError> {
        for (s, d) in pages {
            self.copy_page(src_dom, *s, dst_dom, *d)?;
        }
        Ok(())
    }
    fn unpause(&mut self, domid: u16) -> Result<(), HvError> {
        let mut l = self.0.lock().map_err(|_| bad(domid, 0))?;
        if l.fail_unpause {
            return Err(HvError::DomctlVersion {
                cmd: 4,
                domid,
                version: 0x15,
            });
        }
        l.unpaused.push(domid);
        Ok(())
    }
}

#[derive(Default, Debug)]
pub struct NetLog {
    pub kinds: HashMap<String, MasterKind>,
    /// Existing netdevs and their master.
    pub devs: BTreeMap<String, Option<String>>,
    pub up: Vec<String>,
    pub calls: Vec<String>,
    pub fail_enslave: bool,
}

/// Scripted network.
#[derive(Clone, Default)]
pub struct FakeNet(pub Arc<Mutex<NetLog>>);

impl FakeNet {
    pub fn add_master(&self, name: &str, kind: MasterKind) {
        if let Ok(mut l) = self.0.lock() {
            l.kinds.insert(name.into(), kind);
            l.devs.insert(name.into(), None);
        }
    }
    /// Netback created a netdev.
    pub fn add_dev(&self, name: &str) {
        if let Ok(mut l) = self.0.lock() {
            l.devs.insert(name.into(), None);
        }
    }
    pub fn master(&self, dev: &str) -> Option<String> {
        self.0
            .lock()
            .ok()
            .and_then(|l| l.devs.get(dev).cloned().flatten())
    }
    pub fn calls(&self) -> Vec<String> {
        self.0.lock().map(|l| l.calls.clone()).unwrap_or_default()
    }
}

impl NetOps for FakeNet {
    fn master_kind(&self, name: &str) -> MasterKind {
        self.0
            .lock()
            .ok()
            .and_then(|l| l.kinds.get(name).copied())
            .unwrap_or(MasterKind::Missing)
    }
    fn exists(&self, name: &str) -> bool {
        self.0
            .lock()
            .map(|l| l.devs.contains_key(name))
            .unwrap_or(false)
    }
    fn master_of(&self, dev: &str) -> Option<String> {
        self.master(dev)
    }
    fn set_master(&mut self, dev: &str, master: &str) -> Result<(), NetError> {
        let mut l = self
            .0
            .lock()
            .map_err(|_| NetError::NoDevice { dev: dev.into() })?;
        l.calls.push(format!("master {dev} {master}"));
        if l.fail_enslave {
            return Err(NetError::Netlink {
                op: "enslave",
                dev: dev.into(),
                source: std::io::Error::from_raw_os_error(libc::EPERM),
            });
        }
        if l.up.iter().any(|u| u == dev) {
            // Bonds refuse slaves that are up.
            return Err(NetError::Netlink {
                op: "enslave",
                dev: dev.into(),
                source: std::io::Error::from_raw_os_error(libc::EPERM),
            });
        }
        match l.devs.get_mut(dev) {
            Some(m) => {
                *m = Some(master.into());
                Ok(())
            }
            None => Err(NetError::NoDevice { dev: dev.into() }),
        }
    }
    fn release(&mut self, dev: &str) -> Result<(), NetError> {
        let mut l = self
            .0
            .lock()
            .map_err(|_| NetError::NoDevice { dev: dev.into() })?;
        l.calls.push(format!("nomaster {dev}"));
        match l.devs.get_mut(dev) {
            Some(m) => {
                *m = None;
                Ok(())
            }
            None => Err(NetError::NoDevice { dev: dev.into() }),
        }
    }
    fn send_arp(
        &mut self,
        dev: &str,
        sender_ip: std::net::Ipv4Addr,
        target_ip: std::net::Ipv4Addr,
    ) -> Result<(), NetError> {
        let mut l = self
            .0
            .lock()
            .map_err(|_| NetError::NoDevice { dev: dev.into() })?;
        l.calls.push(format!("arp {dev} {sender_ip} {target_ip}"));
        Ok(())
    }
    fn set_up(&mut self, dev: &str) -> Result<(), NetError> {
        let mut l = self
            .0
            .lock()
            .map_err(|_| NetError::NoDevice { dev: dev.into() })?;
        l.calls.push(format!("up {dev}"));
        if !l.devs.contains_key(dev) {
            return Err(NetError::NoDevice { dev: dev.into() });
        }
        l.up.push(dev.into());
        Ok(())
    }
}

/// For a fake netback: the `(frontend domid, devid)` of the vif backend node
/// a Xenstore watch event under `/local/domain/0/backend/vif` fired for
/// (`.../backend/vif/<d>/<n>` or a key below it).
pub fn vif_backend_of_event(path: &str) -> Option<(u16, u32)> {
    let rest = path.strip_prefix("/local/domain/0/backend/vif/")?;
    let mut parts = rest.split('/');
    let d = parts.next()?.parse().ok()?;
    let n = parts.next()?.parse().ok()?;
    Some((d, n))
}

/// The `online` uevent netback sends for the cloned vif `vif<d>.<n>`.
pub fn cloned_online_uevent(d: u16, n: u32) -> Vec<u8> {
    let devpath = format!("/devices/vif-{d}-{n}");
    let xbp = format!("backend/vif/{d}/{n}");
    let ifname = format!("vif{d}.{n}");
    crate::uevent::encode(
        "online",
        &devpath,
        &[
            ("ACTION", "online"),
            ("DEVPATH", &devpath),
            ("SUBSYSTEM", "xen-backend"),
            ("XENBUS_TYPE", "vif"),
            ("XENBUS_PATH", &xbp),
            ("vif", &ifname),
            ("cloned", "1"),
        ],
    )
}
