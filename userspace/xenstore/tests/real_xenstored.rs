//! Integration tests against Debian's real C xenstored (Xen 4.17), one
//! daemon per test. Skipped (with a printed reason) only when no daemon is
//! installed and `XC_XENSTORED_ROOT` is unset.

use xenstore::client::{PROBE_CLONE_PAYLOAD, ProbeAnswer};
use xenstore::deepcopy::{CopySpec, deep_copy};
use xenstore::testing::Xenstored;
use xenstore::wire::errno;
use xenstore::{Client, CloneOp, Dialect, Op, Perms, TxId};

fn perms(v: &[&str]) -> Perms {
    Perms::parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("valid perms")
}

fn w(c: &mut Client, path: &str, v: &str) {
    c.write_str(TxId::NONE, path, v)
        .unwrap_or_else(|e| panic!("write {path}: {e}"));
}

/// C xenstored 4.17 refuses permissions naming a domain it does not know:
/// introduce the test's domains (the harness's shim fakes their rings).
fn introduce(c: &mut Client, doms: &[u16]) {
    for d in doms {
        c.introduce(*d, 0x1000 + u64::from(*d), 1, None)
            .unwrap_or_else(|e| panic!("introduce {d}: {e}"));
        assert!(c.is_domain_introduced(*d).expect("is introduced"));
    }
}

fn r(c: &mut Client, path: &str) -> String {
    c.read_string(TxId::NONE, path)
        .unwrap_or_else(|e| panic!("read {path}: {e}"))
}

#[test]
fn read_write_directory_rm_and_errors() {
    let Some(xs) = Xenstored::start("read_write_directory_rm_and_errors") else {
        return;
    };
    let mut c = xs.connect();
    w(&mut c, "/t/a", "1");
    w(&mut c, "/t/b", "");
    c.mkdir(TxId::NONE, "/t/dir").expect("mkdir");
    assert_eq!(r(&mut c, "/t/a"), "1");
    assert_eq!(r(&mut c, "/t/b"), "");
    let mut d = c.directory(TxId::NONE, "/t").expect("dir");
    d.sort();
    assert_eq!(d, vec!["a", "b", "dir"]);
    let e = c.read(TxId::NONE, "/t/missing").expect_err("must fail");
    assert!(e.is_enoent(), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("/t/missing") && msg.contains("ENOENT"),
        "{msg}"
    );
    assert_eq!(c.read_opt(TxId::NONE, "/t/missing").expect("ok"), None);
    c.rm(TxId::NONE, "/t").expect("rm");
    assert!(!c.exists(TxId::NONE, "/t/a").expect("exists"));
    assert_eq!(
        c.get_domain_path(5).expect("domain path"),
        "/local/domain/5"
    );
    // Binary values survive.
    c.write(TxId::NONE, "/bin", &[0, 1, 255]).expect("write");
    assert_eq!(c.read(TxId::NONE, "/bin").expect("read"), vec![0, 1, 255]);
}

#[test]
fn permissions_roundtrip() {
    let Some(xs) = Xenstored::start("permissions_roundtrip") else {
        return;
    };
    let mut c = xs.connect();
    introduce(&mut c, &[3, 7]);
    w(&mut c, "/p", "x");
    let p = perms(&["n3", "r0", "b7"]);
    c.set_perms(TxId::NONE, "/p", &p).expect("set perms");
    assert_eq!(c.get_perms(TxId::NONE, "/p").expect("get"), p);
    // A new child inherits its parent's permissions.
    w(&mut c, "/p/q", "y");
    assert_eq!(
        c.get_perms(TxId::NONE, "/p/q").expect("get").owner(),
        Some(3)
    );
}

