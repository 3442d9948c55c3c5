// SPDX-License-Identifier: GPL-2.0

//! What both modules built from these sources share: the configuration from the module
//! parameters and the debugfs files.

use crate::abi;
use crate::device::{Config, Device};
use crate::file::Runtime;
use crate::hv::Hypervisor;
use kernel::{debugfs, prelude::*, sync::Arc};

/// The configuration given by the module parameters.
pub(crate) fn config() -> Result<Config> {
    let cfg = Config {
        ring_pages: crate::module_parameters::ring_pages.value(),
        enable_flags: if crate::module_parameters::page_sharing_pool.value() {
            abi::XEN_CLONE_ENABLE_PAGE_SHARING_POOL
        } else {
            0
        },
        orphan_timeout_s: crate::module_parameters::orphan_timeout.value(),
        reject_grace_ms: crate::module_parameters::reject_grace
            .value()
            .saturating_mul(1000),
    };
    if !(1..=32).contains(&cfg.ring_pages) {
        pr_err!("ring_pages={} is out of range 1..32\n", cfg.ring_pages);
        return Err(EINVAL);
    }
    Ok(cfg)
}

/// The debugfs directory `/sys/kernel/debug/xen_clone/` of a device: one reference on the
/// device that every file of the directory reads, and the directory, removed (before the
/// reference is dropped) when this is dropped.
pub(crate) type Debugfs<H> = Pin<KBox<debugfs::Scope<Arc<Device<H>>>>>;

/// Creates [`Debugfs`]: `counters` and `state`, then what `more` adds.
fn debugfs<H: Hypervisor>(
    device: &Arc<Device<H>>,
    more: impl for<'data, 'dir> FnOnce(&'data Arc<Device<H>>, &'dir debugfs::ScopedDir<'data, 'dir>),
) -> Result<Debugfs<H>> {
    KBox::pin_init(
        debugfs::Scope::dir(device.clone(), c"xen_clone", move |d, dir| {
            dir.read_callback_file(c"counters", d, &|d: &Arc<Device<H>>, f| d.fmt_counters(f));
            dir.read_callback_file(c"state", d, &|d: &Arc<Device<H>>, f| d.fmt_state(f));
            more(d, dir);
        }),
        GFP_KERNEL,
    )
}

/// `/dev/xen/clone`, registered for a device.
pub(crate) type Registered<H> = Pin<KBox<Runtime<H>>>;

/// What a module serves once `device`'s ring is enabled (`entries_num` entries):
/// `/dev/xen/clone` registered, the debugfs files ([`Debugfs`], with what `more` adds), the ring
/// logged (`what` ends the line), and what the hypervisor produced so far drained. If the
/// registration fails the device is shut down (the first steps of the module's teardown) and
/// the error returned; debugfs is optional.
pub(crate) fn serve<H: Hypervisor>(
    device: &Arc<Device<H>>,
    cfg: &Config,
    entries_num: u64,
    what: &str,
    more: impl for<'data, 'dir> FnOnce(&'data Arc<Device<H>>, &'dir debugfs::ScopedDir<'data, 'dir>),
) -> Result<(Registered<H>, Option<Debugfs<H>>)> {
    let runtime = match Runtime::new(device.clone()) {
        Ok(r) => r,
        Err(e) => {
            pr_err!("cannot register /dev/xen/clone: {:?}\n", e);
            device.shutdown();
            return Err(e);
        }
    };
    let debugfs = debugfs(device, more)
        .inspect_err(|e| pr_warn!("debugfs files unavailable: {:?}\n", e))
        .ok();
    pr_info!(
        "ring of {} page(s), {} entries, flags {:#x}, orphan_timeout {}s{}\n",
        cfg.ring_pages,
        entries_num,
        cfg.enable_flags,
        cfg.orphan_timeout_s,
        what,
    );
    // Anything produced before the device was served.
    device.drain();
    Ok((runtime, debugfs))
}
