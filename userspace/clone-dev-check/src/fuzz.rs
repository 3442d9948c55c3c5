//! `clone-dev-check --fuzz N [--seed S]`: bad-input fuzzing of `/dev/xen/clone`.
//!
//! N iterations of random operations on the device (module `xen_clone_sim`):
//! random ioctl numbers and arguments, `XEN_CLONE_IOC_COMPLETE` with random ids, flags and
//! pointers, `XEN_CLONE_IOC_INFO` into bad pointers, reads of random sizes into valid and bad
//! buffers, writes, mmap, `poll`, re-opens, garbage written to the simulator's `sim_inject`, and
//! real clones injected now and then (completed correctly, twice, or left outstanding across a
//! close). Every failing call must fail with an errno the ABI documents for it (table
//! [`allowed`]); every successful read must return whole entries. At the end everything is
//! completed and the device and the simulated hypervisor must agree: no double or invalid
//! completion reached the hypervisor, notifications == completions, nothing queued.
//!
//! Kernel warnings (lockdep, KASAN-style slab debug, WARN/BUG) are caught by the VM harness,
//! which fails a run on any such line in the console log.
//!
//! Generic VFS ioctls (types 'T', 'X', 'f', 0x94, 0x15, 0x00: FIONBIO, FICLONE, FS_IOC_*,
//! FIGETBSZ...) are left out of the random numbers: the VFS answers them before the driver
//! sees them, so their errnos are not the device's.

use super::*;

/// xorshift64*: reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
}

/// Operations, each with the errnos its documentation allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    /// ioctl with a number the driver does not define.
    UnknownIoctl,
    /// `XEN_CLONE_IOC_COMPLETE` (any id, flags, pointer).
    Complete,
    /// `XEN_CLONE_IOC_INFO` (any pointer).
    Info,
    /// `read()` of any size into any buffer (non-blocking).
    Read,
    /// `write()`: the device has no write.
    Write,
    /// `mmap()`: the device has no mmap.
    Mmap,
    /// `open()` while open (exclusive device).
    SecondOpen,
    /// Garbage written to debugfs `sim_inject`.
    SimGarbage,
}

/// The errnos a failing `op` may return (include/uapi/xen/clone.h; VFS behaviour for write/mmap).
fn allowed(op: Op) -> &'static [i32] {
    match op {
        Op::UnknownIoctl => &[libc::ENOTTY],
        // clone.h, README: ENOENT never handed out, EALREADY completed, EINVAL flags, EAGAIN the
        // hypervisor does not accept it yet, ECANCELED it refused it for good; EFAULT bad
        // pointer. (An id read and not completed must still succeed: checked separately.)
        Op::Complete => &[
            libc::ENOENT,
            libc::EALREADY,
            libc::EINVAL,
            libc::EAGAIN,
            libc::ECANCELED,
            libc::EFAULT,
        ],
        Op::Info => &[libc::EFAULT],
        // clone.h: EINVAL shorter than one entry, EAGAIN empty (O_NONBLOCK); EFAULT bad buffer.
        Op::Read => &[libc::EINVAL, libc::EAGAIN, libc::EFAULT],
        Op::Write => &[libc::EINVAL],
        Op::Mmap => &[libc::ENODEV],
        Op::SecondOpen => &[libc::EBUSY],
        // sim_inject: malformed line or too long.
        Op::SimGarbage => &[libc::EINVAL],
    }
}

/// Ioctl type bytes the VFS handles itself (see the module documentation).
fn vfs_ioctl_type(cmd: u32) -> bool {
    matches!((cmd >> 8) & 0xff, 0x54 | 0x58 | 0x66 | 0x94 | 0x15 | 0x00)
}

/// Pointers of every kind: valid, NULL, unmapped, kernel, misaligned, straddling the end.
struct Ptrs {
    page: *mut u8,
    unmapped: *mut u8,
}

