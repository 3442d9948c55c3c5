//! Stage 3: the console — frontend, backend and libxl dirs (its ring page goes with the
//! Xenstore page, in `copy_ring_pages`).

use super::CopyItem;
use crate::hypervisor::StartInfo;
use crate::parent::ParentInfo;
use ::xenstore::{CloneOp, paths};

/// The console dirs to clone (pure). `Err` if the backend path is malformed.
pub fn console_items(
    parent: &ParentInfo,
    child: u16,
    child_si: &StartInfo,
) -> Result<Vec<CopyItem>, String> {
    let p = parent.domid;
    let mut items = vec![CopyItem {
        op: CloneOp::DevConsole,
        src: paths::console_frontend_dir(p),
        dst: paths::console_frontend_dir(child),
        overrides: if child_si.console_mfn != 0 {
            vec![("ring-ref", child_si.console_mfn.to_string())]
        } else {
            vec![]
        },
        mark_cloned: false,
        optional: false,
    }];
    if let Some(b) = &parent.console_backend {
        let dst = paths::rewrite_backend_value(b, p, child)
            .ok_or_else(|| format!("console backend path {b:?} of domain {p} is not /local/domain/<b>/backend/console/{p}/<n>"))?;
        items.push(CopyItem {
            op: CloneOp::DevConsole,
            src: b.clone(),
            dst,
            overrides: vec![],
            mark_cloned: false,
            optional: false,
        });
    }
    // Whether it exists is part of the parent's description: no request.
    if parent.has_libxl_console {
        items.push(CopyItem {
            op: CloneOp::DevConsole,
            src: paths::libxl_device_dir(p, "console", 0),
            dst: paths::libxl_device_dir(child, "console", 0),
            overrides: vec![],
            mark_cloned: false,
            optional: false,
        });
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_trees() {
        let mut p = crate::parent::tests_support::parent(3);
        p.console_backend = Some("/local/domain/0/backend/console/3/0".into());
        let si = StartInfo {
            console_mfn: 77,
            ..Default::default()
        };
        // No libxl console dir in the parent's description: nothing to
        // clone there, and nothing asked of xenstored to find that out.
        assert_eq!(console_items(&p, 9, &si).expect("valid").len(), 2);
        p.has_libxl_console = true;
        let items = console_items(&p, 9, &si).expect("valid");
        assert_eq!(items.len(), 3);
        assert_eq!(
            (items[0].src.as_str(), items[0].dst.as_str()),
            ("/local/domain/3/console", "/local/domain/9/console")
        );
        assert_eq!(items[0].overrides, vec![("ring-ref", "77".to_string())]);
        assert_eq!(items[1].dst, "/local/domain/0/backend/console/9/0");
        assert_eq!(items[2].src, "/libxl/3/device/console/0");
        assert!(
            !items[2].optional,
            "its existence is known: no exists request"
        );
        assert!(
            items
                .iter()
                .all(|i| !i.mark_cloned && i.op == CloneOp::DevConsole)
        );
        p.console_backend = Some("/bogus".into());
        assert!(console_items(&p, 9, &si).is_err());
    }
}
