//! `xencloned`: gives cloned Xen domains their Dom0 side.
//!
//! Where things happen:
//! - a clone **enters** from [`source`] (`/dev/xen/clone`, or a simulation);
//! - the [`daemon`] event loop turns each entry into a [`clone::Clone`] via
//!   [`clone::start`]: Xenstore trees ([`clone::xenstore`]), console
//!   ([`clone::console`]), vifs ([`clone::vif`]);
//! - netback's uevents ([`uevent`]) and rtnetlink ([`netlink`]) connect vifs;
//! - **completion** and unpause: [`completion`].
//!
//! Hypervisor access (privcmd, no libxenctrl) is in [`hypervisor`]; the
//! parent description and its cache in [`parent`]; counters in [`stats`];
//! the kernel module's state for `info`/`status` in [`devinfo`]; the
//! parents' source trees for deep copy (watched, never stale) in [`trees`].

pub mod clone;
pub mod completion;
pub mod daemon;
pub mod devinfo;
pub mod hypervisor;
pub mod netlink;
pub mod notify;
pub mod parent;
#[cfg(any(test, feature = "test-support"))]
pub mod sim;
pub mod source;
pub mod stats;
pub mod trees;
pub mod uevent;
