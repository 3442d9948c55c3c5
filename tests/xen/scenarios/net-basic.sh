# Foundation scenario: bond0 up, one DomU whose vif the stock vif-bridge
# script enslaves to bond0, ping both ways, clean shutdown of the guest.
modprobe bonding max_bonds=0
xc_check bond0-up xc_bond bond0 10.8.0.1/24

t0=$(xc_now_ms)
xc_check domu-create xc_domu domu1 10.8.0.2 00:16:3e:00:00:02
id=$(xc_domid domu1)
xc_log "domu1 is domain $id"

vif_in_bond() { [ "$(cat /sys/class/net/vif$id.0/master/uevent 2>/dev/null | sed -n 's/^INTERFACE=//p')" = bond0 ]; }
if xc_wait 60 vif_in_bond; then
	xc_pass vif-enslaved "vif$id.0 master bond0"
	xc_time vif-enslaved $(( $(xc_now_ms) - t0 ))
else
	xc_fail vif-enslaved "$(/sbin/ip -o link show vif$id.0 2>&1)"
fi
/sbin/ip -o link show master bond0 | sed 's/^/XC-LOG /'

if xc_wait 120 xc_guest_log_has domu1 'XC-GUEST ping-dom0'; then
	if xc_guest_log_has domu1 'XC-GUEST ping-dom0 ok'; then xc_pass ping-domu-to-dom0; else xc_fail ping-domu-to-dom0; fi
else
	xc_fail ping-domu-to-dom0 "guest never reported"
fi
xc_ping_check ping-dom0-to-domu 10.8.0.2 60 3 "$t0"

# (xl crashed in libc here, like other Dom0 tools, until Xen ran with eager
# FPU switching: README "Known problems".) "-w" returns once the guest has
# shut down; on_poweroff=destroy then takes the domain away.
if timeout 60 xl shutdown -w domu1 >/tmp/shutdown.out 2>&1 && xc_wait 30 sh -c '! xl domid domu1 2>/dev/null'; then
	xc_pass domu-shutdown
else
	xc_fail domu-shutdown "$(tr '\n' '|' </tmp/shutdown.out)"
	xl destroy domu1
fi

# /dev/xen/clone on a hypervisor without clone support (issue 4): insmod must
# fail, with the one clear line saying why, and leave no device behind.
ko=/lib/modules/$(uname -r)/extra/xen_clone_dev.ko
if [ -f "$ko" ]; then
	if out=$(insmod "$ko" 2>&1); then
		xc_fail clone-dev-refused-on-stock-xen "insmod succeeded"
		rmmod xen_clone_dev
	else
		line=$(dmesg | grep 'xen_clone_dev: hypervisor has no clone support' | tail -n 1)
		if [ -n "$line" ] && [ ! -e /dev/xen/clone ]; then
			xc_pass clone-dev-refused-on-stock-xen "${line#*] }"
		else
			xc_fail clone-dev-refused-on-stock-xen "insmod: $out; dmesg: $(dmesg | grep xen_clone_dev | tail -n 2 | tr '\n' '|')"
		fi
	fi
else
	xc_fail clone-dev-refused-on-stock-xen "xen_clone_dev.ko not built"
fi

# xencloned's in-process rtnetlink path on a real bond (issue 6; the host
# kernel has no bonding): enslave + up, kind, release. (The refusal of a Linux
# bridge is tested on the host, which has bridging: userspace/xencloned tests.)
if command -v xencloned >/dev/null; then
	modprobe veth
	/sbin/ip link add xcv0 type veth peer name xcv1
	xc_check xencloned-net-enslave xencloned net enslave xcv0 bond0
	master_of() { sed -n 's/^INTERFACE=//p' "/sys/class/net/$1/master/uevent" 2>/dev/null; }
	if [ "$(master_of xcv0)" = bond0 ] && /sbin/ip -o link show xcv0 | grep -q '[<,]UP[,>]'; then
		xc_pass xencloned-net-enslaved-and-up "$(/sbin/ip -o link show xcv0 | cut -c1-120)"
	else
		xc_fail xencloned-net-enslaved-and-up "$(/sbin/ip -o link show xcv0)"
	fi
	kind=$(xencloned net kind bond0 2>&1)
	case "$kind" in *bond*) xc_pass xencloned-net-kind-bond "$kind" ;; *) xc_fail xencloned-net-kind-bond "$kind" ;; esac
	xc_check xencloned-net-release xencloned net release xcv0
	if [ -z "$(master_of xcv0)" ]; then xc_pass xencloned-net-released; else xc_fail xencloned-net-released "master $(master_of xcv0)"; fi
	/sbin/ip link del xcv0
else
	xc_fail xencloned-present "xencloned not in the Dom0 initramfs"
fi