#[test]
fn transactions_isolate_and_retry_on_eagain() {
    let Some(xs) = Xenstored::start("transactions_isolate_and_retry_on_eagain") else {
        return;
    };
    let mut a = xs.connect();
    let mut b = xs.connect();
    w(&mut a, "/tx/v", "0");
    // Isolation: uncommitted writes are invisible.
    let tx = a.transaction_start().expect("start");
    assert_ne!(tx, TxId::NONE);
    a.write_str(tx, "/tx/v", "1").expect("write in tx");
    assert_eq!(r(&mut b, "/tx/v"), "0");
    // A conflicting write makes the commit fail with EAGAIN.
    w(&mut b, "/tx/v", "2");
    let e = a.transaction_end(tx, true).expect_err("conflict");
    assert!(e.is_eagain(), "{e}");
    assert_eq!(r(&mut b, "/tx/v"), "2");
    // The helper re-runs the closure after a conflict.
    let mut attempts = 0;
    let out = a
        .transaction(4, |c, tx| {
            attempts += 1;
            let v: u32 = c.read_string(tx, "/tx/v")?.parse().unwrap_or(0);
            if attempts == 1 {
                w(&mut b, "/tx/v", "10");
            }
            c.write_str(tx, "/tx/v", &(v + 1).to_string())?;
            Ok(v + 1)
        })
        .expect("transaction");
    assert_eq!(attempts, 2, "first attempt must conflict and be retried");
    assert_eq!(out, 11);
    assert_eq!(r(&mut a, "/tx/v"), "11");
    // Abort discards.
    let tx = a.transaction_start().expect("start");
    a.write_str(tx, "/tx/gone", "x").expect("write");
    a.transaction_end(tx, false).expect("abort");
    assert!(!a.exists(TxId::NONE, "/tx/gone").expect("exists"));
}

#[test]
fn watches_deliver_events_and_stop_after_unwatch() {
    let Some(xs) = Xenstored::start("watches_deliver_events_and_stop_after_unwatch") else {
        return;
    };
    let mut watcher = xs.connect();
    let mut writer = xs.connect();
    w(&mut writer, "/w", "");
    watcher.watch("/w", "tok1").expect("watch");
    // xenstored fires every new watch once.
    let first = watcher.wait_event().expect("initial event");
    assert_eq!((first.path.as_str(), first.token.as_str()), ("/w", "tok1"));
    w(&mut writer, "/w/x/y", "1");
    let ev = watcher.wait_event().expect("event");
    assert_eq!(ev.token, "tok1");
    assert_eq!(ev.path, "/w/x/y");
    // Events interleaved with a request are queued, not lost.
    w(&mut writer, "/w/z", "1");
    std::thread::sleep(std::time::Duration::from_millis(50));
    let _ = watcher.read_string(TxId::NONE, "/w/z").expect("read");
    let queued = watcher.take_events();
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert_eq!(queued[0].path, "/w/z");
    watcher.unwatch("/w", "tok1").expect("unwatch");
    w(&mut writer, "/w/after", "1");
    let _ = watcher.read_string(TxId::NONE, "/w").expect("read");
    assert!(watcher.take_events().is_empty());
    // Special path.
    watcher
        .watch("@releaseDomain", "rel")
        .expect("watch special");
    let ev = watcher.wait_event().expect("initial");
    assert_eq!(ev.path, "@releaseDomain");
}

fn build_parent(c: &mut Client) {
    introduce(c, &[3, 9]);
    let p = "/local/domain/3";
    for (k, v) in [
        ("", ""),
        ("name", "web"),
        ("domid", "3"),
        ("vm", "/vm/abc"),
        ("store/port", "1"),
        ("store/ring-ref", "4660"),
        ("data/x", "1"),
        ("control/shutdown", ""),
        ("device/vif/0/mac", "00:16:3e:00:00:01"),
        ("console/ring-ref", "99"),
    ] {
        w(c, &xenstore::paths::join(p, k), v);
    }
    c.set_perms(TxId::NONE, p, &perms(&["n0", "r3"]))
        .expect("perms");
    c.set_perms(TxId::NONE, "/local/domain/3/data", &perms(&["b3"]))
        .expect("perms");
    c.set_perms(TxId::NONE, "/local/domain/3/data/x", &perms(&["n3", "r0"]))
        .expect("perms");
    let b = "/local/domain/0/backend/vif/3/0";
    for (k, v) in [
        ("frontend", "/local/domain/3/device/vif/0"),
        ("frontend-id", "3"),
        ("state", "4"),
        ("handle", "0"),
        ("feature-sg", "1"),
        ("bridge", "bond0"),
    ] {
        w(c, &xenstore::paths::join(b, k), v);
    }
    c.set_perms(TxId::NONE, b, &perms(&["n0", "r3"]))
        .expect("perms");
}

