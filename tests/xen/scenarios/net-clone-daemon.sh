# xencloned does the hotplug of clone-shaped vifs (issue 6): the scenario of
# net-clone.sh for three DomUs, one bond each, with the daemon instead of a
# script. Stock Xen has no clone hypercall, so xen_clone_dev does not load and
# no clone is ever pending: the daemon runs with --adopt-only (no clone device,
# no hypervisor access) and adopts every cloned vif netback brings online, into
# the bond named by the backend's "bridge" key, writing hotplug-status itself.
#   d1: re-attached while no daemon runs: nothing (no script, no daemon) does
#       its hotplug; the daemon, started then, adopts it at start-up
#       (reconcile);
#   d2, d3: re-attached back-to-back while the daemon runs: adopted on
#       netback's online uevent (cloned=1).
# Then ping through the bonds, frontends never left state 4, the daemon's
# stats count 3 adoptions, and "xl destroy" takes the vifs out of the bonds
# (offline uevent, cloned=1).
modprobe bonding max_bonds=0
xc_uevents_start
xc_check netback-clone-load modprobe netback_clone
for i in 1 2 3; do
	xc_check "bond$i-up" xc_bond "bond$i" "10.8.$i.1/24"
	xc_check "domu-create-d$i" xc_clone_domu "d$i" "10.8.$i.2" "00:16:3e:00:0$i:02" "bond$i"
	eval "id$i=\$(xc_domid d$i)"
done
xc_log "domains: d1=$id1 d2=$id2 d3=$id3"
for i in 1 2 3; do
	if xc_wait 90 ping -c 1 -W 1 "10.8.$i.2"; then xc_pass "ping-before-clone-d$i"; else xc_fail "ping-before-clone-d$i"; fi
done
for i in 1 2 3; do
	eval "id=\$id$i"
	xc_fe_state_watch "$id" 0
	eval "festate_pid$i=\$!"
	if xc_clone_detach "$id" 0; then xc_pass "backend-removed-d$i"; else xc_fail "backend-removed-d$i"; fi
done
scripts0=$(wc -l </tmp/vif-xc.calls)

# --- d1 with no daemon: the online uevent comes, and nothing else. ----------
xc_clone_attach "$id1" 0 || xc_fail clone-node-written-d1
if xc_wait 20 xc_uevent_seen online "$id1" 0; then xc_pass clone-online-uevent-d1; else xc_fail clone-online-uevent-d1; fi
sleep 3
st=$(xenstore-read "$XC_BE/$id1/0/hotplug-status" 2>&1)
if [ -z "$(xc_master_of "vif$id1.0")" ] && ! xenstore-exists "$XC_BE/$id1/0/hotplug-status" &&
	[ "$(wc -l </tmp/vif-xc.calls)" = "$scripts0" ]; then
	xc_pass no-hotplug-without-daemon "3 s after online: no master, no hotplug-status, no script call"
else
	xc_fail no-hotplug-without-daemon "master '$(xc_master_of "vif$id1.0")', hotplug-status '$st', script calls: $(tr '\n' '|' </tmp/vif-xc.calls)"
fi

# --- the daemon: adopts d1 at start-up, d2 and d3 on their uevents. --------
t0=$(xc_now_ms)
if xc_check xencloned-adopt-only-start xc_xencloned_run 1 --adopt-only; then
	xc_time daemon-start-and-reconcile $(( $(xc_now_ms) - t0 ))
else
	xc_xencloned_log 1
fi
xc_attach_watch_start adopt 0 "$id2/0:bond2" "$id3/0:bond3" || xc_fail attach-watch-start
for i in 2 3; do eval "xc_clone_attach \$id$i 0" || xc_fail "clone-node-written-d$i"; done
xc_attach_watch_wait adopt 30 || xc_fail adopted-in-30s "$(tr '\n' '|' </tmp/attach.adopt)"
# Backend node written -> hotplug-status=connected with the vif enslaved.
for i in 2 3; do
	eval "id=\$id$i"
	ms=$(awk -v k="$id/0" '$1 == k { print $3 - $2 }' /tmp/attach.adopt)
	[ -n "$ms" ] && xc_time "node-to-connected-d$i" "$ms"
	late=$(awk -v k="$id/0" '$1 == k { print $4 }' /tmp/attach.adopt)
	[ "${late:-0}" = 0 ] || xc_log "d$i: hotplug-status before enslaved ($late polls)"
done
xc_log "xenstore-watch clock: $(xc_jiffy_ms) ms per jiffy"

