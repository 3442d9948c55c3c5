// SPDX-License-Identifier: GPL-2.0

//! The hypervisor interface the device needs, with the real implementation (Xen, through the
//! C shim) and the choice between it and the simulated one.

use crate::ffi::{self, RingMem};
use crate::sim::SimHv;
use kernel::{prelude::*, sync::Arc};

/// The three clone operations the device issues.
pub(crate) trait Hypervisor {
    /// `CLONEOP_enable`: the hypervisor starts producing into `ring`, after writing
    /// `entries_num` and zeroing both indices.
    fn enable(&self, ring: &Arc<RingMem>, flags: u64) -> Result;
    /// `CLONEOP_disable`: the hypervisor stops using the ring. Only after success may its pages
    /// be freed.
    fn disable(&self) -> Result;
    /// `CLONEOP_clone_completion`: entry `id` is done; `EINVAL` if it is not outstanding.
    fn complete(&self, id: u32) -> Result;
}

/// Nephele's Xen, via hypercall 43.
pub(crate) struct XenHv;

impl Hypervisor for XenHv {
    fn enable(&self, ring: &Arc<RingMem>, flags: u64) -> Result {
        ffi::clone_op_enable(ring, flags)
    }

    fn disable(&self) -> Result {
        ffi::clone_op_disable()
    }

    fn complete(&self, id: u32) -> Result {
        ffi::clone_op_complete(id)
    }
}

/// The hypervisor the device runs against.
pub(crate) enum Backend {
    /// The real one.
    Xen(XenHv),
    /// The test-only simulation (module parameter `simulate`).
    Sim(Arc<SimHv>),
}

impl Backend {
    /// The simulated hypervisor, if that is what runs.
    pub(crate) fn sim(&self) -> Option<&Arc<SimHv>> {
        match self {
            Backend::Xen(_) => None,
            Backend::Sim(s) => Some(s),
        }
    }

    /// Lets the simulated hypervisor's parents that are not asleep run their clone hypercall on
    /// (what Xen does in its hypercall continuations). Returns how many entries it wrote.
    pub(crate) fn pump(&self) -> u64 {
        match self {
            Backend::Xen(_) => 0,
            Backend::Sim(s) => s.pump(),
        }
    }

    /// Whether a parent of the simulated hypervisor is in its clone hypercall (a completion may
    /// let it write more notifications).
    pub(crate) fn has_backlog(&self) -> bool {
        match self {
            Backend::Xen(_) => false,
            Backend::Sim(s) => s.parents_waiting() > 0,
        }
    }
}

impl Hypervisor for Backend {
    fn enable(&self, ring: &Arc<RingMem>, flags: u64) -> Result {
        match self {
            Backend::Xen(x) => x.enable(ring, flags),
            Backend::Sim(s) => s.enable(ring, flags),
        }
    }

    fn disable(&self) -> Result {
        match self {
            Backend::Xen(x) => x.disable(),
            Backend::Sim(s) => s.disable(),
        }
    }

    fn complete(&self, id: u32) -> Result {
        match self {
            Backend::Xen(x) => x.complete(id),
            Backend::Sim(s) => s.complete(id),
        }
    }
}
