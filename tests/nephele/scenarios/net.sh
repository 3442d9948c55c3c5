# net: Nephele's server-udp (Mini-OS + lwIP + netfront) with a vif in bond0
# forks XN_NET_FORKS (3) children at start-up. Every child's vif must be
# attached by netback_clone (a cloned backend: no renegotiation), enslaved in
# bond0 by xencloned with hotplug-status=connected, and the child must answer
# on the network through its own vif (an ARP request from the gateway sent
# out of that vif: the clones share MAC and IP, so this is also the ARP each
# of them needs to learn the gateway). `xl destroy` of the children and the
# parent must release every vif.
n=${XN_NET_FORKS:-3}
ip=10.8.0.2
modprobe bonding max_bonds=0
xc_uevents_start
xc_check bond0-up xc_bond bond0 10.8.0.1/24
: >/tmp/summary
xn_setup || return 0

xc_check guest-created xn_guest udp1 server-udp "$n" "-a server-udp -f -c $n" \
	"vif = [ \"bridge=bond0,mac=00:16:3e:00:08:02,ip=$ip 255.255.255.0 10.8.0.1\" ]" &&
	parent=$(xc_domid udp1)
if xc_wait 120 sh -c "[ \$(xl list | grep -c '^udp1-child-') -ge $n ]"; then
	xc_pass children-created "$(xl list | grep -c '^udp1-child-')"
else
	xc_fail children-created "$(xl list | tr '\n' '|')"
fi
children=$(xl list | awk '$1 ~ /^udp1-child-/ { print $2 }')
xc_wait 60 sh -c "[ \$(xl list | awk '\$1 ~ /^udp1-child-/ && \$5 !~ /p/' | wc -l) -ge $n ]" ||
	xc_fail children-unpaused "$(xl list | tr '\n' '|')"

for c in $children; do
	be=/local/domain/0/backend/vif/$c/0
	if xc_wait 60 sh -c "[ \"\$(xenstore-read $be/hotplug-status 2>/dev/null)\" = connected ]"; then
		xc_pass "child-$c-hotplug-connected"
	else
		xc_fail "child-$c-hotplug-connected" "'$(xenstore-read "$be/hotplug-status" 2>&1)' $(xenstore-read "$be/hotplug-error" 2>/dev/null)"
	fi
	# Attached by netback_clone: the backend node was a clone, netback took
	# the shortcut (online uevent with cloned=1), the frontend is Connected.
	[ "$(xenstore-read "$be/cloned" 2>&1)" = true ] && xc_uevent_seen online "$c" 0 &&
		[ "$(xenstore-read "/local/domain/$c/device/vif/0/state" 2>&1)" = 4 ] &&
		xc_pass "child-$c-cloned-backend" ||
		xc_fail "child-$c-cloned-backend" "cloned '$(xenstore-read "$be/cloned" 2>&1)', fe state '$(xenstore-read "/local/domain/$c/device/vif/0/state" 2>&1)', uevents: $(grep "vif-$c-0" /tmp/uevents | tr '\n' '|')"
	m=$(xc_master_of "vif$c.0")
	[ "$m" = bond0 ] && /sbin/ip -o link show "vif$c.0" | grep -q '[<,]UP[,>]' &&
		xc_pass "child-$c-enslaved-up" || xc_fail "child-$c-enslaved-up" "master '$m'"
	# The child answers through its own vif.
	ans=no
	if out=$(arping -I "vif$c.0" -s 10.8.0.1 -c 3 -w 10 "$ip" 2>&1) && echo "$out" | grep -q 'reply from'; then
		xc_pass "child-$c-answers-arp" "$(echo "$out" | grep -m1 'reply from')"; ans=yes
	else
		xc_fail "child-$c-answers-arp" "$(echo "$out" | tail -n 2 | tr '\n' '|')"
	fi
	xn_summary_child "$c" "$ans" >>/tmp/summary
done
nbc=$(xc_nbc_stat attached)
[ "$nbc" = "$n" ] && xc_pass netback-clone-attached "$nbc" || xc_fail netback-clone-attached "'$nbc', want $n"
xc_ping_check ping-through-bond "$ip" 30 5
grep 'XCF\|[0-9]\.[0-9]\{6\}$' "$(xn_console udp1)" | head -n "$n" | sed 's/^/XC-LOG parent: /'

xn_summary_print udp1 "$parent" "$n"

# Teardown: every vif leaves the bond and disappears.
for c in $children; do xl destroy "$c"; done
xl destroy udp1
gone() { for c in $children "$parent"; do [ -e "/sys/class/net/vif$c.0" ] && return 1; done; return 0; }
if xc_wait 60 gone && [ -z "$(cat /sys/class/net/bond0/bonding/slaves)" ]; then
	xc_pass destroy-releases-vifs
else
	xc_fail destroy-releases-vifs "left: $(ls /sys/class/net | grep '^vif' | tr '\n' ' '), slaves '$(cat /sys/class/net/bond0/bonding/slaves)'"
fi
xc_uevents_stop
if xn_ours; then
	xc_check stats-completed-all xc_stat_is 1 clones_completed "$n"
	xc_check stats-none-failed xc_stat_is 1 clones_failed 0
fi
xn_finish
