# Netback clone shortcut for several DomUs at once (see net-clone.sh), one bond
# per guest (a clone family's bond), covering the three ring layouts:
#   c1: 1 queue, split event channels (netfront's default)
#   c2: 2 vCPUs -> 2 queues (queue-N/ keys), split event channels
#   c3: 1 queue, one shared event channel (netback separate_tx_rx_irq=0)
# All three backend nodes are removed, then written back as clones
# back-to-back, so netback_clone attaches them while the others are in flight.
modprobe bonding max_bonds=0
xc_uevents_start
xc_check netback-clone-load modprobe netback_clone
split=/sys/module/xen_netback/parameters/separate_tx_rx_irq

names="c1 c2 c3"
for i in 1 2 3; do xc_check "bond$i-up" xc_bond "bond$i" "10.8.$i.1/24"; done
xc_check domu-create-c1 xc_clone_domu c1 10.8.1.2 00:16:3e:00:01:02 bond1 1
xc_check domu-create-c2 xc_clone_domu c2 10.8.2.2 00:16:3e:00:02:02 bond2 2
echo 0 >"$split"
xc_check domu-create-c3 xc_clone_domu c3 10.8.3.2 00:16:3e:00:03:02 bond3 1
id1=$(xc_domid c1); id2=$(xc_domid c2); id3=$(xc_domid c3)
xc_wait 20 xenstore-read "$XC_BE/$id3/0/feature-split-event-channels"
echo 1 >"$split"
xc_log "domains: c1=$id1 c2=$id2 c3=$id3"

for i in 1 2 3; do
	if xc_wait 90 ping -c 1 -W 1 "10.8.$i.2"; then xc_pass "ping-before-clone-c$i"; else xc_fail "ping-before-clone-c$i"; fi
done
# The layouts the scenario means to cover.
fe2=/local/domain/$id2/device/vif/0
fe3=/local/domain/$id3/device/vif/0
if xenstore-read "$fe2/queue-1/rx-ring-ref" >/dev/null 2>&1; then xc_pass c2-multi-queue; else xc_fail c2-multi-queue "$(xenstore-ls "$fe2" | tr -s ' \n' ' ')"; fi
if xenstore-read "$fe3/event-channel" >/dev/null 2>&1 && ! xenstore-read "$fe3/event-channel-tx" >/dev/null 2>&1; then
	xc_pass c3-shared-event-channel
else
	xc_fail c3-shared-event-channel "$(xenstore-ls "$fe3" | tr -s ' \n' ' ')"
fi

for id in $id1 $id2 $id3; do
	xc_fe_state_watch "$id" 0
	if xc_clone_detach "$id" 0; then xc_pass "backend-removed-$id"; else xc_fail "backend-removed-$id"; fi
done

t0=$(xc_now_ms)
for id in $id1 $id2 $id3; do xc_clone_attach "$id" 0 || xc_fail "clone-node-written-$id"; done
pending="1 2 3"
deadline=$(( $(xc_now_ms) + 30000 ))
while [ -n "$pending" ] && [ "$(xc_now_ms)" -lt "$deadline" ]; do
	left=
	for i in $pending; do
		eval "id=\$id$i"
		if xc_uevent_seen online "$id" 0; then
			xc_time "clone-online-uevent-c$i" $(( $(xc_now_ms) - t0 ))
			xc_check "clone-hotplug-c$i" xc_clone_hotplug "$id" 0 "bond$i"
		else
			left="$left $i"
		fi
	done
	pending=${left# }
	[ -n "$pending" ] && sleep 0.1
done
for i in $pending; do eval "id=\$id$i"; xc_fail "clone-online-uevent-c$i" "$(xenstore-read "$XC_BE/$id/0/hotplug-error" 2>&1)"; done

for i in 1 2 3; do
	eval "id=\$id$i"
	xc_ping_check "ping-after-clone-attach-c$i" "10.8.$i.2" 30 3 "$t0"
	if xc_fe_stayed_connected "$id" 0; then xc_pass "frontend-stayed-connected-c$i"; else xc_fail "frontend-stayed-connected-c$i" "$(tr '\n' ' ' </tmp/festate-$id-0)"; fi
	xc_log "c$i queues: $(ls /sys/kernel/debug/xen-netback/vif$id.0/ 2>&1 | tr '\n' ' ')"
done
sed 's/^/XC-LOG netback_clone: /' /sys/kernel/debug/netback_clone/stats
sed 's/^/XC-LOG netback_clone: /' /sys/kernel/debug/netback_clone/attaches
[ "$(xc_nbc_stat attached)" = 3 ] && xc_pass nbc-attached-3 || xc_fail nbc-attached-3 "$(xc_nbc_stat attached)"
xc_time clone-attach-kernel-max $(( ($(xc_nbc_stat latency_max_us) + 999) / 1000 ))

for n in $names; do xl destroy "$n"; done
for i in 1 2 3; do
	eval "id=\$id$i"
	if xc_wait 20 xc_vif_gone "$id" 0 && xc_wait 10 xc_uevent_seen offline "$id" 0; then
		xc_pass "released-c$i"
	else
		xc_fail "released-c$i" "$(ls /sys/class/net | tr '\n' ' ')"
	fi
done
[ "$(xc_nbc_stat detached)" = 3 ] && xc_pass nbc-detached-3 || xc_fail nbc-detached-3 "$(xc_nbc_stat detached)"
xc_check netback-clone-unload rmmod netback_clone
xc_uevents_stop
