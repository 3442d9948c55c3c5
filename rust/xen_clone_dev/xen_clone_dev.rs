// SPDX-License-Identifier: GPL-2.0

//! `/dev/xen/clone`: the Nephele clone-notification ring, owned by the kernel.
//!
//! At load the module allocates and zeroes the ring pages and all its bookkeeping, binds
//! `VIRQ_CLONED` (global, CPU 0; refused if another process holds it), issues `CLONEOP_enable`
//! (hypercall 43) with the pages' kernel address, checks the `entries_num` the hypervisor wrote,
//! and drains the ring on every VIRQ into a tracker. One daemon at a time opens the device,
//! `read()`s whole [`abi::XenCloneEntry`] records and completes each one with
//! `XEN_CLONE_IOC_COMPLETE` (see `abi.rs`, the userspace contract). Every refusal to load is one
//! `dmesg` line saying what is wrong and what to do.
//!
//! Unload: while notifications are pending the module holds a reference on itself, so `rmmod`
//! fails with `EBUSY`. At exit (see [`XenCloneModule::drop`] and [`Device::shutdown`]): no more
//! opens or work items; the ring is fenced so that Xen notifies no more children; what is left
//! is drained and completed; `CLONEOP_disable`; then the VIRQ is unbound. The pages are freed
//! only if `CLONEOP_disable` succeeded; otherwise they are leaked (and `dmesg` says so).
//!
//! debugfs (`/sys/kernel/debug/xen_clone/`): `counters`, `state`.
//!
//! Code layout: `nephele` (Nephele's Xen through `kernel::xen`), `file` (the misc device and its
//! file operations through `kernel::miscdevice`), `abi` (`include/uapi/xen/clone.h` through the
//! bindings), `ffi` (the ring memory shared with the hypervisor: the only `unsafe` besides the
//! registration lookup in `file`); `ring` (consumer), `tracker` (ids), `hv` (the
//! [`hv::Hypervisor`] trait) and `device` are safe Rust. The same sources, with the simulated
//! hypervisor of `sim.rs` instead of `nephele`, build the test-only module `xen_clone_sim`
//! (`xen_clone_sim.rs`) and its KUnit suites (`tests.rs`).

use kernel::{prelude::*, sync::Arc};

mod abi;
mod common;
mod device;
mod ffi;
mod file;
#[deny(unsafe_code)]
mod hv;
mod nephele;
#[deny(unsafe_code)]
mod ring;
#[deny(unsafe_code)]
mod tracker;

use common::Debugfs;
use device::Device;
use ffi::RingMem;
use file::Runtime;
use nephele::{VirqBinding, XenEnv, XenHv};

module! {
    type: XenCloneModule,
    name: "xen_clone_dev",
    authors: ["xen-clone developers"],
    description: "Nephele clone-notification ring as /dev/xen/clone (PV Dom0)",
    license: "GPL",
    params: {
        ring_pages: u32 {
            default: 7,
            description: "Ring size in 4 KiB pages, 1..32 (default 7 = 1024 entries, the smallest \
                size holding 1024: a Dom0 'xl clone -b' batch of several hundred children plus \
                clones in flight; children beyond the free space are never notified by Xen, so \
                size generously; 25..32 pages = 4096 entries, the maximum)",
        },
        page_sharing_pool: bool {
            default: false,
            description: "Pass CLONEOP_FLAG_USE_PAGE_SHARING_INFO_POOL (0x1) to CLONEOP_enable \
                (Xen reserves 60% of free heap for page-sharing info, like xencloned -x)",
        },
        orphan_timeout: u32 {
            default: 60,
            description: "Seconds a clone notification may wait with no process holding \
                /dev/xen/clone open before the module completes it itself, so that its parent \
                does not block forever (the child stays paused); 0 = never",
        },
        reject_grace: u32 {
            default: 10,
            description: "Seconds after Xen first refuses a completion with -EINVAL (the id is \
                not in its completion ring yet) during which the completion may be retried \
                (XEN_CLONE_IOC_COMPLETE answers EAGAIN); after that the entry is released \
                (ECANCELED, dmesg line, counter rejected_completions), its child stays paused",
        },
    },
}

