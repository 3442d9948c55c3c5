//! Pure Xenstore path building and parsing for domains, devices and clones.
//!
//! Every function here is free of I/O so the layout of §3.2 of the
//! reference (paths read and written per clone) is tested directly.

use crate::wire::CloneOp;

/// `/local/domain/<d>`.
pub fn domain_path(domid: u16) -> String {
    format!("/local/domain/{domid}")
}

/// `/libxl/<d>`.
pub fn libxl_path(domid: u16) -> String {
    format!("/libxl/{domid}")
}

/// Frontend dir `/local/domain/<d>/device/<kind>/<devid>`.
pub fn frontend_dir(domid: u16, kind: &str, devid: u32) -> String {
    format!("/local/domain/{domid}/device/{kind}/{devid}")
}

/// Backend dir `/local/domain/<bdom>/backend/<kind>/<fe>/<devid>`.
pub fn backend_dir(backend_domid: u16, kind: &str, frontend_domid: u16, devid: u32) -> String {
    format!("/local/domain/{backend_domid}/backend/{kind}/{frontend_domid}/{devid}")
}

/// libxl's device dir `/libxl/<d>/device/<kind>/<devid>`.
pub fn libxl_device_dir(domid: u16, kind: &str, devid: u32) -> String {
    format!("/libxl/{domid}/device/{kind}/{devid}")
}

/// Console frontend dir `/local/domain/<d>/console` (the primary PV console).
pub fn console_frontend_dir(domid: u16) -> String {
    format!("/local/domain/{domid}/console")
}

/// Joins `base` and a relative key (`base/rel`).
pub fn join(base: &str, rel: &str) -> String {
    if rel.is_empty() {
        return base.to_string();
    }
    if base.ends_with('/') {
        format!("{base}{rel}")
    } else {
        format!("{base}/{rel}")
    }
}

/// Resolves a path relative to a domain's home, as xenstored does for
/// relative paths (`XENBUS_PATH=backend/vif/18/0` from Dom0).
pub fn resolve(home_domid: u16, path: &str) -> String {
    if path.starts_with('/') || path.starts_with('@') {
        path.to_string()
    } else {
        join(&domain_path(home_domid), path)
    }
}

/// A parsed backend device path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendPath {
    pub backend_domid: u16,
    pub kind: String,
    pub frontend_domid: u16,
    pub devid: u32,
}

/// Parses `/local/domain/<b>/backend/<kind>/<fe>/<devid>` (exactly).
pub fn parse_backend_dir(path: &str) -> Option<BackendPath> {
    let rest = path.strip_prefix("/local/domain/")?;
    let mut it = rest.split('/');
    let backend_domid = it.next()?.parse().ok()?;
    if it.next()? != "backend" {
        return None;
    }
    let kind = it.next()?.to_string();
    let frontend_domid = it.next()?.parse().ok()?;
    let devid = it.next()?.parse().ok()?;
    if it.next().is_some() || kind.is_empty() {
        return None;
    }
    Some(BackendPath {
        backend_domid,
        kind,
        frontend_domid,
        devid,
    })
}

/// Domid and remainder of `/local/domain/<d>[/<rest>]`.
pub fn split_domain_path(path: &str) -> Option<(u16, &str)> {
    let rest = path.strip_prefix("/local/domain/")?;
    let (dom, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    };
    Some((dom.parse().ok()?, tail))
}

/// Netdev name netback gives a vif: `vif<domid>.<handle>`.
pub fn vif_ifname(domid: u16, handle: u32) -> String {
    format!("vif{domid}.{handle}")
}

/// Parses `vif<domid>.<handle>`.
pub fn parse_vif_ifname(name: &str) -> Option<(u16, u32)> {
    let rest = name.strip_prefix("vif")?;
    let (d, h) = rest.split_once('.')?;
    Some((d.parse().ok()?, h.parse().ok()?))
}

/// Name a cloned domain gets: `<name>-child-<child>` (Nephele's rule).
pub fn child_name(parent_name: &str, child: u16) -> String {
    format!("{parent_name}-child-{child}")
}

/// Where a parent node lands under the child root: `dst_root` + the part
/// of `node` below `src_root`. `None` if `node` is not under `src_root`.
pub fn rebase(node: &str, src_root: &str, dst_root: &str) -> Option<String> {
    if node == src_root {
        return Some(dst_root.to_string());
    }
    let rest = node.strip_prefix(src_root)?.strip_prefix('/')?;
    Some(join(dst_root, rest))
}

