# orphan-restart (issue 12 item 6): xen_clone_dev loaded (orphan_timeout=5), no
# xencloned yet. A guest forks: after the orphan timeout the module completes
# the entry itself, the parent's fork() returns and the child stays paused.
# Then xencloned starts (a daemon that restarted too slowly): the module hands
# it the entry flagged XEN_CLONE_ENTRY_AUTO_COMPLETED, and the daemon sets the
# child up and unpauses it without completing it again.
xc_check netback-clone-load modprobe netback_clone
xc_check xen-clone-dev-load xn_xcd_load orphan_timeout=5
xc_check guest-created xn_guest orphan2 forker 1 "mode=fork count=1 start_ms=500"
t0=$(xc_now_ms)
if xc_wait 60 xn_console_has orphan2 "XCF parent .*done forks=1"; then
	xc_pass parent-unblocked "fork() returned $(( $(xc_now_ms) - t0 )) ms after create"
else
	xc_fail parent-unblocked "$(grep XCF "$(xn_console orphan2)" | tail -n 2 | tr '\n' '|')"
fi
c=$(sed -n 's/.*XCF parent .*fork i=1 rc=\([0-9]*\) .*/\1/p' "$(xn_console orphan2)")
[ -n "$c" ] && xn_paused "$c" && xc_pass child-paused-without-daemon "domain $c: $(xn_state "$c")" ||
	xc_fail child-paused-without-daemon "child '$c' state '$(xn_state "$c")'"
au=$(xn_xcd_counter auto_completions)
[ "$au" = 1 ] && xc_pass auto-completed-once || xc_fail auto-completed-once "auto_completions '$au'"
dmesg | grep 'xen_clone_dev.*auto-completed' | tail -n 1 | sed 's/^/XC-LOG dmesg: /'
# The daemon comes back.
xc_check xencloned-start xc_xencloned_run 1
if [ -n "$c" ] && xc_wait 60 sh -c "! xl list $c 2>/dev/null | awk 'NR == 2 { print \$5 }' | grep -q p"; then
	xc_pass child-unpaused-by-restarted-daemon "domain $c: $(xn_state "$c")"
else
	xc_fail child-unpaused-by-restarted-daemon "child '$c' state '$(xn_state "$c")'"
fi
if [ -n "$c" ] && xc_wait 30 sh -c "grep -q 'XCF child domid=$c .*tick=' /var/log/xen/console/guest-*.log"; then
	xc_pass child-runs
else
	xc_fail child-runs "no tick from child $c"
fi
rep=$(xn_xcd_counter auto_completed_reported); co=$(xn_xcd_counter completions)
he=$(xn_xcd_counter hypervisor_errors)
[ "$rep" = 1 ] && [ "$co" = 0 ] && [ "$he" = 0 ] &&
	xc_pass reported-not-completed-again "auto_completed_reported $rep, completions $co, hypervisor errors $he" ||
	xc_fail reported-not-completed-again "auto_completed_reported '$rep', completions '$co', hypervisor errors '$he'"
grep -m1 "orphan policy" /tmp/xencloned.1.log | cut -c1-300 | sed 's/^/XC-LOG xencloned: /'
grep -q "completed by xen_clone_dev's orphan policy" /tmp/xencloned.1.log &&
	xc_pass daemon-logged || xc_fail daemon-logged
xc_xencloned_finish 1
