//! TAP checks of `/dev/xen/clone` against the test-only module `xen_clone_sim` (simulated
//! hypervisor).
//!
//! Run as root inside the test VM. The simulated hypervisor is driven through debugfs
//! (`/sys/kernel/debug/xen_clone/sim_inject`, `sim_status`). Prints `ok N - name` or
//! `not ok N - name: reason` per check and exits non-zero if any check failed.
//!
//! `clone-dev-check --fuzz N [--seed S]` runs the bad-input fuzzer instead (see `fuzz.rs`).

use std::ffi::CString;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use xen_clone_abi::{
    XEN_CLONE_ABI_VERSION, XEN_CLONE_DEV_PATH, XEN_CLONE_ENTRY_REDELIVERED,
    XEN_CLONE_INFO_SIMULATED, XEN_CLONE_IOC_COMPLETE, XEN_CLONE_IOC_INFO, XenCloneComplete,
    XenCloneEntry, XenCloneInfo,
};

const DEBUGFS: &str = "/sys/kernel/debug";
const SIM_INJECT: &str = "/sys/kernel/debug/xen_clone/sim_inject";
const SIM_STATUS: &str = "/sys/kernel/debug/xen_clone/sim_status";
const ENTRY: usize = size_of::<XenCloneEntry>();
const CAP_SYS_ADMIN: u32 = 21;
const NOBODY: libc::uid_t = 65534;

type Res<T> = Result<T, String>;

mod fuzz;

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn ename(e: i32) -> String {
    let s = match e {
        0 => "success",
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::EAGAIN => "EAGAIN",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::ENODEV => "ENODEV",
        libc::EINVAL => "EINVAL",
        libc::ENOTTY => "ENOTTY",
        libc::EALREADY => "EALREADY",
        _ => return format!("errno {e}"),
    };
    s.to_string()
}

/// An open file descriptor, closed on drop.
struct Fd(i32);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: We own the descriptor.
        unsafe { libc::close(self.0) };
    }
}

fn open_dev(extra: i32) -> Result<Fd, i32> {
    let p = CString::new(XEN_CLONE_DEV_PATH).unwrap();
    // SAFETY: `p` is a valid C string.
    let fd = unsafe { libc::open(p.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC | extra) };
    if fd < 0 { Err(errno()) } else { Ok(Fd(fd)) }
}

fn set_nonblock(fd: &Fd, on: bool) {
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let fl = libc::fcntl(fd.0, libc::F_GETFL);
        let fl = if on {
            fl | libc::O_NONBLOCK
        } else {
            fl & !libc::O_NONBLOCK
        };
        libc::fcntl(fd.0, libc::F_SETFL, fl);
    }
}

fn read_raw(fd: &Fd, len: usize) -> Result<Vec<u8>, i32> {
    let mut buf = vec![0u8; len];
    // SAFETY: `buf` has `len` writable bytes.
    let n = unsafe { libc::read(fd.0, buf.as_mut_ptr().cast(), len) };
    if n < 0 {
        return Err(errno());
    }
    buf.truncate(n as usize);
    Ok(buf)
}

fn parse_entries(buf: &[u8]) -> Res<Vec<XenCloneEntry>> {
    if buf.len() % ENTRY != 0 {
        return Err(format!(
            "read returned {} bytes, not a multiple of {ENTRY}",
            buf.len()
        ));
    }
    // chunks_exact yields whole records only: from_bytes cannot refuse one.
    Ok(buf
        .chunks_exact(ENTRY)
        .filter_map(XenCloneEntry::from_bytes)
        .collect())
}

fn poll_in(fd: &Fd, timeout_ms: i32) -> Res<bool> {
    let mut p = libc::pollfd {
        fd: fd.0,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: One valid pollfd.
    let n = unsafe { libc::poll(&mut p, 1, timeout_ms) };
    if n < 0 {
        return Err(format!("poll: {}", ename(errno())));
    }
    Ok(n > 0 && p.revents & libc::POLLIN != 0)
}

/// Reads exactly `n` entries, waiting up to 10 s in total.
fn read_n(fd: &Fd, n: usize) -> Res<Vec<XenCloneEntry>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut out = Vec::new();
    while out.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("got {} of {n} entries within 10 s", out.len()));
        }
        if !poll_in(fd, left.as_millis() as i32)? {
            continue;
        }
        let buf =
            read_raw(fd, (n - out.len()) * ENTRY).map_err(|e| format!("read: {}", ename(e)))?;
        out.extend(parse_entries(&buf)?);
    }
    Ok(out)
}

