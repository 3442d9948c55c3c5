// SPDX-License-Identifier: GPL-2.0

//! netback's clone handler API, and all of this module's `unsafe` code.
//!
//! `xen-netback` exports the clone handler API (`include/xen/netback-clone.h`,
//! linux-patches/0003), reached here through the kernel's bindings
//! (linux-patches/0012). The Xen pieces (the xenbus device, Xenstore reads,
//! event-channel status, grant mapping) come from `kernel::xen`. Everything
//! else in the module is safe Rust built on the types below.

use crate::validate::{QueueRings, Value};
use kernel::{
    bindings,
    error::to_result,
    prelude::*,
    xen::{events, xenbus},
};

/// The cloned backend device handed to the clone handler.
///
/// # Invariants
///
/// `dev` is the device netback passed to `attach()` or `detach()`: live and bound to netback for
/// all of `'a`, which never outlives that callback. netback serialises the callbacks of one
/// device (they run from its probe and remove).
pub(crate) struct Backend<'a> {
    dev: &'a xenbus::Device,
}

impl<'a> Backend<'a> {
    /// The backend node, e.g. `backend/vif/5/0`.
    pub(crate) fn nodename(&self) -> &'a CStr {
        self.dev.nodename()
    }

    /// The frontend directory (`frontend` key, read by xenbus before probe).
    pub(crate) fn otherend(&self) -> &'a CStr {
        self.dev.otherend().unwrap_or(c"")
    }

    /// The frontend's domain.
    pub(crate) fn otherend_id(&self) -> u32 {
        u32::from(self.dev.otherend_id())
    }

    /// Creates the vif (not yet announced) with `num_queues` queues to connect.
    pub(crate) fn create(&self, handle: u32, mac: &[u8; 6], num_queues: u32) -> Result {
        // SAFETY: `dev` is being attached (type invariant); `mac` points to 6 bytes (ETH_ALEN)
        // that netback copies before returning.
        to_result(unsafe {
            bindings::xenvif_clone_create(self.dev.as_raw(), handle, mac.as_ptr(), num_queues)
        })
    }

    /// Maps the rings of queue `index` (the next one) and binds its ports.
    pub(crate) fn connect_queue(&self, index: u32, q: &QueueRings) -> Result {
        // SAFETY: `dev` is being attached (type invariant); netback checks that the vif exists
        // and that `index` is the next queue.
        to_result(unsafe {
            bindings::xenvif_clone_connect_queue(
                self.dev.as_raw(),
                index,
                q.tx_ring_ref,
                q.rx_ring_ref,
                q.tx_port,
                q.rx_port,
            )
        })
    }

    /// Connects the control ring.
    pub(crate) fn connect_ctrl(&self, ring_ref: u32, port: u32) -> Result {
        // SAFETY: `dev` is being attached (type invariant).
        to_result(unsafe { bindings::xenvif_clone_connect_ctrl(self.dev.as_raw(), ring_ref, port) })
    }

    /// Makes the next response of every ring notify the guest, and kicks it.
    pub(crate) fn notify(&self) -> Result {
        // SAFETY: `dev` is being attached (type invariant); netback checks that all queues are
        // connected.
        to_result(unsafe { bindings::xenvif_clone_notify(self.dev.as_raw()) })
    }

    /// Carrier on, hotplug-status watch, backend Connected, `online` uevent.
    pub(crate) fn start(&self) -> Result {
        // SAFETY: `dev` is being attached (type invariant).
        to_result(unsafe { bindings::xenvif_clone_start(self.dev.as_raw()) })
    }

    /// Releases the vif and everything connected so far.
    pub(crate) fn destroy(&self) {
        // SAFETY: `dev` is being attached (type invariant); netback accepts a device without
        // vif.
        unsafe { bindings::xenvif_clone_destroy(self.dev.as_raw()) }
    }

    /// Writes `hotplug-error` = `msg`, `hotplug-status` = `error`, and closes.
    pub(crate) fn fail(&self, err: Error, msg: &CStr) {
        // SAFETY: `dev` is being attached (type invariant); `msg` is NUL-terminated and only
        // read during the call.
        unsafe { bindings::xenvif_clone_fail(self.dev.as_raw(), err.to_errno(), msg.as_char_ptr()) }
    }

    /// Maps and unmaps one grant of the frontend.
    pub(crate) fn probe_grant(&self, gref: u32) -> Result {
        self.dev.map_ring(gref)?.unmap()
    }
}

