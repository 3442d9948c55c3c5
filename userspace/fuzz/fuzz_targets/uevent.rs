//! Fuzzes the kernel uevent parser and the vif classification.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xencloned::uevent;

fuzz_target!(|data: &[u8]| {
    if let Ok(ev) = uevent::parse(data) {
        assert!(ev.devpath.starts_with('/'));
        let _ = ev.sysname();
        if let Some(uevent::VifEvent::Online(v) | uevent::VifEvent::Offline(v)) =
            uevent::classify_vif(&ev)
        {
            assert!(!v.xenbus_path.is_empty());
        }
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = uevent::parse_vif_sysname(s);
        let _ = xenstore::paths::parse_backend_dir(s);
        let _ = xenstore::paths::split_domain_path(s);
        let _ = xenstore::paths::rewrite_backend_value(s, 3, 9);
    }
});
