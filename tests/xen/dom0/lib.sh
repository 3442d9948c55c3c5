# shellcheck shell=sh
# Scenario helpers for the test Dom0. Protocol on the serial console, parsed by
# tests/xen/run.sh:
#   XC-CHECK <name> pass|fail [detail]
#   XC-TIME <name> <milliseconds>
#   XC-COUNT <name> <number>
#   XC-DONE
xc_log() { echo "XC-LOG $*"; }
xc_pass() { echo "XC-CHECK $1 pass${2:+ $2}"; }
xc_fail() { echo "XC-CHECK $1 fail${2:+ $2}"; }

# xc_check NAME CMD...: pass if CMD succeeds; its output goes to the log.
xc_check() {
	_n=$1; shift
	if _out=$("$@" 2>&1); then
		xc_pass "$_n"
	else
		echo "$_out" | sed "s/^/XC-LOG $_n: /"
		xc_fail "$_n" "$(echo "$_out" | tail -n 3 | tr '\n' '|')"
		return 1
	fi
}

# Milliseconds since boot (10 ms resolution).
xc_now_ms() { read -r _up _ </proc/uptime; echo "${_up%.*}${_up#*.}0"; }
xc_time() { echo "XC-TIME $1 $2"; }
# xc_count NAME N: a count (requests, entries) for result.json.
xc_count() { echo "XC-COUNT $1 $2"; }

# xc_wait SECONDS CMD...: poll CMD every XC_WAIT_S (0.1) s until it succeeds.
# A poll is a process or two, which under TCG competes with what is measured:
# poll less often while timing something.
xc_wait() {
	_deadline=$(( $(xc_now_ms) + $1 * 1000 )); shift
	while ! "$@" >/dev/null 2>&1; do
		[ "$(xc_now_ms)" -lt "$_deadline" ] || return 1
		sleep "${XC_WAIT_S:-0.1}"
	done
}

# xc_bond NAME IP/PREFIX: a bond as the clone family's switch (reference §5).
xc_bond() {
	/sbin/ip link add "$1" type bond mode balance-xor xmit_hash_policy layer3+4 miimon 100 &&
	/sbin/ip addr add "$2" dev "$1" && /sbin/ip link set "$1" up
}

# xc_domu_cfg NAME IP MEMORY VCPUS [VIF]: write /tmp/NAME.cfg, a PV DomU of our
# kernel and busybox initramfs (tests/xen/domu/init, address IP); VIF is a
# "vif = [ ... ]" line, none if empty.
xc_domu_cfg() {
	cat >/tmp/"$1".cfg <<CFG
name = "$1"
type = "pv"
kernel = "/boot/vmlinuz"
ramdisk = "/boot/domu.cpio.gz"
extra = "console=hvc0 rdinit=/init xc.ip=$2 slub_debug=FZPU"
memory = $3
vcpus = $4
${5:-}
on_poweroff = "destroy"
on_crash = "destroy"
CFG
}

# xc_domu NAME IP MAC: create a PV DomU with one vif in bond0 (stock
# vif-bridge); returns when xl create returns.
xc_domu() {
	xc_domu_cfg "$1" "$2" 160 1 "vif = [ \"bridge=bond0,mac=$3\" ]" &&
		xl create /tmp/"$1".cfg
}

# xc_ping_check CHECK IP WAIT COUNT [T0_MS]: CHECK passes if IP answers within
# WAIT s and then COUNT pings in a row; with T0_MS, XC-TIME first-CHECK is the
# time of the first reply since T0_MS. The pings' output goes to the log.
xc_ping_check() {
	if ! xc_wait "$3" ping -c 1 -W 1 "$2"; then
		xc_fail "$1" "no reply from $2"
		return 1
	fi
	[ -n "${5:-}" ] && xc_time "first-$1" $(( $(xc_now_ms) - $5 ))
	if _out=$(ping -c "$4" -W 2 "$2"); then _rc=0; xc_pass "$1"; else _rc=1; xc_fail "$1" "$(echo "$_out" | tail -n 3 | tr '\n' '|')"; fi
	echo "$_out" | sed "s/^/XC-LOG $1: /"
	return $_rc
}

