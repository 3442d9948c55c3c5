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
//! debugfs (`/sys/kernel/debug/xen_clone/`): `counters`, `state`; with `simulate=1` (TEST ONLY)
//! also `sim_inject` (write `parent child [count]` lines: `count` children `child, child+1, ...`
//! of `parent` are cloned, like one `CLONEOP_clone` batch; a batch of a parent still in its clone
//! hypercall waits until that returned, as a real parent does) and `sim_status` (the simulated
//! hypervisor: completion window, backlog of children blocked on a full ring, completed ids).
//!
//! Code layout: `ffi` is the only module with `unsafe` (C shim `shim.c`, ring memory, fops
//! entry points); `ring` (consumer/producer), `tracker` (ids), `hv` (the [`hv::Hypervisor`]
//! trait), `sim` (simulated hypervisor) and `device` are safe Rust.

use kernel::{debugfs, prelude::*, sync::Arc, uaccess::UserSliceReader};

// The userspace ABI, shared verbatim with userspace/xen-clone-abi.
#[allow(dead_code, unreachable_pub)]
#[deny(unsafe_code)]
mod abi {
    include!("abi.rs");
}
#[deny(unsafe_code)]
mod device;
mod ffi;
#[deny(unsafe_code)]
mod hv;
#[deny(unsafe_code)]
mod ring;
#[deny(unsafe_code)]
mod sim;
mod tests;
#[deny(unsafe_code)]
mod tracker;

use device::{Config, Device};
use ffi::{RingMem, VirqBinding, XenEnv};
use hv::{Backend, XenHv};
use sim::SimHv;

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
        simulate: bool {
            default: false,
            description: "TEST ONLY: run against a simulated hypervisor (loads outside Xen; \
                debugfs xen_clone/sim_inject and sim_status). Never on a real Dom0",
        },
    },
}

/// debugfs files; each holds a reference on the device.
struct Debugfs {
    _files: KVec<Pin<KBox<debugfs::File<Arc<Device>>>>>,
    _dir: debugfs::Dir,
}

impl Debugfs {
    fn new(device: &Arc<Device>) -> Result<Self> {
        let dir = debugfs::Dir::new(c"xen_clone");
        let mut files = KVec::new();
        files.push(
            KBox::pin_init(
                dir.read_callback_file(c"counters", device.clone(), &|d: &Arc<Device>, f| {
                    d.fmt_counters(f)
                }),
                GFP_KERNEL,
            )?,
            GFP_KERNEL,
        )?;
        files.push(
            KBox::pin_init(
                dir.read_callback_file(c"state", device.clone(), &|d: &Arc<Device>, f| {
                    d.fmt_state(f)
                }),
                GFP_KERNEL,
            )?,
            GFP_KERNEL,
        )?;
        if device.hv().sim().is_some() {
            files.push(
                KBox::pin_init(
                    dir.write_callback_file(c"sim_inject", device.clone(), &sim_inject),
                    GFP_KERNEL,
                )?,
                GFP_KERNEL,
            )?;
            files.push(
                KBox::pin_init(
                    dir.read_callback_file(c"sim_status", device.clone(), &|d: &Arc<Device>, f| {
                        match d.hv().sim() {
                            Some(s) => s.fmt_status(f),
                            None => Ok(()),
                        }
                    }),
                    GFP_KERNEL,
                )?,
                GFP_KERNEL,
            )?;
        }
        Ok(Self {
            _files: files,
            _dir: dir,
        })
    }
}

/// Parses one `parent child [count]` line.
fn parse_inject(line: &str) -> Result<(u16, u16, u32)> {
    let mut it = line.split_ascii_whitespace();
    let parent = it
        .next()
        .ok_or(EINVAL)?
        .parse::<u16>()
        .map_err(|_| EINVAL)?;
    let child = it
        .next()
        .ok_or(EINVAL)?
        .parse::<u16>()
        .map_err(|_| EINVAL)?;
    let count = match it.next() {
        Some(c) => c.parse::<u32>().map_err(|_| EINVAL)?,
        None => 1,
    };
    if it.next().is_some() || count == 0 || count as usize > sim::BACKLOG_MAX {
        return Err(EINVAL);
    }
    Ok((parent, child, count))
}