#[test]
fn deep_copy_basic_rewrites_values_and_permissions() {
    let Some(xs) = Xenstored::start("deep_copy_basic_rewrites_values_and_permissions") else {
        return;
    };
    let mut c = xs.connect();
    build_parent(&mut c);
    let overrides = [("store/ring-ref", "5000".to_string())];
    let n = c
        .transaction(4, |c, tx| {
            deep_copy(
                c,
                tx,
                &CopySpec {
                    op: CloneOp::Basic,
                    parent: 3,
                    child: 9,
                    src: "/local/domain/3",
                    dst: "/local/domain/9",
                    overrides: &overrides,
                    mark_cloned: false,
                },
            )
        })
        .expect("deep copy");
    assert!(n >= 8, "copied {n} nodes");
    assert_eq!(r(&mut c, "/local/domain/9/name"), "web-child-9");
    assert_eq!(r(&mut c, "/local/domain/9/domid"), "9");
    assert_eq!(r(&mut c, "/local/domain/9/vm"), "/vm/abc");
    assert_eq!(r(&mut c, "/local/domain/9/store/ring-ref"), "5000");
    assert_eq!(r(&mut c, "/local/domain/9/data/x"), "1");
    assert!(
        !c.exists(TxId::NONE, "/local/domain/9/device")
            .expect("exists")
    );
    assert!(
        !c.exists(TxId::NONE, "/local/domain/9/console")
            .expect("exists")
    );
    assert!(
        !c.exists(TxId::NONE, "/local/domain/9/cloned")
            .expect("exists")
    );
    let root = c.get_perms(TxId::NONE, "/local/domain/9").expect("perms");
    assert_eq!(root.to_strings(), vec!["n0", "r9"]);
    let data = c
        .get_perms(TxId::NONE, "/local/domain/9/data")
        .expect("perms");
    assert_eq!(data.to_strings(), vec!["b9"]);
    let x = c
        .get_perms(TxId::NONE, "/local/domain/9/data/x")
        .expect("perms");
    assert_eq!(x.to_strings(), vec!["n9", "r0"]);
    // The parent is untouched.
    assert_eq!(r(&mut c, "/local/domain/3/name"), "web");
    // Second copy: EEXIST, as XS_CLONE.
    let e = c
        .transaction(4, |c, tx| {
            deep_copy(
                c,
                tx,
                &CopySpec {
                    op: CloneOp::Basic,
                    parent: 3,
                    child: 9,
                    src: "/local/domain/3",
                    dst: "/local/domain/9",
                    overrides: &[],
                    mark_cloned: false,
                },
            )
        })
        .expect_err("exists");
    assert!(e.is_eexist(), "{e}");
    // Missing source: ENOENT naming the source path.
    let e = c
        .transaction(4, |c, tx| {
            deep_copy(
                c,
                tx,
                &CopySpec {
                    op: CloneOp::Basic,
                    parent: 4,
                    child: 10,
                    src: "/local/domain/4",
                    dst: "/local/domain/10",
                    overrides: &[],
                    mark_cloned: false,
                },
            )
        })
        .expect_err("missing");
    assert!(
        e.is_enoent() && e.to_string().contains("/local/domain/4"),
        "{e}"
    );
    assert!(!c.exists(TxId::NONE, "/local/domain/10").expect("exists"));
}

/// A deep copy's writes and permissions go to xenstored in one pipeline:
/// one round trip for the existence probe of the destination and one for
/// every `PIPELINE_MAX` requests, however many nodes, and the copy is
/// exact.
#[test]
fn deep_copy_sends_its_writes_in_one_round_trip() {
    let Some(xs) = Xenstored::start("deep_copy_sends_its_writes_in_one_round_trip") else {
        return;
    };
    let mut c = xs.connect();
    build_parent(&mut c);
    let src = xenstore::snapshot::read_tree(&mut c, TxId::NONE, "/local/domain/3")
        .expect("read")
        .expect("parent exists");
    let before = (c.round_trips(), served(&xs));
    let tx = c.transaction_start().expect("tx");
    let mut batch = xenstore::deepcopy::Batch::new();
    let spec = CopySpec {
        op: CloneOp::Basic,
        parent: 3,
        child: 9,
        src: "/local/domain/3",
        dst: "/local/domain/9",
        overrides: &[],
        mark_cloned: false,
    };
    let nodes = batch
        .copy(&mut c, tx, &spec, &src, xenstore::deepcopy::Existing::Fail)
        .expect("copy")
        .expect("made");
    let trips = c.round_trips() - before.0;
    c.transaction_end(tx, true).expect("commit");
    // Less the transaction's start and end, and the existence probe.
    let steps = served(&xs) - before.1 - 3;
    assert!(nodes >= 8, "copied {nodes} nodes");
    assert!(
        steps >= nodes / 2,
        "{steps} writes and permissions for {nodes} nodes"
    );
    let pipelines = steps.div_ceil(xenstore::client::PIPELINE_MAX) as u64;
    // The transaction's start, the probe, the pipelines.
    assert_eq!(
        trips,
        2 + pipelines,
        "{steps} requests in {trips} round trips"
    );
    assert_eq!(r(&mut c, "/local/domain/9/data/x"), "1");
    let x = c
        .get_perms(TxId::NONE, "/local/domain/9/data/x")
        .expect("perms");
    assert_eq!(x.to_strings(), vec!["n9", "r0"]);
}

