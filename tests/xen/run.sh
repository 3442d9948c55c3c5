#!/usr/bin/env bash
# Boot Xen 4.17 under QEMU (TCG) with our Dom0 kernel and run one scenario.
#
#   tests/xen/run.sh SCENARIO [--timeout SECONDS]
#
# Needs a built kernel (scripts/build-kernel.sh) and, when present, our modules
# (make modules) and userspace binaries (make userspace). Writes
# $XC_RESULTS/xen-SCENARIO/{serial.log,result.json}; exits non-zero on failure.
#
# For experiments: XC_XEN_EXTRA (Xen command line), XC_DOM0_EXTRA (Dom0
# command line, no commas), XC_DOM0_EXTRA_BINS (files copied to the Dom0's
# /usr/local/bin), XC_QEMU_CPU / XC_QEMU_ACCEL (tests/lib/results.sh).
. "$(dirname "$0")/../../scripts/lib.sh"
. "$XC_ROOT/tests/lib/initramfs.sh"
. "$XC_ROOT/tests/lib/results.sh"
. "$XC_ROOT/tests/lib/dom0.sh"

scenario=${1:?usage: tests/xen/run.sh SCENARIO [--timeout SECONDS]}
timeout_s=360
[ "${2:-}" = --timeout ] && timeout_s=$3
[ -f "$XC_ROOT/tests/xen/scenarios/$scenario.sh" ] || die "no scenario tests/xen/scenarios/$scenario.sh"

kdir=$XC_CACHE/kbuild/current
[ -f "$kdir/.xc-built" ] || die "no kernel build in $kdir: run scripts/build-kernel.sh"
kver=$(cat "$kdir/include/config/kernel.release")
xen=$("$XC_ROOT/scripts/fetch-xen.sh")
out=$XC_RESULTS/xen-$scenario
rm -rf "$out"; mkdir -p "$out"
work=$XC_CACHE/initramfs
mkdir -p "$work"
export LD_LIBRARY_PATH
LD_LIBRARY_PATH=$(xen_ld_path "$xen")

# --- DomU initramfs: busybox only; netfront is built into our kernel -------
ir_init "$work/domu"
install -m755 "$XC_ROOT/tests/xen/domu/init" "$work/domu/init"
ir_pack "$work/domu" "$work/domu.cpio.gz"

# --- Dom0 initramfs ----------------------------------------------------------
d=$work/dom0
xc_dom0_base "$d" "$kdir" "$kver"
for b in xl xenstored xenconsoled xen-init-dom0 libxl-save-helper; do
	ir_add_bin "$d" "$xen/usr/lib/xen-$XEN_VERSION_SERIES/bin/$b" "/usr/lib/xen-$XEN_VERSION_SERIES/bin/$b"
done
for b in "$xen"/usr/bin/xenstore*; do
	if [ -L "$b" ]; then cp -a "$b" "$d/usr/bin/"; else ir_add_bin "$d" "$b" "/usr/bin/${b##*/}"; fi
done
cp -a "$xen/etc/xen" "$d/etc/"
mkdir -p "$d/boot" "$d/xc"
cp "$kdir/arch/x86/boot/bzImage" "$d/boot/vmlinuz"
cp "$work/domu.cpio.gz" "$d/boot/domu.cpio.gz"
install -m755 "$XC_ROOT/tests/xen/dom0/init" "$d/init"
cp -r "$XC_ROOT/tests/xen/scenarios" "$d/xc/scenarios"
ir_pack "$d" "$work/dom0.cpio.gz"
log "initramfs: dom0 $(du -h "$work/dom0.cpio.gz" | cut -f1), domu $(du -h "$work/domu.cpio.gz" | cut -f1)"

# --- boot --------------------------------------------------------------------
# No commas in the Dom0 command line: QEMU splits multiboot modules on commas.
# Xen's own command line: xc_xen_cmdline (tests/lib/dom0.sh).
xen_cmdline=$(xc_xen_cmdline)
dom0_cmdline="console=hvc0 earlyprintk=xen rdinit=/init xc.scenario=$scenario slub_debug=FZPU ${XC_DOM0_EXTRA:-}"
log "booting Xen + Dom0, scenario $scenario (timeout ${timeout_s}s)"
xc_vm_run "xen-$scenario" "$out" "$timeout_s" 3072 \
	-kernel "$xen/boot/xen-$XEN_VERSION_SERIES-amd64" -append "$xen_cmdline" \
	-initrd "$kdir/arch/x86/boot/bzImage $dom0_cmdline,$work/dom0.cpio.gz"
