// SPDX-License-Identifier: GPL-2.0

//! The C boundary of netback_clone, and all of its `unsafe` code.
//!
//! Out-of-tree modules get no bindgen, so the C functions are declared here
//! by hand: the clone handler API that `xen-netback` exports
//! (`include/xen/netback-clone.h`, linux-patches/0003) and the few helpers
//! of `shim.c`. Everything else in the module is safe Rust built on the
//! types below.

use crate::validate::{QueueRings, Value, VALUE_MAX};
use core::{marker::PhantomData, ptr::NonNull};
use kernel::{error::to_result, prelude::*};

/// `struct xenbus_device`, only ever handled by pointer.
#[repr(C)]
pub(crate) struct XenbusDevice {
    _opaque: [u8; 0],
    _not_send_sync_unpin: PhantomData<(*mut u8, core::marker::PhantomPinned)>,
}

extern "C" {
    // shim.c
    fn nbc_register() -> c_int;
    fn nbc_unregister();
    fn nbc_dev_nodename(dev: *const XenbusDevice) -> *const c_char;
    fn nbc_dev_otherend(dev: *const XenbusDevice) -> *const c_char;
    fn nbc_dev_otherend_id(dev: *const XenbusDevice) -> c_int;
    fn nbc_xs_read(
        dir: *const c_char,
        node: *const c_char,
        buf: *mut c_char,
        size: c_uint,
    ) -> c_int;
    fn nbc_evtchn_status(
        domid: c_uint,
        port: c_uint,
        status: *mut c_uint,
        remote: *mut c_uint,
    ) -> c_int;
    fn nbc_probe_grant(dev: *mut XenbusDevice, gref: c_uint) -> c_int;

    // xen-netback, include/xen/netback-clone.h
    fn xenvif_clone_max_queues() -> c_uint;
    fn xenvif_clone_create(
        dev: *mut XenbusDevice,
        handle: c_uint,
        mac: *const u8,
        num_queues: c_uint,
    ) -> c_int;
    fn xenvif_clone_connect_queue(
        dev: *mut XenbusDevice,
        index: c_uint,
        tx_ring_ref: u32,
        rx_ring_ref: u32,
        tx_evtchn: u32,
        rx_evtchn: u32,
    ) -> c_int;
    fn xenvif_clone_connect_ctrl(dev: *mut XenbusDevice, ring_ref: u32, evtchn: u32) -> c_int;
    fn xenvif_clone_notify(dev: *mut XenbusDevice) -> c_int;
    fn xenvif_clone_start(dev: *mut XenbusDevice) -> c_int;
    fn xenvif_clone_destroy(dev: *mut XenbusDevice);
    fn xenvif_clone_fail(dev: *mut XenbusDevice, err: c_int, msg: *const c_char);
}

/// The cloned backend device handed to the clone handler.
///
/// # Invariants
///
/// `dev` points to a live `struct xenbus_device` of the vif backend bus,
/// bound to netback, for all of `'a`: netback guarantees this for the
/// duration of the `attach()` and `detach()` callbacks, and a [`Backend`]
/// never outlives the callback it was created in. netback serialises the
/// callbacks of one device (they run from its probe and remove).
pub(crate) struct Backend<'a> {
    dev: NonNull<XenbusDevice>,
    _lifetime: PhantomData<&'a XenbusDevice>,
}

