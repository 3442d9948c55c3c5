# cloned-probe (issue 12 item 4): which cloned backend nodes xenbus registers
# (linux-patches/0001). Nodes are written for frontends of domains that do not
# run (a bare frontend node), in one transaction each, as the toolstack copies
# them; xenbus registers a device (/sys/bus/xen-backend/devices/TYPE-DOMID-DEVID)
# when it probes one.
#   c1: vif, cloned, Connected: registered (netback opts in) - the control
#   c2: vif, cloned, Closing: not registered again during teardown
#   c3: vif, cloned, Closed: not registered
#   c4: vbd, cloned, Connected: not registered (blkback has not opted in)
#   c5: console, cloned, Connected: not registered
modprobe xen-netback 2>/dev/null
dev() { echo "/sys/bus/xen-backend/devices/$1"; }
node() { # TYPE DOMID DEVID STATE
	_be=/local/domain/0/backend/$1/$2/$3
	# The frontend node must exist: backend_bus_id() ignores a backend without one.
	xenstore-write "/local/domain/$2/device/$1/$3/state" 4 \
		"$_be/frontend" "/local/domain/$2/device/$1/$3" "$_be/frontend-id" "$2" \
		"$_be/online" 1 "$_be/state" "$4" "$_be/cloned" true
}
node vif 771 0 4
node vif 772 0 5
node vif 773 0 6
node vbd 774 51712 4
node console 775 0 4
if xc_wait 20 test -e "$(dev vif-771-0)"; then
	xc_pass c1-connected-vif-registered "$(dev vif-771-0)"
else
	xc_fail c1-connected-vif-registered "$(ls /sys/bus/xen-backend/devices | tr '\n' ' ')"
fi
# The control was probed: the others had the same time.
sleep 2
for c in c2-closing-vif:vif-772-0 c3-closed-vif:vif-773-0 c4-connected-vbd:vbd-774-51712 c5-connected-console:console-775-0; do
	if [ -e "$(dev "${c#*:}")" ]; then xc_fail "${c%%:*}-not-registered" "$(dev "${c#*:}") exists"
	else xc_pass "${c%%:*}-not-registered"; fi
done
ls /sys/bus/xen-backend/devices | sed 's/^/XC-LOG xen-backend: /'
for d in 771 772 773 774 775; do
	xenstore-rm "/local/domain/0/backend/vif/$d" 2>/dev/null
	xenstore-rm "/local/domain/$d" 2>/dev/null
done
xenstore-rm /local/domain/0/backend/vbd/774 2>/dev/null
xenstore-rm /local/domain/0/backend/console/775 2>/dev/null
