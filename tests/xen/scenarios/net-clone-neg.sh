# Netback clone shortcut, failures: clone-shaped vifs (see net-clone.sh) whose
# cloned node cannot be attached. Each must end with hotplug-status=error and
# a hotplug-error naming what failed, with no vif left behind and no "online"
# uevent (kernel warnings and lockdep reports fail the run by themselves).
#   n1: netback_clone not loaded yet: no clone handler
#   n2: rx-ring-ref missing
#   n3: tx-ring-ref is a grant the guest never made
#   n4: event-channel-tx is a port the guest does not have
#   n5: frontend not Connected (state 3)
modprobe bonding max_bonds=0
xc_check bond0-up xc_bond bond0 10.8.0.1/24
xc_uevents_start

for i in 1 2 3 4 5; do xc_check "domu-create-n$i" xc_clone_domu "n$i" "10.8.0.1$i" "00:16:3e:00:00:1$i" bond0; done
for i in 1 2 3 4 5; do
	id=$(xc_domid "n$i"); eval "id$i=$id"
	connected() { [ "$(xenstore-read "$XC_BE/$1/0/state" 2>/dev/null)" = 4 ] && [ "$(xenstore-read "/local/domain/$1/device/vif/0/state" 2>/dev/null)" = 4 ]; }
	if xc_wait 90 connected "$id"; then xc_pass "n$i-connected"; else xc_fail "n$i-connected"; fi
	if xc_clone_detach "$id" 0; then xc_pass "n$i-backend-removed"; else xc_fail "n$i-backend-removed"; fi
done
xc_log "domains: n1=$id1 n2=$id2 n3=$id3 n4=$id4 n5=$id5"

# clone_fails CASE DOMID EXPECTED-SUBSTRING: write the clone node back, expect
# the failure to be reported as a hotplug error naming EXPECTED.
clone_fails() {
	xc_clone_attach "$2" 0
	if xc_wait 20 sh -c "[ \"\$(xenstore-read $XC_BE/$2/0/hotplug-status 2>/dev/null)\" = error ]"; then
		err=$(xenstore-read "$XC_BE/$2/0/hotplug-error" 2>&1)
		case $err in
		*"$3"*) xc_pass "$1-hotplug-error" "$err" ;;
		*) xc_fail "$1-hotplug-error" "got '$err', want '$3'" ;;
		esac
	else
		xc_fail "$1-hotplug-error" "no hotplug-status=error: $(xenstore-ls "$XC_BE/$2/0" 2>&1 | tr -s ' \n' ' ')"
	fi
	if xc_vif_gone "$2" 0; then xc_pass "$1-no-vif"; else xc_fail "$1-no-vif" "vif$2.0 exists"; fi
	# (The guest's first, stock connection had its own online uevent, without cloned=1.)
	if xc_uevent_seen online "$2" 0; then xc_fail "$1-no-online-uevent"; else xc_pass "$1-no-online-uevent"; fi
}

fe() { echo "/local/domain/$1/device/vif/0"; }
clone_fails n1-no-handler "$id1" "no clone handler"

# Its KUnit suites run here (KTAP on the console).
xc_check netback-clone-load modprobe netback_clone

xenstore-rm "$(fe "$id2")/rx-ring-ref"
clone_fails n2-missing-ring-ref "$id2" "$(fe "$id2")/rx-ring-ref: missing"

xenstore-write "$(fe "$id3")/tx-ring-ref" 1000000
clone_fails n3-bogus-grant "$id3" "$(fe "$id3")/tx-ring-ref: grant 1000000 of domain $id3 cannot be mapped"

xenstore-write "$(fe "$id4")/event-channel-tx" 4000
clone_fails n4-bogus-port "$id4" "$(fe "$id4")/event-channel-tx: port 4000"

xenstore-write "$(fe "$id5")/state" 3
clone_fails n5-frontend-not-connected "$id5" "$(fe "$id5")/state: frontend state is 3"

sed 's/^/XC-LOG netback_clone: /' /sys/kernel/debug/netback_clone/stats
sed 's/^/XC-LOG netback_clone: /' /sys/kernel/debug/netback_clone/attaches
want="attached=0 failed_validation=2 failed_grant=1 failed_port=1"
got="attached=$(xc_nbc_stat attached) failed_validation=$(xc_nbc_stat failed_validation) failed_grant=$(xc_nbc_stat failed_grant) failed_port=$(xc_nbc_stat failed_port)"
[ "$got" = "$want" ] && xc_pass nbc-failure-counters "$got" || xc_fail nbc-failure-counters "got $got, want $want"

for i in 1 2 3 4 5; do xl destroy "n$i"; done
if ls /sys/class/net | grep -q '^vif'; then xc_fail no-vif-left "$(ls /sys/class/net | tr '\n' ' ')"; else xc_pass no-vif-left; fi
xc_check netback-clone-unload rmmod netback_clone
xc_uevents_stop
