// SPDX-License-Identifier: GPL-2.0

//! The hypervisor interface the device needs.
//!
//! The device is generic over it: the module users load runs on Nephele's Xen (`nephele.rs`,
//! `XenHv`); the test-only module `xen_clone_sim` and its KUnit suites run on the simulated
//! hypervisor of `sim.rs`, which is not part of the production module at all.

use crate::ffi::RingMem;
use kernel::{prelude::*, sync::Arc};

/// The clone operations the device issues.
pub(crate) trait Hypervisor: Send + Sync + 'static {
    /// Whether this is a simulation (reported in `XEN_CLONE_IOC_INFO`).
    const SIMULATED: bool = false;

    /// `CLONEOP_enable`: the hypervisor starts producing into `ring`, after writing
    /// `entries_num` and zeroing both indices.
    fn enable(&self, ring: &Arc<RingMem>, flags: u64) -> Result;
    /// `CLONEOP_disable`: the hypervisor stops using the ring. Only after success may its pages
    /// be freed.
    fn disable(&self) -> Result;
    /// `CLONEOP_clone_completion`: entry `id` is done; `EINVAL` if it is not outstanding.
    fn complete(&self, id: u32) -> Result;

    /// Lets parents that are not asleep run their clone hypercall on, as a hypervisor does on
    /// its own; returns how many entries that wrote. Only a simulation needs this.
    fn pump(&self) -> u64 {
        0
    }

    /// Whether a parent is in its clone hypercall with children still to notify (a completion
    /// may let it write more notifications). Only a simulation needs this.
    fn has_backlog(&self) -> bool {
        false
    }
}