#[test]
fn deep_copy_vif_backend_marks_clone_in_one_transaction() {
    let Some(xs) = Xenstored::start("deep_copy_vif_backend_marks_clone_in_one_transaction") else {
        return;
    };
    let mut c = xs.connect();
    let mut watcher = xs.connect();
    build_parent(&mut c);
    watcher
        .watch("/local/domain/0/backend/vif/9", "be")
        .expect("watch");
    let _initial = watcher.wait_event().expect("initial");
    let spec_fe = CopySpec {
        op: CloneOp::DevVif,
        parent: 3,
        child: 9,
        src: "/local/domain/3/device/vif/0",
        dst: "/local/domain/9/device/vif/0",
        overrides: &[],
        mark_cloned: false,
    };
    let spec_be = CopySpec {
        op: CloneOp::DevVif,
        parent: 3,
        child: 9,
        src: "/local/domain/0/backend/vif/3/0",
        dst: "/local/domain/0/backend/vif/9/0",
        overrides: &[],
        mark_cloned: true,
    };
    c.transaction(4, |c, tx| {
        deep_copy(c, tx, &spec_fe)?;
        // Nothing is visible before the commit.
        let mut other = Client::connect(c.endpoint(), Dialect::Upstream)?;
        assert!(!other.exists(TxId::NONE, "/local/domain/9/device/vif/0")?);
        deep_copy(c, tx, &spec_be)
    })
    .expect("copy");
    let be = "/local/domain/0/backend/vif/9/0";
    assert_eq!(
        r(&mut c, &format!("{be}/frontend")),
        "/local/domain/9/device/vif/0"
    );
    assert_eq!(r(&mut c, &format!("{be}/frontend-id")), "9");
    assert_eq!(r(&mut c, &format!("{be}/state")), "4");
    assert_eq!(r(&mut c, &format!("{be}/cloned")), "true");
    assert_eq!(r(&mut c, &format!("{be}/bridge")), "bond0");
    assert_eq!(
        c.get_perms(TxId::NONE, be).expect("perms").to_strings(),
        vec!["n0", "r9"]
    );
    assert_eq!(
        c.get_perms(TxId::NONE, &format!("{be}/cloned"))
            .expect("perms")
            .to_strings(),
        vec!["n0", "r9"]
    );
    assert_eq!(
        r(&mut c, "/local/domain/9/device/vif/0/mac"),
        "00:16:3e:00:00:01"
    );
    let ev = watcher.wait_event().expect("backend watch fired");
    assert!(
        ev.path.starts_with("/local/domain/0/backend/vif/9"),
        "{ev:?}"
    );
}

#[test]
fn dialect_detection_and_xs_clone_fallback_on_upstream_daemon() {
    let Some(xs) = Xenstored::start("dialect_detection_and_xs_clone_fallback_on_upstream_daemon")
    else {
        return;
    };
    let mut c = xs.connect();
    build_parent(&mut c);
    assert_eq!(c.detect_dialect().expect("probe"), Dialect::Upstream);
    // The connection is still usable after the probe.
    assert_eq!(r(&mut c, "/local/domain/3/name"), "web");
    // Upstream dialect has no XS_CLONE at all.
    let e = c
        .clone_tree(3, 9, CloneOp::Basic, "/local/domain/3", "/local/domain/9")
        .expect_err("unsupported");
    assert!(
        matches!(e, xenstore::Error::Unsupported { op: Op::Clone, .. }),
        "{e}"
    );
    // Forcing the Nephele dialect: the upstream daemon reads 22 as
    // DIRECTORY_PART and rejects the 5-field payload with an error reply,
    // which is what the daemon's fallback to deep copy keys on.
    c.set_dialect(Dialect::Nephele);
    let e = c
        .clone_tree(3, 9, CloneOp::Basic, "/local/domain/3", "/local/domain/9")
        .expect_err("upstream daemon must refuse");
    let errno = e.errno().expect("an XS_ERROR reply, not an I/O error");
    assert!(
        errno == errno::EINVAL || errno == errno::ENOENT || errno == errno::ENOSYS,
        "{e}"
    );
    c.set_dialect(Dialect::Upstream);
    assert!(!c.exists(TxId::NONE, "/local/domain/9").expect("exists"));
    assert_eq!(r(&mut c, "/local/domain/3/domid"), "3");
}

