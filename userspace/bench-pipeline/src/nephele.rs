//! The Xenstore requests Nephele's C `xencloned` needs for the benchmark's
//! clone (a parent with console, `/libxl` tree and `vifs` vifs on a bond),
//! derived from `/work/shared/reference/nephele-dom0.md` (§ numbers below).
//! Mode: Nephele's default `XS_CLONE` mode against oxenstored, with
//! `--cache` (the recommended `xencloned --cache -x`, "Sources").
//!
//! | per    | request                                                        | op              | reference                           |
//! |--------|----------------------------------------------------------------|-----------------|-------------------------------------|
//! | clone  | `XS_CLONE` basic `/local/domain/<p>` → `/local/domain/<c>`     | CLONE           | §1 step 5.4; §3.2 writes 1          |
//! | clone  | `XS_CLONE` basic `/libxl/<p>` → `/libxl/<c>`                   | CLONE           | §1 step 5.4; §3.2 writes 1          |
//! | clone  | `XS_INTRODUCE(c, store mfn, parent port, p)`                   | INTRODUCE       | §1 step 5.6; §3.2 writes 2          |
//! | clone  | `XS_CLONE` dev_console frontend `/local/domain/<p>/console`    | CLONE           | §1 step 5.7; §3.2 writes 3          |
//! | clone  | `XS_CLONE` dev_console backend `.../backend/console/<c>/0`     | CLONE           | §1 step 5.7; §3.2 writes 3          |
//! | clone  | `XS_CLONE` dev_console `/libxl/<p>/device/console/0`           | CLONE           | §1 step 5.7; §3.2 writes 3          |
//! | vif    | `XS_CLONE` dev_vif frontend `.../device/vif/<n>`               | CLONE           | §1 step 5.8.3; §3.2 writes 4        |
//! | vif    | `XS_CLONE` dev_vif backend `.../backend/vif/<c>/<i>`           | CLONE           | §1 step 5.8.4; §3.2 writes 4        |
//! | vif    | `XS_CLONE` dev_vif `/libxl/<p>/device/vif/0`                   | CLONE           | §1 step 5.8.5; §3.2 writes 4        |
//! | vif    | uevent thread reads `<XENBUS_PATH>/frontend-id`                | READ            | §1 step 7.4; §3.2 uevent reads      |
//! | vif    | `hotplug-status = connected`                                   | WRITE           | §1 step 7.3; §3.2 writes 5; §5      |
//! | parent | `xs_get_domain_path(p)`                                        | GET_DOMAIN_PATH | §3.2 reads per parent               |
//! | parent | `store/port`, `name`, `skip_cloning`, `console/backend`, `console/backend-id` | READ ×5 | §3.2 reads per parent  |
//! | parent | `/libxl/<p>/type`, `/libxl/<p>/dm-version`                     | READ ×2         | §3.2 reads per parent               |
//! | parent | listing of `/local/domain/<p>/device/vif`                      | DIRECTORY       | §1 step 5.2; §3.2 reads per parent  |
//! | parent | watch `/local/domain/<p>/control/shutdown` (cache)             | WATCH           | §6 `-c`                             |
//! | p. vif | `backend`, `backend-id`, `rx-ring-ref`                         | READ ×3         | §3.2 reads per parent               |
//! | p. vif | at the backend: `script`, `mac`, `ip`, `bridge`                | READ ×4         | §3.2 reads per parent; §5           |
//! | p. vif | `xs_get_domain_path(backend-id)`                               | GET_DOMAIN_PATH | §3.2 reads per parent               |
//!
//! "parent" rows are paid once per parent (cache miss), not per clone.
//! Not counted, because the reference gives no number: the transaction
//! that is open while `XS_CLONE` is sent (§3.1 "even when a transaction is
//! open", §8 "an EAGAIN retry would redo it"), 2 more requests
//! (`TRANSACTION_START`/`_END`) per transaction.

/// Whom a request is paid for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Per {
    /// Every clone.
    Clone,
    /// Every vif of every clone.
    Vif,
    /// Once per parent (description read, cached).
    Parent,
    /// Once per vif of the parent (description read, cached).
    ParentVif,
}

impl Per {
    pub fn name(self) -> &'static str {
        match self {
            Per::Clone => "clone",
            Per::Vif => "vif",
            Per::Parent => "parent",
            Per::ParentVif => "parent_vif",
        }
    }
}

pub struct Row {
    pub per: Per,
    pub op: &'static str,
    pub count: u32,
    pub what: &'static str,
    pub reference: &'static str,
}

const fn row(
    per: Per,
    op: &'static str,
    count: u32,
    what: &'static str,
    reference: &'static str,
) -> Row {
    Row {
        per,
        op,
        count,
        what,
        reference,
    }
}

