#!/usr/bin/env bash
# Plain QEMU (no Xen) boot of the test kernel: runs the KUnit suites of our
# modules and the userspace checks of /dev/xen/clone in simulate mode.
# Writes $XC_RESULTS/kunit/{serial.log,result.json}; exits non-zero on failure.
. "$(dirname "$0")/../../scripts/lib.sh"
. "$XC_ROOT/tests/lib/initramfs.sh"
. "$XC_ROOT/tests/lib/results.sh"

kdir=$XC_CACHE/kbuild/current
[ -f "$kdir/.xc-built" ] || die "no kernel build in $kdir: run scripts/build-kernel.sh"
out=$XC_RESULTS/kunit
rm -rf "$out"; mkdir -p "$out"
d=$XC_CACHE/initramfs/kunit
ir_init "$d"
mkdir -p "$d/xc/modules" "$d/xc/checks"
install -m755 "$XC_ROOT/tests/kunit/init" "$d/init"
cp "$XC_ROOT/tests/kunit/modules.list" "$d/xc/modules.list"
for ko in "$XC_ROOT"/rust/*/*.ko; do [ -f "$ko" ] && cp "$ko" "$d/xc/modules/"; done
b=$XC_ROOT/userspace/target/release/clone-dev-check
[ -x "$b" ] && ir_add_bin "$d" "$b" /xc/checks/clone-dev-check
ir_pack "$d" "$XC_CACHE/initramfs/kunit.cpio.gz"

log "booting plain QEMU for KUnit"
xc_vm_run kunit "$out" "${XC_KUNIT_TIMEOUT:-180}" 1024 \
	-kernel "$kdir/arch/x86/boot/bzImage" -initrd "$XC_CACHE/initramfs/kunit.cpio.gz" \
	-append "console=ttyS0 rdinit=/init panic=-1 slub_debug=FZPU"
