#!/usr/bin/env bash
# Boot Nephele's Xen (the cloning hypervisor, built from ../shared/nephele/ by
# scripts/build-nephele.sh) under QEMU (TCG) with our Dom0 kernel, Nephele's
# toolstack and our modules and daemon, and run one scenario in which guests
# really fork.
#
#   tests/nephele/run.sh SCENARIO [XENSTORED] [--timeout SECONDS] [NAME=VALUE...]
#
# NAME=VALUE: variables for the scenario inside the Dom0 (e.g. XN_FORKS=3),
# passed on its command line as xc.env.NAME=VALUE (no spaces or commas).
#
# XENSTORED: oxenstored (default; Nephele's, with XS_CLONE) or cxenstored (the
# C xenstored of the same tree: no XS_CLONE, so clones are deep copies).
# Writes $XC_RESULTS/nephele-SCENARIO-XENSTORED/{serial.log,result.json} with
# the protocol of tests/xen/dom0/lib.sh; exits non-zero on failure.
#
# For experiments: XC_XEN_EXTRA (Xen command line), XC_DOM0_EXTRA (Dom0
# command line, no commas), XC_DOM0_EXTRA_BINS (files copied to /usr/local/bin).
. "$(dirname "$0")/../../scripts/lib.sh"
. "$XC_ROOT/tests/lib/initramfs.sh"
. "$XC_ROOT/tests/lib/results.sh"
. "$XC_ROOT/tests/lib/dom0.sh"

scenario=${1:?usage: tests/nephele/run.sh SCENARIO [oxenstored|cxenstored] [--timeout SECONDS]}
shift
xenstored=oxenstored
case ${1:-} in oxenstored|cxenstored) xenstored=$1; shift ;; esac
timeout_s=300
[ "${1:-}" = --timeout ] && { timeout_s=$2; shift 2; }
envs=
for kv in "$@"; do
	case $kv in *=*) envs+=" xc.env.$kv" ;; *) die "not NAME=VALUE: '$kv'" ;; esac
done
[ -f "$XC_ROOT/tests/nephele/scenarios/$scenario.sh" ] || die "no scenario tests/nephele/scenarios/$scenario.sh"

kdir=$XC_CACHE/kbuild/current
[ -f "$kdir/.xc-built" ] || die "no kernel build in $kdir: run scripts/build-kernel.sh"
kver=$(cat "$kdir/include/config/kernel.release")
neph=$("$XC_ROOT/scripts/build-nephele.sh")
name=nephele-$scenario-$xenstored
out=$XC_RESULTS/$name
rm -rf "$out"; mkdir -p "$out"
work=$XC_CACHE/initramfs
mkdir -p "$work"

# --- Dom0 initramfs: ours + Nephele's toolstack ------------------------------
# One tree and image per run name: runs under different VM locks may build
# at the same time.
d=$work/$name
xc_dom0_base "$d" "$kdir" "$kver"
xc_nephele_toolstack "$d" "$neph"
mkdir -p "$d/boot"
cp "$neph/guests/forker" "$neph/guests/server-udp" "$d/boot/"
install -m755 "$XC_ROOT/tests/nephele/dom0/init" "$d/init"
cp "$XC_ROOT/tests/nephele/dom0/lib.sh" "$d/xc/nephele.sh"
cp -r "$XC_ROOT/tests/nephele/scenarios" "$d/xc/scenarios"
ir_pack "$d" "$d.cpio.gz"
log "initramfs: dom0 $(du -h "$d.cpio.gz" | cut -f1)"

# --- boot --------------------------------------------------------------------
# Xen's command line: xc_xen_cmdline (tests/lib/dom0.sh); no commas in the
# Dom0 command line (QEMU splits multiboot modules on commas).
xen_cmdline=$(xc_xen_cmdline)
dom0_cmdline="console=hvc0 earlyprintk=xen rdinit=/init xc.scenario=$scenario xc.xenstored=$xenstored$envs slub_debug=FZPU ${XC_DOM0_EXTRA:-}"
log "booting Nephele's Xen + Dom0, scenario $scenario with $xenstored (timeout ${timeout_s}s)"
xc_vm_run "$name" "$out" "$timeout_s" 3072 \
	-kernel "$neph/xen/xen" -append "$xen_cmdline" \
	-initrd "$kdir/arch/x86/boot/bzImage $dom0_cmdline,$d.cpio.gz"
