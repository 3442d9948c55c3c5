//! The Rust definitions of this crate against the C header they bind,
//! `include/uapi/xen/clone.h`: the header is taken from the kernel patch that
//! adds it (linux-patches/), compiled with the system C compiler into a
//! program printing every size, offset and constant, and compared with the
//! Rust side. Any difference fails the test.

use std::collections::HashMap;
use std::mem::{align_of, offset_of, size_of};
use std::path::{Path, PathBuf};
use std::process::Command;
use xen_clone_abi::*;

const HEADER: &str = "include/uapi/xen/clone.h";

/// The text of `HEADER` as added by the patch of `linux-patches/` that
/// creates it.
fn header_from_patches() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../linux-patches");
    let mut found = None;
    for ent in std::fs::read_dir(&dir).expect("linux-patches/") {
        let path = ent.unwrap().path();
        if path.extension().is_none_or(|e| e != "patch") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let marker = format!("+++ b/{HEADER}\n");
        let Some(at) = text.find(&marker) else {
            continue;
        };
        assert!(found.is_none(), "two patches add {HEADER}");
        let mut out = String::new();
        for line in text[at + marker.len()..].lines() {
            if line.starts_with("diff --git ") || line == "-- " {
                break;
            }
            if line.starts_with("@@") {
                continue;
            }
            let body = line.strip_prefix('+').unwrap_or_else(|| {
                panic!("{}: {HEADER} is not a new file: {line:?}", path.display())
            });
            out.push_str(body);
            out.push('\n');
        }
        found = Some(out);
    }
    found.unwrap_or_else(|| panic!("no patch in {} adds {HEADER}", dir.display()))
}

/// Every `name value` line the C program prints.
fn c_values() -> HashMap<String, u64> {
    let tmp =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("c_layout.{}", std::process::id()));
    std::fs::create_dir_all(tmp.join("xen")).unwrap();
    std::fs::write(tmp.join("xen/clone.h"), header_from_patches()).unwrap();
    let mut prog = String::from(
        "#include <stddef.h>\n#include <stdio.h>\n#include <xen/clone.h>\n\
         #define V(n, x) printf(\"%s %llu\\n\", n, (unsigned long long)(x))\n\
         #define S(t) V(\"sizeof \" #t, sizeof(struct t)); V(\"alignof \" #t, _Alignof(struct t))\n\
         #define O(t, f) V(\"offsetof \" #t \".\" #f, offsetof(struct t, f)); \
         V(\"sizeof \" #t \".\" #f, sizeof(((struct t *)0)->f))\n\
         #define C(c) V(#c, c)\nint main(void) {\n",
    );
    for (t, fields) in STRUCTS {
        prog.push_str(&format!("S({t});\n"));
        for f in *fields {
            prog.push_str(&format!("O({t}, {f});\n"));
        }
    }
    for (c, _) in consts() {
        prog.push_str(&format!("C({c});\n"));
    }
    prog.push_str("return 0;\n}\n");
    std::fs::write(tmp.join("layout.c"), prog).unwrap();
    let exe = tmp.join("layout");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = Command::new(&cc)
        .args(["-std=c11", "-Wall", "-Werror", "-I"])
        .arg(&tmp)
        .arg(tmp.join("layout.c"))
        .arg("-o")
        .arg(&exe)
        .output()
        .unwrap_or_else(|e| panic!("{cc}: {e}"));
    assert!(
        out.status.success(),
        "{cc} failed on {HEADER}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(&exe).output().unwrap();
    assert!(out.status.success());
    let _ = std::fs::remove_dir_all(&tmp);
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect()
}

/// The C structures and their fields, in declaration order.
const STRUCTS: &[(&str, &[&str])] = &[
    (
        "xen_clone_entry",
        &[
            "version",
            "flags",
            "id",
            "parent_domid",
            "child_domid",
            "parent_start_info_mfn",
            "child_start_info_mfn",
        ],
    ),
    ("xen_clone_complete", &["id", "flags"]),
    (
        "xen_clone_counters",
        &[
            "notifications",
            "completions",
            "redeliveries",
            "auto_completions",
            "ring_full",
            "bad_ids",
            "ring_corruptions",
            "hypervisor_errors",
            "rejected_completions",
            "auto_completed_reported",
        ],
    ),
    (
        "xen_clone_info",
        &[
            "version",
            "ring_pages",
            "entries_num",
            "enable_flags",
            "prod_idx",
            "cons_idx",
            "queued",
            "outstanding",
            "orphan_timeout_secs",
            "flags",
            "counters",
        ],
    ),
];

