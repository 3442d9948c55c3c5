#!/usr/bin/env bash
# Build everything, then show a real clone under QEMU: Nephele's hypervisor
# with our Dom0 kernel, modules and xencloned; a Mini-OS UDP server with a vif
# in bond0 forks three children; each gets its console and a vif attached by
# netback_clone and enslaved by xencloned, and answers on the network. Ends
# with a summary table (tests/nephele/scenarios/net.sh).
. "$(dirname "$0")/lib.sh"
. "$XC_ROOT/tests/lib/results.sh"
"$XC_ROOT/scripts/build.sh"
set +e
"$XC_ROOT/tests/nephele/run.sh" net oxenstored >"$XC_CACHE/demo.checks"
rc=$?
log=$XC_RESULTS/nephele-net-oxenstored/serial.log
printf '\n'
sed -n 's/^.*XC-SUMMARY //p' "$log"
printf '\nchecks: %s passed, %s failed (each: %s; serial log: %s)\n' \
	"$(grep -c '^  PASS' "$XC_CACHE/demo.checks")" "$(grep -c '^  FAIL' "$XC_CACHE/demo.checks")" \
	"$XC_CACHE/demo.checks" "$log"
grep '^  FAIL' "$XC_CACHE/demo.checks"
exit $rc