impl Ptrs {
    fn new() -> Res<Ptrs> {
        // SAFETY: Anonymous mappings; the second is unmapped at once to get a hole.
        unsafe {
            let page = libc::mmap(
                std::ptr::null_mut(),
                8192,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            if page == libc::MAP_FAILED {
                return Err(format!("mmap: {}", ename(errno())));
            }
            // Second page made inaccessible: buffers that run off the first page fault.
            libc::mprotect(page.cast::<u8>().add(4096).cast(), 4096, libc::PROT_NONE);
            let hole = libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            if hole == libc::MAP_FAILED {
                return Err(format!("mmap: {}", ename(errno())));
            }
            libc::munmap(hole, 4096);
            Ok(Ptrs {
                page: page.cast(),
                unmapped: hole.cast(),
            })
        }
    }

    /// A pointer for `len` bytes: usually valid, often not. Returns it, whether all `len`
    /// bytes are accessible, and how many leading bytes are.
    fn pick(&self, rng: &mut Rng, len: usize) -> (*mut u8, bool, usize) {
        match rng.below(10) {
            0 => (std::ptr::null_mut(), false, 0),
            1 => (self.unmapped, false, 0),
            2 => (0xffff_8880_0000_0000usize as *mut u8, false, 0),
            3 => (usize::MAX as *mut u8, false, 0),
            // Straddles into the PROT_NONE page.
            4 if len > 1 && len <= 4096 => {
                let ok = 1 + rng.below(len as u64 - 1) as usize;
                // SAFETY: Inside the 8 KiB mapping.
                (unsafe { self.page.add(4096 - ok) }, false, ok)
            }
            _ => {
                let len = len.min(4096);
                let off = rng.below((4096 - len) as u64 + 1) as usize;
                // SAFETY: `off + len <= 4096`.
                (unsafe { self.page.add(off) }, true, len)
            }
        }
    }
}

#[derive(Default)]
struct Tally {
    calls: BTreeMap<(Op, i32), u64>,
    bad: Vec<String>,
}

impl Tally {
    fn note(&mut self, op: Op, r: Result<(), i32>, what: impl FnOnce() -> String) {
        let e = r.err().unwrap_or(0);
        *self.calls.entry((op, e)).or_default() += 1;
        if e != 0 && !allowed(op).contains(&e) && self.bad.len() < 20 {
            self.bad
                .push(format!("{op:?}: undocumented {} ({})", ename(e), what()));
        }
    }
}

use std::collections::BTreeMap;

fn ioctl_raw(fd: &Fd, cmd: u32, arg: usize) -> Result<(), i32> {
    // SAFETY: The kernel validates `arg`; bad pointers are the point (EFAULT expected).
    let r = unsafe { libc::ioctl(fd.0, cmd as _, arg) };
    if r < 0 { Err(errno()) } else { Ok(()) }
}

fn read_into(fd: &Fd, p: *mut u8, len: usize) -> Result<usize, i32> {
    // SAFETY: The kernel validates the buffer; bad ones must give EFAULT.
    let n = unsafe { libc::read(fd.0, p.cast(), len) };
    if n < 0 { Err(errno()) } else { Ok(n as usize) }
}

fn sim_raw_write(buf: &[u8]) -> Result<(), i32> {
    let p = CString::new(SIM_INJECT).unwrap();
    // SAFETY: Valid C string.
    let fd = unsafe { libc::open(p.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(errno());
    }
    let fd = Fd(fd);
    // SAFETY: `buf` is readable for its length.
    let n = unsafe { libc::write(fd.0, buf.as_ptr().cast(), buf.len()) };
    if n < 0 { Err(errno()) } else { Ok(()) }
}

/// Runs the fuzzer; returns the TAP result of one check.
pub fn run(iterations: u64, seed: u64) -> Res<String> {
    let mut rng = Rng(seed | 1);
    let ptrs = Ptrs::new()?;
    let mut fd = open_dev(libc::O_NONBLOCK).map_err(|e| format!("open: {}", ename(e)))?;
    drain_all(&fd)?;
    set_nonblock(&fd, true);
    let i0 = info_s(&fd)?;
    let s0 = (
        sim_value("double_completions")?,
        sim_value("invalid_completions")?,
    );
    let mut t = Tally::default();
    // Ids read and not completed; ids completed (for deliberate double completions).
    let mut outstanding: Vec<u32> = Vec::new();
    let mut done: Vec<u32> = Vec::new();
    let mut injected = 0u64;
    let mut good_completions = 0u64;
    for it in 0..iterations {
        match rng.below(100) {
            // Random ioctl numbers: fully random, or near the real ones (same magic,
            // other nr/dir/size).
            0..=19 => {
                let cmd = loop {
                    let c = if rng.chance(50) {
                        rng.next() as u32
                    } else {
                        let dir = rng.below(4) as u32;
                        let nr = rng.below(8) as u32;
                        let size = if rng.chance(50) {
                            rng.below(0x4000) as usize
                        } else {
                            [8usize, 120, 0, 4, 16, 32, 64][rng.below(7) as usize]
                        };
                        xen_clone_abi::xen_clone_ioc(dir, nr, size)
                    };
                    if c != XEN_CLONE_IOC_COMPLETE && c != XEN_CLONE_IOC_INFO && !vfs_ioctl_type(c)
                    {
                        break c;
                    }
                };
                let arg = rng.next() as usize;
                t.note(Op::UnknownIoctl, ioctl_raw(&fd, cmd, arg), || {
                    format!("cmd {cmd:#x}")
                });
            }
            // COMPLETE with random ids and flags, sometimes real ids (once, twice).
            20..=44 => {
                let id = match rng.below(6) {
                    0 | 1 if !outstanding.is_empty() => {
                        outstanding[rng.below(outstanding.len() as u64) as usize]
                    }
                    2 if !done.is_empty() => done[rng.below(done.len() as u64) as usize],
                    3 => (i0.prod_idx as u32).wrapping_add(rng.below(1024) as u32),
                    _ => rng.next() as u32,
                };
                // Whatever way it was picked: an id read and not completed must succeed.
                let real = outstanding.contains(&id);
                let flags = if rng.chance(80) {
                    0
                } else {
                    rng.next() as u32 | 1
                };
                let (p, valid, _) = ptrs.pick(&mut rng, size_of::<XenCloneComplete>());
                if valid {
                    // SAFETY: `p` points at 8 writable bytes of our page.
                    unsafe {
                        std::ptr::write_unaligned(
                            p.cast::<XenCloneComplete>(),
                            XenCloneComplete { id, flags },
                        )
                    };
                }
                let r = ioctl_raw(&fd, XEN_CLONE_IOC_COMPLETE, p as usize);
                match r {
                    Ok(_) => {
                        if !(valid && real && flags == 0) {
                            t.bad.push(format!(
                                "COMPLETE id {id} flags {flags:#x} valid {valid} real {real} succeeded"
                            ));
                        }
                        outstanding.retain(|&x| x != id);
                        done.push(id);
                        good_completions += 1;
                    }
                    Err(e) if valid && real && flags == 0 => {
                        t.bad.push(format!(
                            "COMPLETE of outstanding id {id} failed: {}",
                            ename(e)
                        ));
                    }
                    Err(_) => {}
                }
                t.note(Op::Complete, r, || format!("id {id} flags {flags:#x}"));
            }
            45..=54 => {
                let (p, valid, _) = ptrs.pick(&mut rng, size_of::<XenCloneInfo>());
                let r = ioctl_raw(&fd, XEN_CLONE_IOC_INFO, p as usize);
                if let (true, Err(e)) = (valid, r) {
                    t.bad
                        .push(format!("INFO into a valid buffer: {}", ename(e)));
                }
                t.note(Op::Info, r, || format!("ptr {p:?}"));
            }
            55..=74 => {
                let len = match rng.below(4) {
                    0 => rng.below(ENTRY as u64) as usize,
                    1 => ENTRY * (1 + rng.below(4) as usize),
                    2 => rng.below(4096) as usize,
                    _ => rng.below(200) as usize,
                };
                let (p, valid, ok_len) = ptrs.pick(&mut rng, len.max(1));
                let r = read_into(&fd, p, len);
                match r {
                    // A buffer that faults part-way gets the whole entries before the fault.
                    Ok(n) => {
                        if n % ENTRY != 0 || n > len || n > ok_len || n == 0 {
                            t.bad
                                .push(format!("read of {len} (valid {valid}) returned {n}"));
                        } else {
                            // SAFETY: The kernel wrote `n` bytes at `p`.
                            let buf = unsafe { std::slice::from_raw_parts(p, n) };
                            match parse_entries(buf) {
                                Ok(es) => {
                                    for e in es {
                                        if e.version != XEN_CLONE_ABI_VERSION {
                                            t.bad.push(format!("entry with version {}", e.version));
                                        }
                                        outstanding.push(e.id);
                                    }
                                }
                                Err(e) => t.bad.push(e),
                            }
                        }
                        t.note(Op::Read, Ok(()), String::new);
                    }
                    Err(e) => {
                        if ok_len >= ENTRY && len >= ENTRY && e == libc::EFAULT {
                            t.bad
                                .push(format!("read of {len} into a valid buffer: EFAULT"));
                        }
                        t.note(Op::Read, Err(e), || format!("len {len} valid {valid}"));
                    }
                }
            }
            75..=79 => {
                let (p, _, _) = ptrs.pick(&mut rng, 64);
                // SAFETY: The kernel validates the buffer.
                let n = unsafe { libc::write(fd.0, p.cast(), rng.below(64) as usize + 1) };
                let r = if n < 0 { Err(errno()) } else { Ok(()) };
                if r.is_ok() {
                    t.bad.push("write succeeded".into());
                }
                t.note(Op::Write, r, String::new);
            }
            80..=81 => {
                // SAFETY: Mapping the device; expected to fail.
                let m = unsafe {
                    libc::mmap(
                        std::ptr::null_mut(),
                        4096,
                        libc::PROT_READ,
                        libc::MAP_SHARED,
                        fd.0,
                        0,
                    )
                };
                let r = if m == libc::MAP_FAILED {
                    Err(errno())
                } else {
                    // SAFETY: Unmapping what we just mapped.
                    unsafe { libc::munmap(m, 4096) };
                    t.bad.push("mmap succeeded".into());
                    Ok(())
                };
                t.note(Op::Mmap, r, String::new);
            }
            82..=84 => {
                let r = open_dev(0).map(|_| ());
                if r.is_ok() {
                    t.bad.push("second open succeeded".into());
                }
                t.note(Op::SecondOpen, r, String::new);
            }
            85..=89 => {
                let len = if rng.chance(10) {
                    513 + rng.below(600) as usize
                } else {
                    1 + rng.below(64) as usize
                };
                // Bytes that never parse as "parent child [count]": a letter first.
                let mut buf: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                buf[0] = b'x';
                let r = sim_raw_write(&buf);
                if r.is_ok() {
                    t.bad.push(format!(
                        "sim_inject accepted garbage {:?}",
                        &buf[..len.min(16)]
                    ));
                }
                t.note(Op::SimGarbage, r, || format!("{len} bytes"));
            }
            90..=95 => {
                let n = 1 + rng.below(4) as u32;
                // Never more clones waiting than Xen's completion ring holds: a child notified
                // while it is full never enters it (clone.c), and its completion is refused
                // for good (ECANCELED), which is what the device checks test, not the fuzzer.
                // All batches come from parent 40, which (like a real guest) is in one clone
                // hypercall at a time: a batch waits until the previous one was completed.
                if injected - good_completions + u64::from(n) <= i0.entries_num {
                    inject(40, (1000 + it % 30000) as u16, n)?;
                    injected += u64::from(n);
                }
            }
            96..=97 => {
                let _ = poll_in(&fd, rng.below(3) as i32)?;
            }
            _ => {
                // Close with entries outstanding and reopen: they come back REDELIVERED.
                drop(fd);
                fd = open_dev(libc::O_NONBLOCK).map_err(|e| format!("reopen: {}", ename(e)))?;
                outstanding.clear();
            }
        }
    }
    // Complete everything (entries left outstanding are re-read through a re-open).
    drop(fd);
    let fd = open_dev(0).map_err(|e| format!("final open: {}", ename(e)))?;
    let mut rest = 0;
    for _ in 0..1000 {
        rest += drain_all(&fd)?;
        if sim_value("backlog")? == 0 && info_s(&fd)?.queued == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    wait_for("sim waiting == 0", || Ok(sim_value("waiting")? == 0))?;
    let i = info_s(&fd)?;
    let c = &i.counters;
    let c0 = &i0.counters;
    let mut summary = String::new();
    for ((op, e), n) in &t.calls {
        summary.push_str(&format!(" {op:?}/{}={n}", ename(*e)));
    }
    println!(
        "# fuzz seed {seed}: {iterations} iterations, {injected} clones injected, {good_completions} completed during the run, {rest} at the end"
    );
    println!("#{summary}");
    if !t.bad.is_empty() {
        return Err(t.bad.join("; "));
    }
    let d = (
        sim_value("double_completions")? - s0.0,
        sim_value("invalid_completions")? - s0.1,
    );
    if d != (0, 0) {
        return Err(format!(
            "bad completions reached the hypervisor: {} double, {} invalid",
            d.0, d.1
        ));
    }
    if c.notifications - c0.notifications != injected {
        return Err(format!(
            "notifications +{} != injected {injected}",
            c.notifications - c0.notifications
        ));
    }
    if c.completions - c0.completions != injected || good_completions + rest as u64 != injected {
        return Err(format!(
            "completions +{} (run {good_completions} + end {rest}) != injected {injected}",
            c.completions - c0.completions
        ));
    }
    if i.queued != 0 || i.outstanding != 0 || i.prod_idx != i.cons_idx {
        return Err(format!("not idle: {i:?}"));
    }
    Ok(summary)
}
