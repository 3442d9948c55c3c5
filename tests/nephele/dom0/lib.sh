# shellcheck shell=sh
# Scenario helpers for the Dom0 on Nephele's hypervisor (tests/nephele/),
# sourced after tests/xen/dom0/lib.sh (the XC-CHECK protocol, xc_wait,
# xc_xencloned_run, xc_stat, ...).

XN_XCD=/sys/kernel/debug/xen_clone

# --- Xenstore daemon, with every request it serves logged --------------------
# oxenstored: its access log with reads, transactions and special ops (one
# line per request); the C xenstored: its -T trace (one "IN" line per request).
XN_OX_LOG=/var/log/xenstored-access.log
XN_CX_TRACE=/var/log/xenstored-trace.log

xn_xenstored_start() {
	case $XN_XENSTORED in
	oxenstored)
		{
			cat /etc/xen/oxenstored.conf
			echo "access-log-file = $XN_OX_LOG"
			echo "access-log-nb-files = 1"
			echo "access-log-nb-lines = 100000000"
			echo "access-log-nb-chars = 256"
			echo "access-log-read-ops = true"
			echo "access-log-transactions-ops = true"
			echo "access-log-special-ops = true"
		} >/run/oxenstored.conf
		oxenstored --config-file /run/oxenstored.conf --pid-file /run/xenstored.pid
		;;
	cxenstored) xenstored --pid-file /run/xenstored.pid -T "$XN_CX_TRACE" ;;
	*) echo "unknown xenstored '$XN_XENSTORED'" >&2; return 1 ;;
	esac
}

# xn_xs_requests: requests the Xenstore daemon has served so far (watch events
# it sent, connection and commit bookkeeping are not requests).
xn_xs_requests() {
	case $XN_XENSTORED in
	oxenstored) grep -cvE '(newconn|endconn|coalesce|commit|conflict|w event|w notfired) ' "$XN_OX_LOG" ;;
	cxenstored) grep -c '^IN ' "$XN_CX_TRACE" ;;
	esac
}
# xn_xs_mark: a position in the xenstored's request log (its line count).
xn_xs_log() { [ "$XN_XENSTORED" = oxenstored ] && echo "$XN_OX_LOG" || echo "$XN_CX_TRACE"; }
xn_xs_mark() { wc -l <"$(xn_xs_log)"; }
# xn_xs_reqs FROM TO: the requests between two marks, one "CONNECTION OP" line
# each (oxenstored: A<n> for a socket, D<n> for a domain's ring; the C
# xenstored: the connection's address).
xn_xs_reqs() {
	sed -n "$(($1 + 1)),$2p" "$(xn_xs_log)" | case $XN_XENSTORED in
	oxenstored) grep -vE '(newconn|endconn|coalesce|commit|conflict|w event|w notfired) ' |
		awk '{ sub(/^\[[^]]*\] */, ""); c = $1; sub(/\..*/, "", c); print c, $2 ($2 ~ /^(t|w|is|reset)$/ ? " " $3 : "") }' ;;
	*) awk '$1 == "IN" { print $2, $5 }' ;;
	esac
}
# xn_xs_hist FROM TO: those requests counted by connection and operation, on
# the console (where the requests of a clone go).
xn_xs_hist() { xn_xs_reqs "$1" "$2" | sort | uniq -c | sort -rn | sed 's/^/XC-LOG xs-requests: /'; }
# xn_xs_daemon_requests FROM TO: the requests of the clone daemon's own
# connections between two marks: those that sent XS_INTRODUCE (only the
# daemon introduces the clones' stores).
xn_xs_daemon_requests() {
	xn_xs_reqs "$1" "$2" | awk '{ n[$1]++ } tolower($2) == "introduce" { d[$1] = 1 }
		END { t = 0; for (c in d) t += n[c]; print t }'
}
# xn_xs_daemon_dump FROM TO: the daemon's own requests between two marks
# (connection that sent XS_INTRODUCE), with their arguments.
xn_xs_daemon_dump() {
	_xd=$(xn_xs_reqs "$1" "$2" | awk 'tolower($2) == "introduce" { print $1 }' | sort -u | tr '\n' ' ')
	sed -n "$(($1 + 1)),$2p" "$(xn_xs_log)" | case $XN_XENSTORED in
	oxenstored) awk -v d=" $_xd" '{ l = $0; sub(/^\[[^]]*\] */, "", l); split(l, f, " "); c = f[1]; sub(/\..*/, "", c)
		if (index(d, " " c " ")) print l }' ;;
	*) awk -v d=" $_xd" '$1 == "IN" && index(d, " " $2 " ") { $1 = $3 = $4 = ""; print }' ;;
	esac | cut -c1-160
}
# xn_xs_clone_ops: XS_CLONE requests served so far (oxenstored only; the C
# xenstored has no such operation: 0).
xn_xs_clone_ops() {
	case $XN_XENSTORED in
	oxenstored) grep -c ' clone ' "$XN_OX_LOG" ;;
	*) echo 0 ;;
	esac
}