/// What the clone does with one level-1 node of a cloned tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeRule {
    /// Copy value verbatim.
    Copy,
    /// Write this value instead.
    Replace(String),
    /// Skip the node and its subtree.
    Skip,
}

/// Nephele's per-op rules for the *direct children* of a cloned root
/// (deeper nodes are always copied verbatim).
///
/// - basic: `domid` → child, `name` → `<name>-child-<c>`, skip `device`
///   and `console` (they are cloned per device).
/// - devices: `frontend` → `/local/domain/<c>/<rest>`, `frontend-id` → child,
///   `backend` → `/local/domain/<B>/backend/<type>/<c>/<rest>`.
///
/// Unlike oxenstored (which rewrites any value of that shape), a value is
/// rewritten only if it names the parent domid, and a device's
/// `hotplug-status`/`hotplug-error` are not copied (the child's vif has
/// not been hot-plugged yet).
pub fn level1_rule(op: CloneOp, key: &str, value: &str, parent: u16, child: u16) -> NodeRule {
    match op {
        CloneOp::Basic | CloneOp::Full => match key {
            "domid" if value.trim() == parent.to_string() => NodeRule::Replace(child.to_string()),
            "name" if op == CloneOp::Basic => NodeRule::Replace(child_name(value, child)),
            "device" | "console" if op == CloneOp::Basic => NodeRule::Skip,
            _ => NodeRule::Copy,
        },
        CloneOp::DevConsole | CloneOp::DevVif => match key {
            // The child's hotplug state starts fresh (the daemon writes it).
            "hotplug-status" | "hotplug-error" => NodeRule::Skip,
            "frontend-id" if value.trim() == parent.to_string() => {
                NodeRule::Replace(child.to_string())
            }
            "frontend" => match split_domain_path(value) {
                Some((d, rest)) if d == parent => {
                    NodeRule::Replace(join(&domain_path(child), rest))
                }
                _ => NodeRule::Copy,
            },
            "backend" => match rewrite_backend_value(value, parent, child) {
                Some(v) => NodeRule::Replace(v),
                None => NodeRule::Copy,
            },
            _ => NodeRule::Copy,
        },
    }
}