/// netback's limit on queues per vif (its `max_queues` parameter).
pub(crate) fn max_queues() -> u32 {
    // SAFETY: Reads a module parameter of netback, which is loaded (this module links to it).
    unsafe { bindings::xenvif_clone_max_queues() }
}

/// Reads `<dir>/<node>` from Xenstore: `Ok(None)` if it does not exist,
/// `Err(errno)` on any other failure (`-E2BIG` if longer than [`crate::validate::VALUE_MAX`]).
pub(crate) fn xs_read(dir: &CStr, node: &CStr) -> Result<Option<Value>, i32> {
    match xenbus::read(dir, node) {
        Ok(v) => Value::new(&v).map(Some).ok_or(E2BIG.to_errno()),
        Err(e) if e == ENOENT => Ok(None),
        Err(e) => Err(e.to_errno()),
    }
}

/// `EVTCHNOP_status` of a port of domain `domid`: `(EVTCHNSTAT_*, peer domain)`, the peer being
/// `DOMID_INVALID` for states without one.
pub(crate) fn evtchn_status(domid: u32, port: u32) -> Result<(u32, u32), i32> {
    let domid = u16::try_from(domid).map_err(|_| EINVAL.to_errno())?;
    let st = events::channel_status(domid, port).map_err(|e| e.to_errno())?;
    let remote = match st {
        events::ChannelStatus::Unbound { remote }
        | events::ChannelStatus::Interdomain { remote, .. } => u32::from(remote),
        _ => bindings::DOMID_INVALID,
    };
    Ok((st.raw(), remote))
}

/// The registration of this module as netback's clone handler.
///
/// # Invariants
///
/// `handler` is registered with netback for the lifetime of this object; its address is stable
/// (boxed) and it is unregistered on drop, before it is freed.
pub(crate) struct Registration {
    handler: KBox<bindings::xenvif_clone_handler>,
}

// SAFETY: The handler holds a module pointer and two function pointers, which netback uses from
// any thread; this object only registers and unregisters it.
unsafe impl Send for Registration {}
// SAFETY: `Registration` has no `&self` methods.
unsafe impl Sync for Registration {}

impl Registration {
    /// Registers the handler (`-EBUSY` if another one is registered). netback holds a reference
    /// on `module` while an attach runs and while an attached clone exists.
    pub(crate) fn new(module: &'static ThisModule) -> Result<Self> {
        let handler = KBox::new(
            bindings::xenvif_clone_handler {
                owner: module.as_ptr(),
                attach: Some(attach_callback),
                detach: Some(detach_callback),
            },
            GFP_KERNEL,
        )?;
        // SAFETY: `handler` is valid and stays at this address until it is unregistered in
        // `drop`.
        to_result(unsafe { bindings::xenvif_register_clone_handler(&*handler) })?;
        // INVARIANT: Registration succeeded.
        Ok(Registration { handler })
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // SAFETY: Registered (type invariant). netback waits for an RCU grace period, so no
        // probe still uses the handler after this returns; attached clones hold a reference on
        // this module, so it cannot be unloaded while they exist.
        unsafe { bindings::xenvif_unregister_clone_handler(&*self.handler) }
    }
}

/// # Safety
///
/// Called by netback with the live device being probed, for the duration of the call.
unsafe extern "C" fn attach_callback(dev: *mut bindings::xenbus_device) -> c_int {
    if dev.is_null() {
        return EINVAL.to_errno();
    }
    // SAFETY: netback passes the live device being probed, bound to it during this call.
    let dev = unsafe { xenbus::Device::from_raw(dev) };
    // INVARIANT: `be` does not outlive this call.
    let be = Backend { dev };
    match crate::attach(&be) {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

/// # Safety
///
/// Called by netback with the live device being removed, after tearing down an attached clone.
unsafe extern "C" fn detach_callback(dev: *mut bindings::xenbus_device) {
    if dev.is_null() {
        return;
    }
    // SAFETY: netback passes the live device being removed, for the duration of this call.
    let dev = unsafe { xenbus::Device::from_raw(dev) };
    // INVARIANT: `be` does not outlive this call.
    crate::detach(&Backend { dev });
}