# --- our kernel module and daemon -----------------------------------------------
# xn_xcd_load PARAMS...: (re)load xen_clone_dev on the real hypervisor, as a
# user does (modprobe, from make install's /lib/modules/<kver>/extra).
xn_xcd_load() {
	lsmod | grep -q '^xen_clone_dev ' && { rmmod xen_clone_dev || return 1; }
	modprobe xen_clone_dev "$@"
}
# xn_xcd_counter KEY: a counter of /sys/kernel/debug/xen_clone/counters.
xn_xcd_counter() { sed -n "s/^$1 //p" "$XN_XCD/counters"; }

# xn_setup [XENCLONED ARGS...]: what a user starts at boot. XN_DAEMON=ours
# (default): xen_clone_dev with its defaults, netback_clone, and xencloned with
# no flag but its stats file (daemon 1: /tmp/xencloned.1.log,
# /run/xencloned/stats.1.json). XN_DAEMON=nephele, the baseline: Nephele's own
# C xencloned as its authors run it (-c; -d on the C xenstored, which has no
# XS_CLONE), owning the ring itself, with netback_clone for the vif shortcut.
XN_DAEMON=${XN_DAEMON:-ours}
xn_setup() {
	xc_check netback-clone-load modprobe netback_clone || return 1
	if [ "$XN_DAEMON" = nephele ]; then
		_a=-c; [ "$XN_XENSTORED" = cxenstored ] && _a="-c -d"
		# shellcheck disable=SC2086
		nephele-xencloned $_a "$@" >/tmp/nephele-xencloned.log 2>&1 &
		echo $! >/tmp/nephele-xencloned.pid
		sleep 2
		xc_check nephele-xencloned-start kill -0 "$(cat /tmp/nephele-xencloned.pid)" ||
			{ sed 's/^/XC-LOG nephele-xencloned: /' /tmp/nephele-xencloned.log | tail -n 20; return 1; }
		return
	fi
	xc_check xen-clone-dev-load xn_xcd_load &&
		xc_check xencloned-start xc_xencloned_run 1 "$@"
}
# xn_ours: the daemon under test is ours (checks of our stats and counters).
xn_ours() { [ "$XN_DAEMON" = ours ]; }
# xn_finish: stop the daemon; for ours, check it stopped cleanly.
xn_finish() {
	if xn_ours; then xc_xencloned_finish 1; return; fi
	xc_check nephele-xencloned-alive kill -0 "$(cat /tmp/nephele-xencloned.pid)"
	kill "$(cat /tmp/nephele-xencloned.pid)" 2>/dev/null
	sed 's/^/XC-LOG nephele-xencloned: /' /tmp/nephele-xencloned.log | tail -n 60
}

# --- guests --------------------------------------------------------------------
# xn_guest NAME IMAGE MAX_CLONES EXTRA [VIF]: create a Mini-OS PV guest from
# /boot/IMAGE that may fork MAX_CLONES children, with command line EXTRA and an
# optional "vif = [...]" line. Returns when xl create returns.
xn_guest() {
	cat >/tmp/"$1".cfg <<CFG
name = "$1"
type = "pv"
kernel = "/boot/$2"
memory = 32
vcpus = 1
max_clones = $3
extra = "$4"
${5:-}
on_poweroff = "destroy"
on_crash = "preserve"
CFG
	_out=$(xl create /tmp/"$1".cfg 2>&1) && return 0
	echo "$_out" | sed "s/^/XC-LOG xl create $1: /" >/dev/console
	return 1
}

# xn_console NAME: the guest's console log (xenconsoled --log=guest).
xn_console() { echo "/var/log/xen/console/guest-$1.log"; }
# xn_console_has NAME PATTERN
xn_console_has() { grep -q "$2" "$(xn_console "$1")" 2>/dev/null; }
# xn_console_count NAME PATTERN
xn_console_count() { grep -c "$2" "$(xn_console "$1")" 2>/dev/null || true; }