pub const ROWS: &[Row] = &[
    row(
        Per::Clone,
        "CLONE",
        1,
        "XS_CLONE basic /local/domain/<p> -> /local/domain/<c>",
        "§1 step 5.4; §3.2 writes 1",
    ),
    row(
        Per::Clone,
        "CLONE",
        1,
        "XS_CLONE basic /libxl/<p> -> /libxl/<c>",
        "§1 step 5.4; §3.2 writes 1",
    ),
    row(
        Per::Clone,
        "INTRODUCE",
        1,
        "XS_INTRODUCE <c> <child store mfn> <parent store port> <p>",
        "§1 step 5.6; §3.2 writes 2",
    ),
    row(
        Per::Clone,
        "CLONE",
        1,
        "XS_CLONE dev_console /local/domain/<p>/console -> /local/domain/<c>/console",
        "§1 step 5.7; §3.2 writes 3",
    ),
    row(
        Per::Clone,
        "CLONE",
        1,
        "XS_CLONE dev_console <parent console backend> -> <bdom>/backend/console/<c>/0",
        "§1 step 5.7; §3.2 writes 3",
    ),
    row(
        Per::Clone,
        "CLONE",
        1,
        "XS_CLONE dev_console /libxl/<p>/device/console/0 -> /libxl/<c>/device/console/0",
        "§1 step 5.7; §3.2 writes 3",
    ),
    row(
        Per::Vif,
        "CLONE",
        1,
        "XS_CLONE dev_vif frontend /local/domain/<p>/device/vif/<n> -> /local/domain/<c>/device/vif/<i>",
        "§1 step 5.8.3; §3.2 writes 4",
    ),
    row(
        Per::Vif,
        "CLONE",
        1,
        "XS_CLONE dev_vif backend <parent backend> -> <bdom>/backend/vif/<c>/<i>",
        "§1 step 5.8.4; §3.2 writes 4",
    ),
    row(
        Per::Vif,
        "CLONE",
        1,
        "XS_CLONE dev_vif /libxl/<p>/device/vif/0 -> /libxl/<c>/device/vif/0",
        "§1 step 5.8.5; §3.2 writes 4",
    ),
    row(
        Per::Vif,
        "READ",
        1,
        "uevent thread: read <XENBUS_PATH>/frontend-id (clone looked up by frontend-id)",
        "§1 step 7.4; §3.2 reads in the uevent thread",
    ),
    row(
        Per::Vif,
        "WRITE",
        1,
        "write <bdom>/backend/vif/<c>/<i>/hotplug-status = connected",
        "§1 step 7.3; §3.2 writes 5; §5",
    ),
    row(
        Per::Parent,
        "GET_DOMAIN_PATH",
        1,
        "xs_get_domain_path(<p>)",
        "§3.2 reads per parent",
    ),
    row(
        Per::Parent,
        "READ",
        5,
        "store/port, name, skip_cloning, console/backend, console/backend-id",
        "§3.2 reads per parent",
    ),
    row(
        Per::Parent,
        "READ",
        2,
        "/libxl/<p>/type, /libxl/<p>/dm-version",
        "§3.2 reads per parent",
    ),
    row(
        Per::Parent,
        "DIRECTORY",
        1,
        "listing of /local/domain/<p>/device/vif",
        "§1 step 5.2; §3.2 reads per parent",
    ),
    row(
        Per::Parent,
        "WATCH",
        1,
        "cache: watch /local/domain/<p>/control/shutdown (token dom<p>)",
        "§6 option -c",
    ),
    row(
        Per::ParentVif,
        "READ",
        3,
        "device/vif/<n>/{backend, backend-id, rx-ring-ref}",
        "§3.2 reads per parent",
    ),
    row(
        Per::ParentVif,
        "READ",
        4,
        "<backend>/{script, mac, ip, bridge}",
        "§3.2 reads per parent; §5",
    ),
    row(
        Per::ParentVif,
        "GET_DOMAIN_PATH",
        1,
        "xs_get_domain_path(<backend-id>)",
        "§3.2 reads per parent",
    ),
];

/// What the reference does not let us count.
pub const NOT_COUNTED: &str = "TRANSACTION_START/TRANSACTION_END of the transaction open while XS_CLONE is sent (§3.1, §8): the reference does not say how many per clone; +2 requests per transaction";

/// Requests per clone with `vifs` vifs, the parent already cached.
pub fn per_clone(vifs: u32) -> u32 {
    sum(|p| match p {
        Per::Clone => Some(1),
        Per::Vif => Some(vifs),
        _ => None,
    })
}

/// Requests of the parent-description read (once per parent, cache miss).
pub fn per_parent(vifs: u32) -> u32 {
    sum(|p| match p {
        Per::Parent => Some(1),
        Per::ParentVif => Some(vifs),
        _ => None,
    })
}

fn sum(mult: impl Fn(Per) -> Option<u32>) -> u32 {
    ROWS.iter()
        .filter_map(|r| mult(r.per).map(|m| m * r.count))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts() {
        assert_eq!(per_clone(0), 6);
        assert_eq!(per_clone(1), 11);
        assert_eq!(per_parent(0), 10);
        assert_eq!(per_parent(1), 18);
    }
}