/// debugfs `sim_inject`: clone batches, then "raise the VIRQ".
fn sim_inject(device: &Arc<Device>, r: &mut UserSliceReader) -> Result {
    let sim = device.hv().sim().ok_or(ENODEV)?;
    let mut buf = [0u8; 512];
    let len = r.len();
    if len == 0 || len > buf.len() {
        return Err(EINVAL);
    }
    r.read_slice(&mut buf[..len])?;
    let text = core::str::from_utf8(&buf[..len]).map_err(|_| EINVAL)?;
    // Validate every line before injecting any.
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        parse_inject(line)?;
    }
    let mut res = Ok(());
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (parent, child, count) = parse_inject(line)?;
        res = sim.inject(parent, child, count).map(|_| ());
        if res.is_err() {
            break;
        }
    }
    // "Raise VIRQ_CLONED" for whatever was notified, even if a later batch failed.
    ffi::kick_drain();
    res
}

struct XenCloneModule {
    debugfs: Option<Debugfs>,
    runtime: Option<ffi::Runtime>,
    virq: Option<VirqBinding>,
    device: Arc<Device>,
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
        let simulate = module_parameters::simulate.value();
        let cfg = Config {
            ring_pages: module_parameters::ring_pages.value(),
            enable_flags: if module_parameters::page_sharing_pool.value() {
                abi::XEN_CLONE_ENABLE_PAGE_SHARING_POOL
            } else {
                0
            },
            orphan_timeout_s: module_parameters::orphan_timeout.value(),
            reject_grace_ms: module_parameters::reject_grace.value().saturating_mul(1000),
        };
        if !(1..=32).contains(&cfg.ring_pages) {
            pr_err!("ring_pages={} is out of range 1..32\n", cfg.ring_pages);
            return Err(EINVAL);
        }
        if !simulate {
            let env = ffi::xen_env();
            if env != XenEnv::PvDom0 {
                pr_err!(
                    "{}; /dev/xen/clone needs Nephele's Xen with a PV Dom0 (simulate=1 is for tests only)\n",
                    env_refusal(env)
                );
                return Err(ENODEV);
            }
        }

        // Everything that allocates comes before CLONEOP_enable (Device::new sizes the tracker).
        let ring = Arc::new(RingMem::alloc(cfg.ring_pages)?, GFP_KERNEL)?;
        let backend = if simulate {
            Backend::Sim(SimHv::new(0)?)
        } else {
            Backend::Xen(XenHv)
        };
        let device = Device::new(backend, ring, cfg)?;

        // Bind before enable, so that no notification is lost.
        let virq = if simulate {
            None
        } else {
            match VirqBinding::bind() {
                Ok(v) => Some(v),
                Err(e) if e == EEXIST => {
                    pr_err!("VIRQ_CLONED is bound by another process (e.g. Nephele's xencloned): stop it, then load xen_clone_dev again\n");
                    return Err(EBUSY);
                }
                Err(e) => {
                    pr_err!("cannot bind VIRQ_CLONED: {:?}\n", e);
                    return Err(e);
                }
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

        let runtime = match ffi::Runtime::start(device.clone()) {
            Ok(r) => r,
            Err(e) => {
                pr_err!("cannot register /dev/xen/clone: {:?}\n", e);
                // The teardown of `Drop`, in the same order.
                device.shutdown();
                drop(virq);
                return Err(e);
            }
        };
        let debugfs = Debugfs::new(&device)
            .inspect_err(|e| pr_warn!("debugfs files unavailable: {:?}\n", e))
            .ok();

        pr_info!(
            "ring of {} page(s), {} entries, flags {:#x}, orphan_timeout {}s{}\n",
            cfg.ring_pages,
            enabled.entries_num,
            cfg.enable_flags,
            cfg.orphan_timeout_s,
            if simulate {
                " (SIMULATED hypervisor: test only)"
            } else {
                ""
            }
        );
        // Anything produced before the VIRQ was wired to the device.
        device.drain();
        Ok(Self {
            debugfs,
            runtime: Some(runtime),
            virq,
            device,
        })
    }
}

impl Drop for XenCloneModule {
    /// Teardown, in this order (the window issue 12 found between the last drain and the
    /// disable is closed by step 3):
    /// 1. debugfs files go (no more simulated clones from tests);
    /// 2. the misc device is deregistered and the work items are stopped: no open (none is open:
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