xc_domid() { xl domid "$1" 2>/dev/null; }

# Guest console output (xenconsoled --log=guest) goes to the serial log,
# prefixed, so that host-side checks see guest kernel warnings too.
xc_dump_guest_logs() {
	[ -f /var/log/xen/xen-hotplug.log ] && sed 's/^/[hotplug] /' /var/log/xen/xen-hotplug.log
	for f in /var/log/xen/console/guest-*.log; do
		[ -f "$f" ] || continue
		_g=${f##*/guest-}; _g=${_g%.log}
		sed "s/^/[$_g] /" "$f"
	done
}
xc_guest_log_has() { grep -q "$2" "/var/log/xen/console/guest-$1.log" 2>/dev/null; }

# --- Netback clone shortcut (issue 5) ------------------------------------------
# A "clone-shaped" vif on stock Xen: the backend node of a connected vif is
# removed (netback disconnects: grant mappings released, Dom0 closes its
# event-channel ends, which Xen turns back into ports of the guest unbound
# toward Dom0; netfront reads the vanished backend state as Unknown and stays
# Connected) and written back, in one xenstore transaction, with state=4 and
# cloned=true: exactly what a cloning hypervisor + xencloned present to Dom0.

XC_BE=/local/domain/0/backend/vif

# xc_uevents_start: log every xen-backend uevent as an XC-UEVENT line, on the
# console and in /tmp/uevents. Sets XC_UEVENT_PID.
xc_uevents_start() {
	: >/tmp/uevents
	uevent /bin/sh -c '[ "$SUBSYSTEM" = xen-backend ] || exit 0
		l="XC-UEVENT $ACTION ${DEVPATH##*/} vif=$vif cloned=$cloned XENBUS_PATH=$XENBUS_PATH script=$script"
		echo "$l" >>/tmp/uevents; echo "$l"' &
	XC_UEVENT_PID=$!
}
xc_uevents_stop() { [ -n "${XC_UEVENT_PID:-}" ] && kill "$XC_UEVENT_PID" 2>/dev/null; XC_UEVENT_PID=; }
# xc_uevent_seen ACTION DOMID DEVID: a cloned=1 uevent ACTION for vif-DOMID-DEVID.
xc_uevent_seen() { grep -q "^XC-UEVENT $1 vif-$2-$3 vif=vif$2\.$3 cloned=1 " /tmp/uevents; }

# /tmp/vif-xc: the part of vif-bridge these scenarios need (enslave the vif to
# the bond named by the backend's "bridge" key, up, hotplug-status connected),
# so that the clone scenarios depend on nothing but netback for the guests'
# first connection. Every call is recorded in /tmp/vif-xc.calls.
xc_vif_script() {
	cat >/tmp/vif-xc <<'SH'
#!/bin/sh
echo "$1 $vif" >>/tmp/vif-xc.calls
b=$(xenstore-read "$XENBUS_PATH/bridge")
case $1 in
online|add)
	/sbin/ip link set "$vif" master "$b" && /sbin/ip link set "$vif" up &&
		xenstore-write "$XENBUS_PATH/hotplug-status" connected ;;
offline|remove) /sbin/ip link set "$vif" nomaster 2>/dev/null; true ;;
esac
SH
	chmod 755 /tmp/vif-xc
}

