# orphan-restart (issue 12 item 6): xen_clone_dev loaded (orphan_timeout=5), no
# xencloned yet. A guest forks: after the orphan timeout the module completes
# the entry itself, the parent's fork() returns and the child stays paused.
# Then xencloned starts (a daemon that restarted too slowly): the module hands
# it the entry flagged XEN_CLONE_ENTRY_AUTO_COMPLETED, and the daemon sets the
# child up and unpauses it without completing it again.
xn_orphan_fork orphan2 child-paused-without-daemon
c=$XN_ORPHAN_CHILD
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
