// SPDX-License-Identifier: GPL-2.0

//! Nephele's Xen: where the module may run, the clone hypercall and `VIRQ_CLONED`, from
//! `kernel::xen`. Only the module users load (`xen_clone_dev`) has this; the test-only module
//! runs on the simulated hypervisor.

use crate::device::Device;
use crate::ffi::RingMem;
use crate::hv::Hypervisor;
use kernel::{
    irq::{self, IrqReturn},
    prelude::*,
    sync::Arc,
    xen::{self, clone, events::VirqRegistration},
};

/// Nephele's Xen, via hypercall 43.
pub(crate) struct XenHv;

impl Hypervisor for XenHv {
    fn enable(&self, ring: &Arc<RingMem>, flags: u64) -> Result {
        clone_op_enable(ring, flags)
    }

    fn disable(&self) -> Result {
        clone::disable()
    }

    fn complete(&self, id: u32) -> Result {
        clone::complete(id)
    }
}

/// Where this kernel runs, as far as cloning is concerned.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum XenEnv {
    /// PV initial domain: the only place the clone ring works.
    PvDom0,
    /// Not running on Xen.
    NotXen,
    /// On Xen, but not a PV guest.
    NotPv,
    /// PV guest but not the initial domain.
    NotDom0,
}

/// Returns the environment the kernel runs in.
pub(crate) fn xen_env() -> XenEnv {
    if !xen::is_domain() {
        XenEnv::NotXen
    } else if !xen::is_pv_domain() {
        XenEnv::NotPv
    } else if !xen::is_initial_domain() {
        XenEnv::NotDom0
    } else {
        XenEnv::PvDom0
    }
}

/// `CLONEOP_enable` for `ring`: the hypervisor maps the ring pages and starts producing.
///
/// The caller must keep `ring` alive (and not free it) until a successful `CLONEOP_disable`;
/// [`RingMem::leak`] exists for when that is impossible.
fn clone_op_enable(ring: &RingMem, flags: u64) -> Result {
    // SAFETY: By the type invariant of `RingMem` the pages are zeroed, page-aligned direct-map
    // memory owned by `ring`, only accessed with volatile accesses; the device keeps `ring` until
    // `CLONEOP_disable` succeeded and leaks it otherwise (`Device` invariant).
    unsafe { clone::enable(ring.as_mut_ptr(), ring.pages(), flags) }
}

/// The `VIRQ_CLONED` handler (hard IRQ): schedules a drain of the ring, in process context.
pub(crate) struct KickDrain(Arc<Device<XenHv>>);

impl irq::Handler for KickDrain {
    fn handle(&self) -> IrqReturn {
        self.0.kick_drain();
        IrqReturn::Handled
    }
}

/// The binding of the global `VIRQ_CLONED` on CPU 0 to [`KickDrain`]; unbound on drop.
pub(crate) type VirqBinding = Pin<KBox<VirqRegistration<KickDrain>>>;

/// Binds `VIRQ_CLONED`; each event schedules a drain of `device`.
///
/// `EEXIST` if it is bound already in this domain (by another process through
/// `/dev/xen/evtchn`, e.g. Nephele's `xencloned`): that binding is left alone.
pub(crate) fn bind_virq(device: &Arc<Device<XenHv>>) -> Result<VirqBinding> {
    KBox::pin_init(
        VirqRegistration::new(
            clone::VIRQ_CLONED,
            c"xen-clone",
            Ok::<_, Error>(KickDrain(device.clone())),
        ),
        GFP_KERNEL,
    )
}