/// Every node of the store: (path, value, permissions), sorted.
fn dump(c: &mut Client) -> Vec<(String, Vec<u8>, Vec<String>)> {
    fn walk(c: &mut Client, path: &str, out: &mut Vec<(String, Vec<u8>, Vec<String>)>) {
        let v = c.read(TxId::NONE, path).unwrap_or_else(|e| panic!("{e}"));
        let p = c
            .get_perms(TxId::NONE, path)
            .unwrap_or_else(|e| panic!("{e}"))
            .to_strings();
        out.push((path.to_string(), v, p));
        for n in c
            .directory(TxId::NONE, path)
            .unwrap_or_else(|e| panic!("{e}"))
        {
            let child = if path == "/" {
                format!("/{n}")
            } else {
                format!("{path}/{n}")
            };
            walk(c, &child, out);
        }
    }
    let mut out = Vec::new();
    walk(c, "/", &mut out);
    out.sort();
    out
}

/// A watch on `/` (every change fires it) on its own connection, its
/// initial event consumed.
fn watch_everything(xs: &Xenstored) -> Client {
    let mut w = xs.connect();
    w.watch("/", "all").expect("watch /");
    let ev = w.wait_event().expect("initial event");
    assert_eq!((ev.path.as_str(), ev.token.as_str()), ("/", "all"));
    w
}

/// No event other than the one `marker` write fired, in order.
fn assert_no_change_before(w: &mut Client, c: &mut Client, marker: &str) {
    c.write_str(TxId::NONE, marker, "x").expect("marker");
    let ev = w.wait_event().expect("marker event");
    assert_eq!(ev.path, marker, "the probe fired a watch: {ev:?}");
}

#[test]
fn default_probe_picks_upstream_on_the_c_xenstored_and_changes_nothing() {
    let Some(xs) = Xenstored::start("default_probe_picks_upstream_on_the_c_xenstored") else {
        return;
    };
    let mut c = xs.connect();
    build_parent(&mut c);
    let before = dump(&mut c);
    let mut watcher = watch_everything(&xs);
    // The default client dialect, no flag: the probe decides.
    let mut probe_conn = xs.connect();
    let p = probe_conn.probe_dialect().expect("probe");
    assert_eq!((p.dialect, p.xs_clone), (Dialect::Upstream, false), "{p}");
    // Debian's 4.17: 22 is XS_DIRECTORY_PART, which refuses 5 fields.
    assert_eq!(
        p.answers,
        vec![(22, ProbeAnswer::Error(errno::EINVAL))],
        "{p}"
    );
    assert_no_change_before(&mut watcher, &mut c, "/probe-marker");
    c.rm(TxId::NONE, "/probe-marker").expect("rm marker");
    assert_eq!(dump(&mut c), before, "the probe changed the store");
    // The probing connection is still usable.
    assert_eq!(r(&mut probe_conn, "/local/domain/3/name"), "web");
}