impl<'a> Backend<'a> {
    /// The backend node, e.g. `backend/vif/5/0`.
    pub(crate) fn nodename(&self) -> &'a CStr {
        // SAFETY: `dev` is live (type invariant); `nodename` is a NUL-terminated string
        // allocated with the device and never changed while it is registered.
        unsafe { CStr::from_char_ptr(nbc_dev_nodename(self.dev.as_ptr())) }
    }

    /// The frontend directory (`frontend` key, read by xenbus before probe).
    pub(crate) fn otherend(&self) -> &'a CStr {
        // SAFETY: `dev` is live (type invariant); xenbus sets `otherend` before it probes
        // and keeps it until the driver is unbound, after `detach()`.
        unsafe { CStr::from_char_ptr(nbc_dev_otherend(self.dev.as_ptr())) }
    }

    /// The frontend's domain.
    pub(crate) fn otherend_id(&self) -> u32 {
        // SAFETY: `dev` is live (type invariant).
        let id = unsafe { nbc_dev_otherend_id(self.dev.as_ptr()) };
        u32::try_from(id).unwrap_or(u32::MAX)
    }

    /// Creates the vif (not yet announced) with `num_queues` queues to connect.
    pub(crate) fn create(&self, handle: u32, mac: &[u8; 6], num_queues: u32) -> Result {
        // SAFETY: `dev` is live and being attached (type invariant); `mac` points to
        // 6 bytes (ETH_ALEN) that netback copies before returning.
        to_result(unsafe {
            xenvif_clone_create(self.dev.as_ptr(), handle, mac.as_ptr(), num_queues)
        })
    }

    /// Maps the rings of queue `index` (the next one) and binds its ports.
    pub(crate) fn connect_queue(&self, index: u32, q: &QueueRings) -> Result {
        // SAFETY: `dev` is live and being attached (type invariant); netback checks
        // that the vif exists and that `index` is the next queue.
        to_result(unsafe {
            xenvif_clone_connect_queue(
                self.dev.as_ptr(),
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
        // SAFETY: `dev` is live and being attached (type invariant).
        to_result(unsafe { xenvif_clone_connect_ctrl(self.dev.as_ptr(), ring_ref, port) })
    }

    /// Makes the next response of every ring notify the guest, and kicks it.
    pub(crate) fn notify(&self) -> Result {
        // SAFETY: `dev` is live and being attached (type invariant); netback checks
        // that all queues are connected.
        to_result(unsafe { xenvif_clone_notify(self.dev.as_ptr()) })
    }

    /// Carrier on, hotplug-status watch, backend Connected, `online` uevent.
    pub(crate) fn start(&self) -> Result {
        // SAFETY: `dev` is live and being attached (type invariant).
        to_result(unsafe { xenvif_clone_start(self.dev.as_ptr()) })
    }

    /// Releases the vif and everything connected so far.
    pub(crate) fn destroy(&self) {
        // SAFETY: `dev` is live and being attached (type invariant); netback accepts
        // a device without vif.
        unsafe { xenvif_clone_destroy(self.dev.as_ptr()) }
    }

    /// Writes `hotplug-error` = `msg`, `hotplug-status` = `error`, and closes.
    pub(crate) fn fail(&self, err: Error, msg: &CStr) {
        // SAFETY: `dev` is live (type invariant); `msg` is NUL-terminated and only
        // read during the call.
        unsafe { xenvif_clone_fail(self.dev.as_ptr(), err.to_errno(), msg.as_char_ptr()) }
    }

    /// Maps and unmaps one grant of the frontend.
    pub(crate) fn probe_grant(&self, gref: u32) -> Result {
        // SAFETY: `dev` is live (type invariant); the mapping is released before return.
        to_result(unsafe { nbc_probe_grant(self.dev.as_ptr(), gref) })
    }
}

/// netback's limit on queues per vif (its `max_queues` parameter).
pub(crate) fn max_queues() -> u32 {
    // SAFETY: reads a module parameter of netback, which is loaded (we link to it).
    unsafe { xenvif_clone_max_queues() }
}

/// Reads `<dir>/<node>` from Xenstore: `Ok(None)` if it does not exist,
/// `Err(errno)` on any other failure (`-E2BIG` if longer than [`VALUE_MAX`]).
pub(crate) fn xs_read(dir: &CStr, node: &CStr) -> Result<Option<Value>, i32> {
    let mut buf = [0u8; VALUE_MAX + 1];
    let size = c_uint::try_from(buf.len()).unwrap_or(0);
    // SAFETY: `dir` and `node` are NUL-terminated; `buf` is writable for `size` bytes.
    let r = unsafe {
        nbc_xs_read(
            dir.as_char_ptr(),
            node.as_char_ptr(),
            buf.as_mut_ptr().cast(),
            size,
        )
    };
    if r == ENOENT.to_errno() {
        return Ok(None);
    }
    let len = usize::try_from(r).map_err(|_| r)?;
    buf.get(..len)
        .and_then(Value::new)
        .map(Some)
        .ok_or(E2BIG.to_errno())
}

/// `EVTCHNOP_status` of a port of domain `domid`: `(EVTCHNSTAT_*, peer domain)`.
pub(crate) fn evtchn_status(domid: u32, port: u32) -> Result<(u32, u32), i32> {
    let mut status: c_uint = 0;
    let mut remote: c_uint = 0;
    // SAFETY: both out-pointers are valid for writes for the duration of the call.
    let r = unsafe { nbc_evtchn_status(domid, port, &mut status, &mut remote) };
    if r < 0 {
        Err(r)
    } else {
        Ok((status, remote))
    }
}

/// The registration of this module as netback's clone handler.
///
/// # Invariants
///
/// While a value exists, `shim.c`'s handler is registered with netback.
pub(crate) struct Registration(());

impl Registration {
    /// Registers the handler (`-EBUSY` if another one is registered).
    pub(crate) fn new() -> Result<Self> {
        // SAFETY: plain call; the handler structure is static in shim.c.
        to_result(unsafe { nbc_register() })?;
        // INVARIANT: registration succeeded.
        Ok(Registration(()))
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // SAFETY: registered (type invariant). netback waits for an RCU grace period,
        // so no probe still uses the handler after this returns; attached clones hold
        // a reference on this module, so it cannot be unloaded while they exist.
        unsafe { nbc_unregister() }
    }
}

/// Called by netback (through shim.c) for each cloned vif backend.
#[no_mangle]
extern "C" fn nbc_rs_attach(dev: *mut XenbusDevice) -> c_int {
    let Some(dev) = NonNull::new(dev) else {
        return EINVAL.to_errno();
    };
    // INVARIANT: netback passes the live device being probed; `be` does not outlive
    // this call.
    let be = Backend {
        dev,
        _lifetime: PhantomData,
    };
    match crate::attach(&be) {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

/// Called by netback (through shim.c) after tearing down an attached clone.
#[no_mangle]
extern "C" fn nbc_rs_detach(dev: *mut XenbusDevice) {
    let Some(dev) = NonNull::new(dev) else {
        return;
    };
    // INVARIANT: netback passes the live device being removed; `be` does not outlive
    // this call.
    let be = Backend {
        dev,
        _lifetime: PhantomData,
    };
    crate::detach(&be);
}