struct XenCloneModule {
    debugfs: Option<Debugfs<XenHv>>,
    runtime: Option<Pin<KBox<Runtime<XenHv>>>>,
    virq: Option<VirqBinding>,
    device: Arc<Device<XenHv>>,
}

fn env_refusal(env: XenEnv) -> &'static str {
    match env {
        XenEnv::PvDom0 => "",
        XenEnv::NotXen => "not running on Xen",
        XenEnv::NotPv => "not a Xen PV domain (Nephele's clone ring needs a PV Dom0)",
        XenEnv::NotDom0 => "not the Xen initial domain (Dom0)",
    }
}

impl kernel::Module for XenCloneModule {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let cfg = common::config()?;
        let env = nephele::xen_env();
        if env != XenEnv::PvDom0 {
            pr_err!(
                "{}; /dev/xen/clone needs Nephele's Xen with a PV Dom0\n",
                env_refusal(env)
            );
            return Err(ENODEV);
        }

        // Everything that allocates comes before CLONEOP_enable (Device::new sizes the tracker).
        let ring = Arc::new(RingMem::alloc(cfg.ring_pages)?, GFP_KERNEL)?;
        let device = Device::new(XenHv, ring, cfg)?;

        // Bind before enable, so that no notification is lost.
        let virq = match nephele::bind_virq(&device) {
            Ok(v) => v,
            Err(e) if e == EEXIST => {
                pr_err!("VIRQ_CLONED is bound by another process (e.g. Nephele's xencloned): stop it, then load xen_clone_dev again\n");
                return Err(EBUSY);
            }
            Err(e) => {
                pr_err!("cannot bind VIRQ_CLONED: {:?}\n", e);
                return Err(e);
            }
        };

        // On error the ring is disabled again (or leaked), so dropping the device is safe.
        let enabled = device.enable().map_err(|e| {
            pr_err!("{}\n", e);
            e.to_error()
        })?;
        if enabled.pool_reused {
            pr_warn!("page_sharing_pool=1: Xen kept the page-sharing pool of an earlier enable (CLONEOP_disable does not free it) and refused a second one (-EBUSY); ring enabled without the flag, clones use the existing pool\n");
        }

        let (runtime, debugfs) =
            match common::serve(&device, &cfg, enabled.entries_num, "", |_, _| {}) {
                Ok(served) => served,
                Err(e) => {
                    // The teardown of `Drop`, in the same order: the device is shut down.
                    drop(virq);
                    return Err(e);
                }
            };
        Ok(Self {
            debugfs,
            runtime: Some(runtime),
            virq: Some(virq),
            device,
        })
    }
}

impl Drop for XenCloneModule {
    /// Teardown, in this order (the window issue 12 found between the last drain and the
    /// disable is closed by step 3):
    /// 1. debugfs files go;
    /// 2. the work items are stopped and the misc device is deregistered: no open (none is open:
    ///    each file holds a module reference), no drain or orphan check runs concurrently;
    /// 3. [`Device::shutdown`]: fence the ring (Xen notifies no more children), drain and
    ///    complete everything pending, `CLONEOP_disable`, report anything that still slipped in;
    /// 4. only then unbind `VIRQ_CLONED`: Xen raises it only for entries it adds, and it adds
    ///    none after the disable; until then an event only kicks the (stopped) drain work;
    /// 5. the device, and with it the ring pages, are freed, unless `CLONEOP_disable` failed
    ///    (then the pages are leaked).
    fn drop(&mut self) {
        self.debugfs = None;
        self.runtime = None;
        self.device.shutdown();
        self.virq = None;
    }
}