#[test]
fn default_probe_picks_xs_clone_on_the_oxenstored_proxy_and_changes_nothing() {
    let Some(xs) = Xenstored::start("default_probe_picks_xs_clone_on_the_proxy") else {
        return;
    };
    let mut up = xs.connect();
    build_parent(&mut up);
    let before = dump(&mut up);
    let mut watcher = watch_everything(&xs);
    let proxy = xenstore::testing::NepheleProxy::start(&xs);
    let mut c = Client::connect(&proxy.endpoint(), Dialect::default()).expect("connect proxy");
    c.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    // Like oxenstored, the proxy has no operation 23 (no XS_DIRECTORY_PART).
    let m = c
        .raw_request(
            23,
            TxId::NONE,
            xenstore::wire::args_payload(&["/", "0"]).expect("payload"),
            Op::DirectoryPart,
            "/",
        )
        .expect("an answer");
    assert_eq!((m.ty, m.payload.as_slice()), (16, &b"ENOSYS\0"[..]));
    let p = c.probe_dialect().expect("probe");
    assert_eq!((p.dialect, p.xs_clone), (Dialect::Nephele, true), "{p}");
    assert_eq!(
        p.answers,
        vec![(22, ProbeAnswer::Error(errno::EEXIST))],
        "{p}"
    );
    assert_eq!(c.dialect(), Dialect::Nephele);
    assert_eq!(
        *proxy.clones.lock().expect("lock"),
        vec![PROBE_CLONE_PAYLOAD.to_vec()],
        "the probe is an XS_CLONE"
    );
    assert_no_change_before(&mut watcher, &mut up, "/probe-marker");
    up.rm(TxId::NONE, "/probe-marker").expect("rm marker");
    assert_eq!(dump(&mut up), before, "the probe changed the store");
}

#[test]
fn nephele_dialect_xs_clone_on_the_wire() {
    let Some(xs) = Xenstored::start("nephele_dialect_xs_clone_on_the_wire") else {
        return;
    };
    let mut up = xs.connect();
    build_parent(&mut up);
    let proxy = xenstore::testing::NepheleProxy::start(&xs);
    let mut c = Client::connect(&proxy.endpoint(), Dialect::Upstream).expect("connect proxy");
    c.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    assert_eq!(c.detect_dialect().expect("probe"), Dialect::Nephele);
    assert_eq!(c.dialect(), Dialect::Nephele);
    c.clone_tree(3, 9, CloneOp::Basic, "/local/domain/3", "/local/domain/9")
        .expect("XS_CLONE");
    // Byte-exact request as received by the daemon.
    let got = proxy.clones.lock().expect("lock").clone();
    assert_eq!(
        got,
        vec![
            PROBE_CLONE_PAYLOAD.to_vec(),
            b"3\x009\x001\x00/local/domain/3\x00/local/domain/9".to_vec()
        ]
    );
    assert_eq!(r(&mut c, "/local/domain/9/name"), "web-child-9");
    assert_eq!(r(&mut c, "/local/domain/9/cloned"), "true");
    // oxenstored semantics: EEXIST for an existing destination, ENOENT for
    // a missing source.
    let e = c
        .clone_tree(3, 9, CloneOp::Basic, "/local/domain/3", "/local/domain/9")
        .expect_err("exists");
    assert!(e.is_eexist(), "{e}");
    let e = c
        .clone_tree(4, 10, CloneOp::Basic, "/local/domain/4", "/local/domain/10")
        .expect_err("missing");
    assert!(e.is_enoent(), "{e}");
    // ... after create_implicit_path, which (outside a transaction) leaves
    // the destination's parents behind even when the clone fails.
    let e = c
        .clone_tree(
            4,
            10,
            CloneOp::DevVif,
            "/local/domain/0/backend/vif/4/0",
            "/local/domain/0/backend/vif/10/0",
        )
        .expect_err("missing");
    assert!(e.is_enoent(), "{e}");
    assert!(
        c.exists(TxId::NONE, "/local/domain/0/backend/vif/10")
            .expect("exists")
    );
    assert!(
        !c.exists(TxId::NONE, "/local/domain/0/backend/vif/10/0")
            .expect("exists")
    );
    // An injected failure: after the implicit parents, nothing copied.
    proxy.fail_clone("/local/domain/11/device/vif/0", "EIO");
    let e = c
        .clone_tree(
            3,
            11,
            CloneOp::DevVif,
            "/local/domain/3/device/vif/0",
            "/local/domain/11/device/vif/0",
        )
        .expect_err("injected");
    assert_eq!(e.errno(), Some(errno::EIO), "{e}");
    assert!(
        c.exists(TxId::NONE, "/local/domain/11/device/vif")
            .expect("exists")
    );
    assert!(
        !c.exists(TxId::NONE, "/local/domain/11/device/vif/0")
            .expect("exists")
    );
}

