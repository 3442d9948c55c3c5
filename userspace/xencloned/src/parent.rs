//! The parent description (reference §3.2 "Reads, per parent") and its
//! cache (`--cache`): at most 32 parents, LRU, invalidated by Xenstore
//! watches on `/local/domain/<p>/control/shutdown` and `@releaseDomain`.

use crate::hypervisor::{HvError, Hypervisor, StartInfo};
use std::collections::HashMap;
use xenstore::{Client, TxId, paths};

/// One vif of the parent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParentVif {
    /// Device id (the name of the entry under `device/vif`).
    pub devid: u32,
    pub frontend: String,
    pub backend: String,
    pub backend_id: u16,
    /// Backend `handle` (netback names the netdev `vif<d>.<handle>`).
    pub handle: u32,
    pub bridge: Option<String>,
    pub mac: Option<String>,
    pub ip: Option<String>,
    /// `/libxl/<p>/device/vif/<devid>` exists (cloned with the vif).
    pub has_libxl: bool,
}

/// Everything the pipeline needs about a parent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParentInfo {
    pub domid: u16,
    pub name: String,
    pub start_info: StartInfo,
    pub store_port: u32,
    pub has_libxl: bool,
    /// `/libxl/<p>/device/console/0` exists (cloned with the console).
    pub has_libxl_console: bool,
    pub console_backend: Option<String>,
    pub has_console: bool,
    /// `skip_cloning` names `network`: no vif is cloned.
    pub skip_network: bool,
    pub vifs: Vec<ParentVif>,
}

#[derive(Debug, thiserror::Error)]
pub enum ParentError {
    #[error("parent domain {domid}: {source}")]
    Xs {
        domid: u16,
        #[source]
        source: xenstore::Error,
    },
    #[error("parent domain {domid}: missing {path}")]
    Missing { domid: u16, path: String },
    #[error("parent domain {domid}: bad value {value:?} at {path}")]
    Bad {
        domid: u16,
        path: String,
        value: String,
    },
    #[error("parent domain {domid}: start_info: {source}")]
    Hv {
        domid: u16,
        #[source]
        source: HvError,
    },
}

/// Whether `skip_cloning` (`network;9pfs`) names `network`. `9pfs` is
/// Nephele's too, but xen-clone clones no 9pfs device: nothing to skip.
pub fn parse_skip(v: &str) -> bool {
    v.split(';').map(str::trim).any(|t| t == "network")
}

fn req(xs: &mut Client, domid: u16, path: &str) -> Result<String, ParentError> {
    match xs.read_opt(TxId::NONE, path) {
        Ok(Some(v)) => Ok(v),
        Ok(None) => Err(ParentError::Missing {
            domid,
            path: path.into(),
        }),
        Err(source) => Err(ParentError::Xs { domid, source }),
    }
}

fn opt(xs: &mut Client, domid: u16, path: &str) -> Result<Option<String>, ParentError> {
    xs.read_opt(TxId::NONE, path)
        .map_err(|source| ParentError::Xs { domid, source })
}

/// Longest value quoted in an error (a guest can write values of several KiB).
const QUOTE_MAX: usize = 64;

fn quote(v: &str) -> String {
    match v.char_indices().nth(QUOTE_MAX) {
        Some((i, _)) => format!("{}... ({} bytes)", &v[..i], v.len()),
        None => v.to_string(),
    }
}

fn bad(domid: u16, path: &str, v: &str) -> ParentError {
    ParentError::Bad {
        domid,
        path: path.into(),
        value: quote(v),
    }
}

fn num<T: std::str::FromStr>(domid: u16, path: &str, v: &str) -> Result<T, ParentError> {
    v.trim().parse().map_err(|_| bad(domid, path, v))
}

/// A device backend path read from the parent's (guest-writable) frontend: it must be exactly
/// `/local/domain/<backend_id>/backend/<kind>/<parent>/<devid>`, or the parent could make the
/// daemon copy another domain's backend (or any other tree) into its clones.
fn check_backend(
    domid: u16,
    path: &str,
    v: &str,
    kind: &str,
    backend_id: Option<u16>,
) -> Result<(), ParentError> {
    match paths::parse_backend_dir(v) {
        Some(b)
            if b.kind == kind
                && b.frontend_domid == domid
                && backend_id.is_none_or(|id| id == b.backend_domid) =>
        {
            Ok(())
        }
        _ => Err(bad(domid, path, v)),
    }
}