/// The C constants and their Rust values.
fn consts() -> Vec<(&'static str, u64)> {
    vec![
        ("XEN_CLONE_ABI_VERSION", XEN_CLONE_ABI_VERSION.into()),
        (
            "XEN_CLONE_ENTRY_REDELIVERED",
            XEN_CLONE_ENTRY_REDELIVERED.into(),
        ),
        (
            "XEN_CLONE_ENTRY_AUTO_COMPLETED",
            XEN_CLONE_ENTRY_AUTO_COMPLETED.into(),
        ),
        ("XEN_CLONE_INFO_SIMULATED", XEN_CLONE_INFO_SIMULATED.into()),
        (
            "XEN_CLONE_ENABLE_PAGE_SHARING_POOL",
            XEN_CLONE_ENABLE_PAGE_SHARING_POOL,
        ),
        ("XEN_CLONE_IOC_MAGIC", XEN_CLONE_IOC_MAGIC.into()),
        ("XEN_CLONE_IOC_COMPLETE", XEN_CLONE_IOC_COMPLETE.into()),
        ("XEN_CLONE_IOC_INFO", XEN_CLONE_IOC_INFO.into()),
    ]
}

/// Size, alignment, and every field's offset and size on the Rust side.
macro_rules! rust_layout {
    ($m:ident, $c:literal, $t:ty { $($f:ident),* }) => {{
        $m.insert(concat!("sizeof ", $c).to_string(), size_of::<$t>() as u64);
        $m.insert(concat!("alignof ", $c).to_string(), align_of::<$t>() as u64);
        $(
            $m.insert(concat!("offsetof ", $c, ".", stringify!($f)).to_string(), offset_of!($t, $f) as u64);
            $m.insert(
                concat!("sizeof ", $c, ".", stringify!($f)).to_string(),
                size_of_val(&<$t>::default().$f) as u64,
            );
        )*
    }};
}

#[test]
fn rust_matches_the_c_header() {
    let c = c_values();
    let mut r: HashMap<String, u64> = HashMap::new();
    rust_layout!(
        r,
        "xen_clone_entry",
        XenCloneEntry {
            version,
            flags,
            id,
            parent_domid,
            child_domid,
            parent_start_info_mfn,
            child_start_info_mfn
        }
    );
    rust_layout!(r, "xen_clone_complete", XenCloneComplete { id, flags });
    rust_layout!(
        r,
        "xen_clone_counters",
        XenCloneCounters {
            notifications,
            completions,
            redeliveries,
            auto_completions,
            ring_full,
            bad_ids,
            ring_corruptions,
            hypervisor_errors,
            rejected_completions,
            auto_completed_reported
        }
    );
    rust_layout!(
        r,
        "xen_clone_info",
        XenCloneInfo {
            version,
            ring_pages,
            entries_num,
            enable_flags,
            prod_idx,
            cons_idx,
            queued,
            outstanding,
            orphan_timeout_secs,
            flags,
            counters
        }
    );
    for (name, v) in consts() {
        r.insert(name.to_string(), v);
    }
    // Every C field is known to the Rust side and the other way round.
    let mut keys: Vec<_> = c.keys().chain(r.keys()).collect();
    keys.sort();
    keys.dedup();
    let diffs: Vec<String> = keys
        .into_iter()
        .filter(|k| c.get(*k) != r.get(*k))
        .map(|k| format!("{k}: C {:?}, Rust {:?}", c.get(k), r.get(k)))
        .collect();
    assert!(
        diffs.is_empty(),
        "Rust and {HEADER} differ:\n{}",
        diffs.join("\n")
    );
    // Sanity: the comparison did see the C side.
    assert_eq!(c.get("sizeof xen_clone_entry"), Some(&32));
}