fn complete(fd: &Fd, id: u32, flags: u32) -> Result<(), i32> {
    let arg = XenCloneComplete { id, flags };
    // SAFETY: The ioctl reads `size_of::<XenCloneComplete>()` bytes from `arg`.
    let r = unsafe { libc::ioctl(fd.0, XEN_CLONE_IOC_COMPLETE as _, &arg) };
    if r < 0 { Err(errno()) } else { Ok(()) }
}

fn info(fd: &Fd) -> Result<XenCloneInfo, i32> {
    let mut i = XenCloneInfo::default();
    // SAFETY: The ioctl writes `size_of::<XenCloneInfo>()` bytes to `i`.
    let r = unsafe { libc::ioctl(fd.0, XEN_CLONE_IOC_INFO as _, &mut i) };
    if r < 0 { Err(errno()) } else { Ok(i) }
}

fn info_s(fd: &Fd) -> Res<XenCloneInfo> {
    info(fd).map_err(|e| format!("INFO: {}", ename(e)))
}

fn inject(parent: u16, child: u16, count: u32) -> Res<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .open(SIM_INJECT)
        .map_err(|e| format!("{SIM_INJECT}: {e}"))?;
    f.write_all(format!("{parent} {child} {count}\n").as_bytes())
        .map_err(|e| format!("write {SIM_INJECT}: {e}"))
}

fn sim_status() -> Res<Vec<(String, String)>> {
    let s = fs::read_to_string(SIM_STATUS).map_err(|e| format!("{SIM_STATUS}: {e}"))?;
    Ok(s.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect())
}

fn sim_value(key: &str) -> Res<u64> {
    sim_status()?
        .into_iter()
        .find(|(k, _)| k == key)
        .ok_or_else(|| format!("no '{key}' in sim_status"))?
        .1
        .parse()
        .map_err(|e| format!("sim_status {key}: {e}"))
}

/// Waits until `f` holds (up to 10 s).
fn wait_for(what: &str, mut f: impl FnMut() -> Res<bool>) -> Res<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if f()? {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("timed out waiting for {what}"))
}

fn expect_err<T>(r: Result<T, i32>, want: i32, what: &str) -> Res<()> {
    match r {
        Err(e) if e == want => Ok(()),
        Err(e) => Err(format!("{what}: got {}, want {}", ename(e), ename(want))),
        Ok(_) => Err(format!("{what}: succeeded, want {}", ename(want))),
    }
}

fn check_entry(e: &XenCloneEntry, parent: u16, child: u16, flags: u32) -> Res<()> {
    if e.version != XEN_CLONE_ABI_VERSION
        || e.parent_domid != parent
        || e.child_domid != child
        || e.flags != flags
        || e.parent_start_info_mfn == 0
        || e.child_start_info_mfn == 0
    {
        return Err(format!(
            "unexpected entry {e:?} (want parent {parent} child {child} flags {flags})"
        ));
    }
    Ok(())
}

/// Reads and completes everything pending (left over by an earlier run).
fn drain_all(fd: &Fd) -> Res<usize> {
    set_nonblock(fd, true);
    let mut n = 0;
    loop {
        match read_raw(fd, 64 * ENTRY) {
            Ok(buf) => {
                for e in parse_entries(&buf)? {
                    complete(fd, e.id, 0)
                        .map_err(|er| format!("complete {}: {}", e.id, ename(er)))?;
                    n += 1;
                }
            }
            Err(libc::EAGAIN) => break,
            Err(e) => return Err(format!("read: {}", ename(e))),
        }
    }
    set_nonblock(fd, false);
    Ok(n)
}

