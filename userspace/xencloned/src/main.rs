//! `xencloned` command line. See `xencloned --help`.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tracing_subscriber::filter::LevelFilter;
use xen_clone_abi::{XEN_CLONE_DEV_PATH, XEN_CLONE_ENABLE_PAGE_SHARING_POOL, XenCloneInfo};
use xencloned::clone::{Options, XsMode};
use xencloned::daemon::{Config, Daemon, Deps};
use xencloned::devinfo::{self, DEBUGFS_DIR};
use xencloned::hypervisor::{DisableOutcome, Privcmd, clone_op_disable};
use xencloned::netlink::{NetOps, Rtnl};
use xencloned::source::{CloneSource, DeviceSource, IdleSource};
use xencloned::uevent::KernelUevents;
use xenstore::{Client, Dialect, Endpoint};

/// Dom0 daemon for Nephele's Xen VM cloning
///
/// Gives each cloned Xen domain its Xenstore trees, console and vifs, then
/// completes the clone through /dev/xen/clone and unpauses the child.
/// Compatible with Nephele's xencloned options; with no option it probes
/// the xenstored (XS_CLONE or deep copy) and the domctl version itself.
#[derive(Parser, Debug)]
#[command(
    name = "xencloned",
    version,
    args_conflicts_with_subcommands = true,
    after_help = "Examples:\n  xencloned                  foreground, logs on stderr (systemd: Type=notify)\n  xencloned -D               background, logs in /var/log/xen/xencloned.log\n  xencloned status [--json]  the daemon's counters, then xen_clone_dev's\n  xencloned -R               free a ring a killed daemon left enabled"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Run in the background (fork + setsid). Unlike Nephele's -D, logs are
    /// kept: they go to --log-file.
    #[arg(short = 'D', long = "daemon")]
    daemon: bool,
    /// Cache parent descriptions (at most 32, LRU); an entry is dropped when
    /// the parent's control/shutdown changes or @releaseDomain shows it gone.
    /// The default: accepted for Nephele's -c.
    #[arg(short = 'c', long = "cache", overrides_with = "no_cache")]
    cache: bool,
    /// Read the parent's description again for every clone.
    #[arg(long = "no-cache")]
    no_cache: bool,
    /// Leave clones paused after completion (fuzzing).
    #[arg(short = 'p', long = "paused")]
    paused: bool,
    /// Ring pages. The kernel module owns the ring now (module parameter
    /// ring_pages): the daemon only checks this against the device and
    /// warns if they differ.
    #[arg(short = 'r', long = "ring-pages-num", value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=32))]
    ring_pages: Option<u32>,
    /// Skip I/O cloning (no vifs); Xenstore basic and console are still
    /// cloned and completion is immediate.
    #[arg(short = 'n', long = "no-io")]
    no_io: bool,
    /// Page-sharing-info pool. Owned by the kernel module's enable flags
    /// now: checked against the device, with a warning if they differ.
    #[arg(short = 'x', long = "use-page-sharing-info-pool")]
    page_sharing_pool: bool,
    /// Deep copy of Xenstore trees (in transactions) instead of XS_CLONE.
    /// Automatic when the xenstored does not speak Nephele's dialect.
    #[arg(short = 'd', long = "xenstore-deep-copy")]
    deep_copy: bool,
    /// Reset, like Nephele's -R: issue CLONEOP_disable through privcmd
    /// (hypercall 43) and exit, to free a clone ring that a killed daemon
    /// (or a failed xen_clone_dev unload) left enabled, after which
    /// xen_clone_dev can load. Says whether it disabled a ring or nothing
    /// was enabled (exit 0) or why it failed (exit 1). While xen_clone_dev
    /// is loaded it owns the ring: then nothing is disabled, its state is
    /// printed (rmmod xen_clone_dev disables the ring).
    #[arg(short = 'R', long = "reset")]
    reset: bool,
    /// Clone device.
    #[arg(long, value_name = "PATH", default_value = XEN_CLONE_DEV_PATH)]
    device: PathBuf,
    /// Xenstore socket or device [default: $XENSTORED_PATH,
    /// $XENSTORED_RUNDIR/socket, /run/xenstored/socket, /dev/xen/xenbus].
    #[arg(long, value_name = "PATH")]
    xenstore: Option<PathBuf>,
    /// Xenstore wire numbering: upstream (22 = DIRECTORY_PART) or nephele
    /// (22 = XS_CLONE, 23 = DIRECTORY_PART); auto probes the daemon with a
    /// harmless XS_CLONE (oxenstored: EEXIST, so XS_CLONE is used; the C
    /// xenstored: an error of its XS_DIRECTORY_PART, so deep copy).
    #[arg(long, value_enum, default_value_t = DialectArg::Auto)]
    dialect: DialectArg,
    /// privcmd device (foreign maps and domctl hypercalls).
    #[arg(long, value_name = "PATH", default_value = "/dev/xen/privcmd")]
    privcmd: PathBuf,
    /// XEN_DOMCTL interface version: auto (probe), or e.g. 0x14 (Nephele's
    /// Xen) / 0x15 (Xen 4.17).
    #[arg(long, value_name = "VER", default_value = "auto", value_parser = parse_version)]
    domctl_version: VersionArg,
    /// How long a cloned vif may wait for netback's online uevent before
    /// sysfs/Xenstore are re-checked and the vif is failed (the clone is
    /// then completed, its child left paused). A vif that comes up later
    /// still wins: it is connected and, if it was the clone's only
    /// failure, the child is unpaused.
    #[arg(long, value_name = "MS", default_value_t = xencloned::clone::DEFAULT_VIF_TIMEOUT_MS)]
    vif_timeout_ms: u64,
    /// After connecting a clone's vif, send one ARP request through it from
    /// the gateway to the guest IP (backend `ip` = "<ip> <mask> <gw>"), so
    /// the clone learns the gateway through its own vif.
    #[arg(long)]
    garp: bool,
    /// Stats file (JSON), read by `xencloned status`.
    #[arg(long, value_name = "PATH", default_value = "/run/xencloned/stats.json")]
    stats_file: PathBuf,
    /// Log file used with -D.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "/var/log/xen/xencloned.log"
    )]
    log_file: PathBuf,
    /// Log level (error, warn, info, debug, trace).
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    log_level: LevelFilter,
    /// Testing aid: no hypervisor access (no privcmd). MFNs read as 0, so
    /// no page copies, no XS_INTRODUCE and no unpause; Xenstore, console,
    /// vifs and completion run as usual. For the test-only xen_clone_sim device.
    #[arg(long)]
    no_hypervisor: bool,
    /// No clone device: only adopt cloned vifs (backend `cloned=true`,
    /// brought online by netback, no `hotplug-status` yet) into the bond
    /// named by their backend's `bridge`, write `hotplug-status=connected`,
    /// and release them when netback takes them offline. For Xen without
    /// clone support (where xen_clone_dev does not load) and clone-shaped
    /// test setups. Implies --no-hypervisor; --device is not opened.
    #[arg(long, conflicts_with_all = ["simulate", "no_io", "reset"])]
    adopt_only: bool,
    /// Test only: no Xen. A simulated clone device (no entries) and
    /// hypervisor; exercises start-up, notify, signals and shutdown.
    #[arg(long, hide = true)]
    simulate: bool,
    /// Benchmark only: the XS_CLONE floor. Per clone only the XS_CLONEs of
    /// the basic and console trees and XS_INTRODUCE (pipelined), then the
    /// completion: no page copy, no fix-up, no vif, children left paused.
    /// Needs XS_CLONE (oxenstored).
    #[arg(long, hide = true, conflicts_with_all = ["adopt_only", "deep_copy"])]
    bench_xs_floor: bool,
    /// sysfs root (tests).
    #[arg(long, value_name = "PATH", default_value = "/sys", hide = true)]
    sysfs: PathBuf,
    /// xen_clone_dev's debugfs directory (tests).
    #[arg(long, value_name = "DIR", default_value = DEBUGFS_DIR, hide = true)]
    debugfs: PathBuf,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum DialectArg {
    Auto,
    Upstream,
    Nephele,
}

