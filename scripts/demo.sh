#!/usr/bin/env bash
# Build everything and run the demo under QEMU: Xen 4.17 with our Dom0 kernel
# and modules, a guest whose vif joins bond0, pings both ways.
. "$(dirname "$0")/lib.sh"
"$XC_ROOT/scripts/build.sh"
rc=0
for s in ${XC_DEMO_SCENARIOS:-net-basic net-clone}; do
	"$XC_ROOT/tests/xen/run.sh" "$s" || rc=1
	log "serial log: $XC_CACHE/results/xen-$s/serial.log; highlights:"
	grep -E 'XC-|master bond0|xen_clone|netback_clone|cloned' "$XC_CACHE/results/xen-$s/serial.log" | grep -v XC-LOG.*dmesg | head -60 >&2
done
exit $rc
