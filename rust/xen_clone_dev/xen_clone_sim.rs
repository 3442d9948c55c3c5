// SPDX-License-Identifier: GPL-2.0

//! TEST ONLY: `/dev/xen/clone` on a simulated Nephele hypervisor, and the KUnit suites.
//!
//! Built from the sources of `xen_clone_dev` (`--cfg xen_clone_sim`), with the simulated
//! hypervisor of `sim.rs` in place of Nephele's Xen, only in kernels with `CONFIG_KUNIT`, and
//! never installed: it lets the device, `xencloned` and the userspace checks run without
//! Nephele's Xen (plain QEMU, stock Xen). The module users load, `xen_clone_dev`, has none of
//! this code. Its KUnit suites (`tests.rs`) run when it is loaded.
//!
//! debugfs (`/sys/kernel/debug/xen_clone/`): `counters`, `state` as in `xen_clone_dev`, plus
//! `sim_inject` (write `parent child [count]` lines: `count` children `child, child+1, ...` of
//! `parent` are cloned, like one `CLONEOP_clone` batch; a batch of a parent still in its clone
//! hypercall waits until that returned, as a real parent does) and `sim_status` (the simulated
//! hypervisor: completion window, backlog of children blocked on a full ring, completed ids).

use kernel::{debugfs, prelude::*, sync::Arc, uaccess::UserSliceReader};

mod abi;
mod common;
mod device;
mod ffi;
mod file;
#[deny(unsafe_code)]
mod hv;
#[deny(unsafe_code)]
mod ring;
#[deny(unsafe_code)]
mod sim;
mod tests;
#[deny(unsafe_code)]
mod tracker;

use common::Debugfs;
use device::Device;
use ffi::RingMem;
use file::Runtime;
use sim::SimHv;

module! {
    type: XenCloneSim,
    name: "xen_clone_sim",
    authors: ["xen-clone developers"],
    description: "TEST ONLY: /dev/xen/clone on a simulated Nephele hypervisor, KUnit suites",
    license: "GPL",
    params: {
        ring_pages: u32 {
            default: 7,
            description: "Ring size in 4 KiB pages, 1..32",
        },
        page_sharing_pool: bool {
            default: false,
            description: "Pass the page-sharing pool flag to the simulated CLONEOP_enable",
        },
        orphan_timeout: u32 {
            default: 60,
            description: "Seconds without a reader before pending clones are auto-completed; \
                0 = never",
        },
        reject_grace: u32 {
            default: 10,
            description: "Seconds a refused completion may be retried (EAGAIN)",
        },
    },
}

/// The device on the simulated hypervisor.
type SimDevice = Device<Arc<SimHv>>;

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
fn sim_inject(device: &Arc<SimDevice>, r: &mut UserSliceReader) -> Result {
    let sim = device.hv();
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
    device.kick_drain();
    res
}

/// `sim_inject` and `sim_status`.
fn sim_files<'data>(device: &'data Arc<SimDevice>, dir: &debugfs::ScopedDir<'data, '_>) {
    dir.write_only_callback_file(c"sim_inject", device, &sim_inject);
    dir.read_callback_file(c"sim_status", device, &|d: &Arc<SimDevice>, f| {
        d.hv().fmt_status(f)
    });
}

struct XenCloneSim {
    debugfs: Option<Debugfs<Arc<SimHv>>>,
    runtime: Option<Pin<KBox<Runtime<Arc<SimHv>>>>>,
    device: Arc<SimDevice>,
}

impl kernel::Module for XenCloneSim {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let cfg = common::config()?;
        let ring = Arc::new(RingMem::alloc(cfg.ring_pages)?, GFP_KERNEL)?;
        let device = Device::new(SimHv::new(0)?, ring, cfg)?;
        let enabled = device.enable().map_err(|e| {
            pr_err!("{}\n", e);
            e.to_error()
        })?;
        let (runtime, debugfs) = common::serve(
            &device,
            &cfg,
            enabled.entries_num,
            " (SIMULATED hypervisor: test only)",
            sim_files,
        )?;
        Ok(Self {
            debugfs,
            runtime: Some(runtime),
            device,
        })
    }
}

impl Drop for XenCloneSim {
    /// The teardown of `xen_clone_dev` (see there), without a VIRQ.
    fn drop(&mut self) {
        self.debugfs = None;
        self.runtime = None;
        self.device.shutdown();
    }
}
