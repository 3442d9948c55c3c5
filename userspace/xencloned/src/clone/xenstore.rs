//! Stage 2: the domain's own trees (`/local/domain/<c>`, `/libxl/<c>`),
//! the Xenstore interface page and `XS_INTRODUCE`.

use super::{Clone, CloneError, CopyItem, Env, StageError};
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

/// The trees of a clone in the order their `XS_CLONE`s are sent (pure):
/// the domain's home first (everything else of the child goes below or
/// beside it, and `XS_CLONE` refuses an existing destination), then each
/// vif's frontend and backend (the backend's watch starts netback's
/// attach, the longest part of a clone with vifs, so it starts while the
/// rest is sent; the frontend first: netback's probe checks it exists),
/// then `/libxl/<c>` and the vifs' libxl dirs below it, then the console's
/// dirs. Each with the stage named in errors.
pub fn xs_clone_order(
    parent: &ParentInfo,
    child: u16,
    child_si: &StartInfo,
    io: bool,
) -> Result<Vec<(&'static str, CopyItem)>, String> {
    let basic = basic_items(parent, child, child_si);
    let vifs: Vec<Vec<CopyItem>> = if io {
        parent
            .vifs
            .iter()
            .map(|v| super::vif::vif_items(parent.domid, child, v))
            .collect()
    } else {
        Vec::new()
    };
    let console = if parent.has_console {
        super::console::console_items(parent, child, child_si)?
    } else {
        Vec::new()
    };
    let mut out = Vec::new();
    let mut basic = basic.into_iter();
    out.extend(basic.next().map(|i| ("xenstore basic", i)));
    for v in &vifs {
        out.extend(v.iter().take(2).cloned().map(|i| ("vif", i)));
    }
    out.extend(basic.map(|i| ("xenstore basic", i)));
    for v in &vifs {
        out.extend(v.iter().skip(2).cloned().map(|i| ("vif", i)));
    }
    out.extend(console.into_iter().map(|i| ("console", i)));
    Ok(out)
}

/// What one request of a clone's pipeline was.
enum Step {
    /// `XS_CLONE` of item `i`.
    Clone(usize),
    /// A fix-up written into item `i`'s new tree.
    Override(usize, String),
    Introduce,
}

/// `XS_CLONE` mode: every Xenstore request of a clone — the `XS_CLONE` of
/// each tree ([`xs_clone_order`]), the fix-ups of the stale MFNs, and
/// `XS_INTRODUCE` last — sent at once ([`::xenstore::Client::pipeline`]):
/// one round trip to xenstored instead of one per request. The child is
/// introduced last, once everything of it exists: xenconsoled (woken by
/// `@introduceDomain`) then finds the console in one pass. Every request is
/// sent whatever an earlier one answers; every destination is recorded in
/// `c.xs_dests`, and the first failure is returned (the caller rolls back).
/// The first `XS_CLONE` of the daemon goes alone ([`super::xs_clone_items`]):
/// a xenstored without `XS_CLONE` answers it before anything else is sent.
/// `Ok(false)`: it did; the mode is deep copy now.
pub fn clone_all_xs(
    env: &mut Env<'_>,
    c: &mut Clone,
    parent: &ParentInfo,
    child_si: &StartInfo,
    io: bool,
) -> Result<bool, CloneError> {
    use ::xenstore::{Request, TxId};
    let floor = env.opts.xs_floor;
    let items = xs_clone_order(parent, c.child(), child_si, io && !floor)
        .map_err(|e| c.err("console", StageError::Refused(e)))?;
    let mut first = 0;
    if !env.opts.xs_clone_confirmed && !items.is_empty() {
        let (stage, it) = &items[0];
        if !super::xs_clone_items(env, c, stage, std::slice::from_ref(it))? {
            return Ok(false);
        }
        first = 1;
    }
    let (p, ch, redelivered) = (c.parent(), c.child(), c.redelivered());
    let mut steps: Vec<(Step, Request)> = Vec::new();
    for (i, (stage, it)) in items.iter().enumerate().skip(first) {
        if it.optional
            && !env
                .xs
                .exists(TxId::NONE, &it.src)
                .map_err(|e| c.err(stage, e))?
        {
            continue;
        }
        let r = Request::clone_tree(p, ch, it.op, &it.src, &it.dst).map_err(|e| c.err(stage, e))?;
        steps.push((Step::Clone(i), r));
        if floor {
            continue;
        }
        for (rel, v) in &it.overrides {
            let path = ::xenstore::paths::join(&it.dst, rel);
            let r = Request::write_str(TxId::NONE, &path, v).map_err(|e| c.err(stage, e))?;
            steps.push((Step::Override(i, path), r));
        }
    }
    if child_si.store_mfn == 0 {
        tracing::warn!(
            child = ch,
            "no Xenstore MFN (no hypervisor access): not introducing"
        );
    } else if !(redelivered && env.xs.is_domain_introduced(ch).unwrap_or(false)) {
        steps.push((
            Step::Introduce,
            Request::introduce(ch, child_si.store_mfn, parent.store_port, Some(p)),
        ));
    }
    let mut failure: Option<CloneError> = None;
    // The answer to each item's XS_CLONE (whether it failed with EEXIST).
    let mut eexist = vec![false; items.len()];
    for chunk in steps.chunks(::xenstore::client::PIPELINE_MAX) {
        let reqs: Vec<Request> = chunk.iter().map(|(_, r)| r.clone()).collect();
        let answers = env.xs.pipeline(&reqs).map_err(|e| c.err("xenstore", e))?;
        for ((step, _), r) in chunk.iter().zip(answers) {
            match step {
                Step::Clone(i) => {
                    let (stage, it) = &items[*i];
                    eexist[*i] = r.as_ref().is_err_and(|e| e.is_eexist());
                    c.xs_dests.push(super::XsDest {
                        path: it.dst.clone(),
                        ours: r.is_ok() || (redelivered && eexist[*i]),
                    });
                    match r {
                        Ok(_) => {}
                        Err(e) if e.is_eexist() && redelivered => {
                            tracing::info!(child = ch, path = %it.dst, "already cloned (re-delivered entry)");
                        }
                        Err(e) => {
                            failure.get_or_insert_with(|| c.err(stage, e));
                        }
                    }
                }
                Step::Override(i, path) => {
                    let (stage, _) = &items[*i];
                    match r {
                        // Written below a tree the XS_CLONE did not make
                        // (it failed): the write made the node and its
                        // parents; a rollback removes them.
                        Ok(_)
                            if !eexist[*i]
                                && !c
                                    .xs_dests
                                    .iter()
                                    .any(|d| d.ours && d.path == items[*i].1.dst) =>
                        {
                            c.xs_dests.push(super::XsDest {
                                path: path.clone(),
                                ours: true,
                            });
                        }
                        Ok(_) => {}
                        Err(e) => {
                            failure.get_or_insert_with(|| c.err(stage, e));
                        }
                    }
                }
                Step::Introduce => {
                    if let Err(e) = r {
                        failure.get_or_insert_with(|| c.err("introduce", e));
                    }
                }
            }
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(true),
    }
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