#[test]
fn big_directories_use_directory_part() {
    let Some(xs) = Xenstored::start("big_directories_use_directory_part") else {
        return;
    };
    let mut c = xs.connect();
    // 500 children of 12+ bytes: well over the 4096-byte payload limit.
    let expected: Vec<String> = (0..500).map(|i| format!("child-{i:06}")).collect();
    c.transaction(4, |c, tx| {
        for n in &expected {
            c.write_str(tx, &format!("/big/{n}"), "")?;
        }
        Ok(())
    })
    .expect("populate");
    let p = xenstore::wire::args_payload(&["/big"]).expect("payload");
    let e = c
        .request(Op::Directory, TxId::NONE, p, "/big")
        .expect_err("one XS_DIRECTORY reply cannot hold it");
    assert_eq!(e.errno(), Some(errno::E2BIG), "{e}");
    let mut got = c
        .directory(TxId::NONE, "/big")
        .expect("directory via parts");
    got.sort();
    assert_eq!(got, expected);
}

/// The deep copy's plan relies on how C xenstored gives permissions to the
/// nodes a write creates. On pseudo-random trees (values, permissions,
/// shapes), copies made by one [`Batch`] (the second one below the first,
/// so with known inherited permissions) must be exactly the desired trees,
/// node by node, on the real daemon.
#[test]
fn batch_copies_are_exact_on_random_trees() {
    use xenstore::deepcopy::{Batch, Existing, desired};
    use xenstore::snapshot::read_tree;
    let Some(xs) = Xenstored::start("batch_copies_are_exact_on_random_trees") else {
        return;
    };
    let mut c = xs.connect();
    introduce(&mut c, &[3, 7, 9]);
    let choices = [
        perms(&["n0"]),
        perms(&["n0", "r3"]),
        perms(&["b3"]),
        perms(&["n3", "r0"]),
        perms(&["r0", "w3", "b7"]),
    ];
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for round in 0..12 {
        let src = format!("/src{round}");
        let sub = format!("{src}/k0/dev");
        // Build the source: write every node, then set some permissions.
        let mut nodes = vec![(src.clone(), 0u32)];
        let mut i = 0;
        while i < nodes.len() {
            let (path, depth) = nodes[i].clone();
            let v = if rnd(2) == 0 {
                String::new()
            } else {
                format!("v{}", rnd(1000))
            };
            w(&mut c, &path, &v);
            if rnd(3) == 0 || i == 0 {
                let p = &choices[rnd(choices.len() as u64) as usize];
                c.set_perms(TxId::NONE, &path, p).expect("perms");
            }
            if depth < 3 {
                let n = if i == 0 { 3 } else { rnd(4) };
                for k in 0..n {
                    nodes.push((format!("{path}/k{k}"), depth + 1));
                }
            }
            i += 1;
        }
        w(&mut c, &format!("{sub}/x"), "1");
        let src_tree = read_tree(&mut c, TxId::NONE, &src)
            .expect("read")
            .expect("exists");
        let sub_tree = src_tree.get("k0/dev").expect("sub").clone();
        let dst = format!("/dst{round}");
        let dst_sub = format!("{dst}/deep/dev");
        let spec = CopySpec {
            op: if round % 2 == 0 {
                CloneOp::Basic
            } else {
                CloneOp::DevVif
            },
            parent: 3,
            child: 9,
            src: &src,
            dst: &dst,
            overrides: &[],
            mark_cloned: round % 3 == 0,
        };
        let spec_sub = CopySpec {
            src: &sub,
            dst: &dst_sub,
            mark_cloned: true,
            ..spec.clone()
        };
        c.transaction(4, |c, tx| {
            let mut b = Batch::new();
            b.copy(c, tx, &spec, &src_tree, Existing::Fail)?;
            b.copy(c, tx, &spec_sub, &sub_tree, Existing::Fail)?;
            // The first destination exists now, as a batch knows.
            assert_eq!(b.copy(c, tx, &spec, &src_tree, Existing::Skip)?, None);
            Ok(())
        })
        .unwrap_or_else(|e| panic!("round {round}: {e}"));
        for (spec, tree) in [(&spec, &src_tree), (&spec_sub, &sub_tree)] {
            let want = desired(spec, tree);
            let got = read_tree(&mut c, TxId::NONE, spec.dst)
                .expect("read copy")
                .expect("copy exists");
            // Children order may differ: compare node by node.
            let (mut a, mut b) = (Vec::new(), Vec::new());
            want.walk(spec.dst, &mut a);
            got.walk(spec.dst, &mut b);
            let flat = |v: Vec<(String, &xenstore::snapshot::Node)>| {
                let mut f: Vec<(String, Vec<u8>, Vec<String>)> = v
                    .into_iter()
                    .filter(|(p, _)| spec.dst != dst || !p.starts_with(&format!("{dst}/deep")))
                    .map(|(p, n)| (p, n.value.clone(), n.perms.to_strings()))
                    .collect();
                f.sort();
                f
            };
            assert_eq!(flat(b), flat(a), "round {round}, copy of {}", spec.src);
        }
    }
}