for i in 1 2 3; do
	eval "id=\$id$i"
	be=$XC_BE/$id/0
	if [ "$i" != 1 ]; then
		if xc_uevent_seen online "$id" 0; then xc_pass "clone-online-uevent-d$i"; else xc_fail "clone-online-uevent-d$i"; fi
	fi
	l=$(grep 'adopted cloned vif' /tmp/xencloned.1.log | grep "vif$id\.0" | grep "bond$i")
	if [ -n "$l" ]; then xc_pass "daemon-adopted-d$i" "$(echo "$l" | tail -n 1 | cut -c1-200)"; else xc_fail "daemon-adopted-d$i"; fi
	st=$(xenstore-read "$be/hotplug-status" 2>&1)
	if [ "$st" = connected ]; then xc_pass "hotplug-status-connected-d$i"; else xc_fail "hotplug-status-connected-d$i" "'$st'"; fi
	m=$(xc_master_of "vif$id.0")
	if [ "$m" = "bond$i" ] && /sbin/ip -o link show "vif$id.0" | grep -q '[<,]UP[,>]'; then
		xc_pass "enslaved-and-up-d$i"
	else
		xc_fail "enslaved-and-up-d$i" "master '$m': $(/sbin/ip -o link show "vif$id.0" 2>&1 | cut -c1-160)"
	fi
	if [ -z "$(xenstore-read "$be/hotplug-error" 2>/dev/null)" ]; then xc_pass "no-hotplug-error-d$i"; else xc_fail "no-hotplug-error-d$i" "$(xenstore-read "$be/hotplug-error")"; fi
done
# The daemon, not a script: no script ran since the backends were removed.
calls=$(wc -l </tmp/vif-xc.calls)
if [ "$calls" = "$scripts0" ]; then
	xc_pass no-script-for-cloned-vifs "$calls call(s), all at domain creation"
else
	xc_fail no-script-for-cloned-vifs "$(sed -n "$((scripts0 + 1)),\$p" /tmp/vif-xc.calls | tr '\n' '|')"
fi

for i in 1 2 3; do
	eval "id=\$id$i"
	xc_ping_check "ping-after-adoption-d$i" "10.8.$i.2" 30 3
	# Netback's hotplug-status watch switched the backend to Connected.
	if xc_wait 10 sh -c "[ \"\$(cat /sys/bus/xen-backend/devices/vif-$id-0/state 2>/dev/null)\" = Connected ]"; then
		xc_pass "backend-connected-d$i"
	else
		xc_fail "backend-connected-d$i" "sysfs state '$(cat /sys/bus/xen-backend/devices/vif-"$id"-0/state 2>&1)'"
	fi
	if xc_fe_stayed_connected "$id" 0; then
		xc_pass "frontend-stayed-connected-d$i" "$(wc -l <"/tmp/festate-$id-0") watch event(s), all 4"
	else
		xc_fail "frontend-stayed-connected-d$i" "$(tr '\n' ' ' <"/tmp/festate-$id-0")"
	fi
	eval "kill \$festate_pid$i" 2>/dev/null
done
[ "$(xc_nbc_stat attached)" = 3 ] && xc_pass nbc-attached-3 || xc_fail nbc-attached-3 "$(xc_nbc_stat attached)"
if xc_wait 5 xc_stat_is 1 orphan_vifs_adopted 3; then
	xc_pass daemon-stats-adopted-3
else
	xc_fail daemon-stats-adopted-3 "$(tr -d ' \n' </run/xencloned/stats.1.json | cut -c1-300)"
fi

# --- xl destroy: offline uevents (cloned=1), the vifs leave their bonds. ----
for i in 1 2 3; do xl destroy "d$i"; done
for i in 1 2 3; do
	eval "id=\$id$i"
	if xc_wait 20 xc_vif_gone "$id" 0 && xc_wait 10 xc_uevent_seen offline "$id" 0 &&
		! grep -qw "vif$id.0" "/sys/class/net/bond$i/bonding/slaves"; then
		xc_pass "released-on-destroy-d$i" "offline cloned=1, bond$i slaves: '$(cat /sys/class/net/bond$i/bonding/slaves)'"
	else
		xc_fail "released-on-destroy-d$i" "$(grep "vif-$id-0" /tmp/uevents | tr '\n' '|'); bond$i: $(cat /sys/class/net/bond$i/bonding/slaves)"
	fi
done
[ "$(xc_nbc_stat detached)" = 3 ] && xc_pass nbc-detached-3 || xc_fail nbc-detached-3 "$(xc_nbc_stat detached)"
# Who took them out: the daemon on the offline uevent if the vif still existed
# then, else the kernel when netback unregistered it.
sleep 2
xc_log "daemon vifs_released: $(xc_stat 1 vifs_released), orphan_vifs_adopted: $(xc_stat 1 orphan_vifs_adopted)"
xc_xencloned_finish 1
xc_check netback-clone-unload rmmod netback_clone
xc_uevents_stop