/// Reads the parent description from Xenstore and its start_info.
pub fn read_parent(
    xs: &mut Client,
    hv: &mut dyn Hypervisor,
    domid: u16,
    start_info_mfn: u64,
) -> Result<ParentInfo, ParentError> {
    let home = paths::domain_path(domid);
    let start_info = hv
        .start_info(domid, start_info_mfn)
        .map_err(|source| ParentError::Hv { domid, source })?;
    let port_path = paths::join(&home, "store/port");
    let store_port = num(domid, &port_path, &req(xs, domid, &port_path)?)?;
    let name = opt(xs, domid, &paths::join(&home, "name"))?.unwrap_or_default();
    let skip_network = opt(xs, domid, &paths::join(&home, "skip_cloning"))?
        .as_deref()
        .is_some_and(parse_skip);
    let cbe_path = paths::join(&home, "console/backend");
    let console_backend = opt(xs, domid, &cbe_path)?;
    if let Some(b) = &console_backend {
        check_backend(domid, &cbe_path, b, "console", None)?;
    }
    let has_console = xs
        .exists(TxId::NONE, &paths::console_frontend_dir(domid))
        .map_err(|source| ParentError::Xs { domid, source })?;
    let has_libxl = xs
        .exists(TxId::NONE, &paths::libxl_path(domid))
        .map_err(|source| ParentError::Xs { domid, source })?;
    let has_libxl_console = has_libxl
        && xs
            .exists(TxId::NONE, &paths::libxl_device_dir(domid, "console", 0))
            .map_err(|source| ParentError::Xs { domid, source })?;
    let vif_dir = paths::join(&home, "device/vif");
    let devids = match xs.directory(TxId::NONE, &vif_dir) {
        Ok(d) => d,
        Err(e) if e.is_enoent() => Vec::new(),
        Err(source) => return Err(ParentError::Xs { domid, source }),
    };
    let mut vifs = Vec::new();
    for n in devids {
        let devid: u32 = num(domid, &vif_dir, &n)?;
        let frontend = paths::join(&vif_dir, &n);
        let be_path = paths::join(&frontend, "backend");
        let backend = req(xs, domid, &be_path)?;
        let bid_path = paths::join(&frontend, "backend-id");
        let backend_id = num(domid, &bid_path, &req(xs, domid, &bid_path)?)?;
        check_backend(domid, &be_path, &backend, "vif", Some(backend_id))?;
        let handle = match opt(xs, domid, &paths::join(&backend, "handle"))? {
            Some(h) => num(domid, &paths::join(&backend, "handle"), &h)?,
            None => devid,
        };
        let has_libxl = has_libxl
            && xs
                .exists(TxId::NONE, &paths::libxl_device_dir(domid, "vif", devid))
                .map_err(|source| ParentError::Xs { domid, source })?;
        vifs.push(ParentVif {
            devid,
            handle,
            has_libxl,
            bridge: opt(xs, domid, &paths::join(&backend, "bridge"))?,
            mac: opt(xs, domid, &paths::join(&backend, "mac"))?,
            ip: opt(xs, domid, &paths::join(&backend, "ip"))?,
            frontend,
            backend,
            backend_id,
        });
    }
    vifs.sort_by_key(|v| v.devid);
    Ok(ParentInfo {
        domid,
        name,
        start_info,
        store_port,
        has_libxl,
        has_libxl_console,
        console_backend,
        has_console,
        skip_network,
        vifs,
    })
}

/// Watch token of a cached parent.
pub fn watch_token(domid: u16) -> String {
    format!("dom{domid}")
}

/// Parses a watch token back to a domid.
pub fn token_domid(token: &str) -> Option<u16> {
    token.strip_prefix("dom")?.parse().ok()
}

/// LRU cache of parent descriptions.
#[derive(Default)]
pub struct ParentCache {
    entries: HashMap<u16, (ParentInfo, u64)>,
    tick: u64,
    pub capacity: usize,
}

impl ParentCache {
    pub fn new(capacity: usize) -> ParentCache {
        ParentCache {
            capacity,
            ..Default::default()
        }
    }

    pub fn get(&mut self, domid: u16) -> Option<ParentInfo> {
        self.tick += 1;
        let t = self.tick;
        self.entries.get_mut(&domid).map(|(p, used)| {
            *used = t;
            p.clone()
        })
    }

    /// Inserts; returns the evicted parent's domid (its watch must go).
    pub fn insert(&mut self, p: ParentInfo) -> Option<u16> {
        self.tick += 1;
        let mut evicted = None;
        if !self.entries.contains_key(&p.domid)
            && self.entries.len() >= self.capacity
            && let Some((&old, _)) = self.entries.iter().min_by_key(|(_, (_, used))| *used)
        {
            self.entries.remove(&old);
            evicted = Some(old);
        }
        self.entries.insert(p.domid, (p, self.tick));
        evicted
    }

    pub fn remove(&mut self, domid: u16) -> bool {
        self.entries.remove(&domid).is_some()
    }

    pub fn domids(&self) -> Vec<u16> {
        self.entries.keys().copied().collect()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(d: u16) -> ParentInfo {
        ParentInfo {
            domid: d,
            name: format!("p{d}"),
            start_info: StartInfo::default(),
            store_port: 1,
            has_libxl: false,
            has_libxl_console: false,
            console_backend: None,
            has_console: false,
            skip_network: false,
            vifs: vec![],
        }
    }

    #[test]
    fn skip_tokens() {
        assert!(parse_skip("network;9pfs"));
        assert!(parse_skip("network"));
        assert!(!parse_skip(" 9pfs ; other"));
        assert!(!parse_skip(""));
    }

    #[test]
    fn tokens() {
        assert_eq!(watch_token(12), "dom12");
        assert_eq!(token_domid("dom12"), Some(12));
        assert_eq!(token_domid("release"), None);
    }

    #[test]
    fn lru_eviction() {
        let mut c = ParentCache::new(2);
        assert_eq!(c.insert(p(1)), None);
        assert_eq!(c.insert(p(2)), None);
        assert!(c.get(1).is_some()); // 2 is now least recently used
        assert_eq!(c.insert(p(3)), Some(2));
        assert!(c.get(2).is_none());
        assert_eq!(c.insert(p(3)), None, "re-insert does not evict");
        assert!(c.remove(1));
        assert!(!c.remove(1));
        assert_eq!(c.len(), 1);
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    pub fn parent(d: u16) -> ParentInfo {
        ParentInfo {
            domid: d,
            name: format!("p{d}"),
            start_info: StartInfo::default(),
            store_port: 1,
            has_libxl: false,
            has_libxl_console: false,
            console_backend: None,
            has_console: true,
            skip_network: false,
            vifs: vec![],
        }
    }
}