#[derive(Clone, Copy, Debug)]
enum VersionArg {
    Auto,
    Fixed(u32),
}

fn parse_version(s: &str) -> Result<VersionArg, String> {
    if s == "auto" {
        return Ok(VersionArg::Auto);
    }
    let v = match s.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16),
        None => s.parse(),
    };
    v.map(VersionArg::Fixed).map_err(|e| format!("{s:?}: {e}"))
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Print the daemon's counters and latencies (the stats file), then
    /// xen_clone_dev's counters (debugfs). Works while the daemon runs.
    Status {
        #[arg(long, value_name = "PATH", default_value = "/run/xencloned/stats.json")]
        stats_file: PathBuf,
        /// xen_clone_dev's debugfs directory (its `counters` file).
        #[arg(long, value_name = "DIR", default_value = DEBUGFS_DIR)]
        debugfs: PathBuf,
        /// Clone device, whose INFO ioctl is used only if debugfs cannot be
        /// read (the device is busy while the daemon runs).
        #[arg(long, value_name = "PATH", default_value = XEN_CLONE_DEV_PATH)]
        device: PathBuf,
        /// Print JSON, {"stats": <the stats file>, "module": {"source",
        /// "counters"} or null}, instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Print xen_clone_dev's ring state and counters, from its debugfs
    /// files (works while the daemon runs), else from the device's INFO
    /// ioctl (only while no daemon holds the device).
    Info {
        /// xen_clone_dev's debugfs directory (`state`, `counters`).
        #[arg(long, value_name = "DIR", default_value = DEBUGFS_DIR)]
        debugfs: PathBuf,
        /// Clone device, whose INFO ioctl is used only if debugfs cannot be
        /// read.
        #[arg(long, value_name = "PATH", default_value = XEN_CLONE_DEV_PATH)]
        device: PathBuf,
        /// Print JSON, {"source", "state", "counters"}, instead of the
        /// `name value` lines.
        #[arg(long)]
        json: bool,
    },
    /// Exercise the in-process rtnetlink operations (test VM).
    Net {
        #[command(subcommand)]
        op: NetCmd,
    },
    /// Write the manual page (roff, section 8) to stdout; `make install`
    /// installs it as xencloned.8.
    #[command(hide = true)]
    Man,
}

