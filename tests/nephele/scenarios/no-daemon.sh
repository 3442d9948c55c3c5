# no-daemon: xen_clone_dev loaded (orphan_timeout=5), no xencloned. A guest
# forks: after the orphan timeout the module completes the entry itself, so
# the parent's fork() returns, and the child is left paused (it has no
# devices), as the README documents; the module logs and counts it.
xc_check netback-clone-load modprobe netback_clone
xc_check xen-clone-dev-load xn_xcd_load orphan_timeout=5
xc_check guest-created xn_guest orphan1 forker 1 "mode=fork count=1 start_ms=500"
t0=$(xc_now_ms)
if xc_wait 60 xn_console_has orphan1 "XCF parent .*done forks=1"; then
	xc_pass parent-unblocked "fork() returned $(( $(xc_now_ms) - t0 )) ms after create"
else
	xc_fail parent-unblocked "$(grep XCF "$(xn_console orphan1)" | tail -n 2 | tr '\n' '|')"
fi
c=$(sed -n 's/.*XCF parent .*fork i=1 rc=\([0-9]*\) .*/\1/p' "$(xn_console orphan1)")
[ -n "$c" ] && xn_paused "$c" && xc_pass child-left-paused "domain $c: $(xn_state "$c")" ||
	xc_fail child-left-paused "child '$c' state '$(xn_state "$c")'"
au=$(xn_xcd_counter auto_completions)
[ "$au" = 1 ] && xc_pass auto-completed-once || xc_fail auto-completed-once "auto_completions '$au'"
dmesg | grep -q "xen_clone_dev.*auto-complet.* $c\b\|xen_clone_dev.*auto-complet" &&
	xc_pass auto-completion-logged "$(dmesg | grep -m1 'xen_clone_dev.*auto-complet' | cut -c1-200)" ||
	xc_fail auto-completion-logged
