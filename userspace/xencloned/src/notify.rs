//! `sd_notify` without libsystemd: one datagram to the notify socket.
//!
//! The socket's address comes from the caller: `main` reads
//! `$NOTIFY_SOCKET` once at start-up ([`socket_from_env`]) and passes it
//! down, so nothing here (and no test) reads or changes the environment.

use std::ffi::{OsStr, OsString};
use std::os::unix::net::UnixDatagram;

/// `$NOTIFY_SOCKET`, read once by `main`.
pub fn socket_from_env() -> Option<OsString> {
    std::env::var_os("NOTIFY_SOCKET")
}

/// Sends `msg` (e.g. `READY=1`) to `socket` if there is one (`Ok(false)`
/// otherwise). Abstract sockets (`@name`) are supported. Errors name the
/// socket.
pub fn notify(socket: Option<&OsStr>, msg: &str) -> std::io::Result<bool> {
    let Some(path) = socket else {
        return Ok(false);
    };
    let named = |e: std::io::Error| {
        std::io::Error::new(
            e.kind(),
            format!("notify socket {}: {e}", path.to_string_lossy()),
        )
    };
    let sock = UnixDatagram::unbound().map_err(named)?;
    let bytes = path.as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name).map_err(named)?;
        sock.send_to_addr(msg.as_bytes(), &addr).map_err(named)?;
    } else {
        sock.send_to(msg.as_bytes(), std::path::Path::new(path))
            .map_err(named)?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    #[test]
    fn sends_to_path_socket() {
        let dir = std::env::temp_dir().join(format!("xc-notify-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let p = dir.join("notify");
        let _ = std::fs::remove_file(&p);
        let rx = std::os::unix::net::UnixDatagram::bind(&p).expect("bind");
        assert!(super::notify(Some(p.as_os_str()), "READY=1").expect("send"));
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"READY=1");
        assert!(!super::notify(None, "READY=1").expect("no socket"));
        let e = super::notify(Some(OsStr::new("/nonexistent/xc-notify")), "READY=1")
            .expect_err("no such socket");
        assert!(e.to_string().contains("/nonexistent/xc-notify"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn sends_to_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("xc-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
            .expect("abstract address");
        let rx = std::os::unix::net::UnixDatagram::bind_addr(&addr).expect("bind");
        let sock = format!("@{name}");
        assert!(super::notify(Some(OsStr::new(&sock)), "STOPPING=1").expect("send"));
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"STOPPING=1");
    }

    /// The test binary is multi-threaded: no test may change the process
    /// environment (`set_var`/`remove_var` race with every `getenv`).
    #[test]
    fn no_test_or_module_mutates_the_environment() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut offenders = Vec::new();
        let mut dirs = vec![root.join("src"), root.join("tests")];
        while let Some(d) = dirs.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    dirs.push(p);
                } else if p.extension() == Some(OsStr::new("rs")) {
                    let text = std::fs::read_to_string(&p).unwrap_or_default();
                    for (i, line) in text.lines().enumerate() {
                        let code = line.split("//").next().unwrap_or("");
                        if ["set_var(", "remove_var("]
                            .iter()
                            .any(|f| code.contains(&format!("env::{f}")))
                        {
                            offenders.push(format!("{}:{}", p.display(), i + 1));
                        }
                    }
                }
            }
        }
        assert!(offenders.is_empty(), "environment mutated at {offenders:?}");
    }
}