#[derive(Subcommand, Debug)]
enum NetCmd {
    /// Enslave DEV into MASTER (must be a bond), then bring DEV up.
    Enslave { dev: String, master: String },
    /// Release DEV from its master.
    Release { dev: String },
    /// Bring DEV up.
    Up { dev: String },
    /// Print the kind of DEV (bond, bridge, other, missing) and its master.
    Kind { dev: String },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Some(Cmd::Status {
            stats_file,
            debugfs,
            device,
            json,
        }) => return status(&stats_file, &debugfs, &device, json),
        Some(Cmd::Info {
            debugfs,
            device,
            json,
        }) => {
            init_logging(LevelFilter::INFO);
            return info(&debugfs, &device, json);
        }
        Some(Cmd::Net { op }) => {
            init_logging(LevelFilter::INFO);
            return net(op);
        }
        Some(Cmd::Man) => {
            return match man_page(&mut std::io::stdout().lock()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("xencloned: man: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        None => {}
    }
    let a = cli.run;
    // The environment is read here, before anything else runs; what the
    // daemon needs of it is passed down.
    let notify_socket = xencloned::notify::socket_from_env();
    if a.daemon
        && let Err(e) = daemonize(&a.log_file)
    {
        eprintln!("xencloned: -D: {e}");
        return ExitCode::FAILURE;
    }
    init_logging(a.log_level);
    match run(a, notify_socket.as_deref()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(level: LevelFilter) {
    let ansi = nix::unistd::isatty(std::io::stderr()).unwrap_or(false);
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_ansi(ansi)
        .init();
}

/// Background mode that keeps the logs: stderr goes to `log_file`.
fn daemonize(log_file: &std::path::Path) -> Result<(), String> {
    if let Some(dir) = log_file.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_file)
        .map_err(|e| format!("{}: {e}", log_file.display()))?;
    nix::unistd::daemon(false, false).map_err(|e| format!("daemon(): {e}"))?;
    // SAFETY: dup2 onto stderr of a live fd we own; stdio is not in use by
    // other threads (none exist yet).
    if unsafe { libc::dup2(log.as_raw_fd(), 2) } < 0 {
        return Err(format!("dup2: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// `-R`: `CLONEOP_disable` through privcmd, unless xen_clone_dev is loaded
/// (it owns the ring then, and disabling it under the module would strand
/// its waiting parents: the hypervisor frees the completion ring at once).
fn reset(a: &RunArgs) -> Result<(), String> {
    let module = a.sysfs.join("module/xen_clone_dev");
    let loaded =
        devinfo::module_loaded(&module).map_err(|e| format!("-R: {}: {e}", module.display()))?;
    if loaded {
        match devinfo::module_report(&a.debugfs, &a.device) {
            Ok(r) => print!("{}", r.render()),
            Err(e) => tracing::warn!("{e}"),
        }
        println!(
            "xencloned -R: xen_clone_dev is loaded ({}) and owns the clone ring: not disabling it; 'rmmod xen_clone_dev' disables it (entries not completed are re-delivered to the next xencloned while it stays loaded)",
            module.display()
        );
        return Ok(());
    }
    let path = a.privcmd.display().to_string();
    let mut pc = Privcmd::open(&a.privcmd, None).map_err(|e| format!("-R: {e}"))?;
    match clone_op_disable(&mut pc, &path) {
        Ok(DisableOutcome::Disabled) => {
            println!(
                "xencloned -R: CLONEOP_disable (hypercall 43 through {path}): disabled the clone ring that was still enabled (left by a killed xencloned or an earlier xen_clone_dev); xen_clone_dev can be loaded now"
            );
            Ok(())
        }
        Ok(DisableOutcome::NotEnabled) => {
            println!(
                "xencloned -R: CLONEOP_disable (hypercall 43 through {path}): nothing was enabled (the hypervisor answered EINVAL); nothing to do"
            );
            Ok(())
        }
        Err(e) => Err(format!("-R: {e}")),
    }
}

/// sd_notify; a failure is logged, never fatal.
fn notify(socket: Option<&std::ffi::OsStr>, msg: &str) {
    if let Err(e) = xencloned::notify::notify(socket, msg) {
        tracing::warn!("{e}");
    }
}

fn run(
    a: RunArgs,
    notify_socket: Option<&std::ffi::OsStr>,
) -> Result<(), Box<dyn std::error::Error>> {
    if a.reset {
        return reset(&a).map_err(Into::into);
    }
    // With --simulate, `_sim` keeps the simulated device's other end alive.
    let (mut source, _sim): (Box<dyn CloneSource>, Option<xencloned::source::SimHandle>) =
        if a.simulate {
            let info = XenCloneInfo {
                version: xen_clone_abi::XEN_CLONE_ABI_VERSION,
                ring_pages: 1,
                entries_num: 128,
                flags: xen_clone_abi::XEN_CLONE_INFO_SIMULATED,
                ..Default::default()
            };
            let (s, handle) = xencloned::source::SimSource::new(info)?;
            (Box::new(s), Some(handle))
        } else if a.adopt_only {
            tracing::info!(
                "--adopt-only: no clone device; adopting the cloned vifs netback brings online"
            );
            (Box::new(IdleSource::new()?), None)
        } else {
            (Box::new(DeviceSource::open(&a.device)?), None)
        };
    let info = source.info()?;
    if let Some(i) = &info {
        check_device_config(i, a.ring_pages, a.page_sharing_pool);
    }
    let endpoint = a
        .xenstore
        .as_deref()
        .map(Endpoint::from_path)
        .unwrap_or_else(Endpoint::from_env);
    let mut xs = Client::connect(&endpoint, Dialect::Upstream)?;
    let (dialect, xs_clone) = match a.dialect {
        DialectArg::Upstream => (Dialect::Upstream, false),
        DialectArg::Nephele => (Dialect::Nephele, true),
        DialectArg::Auto => {
            let p = xs.probe_dialect()?;
            tracing::info!(xenstore = %endpoint, "dialect probe: {p}");
            (p.dialect, p.xs_clone)
        }
    };
    xs.set_dialect(dialect);
    let mode = if a.deep_copy || !xs_clone {
        XsMode::DeepCopy
    } else {
        XsMode::XsClone
    };
    if !a.deep_copy && !xs_clone {
        tracing::warn!(
            "xenstored at {endpoint} speaks the {} dialect without XS_CLONE: using deep copy",
            match dialect {
                Dialect::Upstream => "upstream",
                Dialect::Nephele => "Nephele",
            }
        );
    }
    tracing::info!(?dialect, ?mode, xenstore = %endpoint, "xenstore");
    let version = match a.domctl_version {
        VersionArg::Auto => None,
        VersionArg::Fixed(v) => Some(v),
    };
    let hv: Box<dyn xencloned::hypervisor::Hypervisor> =
        if a.simulate || a.no_hypervisor || a.adopt_only {
            Box::new(xencloned::hypervisor::NoHypervisor)
        } else {
            Box::new(Privcmd::open(&a.privcmd, version)?)
        };
    let net = Rtnl::open(a.sysfs.clone())?;
    let uevents = KernelUevents::open()?;
    let cfg = Config {
        opts: Options {
            mode,
            skip_io: a.no_io || a.bench_xs_floor,
            leave_paused: a.paused || a.bench_xs_floor,
            vif_timeout: Duration::from_millis(a.vif_timeout_ms),
            garp: a.garp,
            xs_floor: a.bench_xs_floor,
            xs_clone_confirmed: false,
        },
        cache: !a.no_cache,
        stats_file: Some(a.stats_file.clone()),
        signals: true,
    };
    let mut d = Daemon::new(
        Deps {
            source,
            uevents: Box::new(uevents),
            xs,
            hv,
            net: Box::new(net),
        },
        cfg,
    )?;
    d.reconcile();
    notify(
        notify_socket,
        &format!(
            "READY=1\nMAINPID={}\nSTATUS=consuming clone notifications",
            std::process::id()
        ),
    );
    let device = if a.adopt_only {
        "none (--adopt-only)".to_string()
    } else {
        a.device.display().to_string()
    };
    tracing::info!(%device, "ready");
    d.run()?;
    notify(notify_socket, "STOPPING=1");
    tracing::info!("stopped");
    Ok(())
}

fn check_device_config(i: &XenCloneInfo, ring_pages: Option<u32>, pool: bool) {
    if let Some(r) = ring_pages
        && r != i.ring_pages
    {
        tracing::warn!(
            "-r {r} ignored: the ring belongs to the kernel module, which uses {} page(s) ({} entries); reload xen_clone_dev with ring_pages={r} to change it",
            i.ring_pages,
            i.entries_num
        );
    }
    let dev_pool = i.enable_flags & XEN_CLONE_ENABLE_PAGE_SHARING_POOL != 0;
    if pool != dev_pool {
        tracing::warn!(
            "-x {}: the kernel module enabled cloning {} the page-sharing-info pool; this flag cannot change it (module parameter)",
            if pool { "given" } else { "not given" },
            if dev_pool { "WITH" } else { "WITHOUT" }
        );
    }
}

/// JSON on stdout, pretty, with a final newline.
fn print_json(v: &serde_json::Value) {
    match serde_json::to_string_pretty(v) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("xencloned: JSON: {e}"),
    }
}

fn info(debugfs: &std::path::Path, device: &std::path::Path, json: bool) -> ExitCode {
    match devinfo::module_report(debugfs, device) {
        Ok(r) => {
            if json {
                print_json(&r.to_json());
            } else {
                print!("{}", r.render());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xencloned: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The stats file (required), then the module's counters (best effort:
/// without them, a note on stderr naming the paths tried). A table, or
/// with `json` one JSON document of both.
fn status(
    path: &std::path::Path,
    debugfs: &std::path::Path,
    device: &std::path::Path,
    json: bool,
) -> ExitCode {
    let stats: serde_json::Value = match std::fs::read_to_string(path) {
        Ok(s) => match serde_json::from_str(&s) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("xencloned: {}: not a stats file: {e}", path.display());
                return ExitCode::FAILURE;
            }
        },
        Err(e) => {
            eprintln!(
                "xencloned: {}: {e} (is the daemon running with --stats-file {}?)",
                path.display(),
                path.display()
            );
            return ExitCode::FAILURE;
        }
    };
    let module = devinfo::module_counters(debugfs, device)
        .inspect_err(|e| eprintln!("xencloned: {e}"))
        .ok();
    if json {
        let module = module.map_or(
            serde_json::Value::Null,
            |r| serde_json::json!({"source": r.source, "counters": r.to_json()["counters"]}),
        );
        print_json(&serde_json::json!({"stats": stats, "module": module}));
    } else {
        print!(
            "{}",
            xencloned::stats::render_table(&path.display().to_string(), &stats)
        );
        if let Some(r) = module {
            print!("{}", r.render());
        }
    }
    ExitCode::SUCCESS
}

fn net(op: NetCmd) -> ExitCode {
    let mut n = match Rtnl::open(PathBuf::from("/sys")) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("xencloned: rtnetlink: {e}");
            return ExitCode::FAILURE;
        }
    };
    let r = match op {
        NetCmd::Enslave { dev, master } => {
            xencloned::clone::vif::enslave(&mut n, &dev, &master).map_err(|e| e.to_string())
        }
        NetCmd::Release { dev } => n.release(&dev).map_err(|e| e.to_string()),
        NetCmd::Up { dev } => n.set_up(&dev).map_err(|e| e.to_string()),
        NetCmd::Kind { dev } => {
            println!(
                "{dev}: {:?} master={:?}",
                n.master_kind(&dev),
                n.master_of(&dev)
            );
            Ok(())
        }
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xencloned: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The manual page, from the same `clap` definitions as `--help`: the
/// daemon's options, one subsection per command with its options, then
/// the files, the signals and the related pages.
fn man_page(w: &mut dyn std::io::Write) -> std::io::Result<()> {
    use clap::CommandFactory;
    use roff::{Roff, bold, italic, roman};
    let cmd = Cli::command().disable_help_subcommand(true);
    let man = clap_mangen::Man::new(cmd.clone())
        .section("8")
        .manual("System Manager's Manual")
        .source(format!("xen-clone {}", env!("CARGO_PKG_VERSION")));
    man.render_title(w)?;
    man.render_name_section(w)?;
    man.render_synopsis_section(w)?;
    man.render_description_section(w)?;
    man.render_options_section(w)?;
    let mut r = Roff::new();
    r.control("SH", ["COMMANDS"]);
    let mut subs: Vec<(String, &clap::Command)> = Vec::new();
    for sub in cmd.get_subcommands().filter(|c| !c.is_hide_set()) {
        if sub.has_subcommands() {
            for s in sub.get_subcommands().filter(|c| !c.is_hide_set()) {
                subs.push((format!("{} {}", sub.get_name(), s.get_name()), s));
            }
        } else {
            subs.push((sub.get_name().to_string(), sub));
        }
    }
    for (name, sub) in subs {
        let mut synopsis = vec![bold(format!("xencloned {name}"))];
        for a in sub.get_arguments().filter(|a| !a.is_hide_set()) {
            let id = a.get_id().as_str();
            if id == "help" {
                continue;
            }
            if a.is_positional() {
                synopsis.push(roman(" "));
                synopsis.push(italic(id.to_uppercase()));
            }
        }
        r.control("SS", [name.as_str()]);
        r.text(synopsis);
        if let Some(about) = sub.get_long_about().or_else(|| sub.get_about()) {
            r.control("PP", []);
            r.text([roman(about.to_string())]);
        }
        for a in sub
            .get_arguments()
            .filter(|a| !a.is_hide_set() && !a.is_positional())
        {
            let Some(long) = a.get_long() else { continue };
            if long == "help" {
                continue;
            }
            r.control("TP", []);
            let mut head = vec![bold(format!("--{long}"))];
            if let Some(v) = a.get_value_names() {
                head.push(roman(" "));
                head.push(italic(v.join(" ")));
            }
            r.text(head);
            let mut help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
            if let Some(d) = a.get_default_values().first() {
                help.push_str(&format!(" [default: {}]", d.to_string_lossy()));
            }
            r.text([roman(help)]);
        }
    }
    r.control("SH", ["FILES"]);
    for (f, what) in [
        (
            XEN_CLONE_DEV_PATH,
            "The clone device of the xen_clone_dev module (exclusive open).",
        ),
        (
            "/run/xencloned/stats.json",
            "Counters and recent latencies (JSON), rewritten at most every 200 ms; read by xencloned status.",
        ),
        (
            "/var/log/xen/xencloned.log",
            "The log with -D (without -D the log goes to stderr).",
        ),
        (
            DEBUGFS_DIR,
            "xen_clone_dev's state and counters, read by xencloned status and info.",
        ),
        (
            "/etc/modprobe.d/xen-clone.conf",
            "Parameters of xen_clone_dev (ring_pages, orphan_timeout, page_sharing_pool).",
        ),
        (
            "/etc/modules-load.d/xen-clone.conf",
            "Loads xen_clone_dev and netback_clone at boot.",
        ),
    ] {
        r.control("TP", []);
        r.text([italic(f)]);
        r.text([roman(what)]);
    }
    r.control("SH", ["EXAMPLES"]);
    for (c, what) in [
        (
            "xencloned",
            "Foreground, logs on stderr; READY=1 to $NOTIFY_SOCKET (systemd Type=notify).",
        ),
        (
            "xencloned -D",
            "Background, logs in /var/log/xen/xencloned.log (rc.local).",
        ),
        (
            "xencloned status",
            "The daemon's counters and latencies, then xen_clone_dev's.",
        ),
        (
            "xencloned -R",
            "Free a clone ring a killed daemon left enabled, so that xen_clone_dev loads.",
        ),
    ] {
        r.control("TP", []);
        r.text([bold(c)]);
        r.text([roman(what)]);
    }
    r.control("SH", ["SIGNALS"]);
    r.text([roman(
        "SIGTERM, SIGINT and SIGQUIT stop the daemon after the stats file is written. \
         Under systemd (Type=notify) READY=1 is sent once the device, Xenstore and \
         netlink are open, STOPPING=1 at shutdown.",
    )]);
    r.control("SH", ["SEE ALSO"]);
    r.text([roman(
        "xl(1), xenstored(8), modprobe(8), systemd.service(5); \
         the xen-clone README for /dev/xen/clone's ABI and the module parameters.",
    )]);
    r.to_writer(w)?;
    man.render_version_section(w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn man_page_has_the_options_and_the_commands() {
        let mut out = Vec::new();
        man_page(&mut out).expect("render");
        let s = String::from_utf8(out).expect("utf-8");
        assert!(s.contains("\n.TH xencloned 8 "), "{}", &s[..80]);
        for want in [
            "stats\\-file",
            ".SS status",
            ".SS \"net enslave\"",
            ".SH FILES",
            "/dev/xen/clone",
        ] {
            assert!(s.contains(want), "{want} missing from the man page");
        }
        assert!(!s.contains(".SS man"), "the hidden man command is listed");
    }

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn nephele_flags_parse() {
        let c = Cli::try_parse_from(["xencloned", "-D", "-c", "-p", "-r", "4", "-n", "-x", "-d"])
            .expect("parse");
        let a = c.run;
        assert!(a.daemon && a.cache && a.paused && a.no_io && a.page_sharing_pool && a.deep_copy);
        assert_eq!(a.ring_pages, Some(4));
        let c = Cli::try_parse_from([
            "xencloned",
            "--daemon",
            "--cache",
            "--paused",
            "--ring-pages-num",
            "2",
            "--no-io",
            "--use-page-sharing-info-pool",
            "--xenstore-deep-copy",
            "--reset",
        ])
        .expect("parse long names");
        assert!(c.run.reset && c.run.cache && c.run.deep_copy);
        assert!(Cli::try_parse_from(["xencloned", "-r", "0"]).is_err());
        assert!(Cli::try_parse_from(["xencloned", "-r", "33"]).is_err());
        assert!(Cli::try_parse_from(["xencloned", "stray"]).is_err());
    }

    #[test]
    fn adopt_only_excludes_the_modes_it_cannot_serve() {
        let d = Cli::try_parse_from(["xencloned"]).expect("parse");
        assert!(!d.run.no_cache, "the parent cache is on by default");
        let n = Cli::try_parse_from(["xencloned", "--no-cache"]).expect("parse");
        assert!(n.run.no_cache);
        let c = Cli::try_parse_from(["xencloned", "--adopt-only", "--cache"]).expect("parse");
        assert!(c.run.adopt_only && c.run.cache);
        for other in ["--simulate", "-n", "--reset"] {
            assert!(
                Cli::try_parse_from(["xencloned", "--adopt-only", other]).is_err(),
                "--adopt-only with {other}"
            );
        }
    }

    #[test]
    fn domctl_version_values() {
        assert!(matches!(parse_version("auto"), Ok(VersionArg::Auto)));
        assert!(matches!(parse_version("0x14"), Ok(VersionArg::Fixed(0x14))));
        assert!(matches!(parse_version("21"), Ok(VersionArg::Fixed(21))));
        assert!(parse_version("0xzz").is_err());
    }

    #[test]
    fn help_documents_every_flag() {
        let help = Cli::command().render_help().to_string();
        for f in [
            "--daemon",
            "--cache",
            "--paused",
            "--ring-pages-num",
            "--no-io",
            "--use-page-sharing-info-pool",
            "--xenstore-deep-copy",
            "--reset",
            "--dialect",
            "--domctl-version",
            "--vif-timeout-ms",
            "--stats-file",
            "--log-file",
            "--adopt-only",
        ] {
            assert!(help.contains(f), "{f} missing from --help");
        }
    }
}
