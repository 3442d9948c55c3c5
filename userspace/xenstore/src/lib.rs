//! Xenstore for xen-clone: wire protocol ([`wire`]), a synchronous client
//! ([`client`]) with transactions, watches and permissions, the two
//! numbering dialects (upstream and Nephele's `XS_CLONE`), pure path
//! functions ([`paths`]), in-memory subtrees ([`snapshot`]) and a deep copy
//! with clone semantics ([`deepcopy`]).

pub mod client;
pub mod deepcopy;
pub mod error;
pub mod paths;
pub mod perms;
pub mod snapshot;
pub mod testing;
pub mod wire;

pub use client::{Client, Endpoint, TxId};
pub use error::{Error, Result};
pub use perms::{Access, Perm, Perms};
pub use wire::{CloneOp, Dialect, Op, WatchEvent};
