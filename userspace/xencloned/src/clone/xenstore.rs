//! Stage 2: the domain's own trees (`/local/domain/<c>`, `/libxl/<c>`),
//! the Xenstore interface page and `XS_INTRODUCE`.

use super::{Clone, CloneError, CopyItem, Env};
use crate::hypervisor::StartInfo;
use crate::parent::ParentInfo;
use ::xenstore::{CloneOp, paths};

/// The basic trees to clone for `parent` → `child` (pure).
pub fn basic_items(parent: &ParentInfo, child: u16, child_si: &StartInfo) -> Vec<CopyItem> {
    let p = parent.domid;
    let mut items = vec![CopyItem {
        op: CloneOp::Basic,
        src: paths::domain_path(p),
        dst: paths::domain_path(child),
        // XS_CLONE would keep the parent's (stale) MFN.
        overrides: if child_si.store_mfn != 0 {
            vec![("store/ring-ref", child_si.store_mfn.to_string())]
        } else {
            vec![]
        },
        mark_cloned: false,
        optional: false,
    }];
    if parent.has_libxl {
        items.push(CopyItem {
            op: CloneOp::Basic,
            src: paths::libxl_path(p),
            dst: paths::libxl_path(child),
            overrides: vec![],
            mark_cloned: false,
            // Known to exist: the parent's description says so.
            optional: false,
        });
    }
    items
}

/// Ring indices and pending data of the parent's Xenstore page go to the
/// child before xenstored starts serving it.
pub fn copy_store_page(
    env: &mut Env<'_>,
    c: &Clone,
    parent: &ParentInfo,
    child_si: &StartInfo,
) -> Result<(), CloneError> {
    if parent.start_info.store_mfn != 0 && child_si.store_mfn != 0 {
        env.hv
            .copy_page(
                parent.domid,
                parent.start_info.store_mfn,
                c.child(),
                child_si.store_mfn,
            )
            .map_err(|e| c.err("xenstore page", e))?;
    }
    Ok(())
}

/// Nephele's order: `XS_CLONE` of the basic trees, then `XS_INTRODUCE`.
/// `Ok(false)`: xenstored refused `XS_CLONE` before anything changed; the
/// mode is deep copy now (the caller introduces and deep-copies).
pub fn clone_domain_xs(
    env: &mut Env<'_>,
    c: &mut Clone,
    parent: &ParentInfo,
    child_si: &StartInfo,
) -> Result<bool, CloneError> {
    let items = basic_items(parent, c.child(), child_si);
    if !super::xs_clone_items(env, c, "xenstore basic", &items)? {
        return Ok(false);
    }
    introduce(env, c, parent, child_si)?;
    Ok(true)
}

/// `XS_INTRODUCE` of the child (Nephele's 4th field: the parent).
pub fn introduce(
    env: &mut Env<'_>,
    c: &Clone,
    parent: &ParentInfo,
    child_si: &StartInfo,
) -> Result<(), CloneError> {
    if child_si.store_mfn == 0 {
        tracing::warn!(
            child = c.child(),
            "no Xenstore MFN (no hypervisor access): not introducing"
        );
        return Ok(());
    }
    if c.redelivered() && env.xs.is_domain_introduced(c.child()).unwrap_or(false) {
        return Ok(());
    }
    env.xs
        .introduce(
            c.child(),
            child_si.store_mfn,
            parent.store_port,
            Some(parent.domid),
        )
        .map_err(|e| c.err("introduce", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_trees() {
        let mut p = crate::parent::tests_support::parent(3);
        let si = StartInfo {
            store_mfn: 0x5000,
            ..Default::default()
        };
        let items = basic_items(&p, 9, &si);
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].src, "/local/domain/3");
        assert_eq!(items[0].dst, "/local/domain/9");
        assert_eq!(
            items[0].overrides,
            vec![("store/ring-ref", "20480".to_string())]
        );
        let none = basic_items(&p, 9, &StartInfo::default());
        assert!(none[0].overrides.is_empty(), "no MFN, no fix-up");
        p.has_libxl = true;
        let items = basic_items(&p, 9, &si);
        assert_eq!(items[1].src, "/libxl/3");
        assert_eq!(items[1].dst, "/libxl/9");
        assert!(
            items
                .iter()
                .all(|i| i.op == CloneOp::Basic && !i.mark_cloned)
        );
    }
}
