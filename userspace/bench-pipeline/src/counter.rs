//! A transparent forwarder between the daemon and its Xenstore endpoint
//! that counts the requests the daemon sends, by wire type. Bytes pass
//! unchanged in both directions; only the daemon → xenstored stream is
//! decoded. Used for the request counts (not for the throughput runs), in
//! both modes: with the stock xenstored it cross-checks the count taken
//! from xenstored's trace, in `XS_CLONE` mode it is the only count (the
//! trace there would show the proxy's emulation of `XS_CLONE`, not the
//! daemon's requests).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use xenstore::wire::Decoder;
use xenstore::{Dialect, Endpoint};

pub struct Counter {
    path: PathBuf,
    counts: Arc<Mutex<BTreeMap<u32, u64>>>,
    dialect: Dialect,
}

impl Counter {
    /// Listens on `<dir>/counting-socket`, forwarding to `target`.
    pub fn start(target: &Endpoint, dir: &Path, dialect: Dialect) -> Counter {
        let path = dir.join("counting-socket");
        let _ = std::fs::remove_file(&path);
        let listener =
            UnixListener::bind(&path).unwrap_or_else(|e| panic!("bind {}: {e}", path.display()));
        let Endpoint::Socket(up_path) = target.clone() else {
            panic!("counting forwarder: {target} is not a socket");
        };
        let counts = Arc::new(Mutex::new(BTreeMap::new()));
        let c = counts.clone();
        std::thread::spawn(move || {
            for down in listener.incoming() {
                let Ok(down) = down else { return };
                let (up_path, c) = (up_path.clone(), c.clone());
                std::thread::spawn(move || forward(down, &up_path, &c));
            }
        });
        Counter {
            path,
            counts,
            dialect,
        }
    }

    pub fn endpoint(&self) -> Endpoint {
        Endpoint::Socket(self.path.clone())
    }

    /// Requests forwarded so far, by operation name.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        if let Ok(c) = self.counts.lock() {
            for (ty, n) in c.iter() {
                let name = self
                    .dialect
                    .op(*ty)
                    .map_or_else(|| format!("TYPE{ty}"), |op| crate::op_name(op).to_string());
                *out.entry(name).or_insert(0) += n;
            }
        }
        out
    }
}

fn forward(down: UnixStream, up_path: &Path, counts: &Mutex<BTreeMap<u32, u64>>) {
    let Ok(up) = UnixStream::connect(up_path) else {
        return;
    };
    let (Ok(mut up_r), Ok(mut down_w)) = (up.try_clone(), down.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = up_r.read(&mut buf) {
            if n == 0 || down_w.write_all(&buf[..n]).is_err() {
                let _ = down_w.shutdown(std::net::Shutdown::Both);
                return;
            }
        }
    });
    let (mut down_r, mut up_w) = (down, up);
    let mut dec = Decoder::default();
    let mut buf = [0u8; 8192];
    loop {
        let n = match down_r.read(&mut buf) {
            Ok(0) | Err(_) => {
                let _ = up_w.shutdown(std::net::Shutdown::Both);
                return;
            }
            Ok(n) => n,
        };
        dec.push(&buf[..n]);
        while let Ok(Some(m)) = dec.next_msg() {
            if let Ok(mut c) = counts.lock() {
                *c.entry(m.ty).or_insert(0) += 1;
            }
        }
        if up_w.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}
