# Netback clone shortcut, clone-shaped on stock Xen: a DomU with a connected
# vif in bond0 loses its backend node (netback releases the vif; the guest's
# ports become unbound toward Dom0, netfront stays Connected), which is then
# written back with state=4 and cloned=true. netback_clone must bring the vif
# back at once, connected to the existing rings, without the frontend leaving
# state 4, and ping through the bond must work again once the vif is enslaved.
# The enslaving is xencloned's job (issue 6): stock Xen has no clone device,
# so it runs with --adopt-only and adopts the cloned vif netback brings
# online (uevent cloned=1) into the bond named by the backend's "bridge",
# writing hotplug-status itself; no hotplug script runs for the clone.
# (With more DomUs: net-clone-multi.sh, net-clone-daemon.sh, net-clone-neg.sh.)
modprobe bonding max_bonds=0
xc_check bond0-up xc_bond bond0 10.8.0.1/24
xc_uevents_start
# Its KUnit suites run here (KTAP on the console).
xc_check netback-clone-load modprobe netback_clone
xc_check xencloned-adopt-only-start xc_xencloned_run 1 --adopt-only || xc_xencloned_log 1

xc_check domu-create xc_clone_domu domu1 10.8.0.2 00:16:3e:00:00:02 bond0
id=$(xc_domid domu1)
fe=/local/domain/$id/device/vif/0
be=$XC_BE/$id/0
xc_log "domu1 is domain $id"
if xc_wait 60 ping -c 1 -W 1 10.8.0.2; then xc_pass ping-before-clone; else xc_fail ping-before-clone; fi
xc_log "frontend: $(xenstore-ls "$fe" 2>&1 | tr -s ' \n' ' ')"

# --- remove the backend node: the frontend must stay Connected --------------
xc_fe_state_watch "$id" 0
festate_pid=$!
if xc_clone_detach "$id" 0; then xc_pass backend-removed "vif$id.0 released"; else xc_fail backend-removed "$(ls /sys/class/net)"; fi
sleep 1
s=$(xenstore-read "$fe/state" 2>&1)
if [ "$s" = 4 ]; then xc_pass frontend-connected-after-removal; else xc_fail frontend-connected-after-removal "state '$s'"; fi
if ping -c 1 -W 1 10.8.0.2 >/dev/null 2>&1; then xc_fail no-ping-without-backend; else xc_pass no-ping-without-backend; fi
# Xen's view of the guest's ports (expect state 1 = unbound, remote d=0).
xl debug-keys e

# --- write it back as a clone ---------------------------------------------------
scripts0=$(wc -l </tmp/vif-xc.calls)
t0=$(xc_now_ms)
if xc_clone_attach "$id" 0; then xc_pass clone-node-written; else xc_fail clone-node-written; fi
if xc_wait 20 xc_uevent_seen online "$id" 0; then
	xc_pass clone-online-uevent "$(grep "online vif-$id-0 .*cloned=1" /tmp/uevents | tail -n 1)"
	xc_time clone-online-uevent $(( $(xc_now_ms) - t0 ))
	# xencloned: enslaved, up, then hotplug-status=connected.
	adopted() {
		[ "$(xenstore-read "$be/hotplug-status" 2>/dev/null)" = connected ] &&
			[ "$(xc_master_of "vif$id.0")" = bond0 ] &&
			/sbin/ip -o link show "vif$id.0" | grep -q '[<,]UP[,>]'
	}
	if xc_wait 20 adopted; then
		xc_time clone-node-to-connected-and-enslaved $(( $(xc_now_ms) - t0 ))
		xc_pass daemon-hotplug "$(grep 'adopted cloned vif' /tmp/xencloned.1.log | grep "vif$id\.0" | tail -n 1 | cut -c1-200)"
	else
		xc_fail daemon-hotplug "hotplug-status '$(xenstore-read "$be/hotplug-status" 2>&1)', master '$(xc_master_of "vif$id.0")'"
		xc_xencloned_log 1
	fi
	calls=$(wc -l </tmp/vif-xc.calls)
	if [ "$calls" = "$scripts0" ]; then xc_pass no-script-for-cloned-vif; else
		xc_fail no-script-for-cloned-vif "$(sed -n "$((scripts0 + 1)),\$p" /tmp/vif-xc.calls | tr '\n' '|')"; fi
else
	xc_fail clone-online-uevent "$(cat /tmp/uevents | tr '\n' '|')"
	xc_log "backend: $(xenstore-ls "$be" 2>&1 | tr -s ' \n' ' ')"
fi
xc_log "backend: $(xenstore-ls "$be" 2>&1 | tr -s ' \n' ' ')"
xc_ping_check ping-after-clone-attach 10.8.0.2 30 5 "$t0"
# netback's hotplug-status watch has written state=4 itself.
if xc_wait 10 sh -c "[ \"\$(cat /sys/bus/xen-backend/devices/vif-$id-0/state 2>/dev/null)\" = Connected ]"; then
	xc_pass backend-connected
else
	xc_fail backend-connected "sysfs state '$(cat /sys/bus/xen-backend/devices/vif-$id-0/state 2>&1)'"
fi
if xc_fe_stayed_connected "$id" 0; then
	xc_pass frontend-stayed-connected "$(wc -l </tmp/festate-$id-0) watch event(s), all 4"
else
	xc_fail frontend-stayed-connected "$(tr '\n' ' ' </tmp/festate-$id-0)"
fi
kill "$festate_pid" 2>/dev/null
if [ -z "$(xenstore-read "$be/hotplug-error" 2>/dev/null)" ]; then xc_pass no-hotplug-error; else xc_fail no-hotplug-error "$(xenstore-read "$be/hotplug-error")"; fi
sed 's/^/XC-LOG netback_clone: /' /sys/kernel/debug/netback_clone/stats
sed 's/^/XC-LOG netback_clone: /' /sys/kernel/debug/netback_clone/attaches
[ "$(xc_nbc_stat attached)" = 1 ] && xc_pass nbc-attached-1 || xc_fail nbc-attached-1 "$(xc_nbc_stat attached)"
lat=$(xc_nbc_stat latency_last_us)
xc_log "clone attach latency ${lat} us"
xc_time clone-attach-kernel $(( (lat + 999) / 1000 ))

if xc_wait 5 xc_stat_is 1 orphan_vifs_adopted 1; then xc_pass daemon-stats-adopted-1; else
	xc_fail daemon-stats-adopted-1 "$(tr -d ' \n' </run/xencloned/stats.1.json | cut -c1-300)"; fi

# --- the guest goes away: offline uevent, still cloned=1; everything released --
xl destroy domu1
if xc_wait 20 xc_vif_gone "$id" 0; then xc_pass vif-released-on-destroy; else xc_fail vif-released-on-destroy; fi
if xc_wait 10 xc_uevent_seen offline "$id" 0; then xc_pass clone-offline-uevent; else xc_fail clone-offline-uevent "$(tr '\n' '|' </tmp/uevents)"; fi
if grep -qw "vif$id.0" /sys/class/net/bond0/bonding/slaves; then xc_fail vif-left-bond0 "$(cat /sys/class/net/bond0/bonding/slaves)"; else xc_pass vif-left-bond0; fi
[ "$(xc_nbc_stat detached)" = 1 ] && xc_pass nbc-detached-1 || xc_fail nbc-detached-1 "$(xc_nbc_stat detached)"
xc_xencloned_finish 1
xc_check netback-clone-unload rmmod netback_clone
xc_uevents_stop