# xn_state DOMID: the state letters of `xl list` (r, b, p, s, c, d).
xn_state() { xl list "$1" 2>/dev/null | awk 'NR == 2 { print $5 }'; }
# xn_paused DOMID: the domain exists and is paused.
xn_paused() { case $(xn_state "$1") in *p*) return 0 ;; esac; return 1; }
# xn_name DOMID
xn_name() { xl list "$1" 2>/dev/null | awk 'NR == 2 { print $1 }'; }

# xn_xl_dmesg_problems: the clone op's lines of the hypervisor's log (also on
# com1, interleaved with everything else) and its assertion failures.
xn_xl_dmesg_problems() {
	xl dmesg 2>/dev/null | grep -iE 'clone|Assertion' | tail -n 40 | sed 's/^/XC-LOG xl dmesg: /'
}

# xn_orphan_fork GUEST PAUSED_CHECK: xen_clone_dev (orphan_timeout=5) and no
# daemon; GUEST forks once. Checks that the orphan policy unblocks the parent
# (parent-unblocked), that the child is left paused (PAUSED_CHECK) and that the
# module auto-completed exactly one entry (auto-completed-once). Sets
# XN_ORPHAN_CHILD to the child's domid (empty if the parent named none).
xn_orphan_fork() {
	xc_check netback-clone-load modprobe netback_clone
	xc_check xen-clone-dev-load xn_xcd_load orphan_timeout=5
	xc_check guest-created xn_guest "$1" forker 1 "mode=fork count=1 start_ms=500"
	_t0=$(xc_now_ms)
	if xc_wait 60 xn_console_has "$1" "XCF parent .*done forks=1"; then
		xc_pass parent-unblocked "fork() returned $(( $(xc_now_ms) - _t0 )) ms after create"
	else
		xc_fail parent-unblocked "$(grep XCF "$(xn_console "$1")" | tail -n 2 | tr '\n' '|')"
	fi
	XN_ORPHAN_CHILD=$(sed -n 's/.*XCF parent .*fork i=1 rc=\([0-9]*\) .*/\1/p' "$(xn_console "$1")")
	_c=$XN_ORPHAN_CHILD
	[ -n "$_c" ] && xn_paused "$_c" && xc_pass "$2" "domain $_c: $(xn_state "$_c")" ||
		xc_fail "$2" "child '$_c' state '$(xn_state "$_c")'"
	_au=$(xn_xcd_counter auto_completions)
	[ "$_au" = 1 ] && xc_pass auto-completed-once || xc_fail auto-completed-once "auto_completions '$_au'"
}

# --- a summary a person reads (scripts/demo.sh prints the XC-SUMMARY lines) ---
# xn_summary_child DOMID ANSWERS: one row for a child with a vif: name,
# console lines, vif, its master, hotplug-status, whether it answered, and the
# daemon's time for it (notification read to completion, from the stats file
# of daemon 1; "-" for Nephele's daemon, which keeps none).
xn_summary_child() {
	_c=$1
	_nm=$(xn_name "$_c")
	_lines=$(grep -c . "$(xn_console "$_nm")" 2>/dev/null || echo 0)
	_hs=$(xenstore-read "/local/domain/0/backend/vif/$_c/0/hotplug-status" 2>/dev/null || echo -)
	_ms=$(sed -n "s/.*\"child\": $_c,.*\"latency_ms\": \([0-9.]*\).*/\1/p" /run/xencloned/stats.1.json 2>/dev/null | tail -n 1)
	printf '%-6s %-22s %-8s %-9s %-6s %-10s %-8s %s\n' "$_c" "$_nm" "$_lines" "vif$_c.0" \
		"$(xc_master_of "vif$_c.0")" "$_hs" "$2" "${_ms:--}"
}
# xn_summary_print NAME DOMID N: the parent's line (fork() times as the guest
# measured them) and the children's rows, as XC-SUMMARY lines.
xn_summary_print() {
	_t=$(grep -o '[0-9]\.[0-9]\{6\}' "$(xn_console "$1")" | head -n "$3" |
		awk '{ printf "%s%.1f", (NR > 1 ? ", " : ""), $1 * 1000 }')
	echo "XC-SUMMARY parent $1 (domain $2, daemon: $XN_DAEMON, $XN_XENSTORED): $3 fork() calls, each took (ms, guest clock): ${_t:-?}"
	printf 'XC-SUMMARY %-6s %-22s %-8s %-9s %-6s %-10s %-8s %s\n' domid name console vif bond hotplug answers "dom0 ms"
	sed 's/^/XC-SUMMARY /' /tmp/summary
}
