# no-daemon: xen_clone_dev loaded (orphan_timeout=5), no xencloned. A guest
# forks: after the orphan timeout the module completes the entry itself, so
# the parent's fork() returns, and the child is left paused (it has no
# devices), as the README documents; the module logs and counts it.
xn_orphan_fork orphan1 child-left-paused
c=$XN_ORPHAN_CHILD
dmesg | grep -q "xen_clone_dev.*auto-complet.* $c\b\|xen_clone_dev.*auto-complet" &&
	xc_pass auto-completion-logged "$(dmesg | grep -m1 'xen_clone_dev.*auto-complet' | cut -c1-200)" ||
	xc_fail auto-completion-logged