/// Runs `f` in a forked child; the child's `Ok` is exit status 0, errors are written to a pipe.
fn in_child(f: impl FnOnce() -> Res<()>) -> Res<()> {
    let mut fds = [0i32; 2];
    // SAFETY: `fds` has room for two descriptors.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } < 0 {
        return Err(format!("pipe: {}", ename(errno())));
    }
    // SAFETY: The child only runs `f` and exits; the program is single-threaded here.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", ename(errno())));
    }
    if pid == 0 {
        let code = match f() {
            Ok(()) => 0,
            Err(msg) => {
                // SAFETY: Writing a buffer we own to our pipe end.
                unsafe { libc::write(fds[1], msg.as_ptr().cast(), msg.len()) };
                1
            }
        };
        // SAFETY: Leave the child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    // SAFETY: Closing our copy of the write end.
    unsafe { libc::close(fds[1]) };
    let mut msg = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        // SAFETY: `buf` is writable.
        let n = unsafe { libc::read(fds[0], buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        msg.extend_from_slice(&buf[..n as usize]);
    }
    // SAFETY: Closing the read end.
    unsafe { libc::close(fds[0]) };
    let mut status = 0;
    // SAFETY: Waiting for our child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        Ok(())
    } else if msg.is_empty() {
        Err(format!("child failed with status {status:#x}"))
    } else {
        Err(String::from_utf8_lossy(&msg).into_owned())
    }
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Drops `CAP_SYS_ADMIN` from this process's effective and permitted sets.
fn drop_cap_sys_admin() -> Res<()> {
    let mut hdr = CapHeader {
        version: 0x2008_0522,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget with a v3 header and two data structs.
    if unsafe { libc::syscall(libc::SYS_capget, &mut hdr, data.as_mut_ptr()) } < 0 {
        return Err(format!("capget: {}", ename(errno())));
    }
    data[0].effective &= !(1 << CAP_SYS_ADMIN);
    data[0].permitted &= !(1 << CAP_SYS_ADMIN);
    // SAFETY: capset with a v3 header and two data structs.
    if unsafe { libc::syscall(libc::SYS_capset, &mut hdr, data.as_ptr()) } < 0 {
        return Err(format!("capset: {}", ename(errno())));
    }
    Ok(())
}

/// TAP output.
struct Tap {
    n: u32,
    failed: u32,
}

impl Tap {
    fn check(&mut self, name: &str, r: Res<()>) -> bool {
        self.n += 1;
        match r {
            Ok(()) => {
                println!("ok {} - {name}", self.n);
                true
            }
            Err(why) => {
                self.failed += 1;
                println!("not ok {} - {name}: {why}", self.n);
                false
            }
        }
    }

    fn skip(&mut self, name: &str, why: &str) {
        self.n += 1;
        println!("ok {} - {name} # SKIP {why}", self.n);
    }
}

const MISC_DEV: &str = "/sys/class/misc/xen!clone/dev";
const MOUNTINFO: &str = "/proc/self/mountinfo";

/// Mounts debugfs if needed and makes sure the device node exists. The
/// node is never made here: it must be the one the kernel's devtmpfs
/// created when the module registered the device (see [`node_check`]).
fn setup() -> Res<()> {
    if !Path::new(SIM_INJECT).exists() {
        let src = CString::new("debugfs").map_err(|e| e.to_string())?;
        let dst = CString::new(DEBUGFS).map_err(|e| e.to_string())?;
        // SAFETY: Valid C strings; no data argument.
        unsafe {
            libc::mount(
                src.as_ptr(),
                dst.as_ptr(),
                src.as_ptr(),
                0,
                std::ptr::null(),
            )
        };
    }
    if !Path::new(XEN_CLONE_DEV_PATH).exists() {
        return Err(format!(
            "{XEN_CLONE_DEV_PATH} missing: devtmpfs must create it when xen_clone_dev registers (mount -t devtmpfs dev /dev; {MISC_DEV}: {})",
            fs::read_to_string(MISC_DEV)
                .map(|d| d.trim().to_string())
                .unwrap_or_else(|e| e.to_string())
        ));
    }
    Ok(())
}

/// `major:minor` (sysfs `dev`).
fn parse_dev(s: &str) -> Res<(u32, u32)> {
    let (maj, min) = s
        .trim()
        .split_once(':')
        .ok_or_else(|| format!("bad device number '{}'", s.trim()))?;
    Ok((
        maj.parse().map_err(|e| format!("major '{maj}': {e}"))?,
        min.trim()
            .parse()
            .map_err(|e| format!("minor '{min}': {e}"))?,
    ))
}

/// `/proc/self/mountinfo`'s `\ooo` escapes in a mount point.
fn unescape_mount_point(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The type of the filesystem `path` is on, from mountinfo text: the entry
/// with the longest mount point containing `path` (the last one mounted
/// wins among equals).
fn mount_fstype(mountinfo: &str, path: &str) -> Option<String> {
    let mut best: Option<(usize, String)> = None;
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let (Some(mp), Some(sep)) = (fields.get(4), fields.iter().position(|f| *f == "-")) else {
            continue;
        };
        let Some(fstype) = fields.get(sep + 1) else {
            continue;
        };
        let mp = unescape_mount_point(mp);
        let inside = mp == "/"
            || path == mp
            || path
                .strip_prefix(mp.as_str())
                .is_some_and(|r| r.starts_with('/'));
        if inside && best.as_ref().is_none_or(|(l, _)| mp.len() >= *l) {
            best = Some((mp.len(), fstype.to_string()));
        }
    }
    best.map(|(_, t)| t)
}

/// What `stat` says about the device node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct NodeStat {
    mode: u32,
    uid: u32,
    gid: u32,
    rdev: (u32, u32),
}

fn stat_node(path: &str) -> Res<NodeStat> {
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(path).map_err(|e| format!("stat {path}: {e}"))?;
    let rdev = m.rdev();
    Ok(NodeStat {
        mode: m.mode(),
        uid: m.uid(),
        gid: m.gid(),
        rdev: (libc::major(rdev), libc::minor(rdev)),
    })
}

/// The device node as devtmpfs creates it for the module's misc device:
/// on devtmpfs, a character device with the registered number, owned by
/// root, mode 0600 (the driver's `miscdevice.mode`).
fn node_check(st: &NodeStat, fstype: Option<&str>, want: (u32, u32)) -> Res<()> {
    if fstype != Some("devtmpfs") {
        return Err(format!(
            "{XEN_CLONE_DEV_PATH} is on {}, not devtmpfs: not the node the kernel created",
            fstype.unwrap_or("an unknown filesystem")
        ));
    }
    if st.mode & libc::S_IFMT != libc::S_IFCHR {
        return Err(format!("not a character device (mode {:o})", st.mode));
    }
    if st.rdev != want {
        return Err(format!(
            "device {}:{}, the module registered {}:{}",
            st.rdev.0, st.rdev.1, want.0, want.1
        ));
    }
    if (st.uid, st.gid) != (0, 0) {
        return Err(format!("owner {}:{}, want 0:0", st.uid, st.gid));
    }
    let perm = st.mode & 0o7777;
    if perm != 0o600 {
        return Err(format!("mode {perm:o}"));
    }
    Ok(())
}

/// `device node mode 0600`: the node under /dev/xen, as devtmpfs made it.
fn check_device_node() -> Res<()> {
    let want = parse_dev(&fs::read_to_string(MISC_DEV).map_err(|e| format!("{MISC_DEV}: {e}"))?)?;
    let mountinfo = fs::read_to_string(MOUNTINFO).map_err(|e| format!("{MOUNTINFO}: {e}"))?;
    let st = stat_node(XEN_CLONE_DEV_PATH)?;
    node_check(
        &st,
        mount_fstype(&mountinfo, XEN_CLONE_DEV_PATH).as_deref(),
        want,
    )
}

/// `open`: the descriptor is the module's character device, open for
/// reading and writing.
fn check_open(fd: &Fd) -> Res<()> {
    let want = parse_dev(&fs::read_to_string(MISC_DEV).map_err(|e| format!("{MISC_DEV}: {e}"))?)?;
    // SAFETY: zeroed stat is a valid value for fstat to fill.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat on a descriptor we own, into a live struct.
    if unsafe { libc::fstat(fd.0, &mut st) } < 0 {
        return Err(format!("fstat: {}", ename(errno())));
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFCHR {
        return Err(format!("not a character device (mode {:o})", st.st_mode));
    }
    let got = (libc::major(st.st_rdev), libc::minor(st.st_rdev));
    if got != want {
        return Err(format!(
            "opened device {}:{}, the module registered {}:{}",
            got.0, got.1, want.0, want.1
        ));
    }
    // SAFETY: fcntl on a descriptor we own.
    let fl = unsafe { libc::fcntl(fd.0, libc::F_GETFL) };
    if fl < 0 || fl & libc::O_ACCMODE != libc::O_RDWR {
        return Err(format!(
            "access mode {:#x}, want O_RDWR",
            fl & libc::O_ACCMODE
        ));
    }
    Ok(())
}

/// `--fuzz N [--seed S]`: one TAP check, the fuzzer's verdict.
fn fuzz_main(args: &[String]) -> ! {
    let usage = || -> ! {
        eprintln!("usage: clone-dev-check [--fuzz ITERATIONS [--seed SEED]]");
        std::process::exit(2)
    };
    let n: u64 = args
        .get(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| usage());
    let seed: u64 = match (args.get(2).map(String::as_str), args.get(3)) {
        (Some("--seed"), Some(s)) => s.parse().unwrap_or_else(|_| usage()),
        (None, _) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
        _ => usage(),
    };
    if let Err(e) = setup() {
        println!("Bail out! {e}");
        std::process::exit(2);
    }
    let mut t = Tap { n: 0, failed: 0 };
    t.check(
        &format!("fuzz: {n} random operations (seed {seed}) get only documented errnos, every clone completed once"),
        fuzz::run(n, seed).map(|_| ()),
    );
    println!("1..{}", t.n);
    std::process::exit(if t.failed > 0 { 1 } else { 0 });
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--fuzz") {
        fuzz_main(&args);
    }
    if !args.is_empty() {
        eprintln!("usage: clone-dev-check [--fuzz ITERATIONS [--seed SEED]]");
        std::process::exit(2);
    }
    let mut t = Tap { n: 0, failed: 0 };
    if let Err(e) = setup() {
        println!("Bail out! {e}");
        std::process::exit(2);
    }

    let opened = open_dev(0).map_err(|e| format!("open {XEN_CLONE_DEV_PATH}: {}", ename(e)));
    let open_ok = t.check(
        "open",
        opened.as_ref().map_err(Clone::clone).and_then(check_open),
    );
    let fd = match opened {
        Ok(fd) if open_ok => fd,
        _ => {
            println!("Bail out! cannot use {XEN_CLONE_DEV_PATH}");
            std::process::exit(2);
        }
    };
    let i0 = match info(&fd) {
        Ok(i) if i.flags & XEN_CLONE_INFO_SIMULATED != 0 => i,
        Ok(_) => {
            println!(
                "Bail out! the device is not on the simulated hypervisor (load xen_clone_sim)"
            );
            std::process::exit(2);
        }
        Err(e) => {
            println!("Bail out! INFO: {}", ename(e));
            std::process::exit(2);
        }
    };
    t.check(
        "leftovers from earlier runs drained",
        drain_all(&fd).map(|_| ()),
    );
    let i0 = info(&fd).unwrap_or(i0);

    t.check(
        "device node mode 0600 (devtmpfs, as the kernel created it)",
        check_device_node(),
    );
    t.check(
        "second open is EBUSY",
        expect_err(open_dev(0), libc::EBUSY, "open"),
    );
    t.check(
        "INFO geometry",
        (|| {
            let i = &i0;
            if i.version != XEN_CLONE_ABI_VERSION {
                return Err(format!("version {}", i.version));
            }
            if !i.entries_num.is_power_of_two()
                || i.entries_num * 24 + 24 > u64::from(i.ring_pages) * 4096
            {
                return Err(format!(
                    "entries_num {} for {} pages",
                    i.entries_num, i.ring_pages
                ));
            }
            if i.queued != 0 || i.outstanding != 0 || i.prod_idx != i.cons_idx {
                return Err(format!("not idle: {i:?}"));
            }
            Ok(())
        })(),
    );
    t.check(
        "short read is EINVAL",
        expect_err(read_raw(&fd, ENTRY - 1), libc::EINVAL, "read"),
    );
    set_nonblock(&fd, true);
    let r = expect_err(read_raw(&fd, ENTRY), libc::EAGAIN, "read");
    set_nonblock(&fd, false);
    t.check("O_NONBLOCK read on empty device is EAGAIN", r);
    t.check(
        "poll times out on empty device",
        poll_in(&fd, 100).and_then(|r| {
            if r {
                Err("POLLIN while empty".into())
            } else {
                Ok(())
            }
        }),
    );
    // SAFETY: An ioctl number the driver does not know; no argument is used.
    let r = unsafe { libc::ioctl(fd.0, 0xC1FF as _, 0) };
    t.check(
        "unknown ioctl is ENOTTY",
        expect_err(
            if r < 0 { Err(errno()) } else { Ok(()) },
            libc::ENOTTY,
            "ioctl",
        ),
    );

    // --- A batch of three clones.
    let injected = inject(7, 100, 3);
    t.check(
        "poll wakes up after injection",
        injected.clone().and_then(|()| {
            if poll_in(&fd, 5000)? {
                Ok(())
            } else {
                Err("no POLLIN within 5 s".into())
            }
        }),
    );
    let mut batch = Vec::new();
    t.check(
        "read returns the batch as whole entries, in order",
        (|| {
            injected?;
            batch = read_n(&fd, 3)?;
            for (k, e) in batch.iter().enumerate() {
                check_entry(e, 7, 100 + k as u16, 0)?;
            }
            if batch[1].id != batch[0].id.wrapping_add(1)
                || batch[2].id != batch[0].id.wrapping_add(2)
            {
                return Err(format!("ids not consecutive: {batch:?}"));
            }
            Ok(())
        })(),
    );
    let ids: Vec<u32> = batch.iter().map(|e| e.id).collect();
    let id = |k: usize| ids.get(k).copied().unwrap_or(u32::MAX - 7);
    t.check(
        "complete ok",
        complete(&fd, id(0), 0).map_err(|e| format!("complete: {}", ename(e))),
    );
    t.check(
        "complete twice is EALREADY",
        expect_err(complete(&fd, id(0), 0), libc::EALREADY, "complete"),
    );
    t.check(
        "complete of an id never handed out is ENOENT",
        expect_err(
            complete(&fd, id(2).wrapping_add(1000), 0),
            libc::ENOENT,
            "complete",
        ),
    );
    t.check(
        "complete with nonzero flags is EINVAL (entry stays outstanding)",
        expect_err(complete(&fd, id(1), 1), libc::EINVAL, "complete").and_then(|()| {
            complete(&fd, id(1), 0).map_err(|e| format!("then complete: {}", ename(e)))
        }),
    );
    t.check(
        "INFO counters consistent",
        info_s(&fd).and_then(|i| {
            let c = &i.counters;
            let c0 = &i0.counters;
            let want = [
                ("notifications", c.notifications - c0.notifications, 3),
                ("completions", c.completions - c0.completions, 2),
                ("bad_ids", c.bad_ids - c0.bad_ids, 2),
                ("redeliveries", c.redeliveries - c0.redeliveries, 0),
                ("queued", u64::from(i.queued), 0),
                ("outstanding", u64::from(i.outstanding), 1),
                ("prod-cons", i.prod_idx - i.cons_idx, 0),
                ("prod", i.prod_idx - i0.prod_idx, 3),
            ];
            for (name, got, exp) in want {
                if got != exp {
                    return Err(format!("{name} = {got}, want {exp}"));
                }
            }
            Ok(())
        }),
    );

    // --- Close with one entry outstanding; a new one arrives while closed (from another
    // parent: parent 7 is still in its clone hypercall, waiting for that entry).
    drop(fd);
    let r = inject(8, 200, 1);
    let fd = match open_dev(0) {
        Ok(fd) => fd,
        Err(e) => {
            println!("Bail out! reopen: {}", ename(e));
            std::process::exit(2);
        }
    };
    t.check(
        "reopen redelivers the outstanding entry first (REDELIVERED), then new ones",
        (|| {
            r?;
            let es = read_n(&fd, 2)?;
            // Complete first, so that a failure here does not leave entries behind.
            for e in &es {
                complete(&fd, e.id, 0).map_err(|er| format!("complete {}: {}", e.id, ename(er)))?;
            }
            if es[0].id != id(2) {
                return Err(format!("first entry id {}, want {}", es[0].id, id(2)));
            }
            check_entry(&es[0], 7, 102, XEN_CLONE_ENTRY_REDELIVERED)?;
            check_entry(&es[1], 8, 200, 0)?;
            let i = info_s(&fd)?;
            if i.counters.redeliveries - i0.counters.redeliveries != 1 {
                return Err(format!("redeliveries {}", i.counters.redeliveries));
            }
            Ok(())
        })(),
    );

    t.check(
        "blocking read wakes up when a clone arrives",
        (|| {
            let th = std::thread::spawn(|| {
                std::thread::sleep(Duration::from_millis(300));
                inject(9, 300, 1)
            });
            let buf = read_raw(&fd, 4 * ENTRY).map_err(|e| format!("read: {}", ename(e)))?;
            th.join().map_err(|_| "injector panicked".to_string())??;
            let es = parse_entries(&buf)?;
            check_entry(es.first().ok_or("no entry")?, 9, 300, 0)?;
            for e in &es {
                complete(&fd, e.id, 0).map_err(|er| format!("complete: {}", ename(er)))?;
            }
            Ok(())
        })(),
    );

    // --- Ring full: more children than the completion ring holds.
    let n = i0.entries_num;
    t.check(
        "ring full: producer back-pressure, then everything delivered once in order",
        (|| {
            let before = info_s(&fd)?;
            let extra = 5u64;
            inject(11, 1000, (n + extra) as u32)?;
            wait_for("back-pressure in sim_status", || {
                Ok(sim_value("backlog")? == extra)
            })?;
            if sim_value("blocked")? != 1 {
                return Err("sim_status does not show the producer blocked".into());
            }
            let first = read_n(&fd, n as usize)?;
            let mut expect_child = 1000u16;
            let mut expect_id = first[0].id;
            for e in &first {
                check_entry(e, 11, expect_child, 0)?;
                if e.id != expect_id {
                    return Err(format!("id {} want {expect_id}", e.id));
                }
                expect_child = expect_child.wrapping_add(1);
                expect_id = expect_id.wrapping_add(1);
            }
            for e in &first {
                complete(&fd, e.id, 0).map_err(|er| format!("complete {}: {}", e.id, ename(er)))?;
            }
            let rest = read_n(&fd, extra as usize)?;
            for e in &rest {
                check_entry(e, 11, expect_child, 0)?;
                expect_child = expect_child.wrapping_add(1);
                complete(&fd, e.id, 0).map_err(|er| format!("complete {}: {}", e.id, ename(er)))?;
            }
            let i = info_s(&fd)?;
            if i.counters.ring_full <= before.counters.ring_full {
                return Err("ring_full counter did not increase".into());
            }
            if sim_value("backlog")? != 0 || sim_value("blocked")? != 0 {
                return Err("producer still blocked".into());
            }
            Ok(())
        })(),
    );

    t.check(
        "hypervisor saw every id completed exactly once",
        (|| {
            wait_for("sim waiting == 0", || Ok(sim_value("waiting")? == 0))?;
            if sim_value("double_completions")? != 0 {
                return Err("double completions reached the hypervisor".into());
            }
            if sim_value("invalid_completions")? != 0 {
                return Err("invalid completions reached the hypervisor".into());
            }
            let i = info_s(&fd)?;
            if i.queued != 0 || i.outstanding != 0 || i.prod_idx != i.cons_idx {
                return Err(format!("not idle: {i:?}"));
            }
            let c = &i.counters;
            let c0 = &i0.counters;
            if c.notifications - c0.notifications != c.completions - c0.completions {
                return Err(format!(
                    "notifications +{} != completions +{}",
                    c.notifications - c0.notifications,
                    c.completions - c0.completions
                ));
            }
            Ok(())
        })(),
    );

    // --- Privileges: give the device to a child that drops CAP_SYS_ADMIN, then becomes nobody.
    drop(fd);
    t.check(
        "without CAP_SYS_ADMIN: ioctl is EPERM, open is EPERM",
        in_child(|| {
            let fd = open_dev(0).map_err(|e| format!("open as root: {}", ename(e)))?;
            drop_cap_sys_admin()?;
            expect_err(info(&fd), libc::EPERM, "INFO")?;
            expect_err(complete(&fd, 0, 0), libc::EPERM, "COMPLETE")?;
            drop(fd);
            expect_err(open_dev(0), libc::EPERM, "open")
        }),
    );
    t.check(
        "as nobody: open is refused",
        in_child(|| {
            // SAFETY: Plain syscalls.
            if unsafe { libc::setgid(NOBODY) } < 0 || unsafe { libc::setuid(NOBODY) } < 0 {
                return Err(format!("setuid: {}", ename(errno())));
            }
            match open_dev(0) {
                Err(libc::EACCES) | Err(libc::EPERM) => Ok(()),
                Err(e) => Err(format!("open: {}", ename(e))),
                Ok(_) => Err("open succeeded".into()),
            }
        }),
    );
    if t.n == 0 {
        t.skip("nothing", "no checks ran");
    }
    println!("1..{}", t.n);
    if t.failed > 0 {
        println!("# {} of {} checks failed", t.failed, t.n);
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO_DEVTMPFS: &str = "\
22 1 0:21 / / rw,relatime - rootfs rootfs rw
23 22 0:5 / /dev rw,relatime - devtmpfs dev rw,size=1000k,mode=755
24 22 0:22 / /proc rw,relatime - proc proc rw
25 22 0:23 / /sys rw,relatime - sysfs sysfs rw
";

    fn node() -> NodeStat {
        NodeStat {
            mode: libc::S_IFCHR | 0o600,
            uid: 0,
            gid: 0,
            rdev: (10, 122),
        }
    }

    #[test]
    fn mount_of_the_node() {
        assert_eq!(
            mount_fstype(MOUNTINFO_DEVTMPFS, "/dev/xen/clone").as_deref(),
            Some("devtmpfs")
        );
        assert_eq!(
            mount_fstype(MOUNTINFO_DEVTMPFS, "/devx/clone").as_deref(),
            Some("rootfs")
        );
        // A tmpfs mounted over /dev/xen hides devtmpfs's node.
        let over = format!("{MOUNTINFO_DEVTMPFS}30 23 0:40 / /dev/xen rw - tmpfs tmpfs rw\n");
        assert_eq!(
            mount_fstype(&over, "/dev/xen/clone").as_deref(),
            Some("tmpfs")
        );
        let esc = "1 0 0:1 / / rw - rootfs rootfs rw\n2 1 0:2 / /my\\040dev rw - devtmpfs dev rw\n";
        assert_eq!(
            mount_fstype(esc, "/my dev/xen/clone").as_deref(),
            Some("devtmpfs")
        );
        assert_eq!(parse_dev("10:122\n"), Ok((10, 122)));
        assert!(parse_dev("10").is_err());
    }

    /// The node counts only as devtmpfs created it: a node made by hand
    /// (mknod on a /dev that is not devtmpfs) fails the check even with
    /// the right mode, and so does any other mode, type, number or owner.
    #[test]
    fn node_is_checked_as_the_kernel_created_it() {
        assert_eq!(node_check(&node(), Some("devtmpfs"), (10, 122)), Ok(()));
        let e = node_check(&node(), Some("tmpfs"), (10, 122)).expect_err("mknod'ed");
        assert!(e.contains("not devtmpfs"), "{e}");
        assert!(node_check(&node(), None, (10, 122)).is_err());
        let mut n = node();
        n.mode = libc::S_IFCHR | 0o666;
        assert_eq!(
            node_check(&n, Some("devtmpfs"), (10, 122)),
            Err("mode 666".into())
        );
        n.mode = libc::S_IFREG | 0o600;
        assert!(node_check(&n, Some("devtmpfs"), (10, 122)).is_err());
        assert!(node_check(&node(), Some("devtmpfs"), (10, 123)).is_err());
        let mut n = node();
        n.uid = 1000;
        assert!(node_check(&n, Some("devtmpfs"), (10, 122)).is_err());
    }
}