/// `/local/domain/<B>/backend/<type>/<parent>/<rest>` →
/// `/local/domain/<B>/backend/<type>/<child>/<rest>`.
pub fn rewrite_backend_value(value: &str, parent: u16, child: u16) -> Option<String> {
    let (bdom, rest) = split_domain_path(value)?;
    let rest = rest.strip_prefix("backend/")?;
    let (kind, rest) = rest.split_once('/')?;
    let (fe, tail) = match rest.split_once('/') {
        Some((fe, tail)) => (fe, tail),
        None => (rest, ""),
    };
    if fe.parse::<u16>().ok()? != parent {
        return None;
    }
    let base = format!("/local/domain/{bdom}/backend/{kind}/{child}");
    Some(join(&base, tail))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders() {
        assert_eq!(domain_path(7), "/local/domain/7");
        assert_eq!(libxl_path(7), "/libxl/7");
        assert_eq!(frontend_dir(7, "vif", 1), "/local/domain/7/device/vif/1");
        assert_eq!(
            backend_dir(0, "vif", 7, 1),
            "/local/domain/0/backend/vif/7/1"
        );
        assert_eq!(
            libxl_device_dir(7, "console", 0),
            "/libxl/7/device/console/0"
        );
        assert_eq!(console_frontend_dir(3), "/local/domain/3/console");
        assert_eq!(vif_ifname(18, 0), "vif18.0");
        assert_eq!(child_name("nginx", 9), "nginx-child-9");
    }

    #[test]
    fn join_and_resolve() {
        assert_eq!(join("/a", "b"), "/a/b");
        assert_eq!(join("/a/", "b"), "/a/b");
        assert_eq!(join("/a", ""), "/a");
        assert_eq!(
            resolve(0, "backend/vif/18/0"),
            "/local/domain/0/backend/vif/18/0"
        );
        assert_eq!(resolve(0, "/abs"), "/abs");
        assert_eq!(resolve(0, "@releaseDomain"), "@releaseDomain");
    }

    #[test]
    fn backend_dir_parsing() {
        assert_eq!(
            parse_backend_dir("/local/domain/0/backend/vif/18/2"),
            Some(BackendPath {
                backend_domid: 0,
                kind: "vif".into(),
                frontend_domid: 18,
                devid: 2
            })
        );
        assert_eq!(parse_backend_dir("/local/domain/0/backend/vif/18"), None);
        assert_eq!(
            parse_backend_dir("/local/domain/0/backend/vif/18/2/x"),
            None
        );
        assert_eq!(parse_backend_dir("/local/domain/0/device/vif/18/2"), None);
        assert_eq!(parse_backend_dir("/local/domain/x/backend/vif/18/2"), None);
        assert_eq!(parse_backend_dir("backend/vif/18/2"), None);
    }

    #[test]
    fn domain_path_split_and_ifnames() {
        assert_eq!(
            split_domain_path("/local/domain/4/device/vif/0"),
            Some((4, "device/vif/0"))
        );
        assert_eq!(split_domain_path("/local/domain/4"), Some((4, "")));
        assert_eq!(split_domain_path("/local/domainx/4"), None);
        assert_eq!(split_domain_path("/local/domain/99999"), None);
        assert_eq!(parse_vif_ifname("vif18.0"), Some((18, 0)));
        assert_eq!(parse_vif_ifname("vif18"), None);
        assert_eq!(parse_vif_ifname("eth0"), None);
    }

    #[test]
    fn rebase_nodes() {
        assert_eq!(
            rebase(
                "/local/domain/3/data/x",
                "/local/domain/3",
                "/local/domain/9"
            ),
            Some("/local/domain/9/data/x".into())
        );
        assert_eq!(
            rebase("/local/domain/3", "/local/domain/3", "/local/domain/9"),
            Some("/local/domain/9".into())
        );
        assert_eq!(rebase("/local/domain/30", "/local/domain/3", "/x"), None);
    }

    #[test]
    fn basic_rules() {
        use NodeRule::*;
        assert_eq!(
            level1_rule(CloneOp::Basic, "domid", "3", 3, 9),
            Replace("9".into())
        );
        assert_eq!(level1_rule(CloneOp::Basic, "domid", "4", 3, 9), Copy);
        assert_eq!(
            level1_rule(CloneOp::Basic, "name", "web", 3, 9),
            Replace("web-child-9".into())
        );
        assert_eq!(level1_rule(CloneOp::Basic, "device", "", 3, 9), Skip);
        assert_eq!(level1_rule(CloneOp::Basic, "console", "", 3, 9), Skip);
        assert_eq!(level1_rule(CloneOp::Basic, "vm", "/vm/uuid", 3, 9), Copy);
        assert_eq!(
            level1_rule(CloneOp::Basic, "frontend", "/local/domain/3/x", 3, 9),
            Copy
        );
    }

    #[test]
    fn device_rules() {
        use NodeRule::*;
        let op = CloneOp::DevVif;
        assert_eq!(
            level1_rule(op, "frontend", "/local/domain/3/device/vif/0", 3, 9),
            Replace("/local/domain/9/device/vif/0".into())
        );
        assert_eq!(
            level1_rule(op, "frontend", "/local/domain/4/device/vif/0", 3, 9),
            Copy
        );
        assert_eq!(
            level1_rule(op, "frontend-id", "3", 3, 9),
            Replace("9".into())
        );
        assert_eq!(
            level1_rule(op, "backend", "/local/domain/0/backend/vif/3/0", 3, 9),
            Replace("/local/domain/0/backend/vif/9/0".into())
        );
        assert_eq!(
            level1_rule(
                CloneOp::DevConsole,
                "backend",
                "/local/domain/0/backend/console/3/0",
                3,
                9
            ),
            Replace("/local/domain/0/backend/console/9/0".into())
        );
        assert_eq!(
            level1_rule(op, "backend", "/local/domain/0/backend/vif/5/0", 3, 9),
            Copy
        );
        assert_eq!(level1_rule(op, "mac", "00:16:3e:00:00:01", 3, 9), Copy);
        assert_eq!(level1_rule(op, "name", "x", 3, 9), Copy);
        assert_eq!(level1_rule(op, "hotplug-status", "connected", 3, 9), Skip);
        assert_eq!(level1_rule(op, "hotplug-error", "x", 3, 9), Skip);
        assert_eq!(
            rewrite_backend_value("/local/domain/0/backend/vif/3", 3, 9),
            Some("/local/domain/0/backend/vif/9".into())
        );
        assert_eq!(rewrite_backend_value("garbage", 3, 9), None);
    }
}
