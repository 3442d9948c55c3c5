# lifecycle: rmmod xen_clone_dev is refused while a clone is pending and works
# once it is completed; rmmod/insmod cycles with a real fork after each load;
# a ring left enabled by a killed Nephele xencloned makes xen_clone_dev refuse
# to load with a message that says so and names the remedy, and that remedy
# (`xencloned -R`) recovers the ring.
xc_check netback-clone-load modprobe netback_clone
# 1. pending clone: no daemon and no orphan policy, a guest forks.
xc_check xen-clone-dev-load xn_xcd_load orphan_timeout=0
xc_check guest-created xn_guest life1 forker 8 "mode=fork count=1 start_ms=500"
xc_wait 30 sh -c "[ \"\$(sed -n 's/^notifications //p' $XN_XCD/counters)\" -ge 1 ]" ||
	xc_fail clone-notified "notifications $(xn_xcd_counter notifications)"
if out=$(rmmod xen_clone_dev 2>&1); then
	xc_fail rmmod-refused-while-pending "rmmod succeeded with a clone pending"
else
	xc_pass rmmod-refused-while-pending "$(echo "$out" | head -n 1)"
fi
xc_check daemon-completes-pending xc_xencloned_run 1
xc_wait 60 xn_console_has life1 "XCF parent .*done forks=1" && xc_pass pending-completed || xc_fail pending-completed
xc_xencloned_stop 1
xc_check rmmod-after-completion rmmod xen_clone_dev
xl destroy life1; for c in $(xl list | awk '$1 ~ /^life1-child-/ { print $2 }'); do xl destroy "$c"; done

# 2. cycles: load, fork through the daemon, stop, unload.
i=1
while [ $i -le 3 ]; do
	ok=1
	xn_xcd_load && xc_xencloned_run "c$i" && xn_guest "cyc$i" forker 1 "mode=fork count=1 start_ms=500" &&
		xc_wait 60 xn_console_has "cyc$i" "XCF parent .*done forks=1" || ok=0
	xc_xencloned_stop "c$i"
	rmmod xen_clone_dev || ok=0
	[ $ok = 1 ] && xc_pass "cycle-$i" || { xc_fail "cycle-$i"; xc_xencloned_log "c$i"; }
	i=$((i + 1))
done

# 3. a stale ring: Nephele's daemon enables the ring and is killed.
nephele-xencloned >/tmp/nephele-xencloned.log 2>&1 &
np=$!
sleep 3
kill -9 $np
dmesg -c >/dev/null
if xn_xcd_load 2>/dev/null; then
	xc_fail load-refused-on-stale-ring "xen_clone_dev loaded over a ring another daemon left enabled"
	rmmod xen_clone_dev
else
	msg=$(dmesg | grep xen_clone | tail -n 3 | tr '\n' '|')
	echo "$msg" | grep -q 'xencloned -R' && xc_pass load-refused-on-stale-ring "$msg" ||
		xc_fail load-refused-on-stale-ring "message does not name the remedy: $msg"
fi
if out=$(xencloned -R 2>&1); then xc_pass reset-disables-ring "$(echo "$out" | tail -n 1)"; else xc_fail reset-disables-ring "$(echo "$out" | tail -n 2 | tr '\n' '|')"; fi
xc_check load-after-reset xn_xcd_load
xc_check daemon-after-reset xc_xencloned_run r1
xn_guest rst1 forker 1 "mode=fork count=1 start_ms=500" &&
	xc_wait 60 xn_console_has rst1 "XCF parent .*done forks=1" && xc_pass fork-after-reset-returned || xc_fail fork-after-reset-returned
xc_xencloned_stop r1
