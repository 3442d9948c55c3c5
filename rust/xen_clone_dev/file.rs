// SPDX-License-Identifier: GPL-2.0

//! `/dev/xen/clone`: the misc device and its file operations.
//!
//! The file operations are [`MiscDevice`]'s: `open`, `release`, `read_iter`, `poll`, `ioctl`
//! (and `compat_ioctl`: every argument has the same layout for 32-bit userspace) and
//! `show_fdinfo`. Each open file holds an [`Arc`] of the [`Device`] as its private data; the
//! device is found at open through the registration that embeds the misc device.

use crate::device::Device;
use crate::hv::Hypervisor;
use kernel::{
    container_of,
    fs::{File, Kiocb},
    iov::IovIterDest,
    miscdevice::{MiscDevice, MiscDeviceOptions, MiscDeviceRegistration},
    prelude::*,
    seq_file::SeqFile,
    sync::{poll::PollTable, Arc, ArcBorrow},
};

#[vtable]
impl<H: Hypervisor> MiscDevice for Device<H> {
    type Ptr = Arc<Self>;

    fn open(file: &File, misc: &MiscDeviceRegistration<Self>) -> Result<Arc<Self>> {
        // SAFETY: Every `MiscDeviceRegistration<Device<H>>` is the `misc` field of a `Runtime<H>`
        // (the only place one is created, `Runtime::new`), which stays pinned and alive while
        // the misc device is registered, so while it can be opened.
        let runtime =
            unsafe { &*container_of!(core::ptr::from_ref(misc).cast_mut(), Runtime<H>, misc) };
        let device = runtime.device.clone();
        Device::open(&device, file)?;
        Ok(device)
    }

    fn release(device: Arc<Self>, _file: &File) {
        device.release();
    }

    fn read_iter(kiocb: Kiocb<'_, Arc<Self>>, iov: &mut IovIterDest<'_>) -> Result<usize> {
        let nonblock = kiocb.is_nonblocking();
        kiocb.file().read(nonblock, iov)
    }

    fn poll(device: ArcBorrow<'_, Self>, file: &File, table: &PollTable<'_>) -> u32 {
        device.poll(file, table)
    }

    fn ioctl(device: ArcBorrow<'_, Self>, _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        let device: Arc<Self> = device.into();
        device.ioctl(cmd, arg)
    }

    fn show_fdinfo(device: ArcBorrow<'_, Self>, m: &SeqFile, _file: &File) {
        device.show_fdinfo(m);
    }
}

/// The registered `/dev/xen/clone` serving a device, whose work items run meanwhile.
///
/// # Invariants
///
/// `misc` is registered with `device`'s file operations, and `device`'s work items are started,
/// for the lifetime of this object.
#[pin_data(PinnedDrop)]
pub(crate) struct Runtime<H: Hypervisor> {
    device: Arc<Device<H>>,
    #[pin]
    misc: MiscDeviceRegistration<Device<H>>,
}

impl<H: Hypervisor> Runtime<H> {
    /// Starts `device`'s work items and registers `/dev/xen/clone` for it.
    pub(crate) fn new(device: Arc<Device<H>>) -> Result<Pin<KBox<Self>>> {
        device.start_works();
        let served = device.clone();
        let ret = KBox::pin_init(
            try_pin_init!(Self {
                device: served,
                misc <- MiscDeviceRegistration::register(MiscDeviceOptions {
                    name: c"xen/clone",
                }),
            }),
            GFP_KERNEL,
        );
        if ret.is_err() {
            Device::stop_works(&device);
        }
        ret
    }
}

#[pinned_drop]
impl<H: Hypervisor> PinnedDrop for Runtime<H> {
    /// No work item runs or is queued after this; the misc device is deregistered right after
    /// (no file is open: each holds a reference on the module).
    fn drop(self: Pin<&mut Self>) {
        Device::stop_works(&self.device);
    }
}