/// Run by `missing_xenstored_fails_in_ci` in a child process (with its own
/// environment); does nothing otherwise.
#[test]
fn helper_start_without_xenstored() {
    if std::env::var("XC_TEST_HELPER").as_deref() != Ok("start-without-xenstored") {
        return;
    }
    assert!(
        Xenstored::start("helper_start_without_xenstored").is_none(),
        "found a xenstored"
    );
}

/// Without any xenstored, `Xenstored::start` skips outside CI and only
/// there; in CI (`CI=true`) the test fails, unless `XC_ALLOW_SKIP=1`.
#[test]
fn missing_xenstored_fails_in_ci() {
    let exe = std::env::current_exe().expect("test binary");
    let empty = std::env::temp_dir().join(format!("xc-no-xenstored-{}", std::process::id()));
    std::fs::create_dir_all(&empty).expect("mkdir");
    let run = |ci: Option<&str>, allow: Option<&str>| {
        let mut cmd = std::process::Command::new(&exe);
        cmd.args(["--exact", "helper_start_without_xenstored", "--nocapture"])
            .env("XC_TEST_HELPER", "start-without-xenstored")
            .env("HOME", &empty)
            .env_remove("XC_XENSTORED_ROOT")
            .env_remove("XDG_CACHE_HOME")
            .env_remove("CI")
            .env_remove("XC_ALLOW_SKIP");
        if let Some(v) = ci {
            cmd.env("CI", v);
        }
        if let Some(v) = allow {
            cmd.env("XC_ALLOW_SKIP", v);
        }
        let out = cmd.output().expect("run the test binary");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let (ok, text) = run(None, None);
    assert!(
        ok && text.contains("SKIP helper_start_without_xenstored"),
        "{text}"
    );
    let (ok, text) = run(Some("true"), None);
    assert!(
        !ok && text.contains("no xenstored found"),
        "must fail in CI: {text}"
    );
    let (ok, text) = run(Some("true"), Some("1"));
    assert!(ok && text.contains("SKIP"), "deliberate opt-out: {text}");
    let _ = std::fs::remove_dir_all(&empty);
}

/// Requests the daemon has served (its `-T` trace: one `IN` line each).
fn served(xs: &Xenstored) -> usize {
    std::fs::read_to_string(xs.trace_file())
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("IN "))
        .count()
}

#[test]
fn profile_read_costs_one_request_a_key_and_leaves_out_what_is_missing() {
    use xenstore::profile::{self, HOME, Source};
    let Some(xs) = Xenstored::start("profile_read_costs_one_request_a_key") else {
        return;
    };
    let mut c = xs.connect();
    w(&mut c, "/local/domain/3/name", "web");
    w(&mut c, "/local/domain/3/console/port", "2");
    w(&mut c, "/local/domain/3/attr/whatever", "not copied");
    w(
        &mut c,
        "/local/domain/3/device/vif/0/mac",
        "00:16:3e:00:00:01",
    );
    let before = served(&xs);
    let t = profile::read_root(&mut c, TxId::NONE, "/local/domain/3")
        .expect("read")
        .expect("the home exists");
    let reads = HOME.iter().filter(|k| k.source == Source::Read).count();
    // The root, one read a key, three a node of device/vif (vif, 0, mac),
    // one each for the absent data and control/shutdown.
    assert_eq!(served(&xs) - before, 1 + reads + 3 * 3 + 2);
    let val = |rel: &str| {
        t.get(rel)
            .map(|n| String::from_utf8_lossy(&n.value).into_owned())
    };
    assert_eq!(val("name").as_deref(), Some("web"));
    assert_eq!(val("console/port").as_deref(), Some("2"));
    assert_eq!(
        val("device/vif/0/mac").as_deref(),
        Some("00:16:3e:00:00:01")
    );
    assert!(t.get("attr").is_none(), "not a key of the profile");
    assert!(t.get("vm").is_none(), "the parent has none");
    assert!(
        profile::read_root(&mut c, TxId::NONE, "/local/domain/4")
            .expect("read")
            .is_none()
    );
}
