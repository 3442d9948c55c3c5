#!/usr/bin/env bash
# Plain QEMU (no Xen) boot of the test kernel: runs the KUnit suites of our
# modules and the userspace checks of /dev/xen/clone on the test-only
# simulated hypervisor (module xen_clone_sim).
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
[ -x "$b" ] || die "$b is not built: run scripts/build.sh (the KUnit boot runs it)"
ir_add_bin "$d" "$b" /xc/checks/clone-dev-check
ir_pack "$d" "$XC_CACHE/initramfs/kunit.cpio.gz"

log "booting plain QEMU for KUnit"
rc=0
xc_vm_run kunit "$out" "${XC_KUNIT_TIMEOUT:-180}" 1024 \
	-kernel "$kdir/arch/x86/boot/bzImage" -initrd "$XC_CACHE/initramfs/kunit.cpio.gz" \
	-append "console=ttyS0 rdinit=/init panic=-1 slub_debug=FZPU" || rc=1
# A suite that never ran must not pass: tests/kunit/expected.list.
python3 - "$out/result.json" "$XC_ROOT/tests/kunit/expected.list" <<'PY' || rc=1
import json, sys
r = json.load(open(sys.argv[1]))
ok = {t["name"] for t in r["ktap"] if t["ok"] and not t["skip"]}
checks = {c["name"] for c in r["checks"] if c["ok"]}
bad = []
for line in open(sys.argv[2]):
    w = line.split()
    if not w or w[0].startswith("#"):
        continue
    if w[0] == "min-ok" and sum(1 for t in r["ktap"] if t["ok"] and not t["skip"]) < int(w[1]):
        bad.append(f"fewer than {w[1]} passing KTAP lines")
    elif w[0] == "suite" and w[1] not in ok:
        bad.append(f"suite {w[1]} did not run or did not pass")
    elif w[0] == "check" and w[1] not in checks:
        bad.append(f"check {w[1]} did not run or did not pass")
for b in bad:
    print(f"  FAIL kunit/expected  {b}")
print(f"  {'FAIL' if bad else 'PASS'} kunit/expected-suites-ran")
sys.exit(1 if bad else 0)
PY
exit $rc