# xc_clone_domu NAME IP MAC BRIDGE [VCPUS]: a PV DomU like xc_domu, any bridge,
# vif hotplug by /tmp/vif-xc; BRIDGE "-": no vif at all (MAC unused).
xc_clone_domu() {
	[ -x /tmp/vif-xc ] || xc_vif_script
	_vif="vif = [ \"bridge=$4,mac=$3,script=/tmp/vif-xc\" ]"
	[ "$4" = - ] && _vif=
	xc_domu_cfg "$1" "$2" 128 "${5:-1}" "$_vif"
	_out=$(xl create /tmp/"$1".cfg 2>&1) && return 0
	echo "$_out" | sed "s/^/XC-LOG xl create $1: /" >/dev/console
	sed "s/^/XC-LOG hotplug log: /" /var/log/xen/xen-hotplug.log >/dev/console 2>&1
	return 1
}

# xc_vif_gone DOMID DEVID
xc_vif_gone() { [ ! -e "/sys/class/net/vif$1.$2" ]; }

# xc_clone_detach DOMID DEVID: save the backend node's keys (but state and
# hotplug-status) to /tmp/clone-DOMID-DEVID.keys, remove the node, wait until
# netback has released the vif. One xenstore-ls, not a xenstore-read per key:
# a Xenstore client process costs ~0.3 s under TCG.
xc_clone_detach() {
	_be=$XC_BE/$1/$2
	xenstore-ls -f "$_be" >/tmp/clone-"$1"-"$2".ls &&
		awk -v pre="$_be/" 'index($0, pre) == 1 {
			r = substr($0, length(pre) + 1); eq = index(r, " = \"")
			k = substr(r, 1, eq - 1); v = substr(r, eq + 4); sub(/"$/, "", v)
			if (v ~ /\\\.\.\.$/) { print "truncated: " $0 > "/dev/stderr"; exit 1 }
			if (k ~ /\// || k ~ /^(state|hotplug-status|hotplug-error|cloned)$/) next
			print k; print v
		}' /tmp/clone-"$1"-"$2".ls >/tmp/clone-"$1"-"$2".keys &&
		xenstore-rm "$_be" && xc_wait 20 xc_vif_gone "$1" "$2"
}

# xc_clone_attach DOMID DEVID: write the saved node back with state=4 and
# cloned=true in one xenstore-write (one transaction), then give the frontend
# read access as libxl does.
xc_clone_attach() {
	_d=$1; _n=$2; _be=$XC_BE/$1/$2
	set --
	while IFS= read -r _k && IFS= read -r _v; do set -- "$@" "$_be/$_k" "$_v"; done <"/tmp/clone-$_d-$_n.keys"
	xenstore-write "$@" "$_be/state" 4 "$_be/cloned" true &&
		xenstore-chmod -r "$_be" n0 "r$_d"
}

# xc_clone_hotplug DOMID DEVID BOND: xencloned's job on the "online" uevent of
# a cloned vif (reference section 1, step 7): enslave, up, hotplug-status.
xc_clone_hotplug() {
	/sbin/ip link set "vif$1.$2" master "$3" && /sbin/ip link set "vif$1.$2" up &&
		xenstore-write "$XC_BE/$1/$2/hotplug-status" connected
}

# xc_fe_state_watch DOMID DEVID: record every value the frontend's state takes
# (one line per xenstore watch event) in /tmp/festate-DOMID-DEVID.
xc_fe_state_watch() {
	_fe=/local/domain/$1/device/vif/$2
	xenstore-watch "$_fe/state" | while read -r _p; do xenstore-read "$_fe/state" 2>&1; done \
		>/tmp/festate-"$1"-"$2" &
}
# xc_fe_stayed_connected DOMID DEVID: the frontend state was 4 at every event.
xc_fe_stayed_connected() { [ -s "/tmp/festate-$1-$2" ] && ! grep -qv '^4$' "/tmp/festate-$1-$2"; }

# xc_nbc_stat KEY: a counter of /sys/kernel/debug/netback_clone/stats.
xc_nbc_stat() { sed -n "s/^$1: //p" /sys/kernel/debug/netback_clone/stats; }

# --- Fault suite (issue 7): /dev/xen/clone of xen_clone_sim + xencloned -------
# The test-only module xen_clone_sim (/dev/xen/clone on a simulated
# hypervisor, built from xen_clone_dev's sources) is driven through
# debugfs; xencloned runs against it with --no-hypervisor and the real
# xenstored of this Dom0.
XC_XCD=/sys/kernel/debug/xen_clone

# xc_sim KEY: a value of sim_status ("key: value").
xc_sim() { sed -n "s/^$1: //p" "$XC_XCD/sim_status"; }
# xc_xcd_counter KEY: a counter of /sys/kernel/debug/xen_clone/counters.
xc_xcd_counter() { sed -n "s/^$1 //p" "$XC_XCD/counters"; }
# xc_sim_inject PARENT CHILD [COUNT]: one CLONEOP_clone batch of COUNT children.
xc_sim_inject() { echo "$1 $2 ${3:-1}" >"$XC_XCD/sim_inject"; }
# xc_sim_idle: nothing waiting in the simulated hypervisor (no blocked parent).
xc_sim_idle() { [ "$(xc_sim waiting)" = 0 ] && [ "$(xc_sim backlog)" = 0 ]; }

# xc_xcd_load PARAMS...: (re)load xen_clone_sim with PARAMS.
xc_xcd_load() {
	lsmod | grep -q '^xen_clone_sim ' && { rmmod xen_clone_sim || return 1; }
	insmod "/lib/modules/$(uname -r)/extra/xen_clone_sim.ko" "$@"
}

# xc_sim_parent DOMID [KEY VALUE]...: the smallest parent domain tree the
# daemon accepts (name, domid, store/port: five nodes, so that a burst of 200
# deep copies fits the scenario's time under TCG), plus KEY VALUE overrides
# (relative to the domain home; the value "-" deletes the key).
xc_sim_parent() {
	_d=$1; _h=/local/domain/$1; shift
	xenstore-write "$_h/name" "parent$_d" "$_h/domid" "$_d" "$_h/store/port" 1 || return 1
	while [ $# -ge 2 ]; do
		if [ "$2" = - ]; then xenstore-rm "$_h/$1"; else xenstore-write "$_h/$1" "$2"; fi || return 1
		shift 2
	done
}

# xc_xencloned_run N ARGS...: xencloned ARGS in the background, log
# /tmp/xencloned.N.log, stats /run/xencloned/stats.N.json, pid in
# /tmp/xencloned.N.pid (xc_check runs its command in a subshell); waits for
# "ready".
xc_xencloned_run() {
	_n=$1; shift
	mkdir -p /run/xencloned
	rm -f "/tmp/xencloned.$_n.rc" "/tmp/xencloned.$_n.pid"
	# A shell waits for the daemon and records its exit status in
	# /tmp/xencloned.N.rc (xc_xencloned_finish checks it).
	sh -c 'xencloned "$@" & echo $! >"/tmp/xencloned.$0.pid"; wait $!; echo $? >"/tmp/xencloned.$0.rc"' \
		"$_n" --stats-file "/run/xencloned/stats.$_n.json" "$@" >"/tmp/xencloned.$_n.log" 2>&1 &
	xc_wait 5 test -s "/tmp/xencloned.$_n.pid" || return 1
	xc_wait 20 grep -q ' ready' "/tmp/xencloned.$_n.log"
}
# xc_xencloned_start N [ARGS...]: xencloned -n --no-hypervisor --cache (xc_xencloned_run).
xc_xencloned_start() { _n=$1; shift; xc_xencloned_run "$_n" -n --no-hypervisor --cache "$@"; }
xc_xencloned_pid() { cat "/tmp/xencloned.$1.pid" 2>/dev/null; }
# xc_sim_completed_over N: the simulated hypervisor accepted more than N completions.
xc_sim_completed_over() { [ "$(xc_sim completed)" -gt "$1" ]; }
# xc_stat N KEY: a counter of daemon N's stats file.
xc_stat() { sed -n "s/^ *\"$2\": \([0-9]*\),*$/\1/p" "/run/xencloned/stats.$1.json"; }
# xc_xencloned_log N: daemon N's log on the console.
xc_xencloned_log() { sed "s/^/XC-LOG xencloned.$1: /" "/tmp/xencloned.$1.log"; }

# --- Cloned vifs on stock Xen: xencloned --adopt-only, attach latency ---------
# (issue 6 scenario net-clone-daemon, issue 7 benchmark bench-attach)

# xc_master_of IF: the name of IF's master device (empty if none).
xc_master_of() { sed -n 's/^INTERFACE=//p' "/sys/class/net/$1/master/uevent" 2>/dev/null; }
# xc_stat_is N KEY VALUE: counter KEY of daemon N's stats file is VALUE.
xc_stat_is() { [ "$(xc_stat "$1" "$2")" = "$3" ]; }
# xc_xencloned_stop N: SIGTERM daemon N, wait until it has exited.
xc_xencloned_stop() {
	kill "$(xc_xencloned_pid "$1")" 2>/dev/null
	xc_wait 10 sh -c "! kill -0 $(xc_xencloned_pid "$1")"
}
# xc_xencloned_finish N: checks that daemon N is still alive, stops it with
# SIGTERM, checks that it exited with status 0 and logged no ERROR line, and
# puts its log on the console.
xc_xencloned_finish() {
	xc_check daemon-alive kill -0 "$(xc_xencloned_pid "$1")"
	xc_xencloned_stop "$1"
	xc_wait 5 test -s "/tmp/xencloned.$1.rc"
	_rc=$(cat "/tmp/xencloned.$1.rc" 2>/dev/null)
	if [ "$_rc" = 0 ] && ! grep -q ' ERROR ' "/tmp/xencloned.$1.log"; then
		xc_pass daemon-no-error-and-exit-0
	else
		xc_fail daemon-no-error-and-exit-0 "exit status '${_rc:-none}'; $(grep ' ERROR ' "/tmp/xencloned.$1.log" | head -n 3 | tr '\n' '|')"
	fi
	xc_xencloned_log "$1"
}

# xc_jiffy_ms: milliseconds per jiffy, for the attach watch's clock: the
# "timestamp" (jiffies) of /proc/schedstat, 1 ms at HZ=1000, HZ found once
# against /proc/uptime over 1 s. 0 without CONFIG_SCHEDSTATS: the watch then
# uses /proc/uptime (10 ms).
xc_jiffy_ms() {
	if [ ! -s /tmp/xc-jiffy-ms ]; then
		_j0=$(sed -n 's/^timestamp //p' /proc/schedstat 2>/dev/null); _u0=$(xc_now_ms)
		sleep 1
		_j1=$(sed -n 's/^timestamp //p' /proc/schedstat 2>/dev/null); _u1=$(xc_now_ms)
		if [ -n "$_j0" ] && [ -n "$_j1" ]; then
			awk -v hz=$(( (_j1 - _j0) * 1000 / (_u1 - _u0) )) 'BEGIN {
				h = hz > 600 ? 1000 : hz > 275 ? 300 : hz > 175 ? 250 : 100; print 1000 / h }'
		else
			echo 0
		fi >/tmp/xc-jiffy-ms
	fi
	cat /tmp/xc-jiffy-ms
}

# xc_attach_watch_start TAG SKIP DOMID/DEVID:BOND...: one xenstore watch on
# $XC_BE, read by one awk process that writes, for each vif named, one line
#   DOMID/DEVID T0 T1 LATE
# to /tmp/attach.TAG: T0 (ms) = its first watch event (the backend node
# appearing), T1 = the event of the write to its hotplug-status after SKIP
# earlier ones (libxl creates vif backends with hotplug-status="": SKIP 1; a
# clone-shaped node has none: SKIP 0), at which the vif is a slave of BOND
# (else T1 is when it became one, polled every 2 ms for 10 s, LATE = polls;
# never: LATE = -1). No fork on that path: the clock is read from /proc
# (xc_jiffy_ms), only for those events, the master from sysfs; the
# hotplug-status value is for the caller to check afterwards. Both processes
# run at nice -20. The awk exits when every vif has a line.
# With XC_ATTACH_TRACE=FILE, every event goes to FILE as "T PATH".
# Returns once the watch is registered (one retry).
xc_attach_watch_start() {
	_t=/tmp/attach.$1 _skip=$2; shift 2
	for _try in 1 2; do
		_xc_attach_watch "$_t" "$_skip" "$@" && return 0
		kill "$(cat "$_t.wpid")" "$(cat "$_t.apid")" 2>/dev/null
	done
	return 1
}
_xc_attach_watch() {
	_t=$1 _skip=$2; shift 2
	_jms=$(xc_jiffy_ms)
	rm -f "$_t" "$_t.fifo" "$_t.ready"
	mkfifo "$_t.fifo"
	xenstore-watch "$XC_BE" >"$_t.fifo" &
	echo $! >"$_t.wpid"
	awk -v want="$*" -v skip="$_skip" -v be="$XC_BE" -v jms="$_jms" -v ready="$_t.ready" \
		-v trace="${XC_ATTACH_TRACE:-}" '
	function now(   l, a) {
		if (jms > 0) {
			while ((getline l < "/proc/schedstat") > 0) if (l ~ /^timestamp /) break
			close("/proc/schedstat"); split(l, a, " "); return int(a[2] * jms + 0.5)
		}
		getline l < "/proc/uptime"; close("/proc/uptime"); split(l, a, " ")
		return int(a[1] * 1000 + 0.5)
	}
	function slave(k,   q, f, l, ok) {
		split(k, q, "/"); f = "/sys/class/net/vif" q[1] "." q[2] "/master/uevent"
		ok = 0
		while ((getline l < f) > 0) if (l == "INTERFACE=" bond[k]) ok = 1
		close(f); return ok
	}
	BEGIN {
		left = split(want, w, " ")
		for (i = 1; i <= left; i++) { split(w[i], p, ":"); bond[p[1]] = p[2] }
		pre = be "/"; plen = length(pre)
	}
	NR == 1 { printf "" > ready; close(ready) }
	{
		if (trace != "") printf "%.0f %s\n", now(), $0 > trace
		if (substr($0, 1, plen) != pre) next
		n = split(substr($0, plen + 1), f, "/")
		k = f[1] "/" f[2]
		if (n < 2 || !(k in bond) || (k in t1)) next
		if (!(k in t0)) t0[k] = now()
		if (f[3] != "hotplug-status" || seen[k]++ < skip) next
		t = now(); late = 0
		while (!slave(k) && late < 5000) { system("usleep 2000"); late++ }
		if (late == 5000) late = -1
		t1[k] = late ? now() : t
		printf "%s %.0f %.0f %d\n", k, t0[k], t1[k], late
		if (--left == 0) exit
	}' <"$_t.fifo" >"$_t" &
	echo $! >"$_t.apid"
	# Scheduling delays of the watch skew both ends of a sample alike; keep
	# them short.
	renice -n -20 -p "$(cat "$_t.wpid")" "$(cat "$_t.apid")" >/dev/null 2>&1
	xc_wait 10 test -e "$_t.ready"
}

# xc_attach_watch_wait TAG SECONDS: wait until the watch of TAG has a line
# for every vif; stop it either way. Fails on timeout.
xc_attach_watch_wait() {
	_t=/tmp/attach.$1
	xc_wait "$2" sh -c "! kill -0 $(cat "$_t.apid")"; _rc=$?
	kill "$(cat "$_t.wpid")" "$(cat "$_t.apid")" 2>/dev/null
	rm -f "$_t.fifo"
	return $_rc
}
