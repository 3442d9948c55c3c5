# bench-clone: the real-clone benchmark (issue 13), one boot = one
# configuration (this xenstored; no vif here, one vif in bench-clone-vif.sh).
# For each consumer of the clone notifications, in this order, in this boot,
# with the same guest image:
#   floor    tests/nephele/tools/clone-floor on our xen_clone_dev: completes
#            each entry the moment it is read, nothing else (children stay
#            paused): the hypervisor + ring cost, the floor of fork() latency
#   ours     xen_clone_dev + netback_clone + xencloned with default flags
#   nephele  Nephele's own C xencloned (-c; -c -d on the C xenstored), owning
#            the ring itself, with netback_clone
#   xsfloor  (optional, oxenstored) xencloned --bench-xs-floor: per clone only
#            the requests no XS_CLONE daemon can do without (the XS_CLONEs of
#            the basic and console trees + XS_INTRODUCE, pipelined), then the
#            completion; children stay paused: the floor of XS_CLONE mode
# it runs a series of sequential fork()s (median, p90) and one clone() of B
# children per batch size B, each from a fresh parent, and measures per
# series: the guest's fork()/clone() time, the Xenstore requests the
# xenstored served (its own log), the Dom0 CPU time of the consumer (with its
# reaped children), the xenstored, xenconsoled and the kernel threads
# (/proc/PID/stat deltas) and irq/softirq/system time (/proc/stat), and the
# daemon's own per-clone time (our stats file; Nephele's log lines; the
# floor's). Parameters from the Dom0 command line (bench/clone.sh sets them):
#   xc.bench_forks=N        sequential forks per consumer            [5]
#   xc.bench_batches=B:B..  children per clone() call                [1:4]
#   xc.bench_daemons=D:D..  consumers, in order                      [floor:ours:nephele]
#   xc.bench_delay_ms=MS    pause between two sequential forks       [2000]
#   xc.bench_start_ms=MS    forker's pause before it clones           [8000]
# Results: "XC-BENCH ..." lines (bench/clone.sh turns them into JSON),
# checks (every fork returned, every child seen) and a few XC-TIME/XC-COUNT.
#
# A series' measurement window opens once the parent runs and before it
# clones (forker: in its start_ms pause, checked; server-udp, which clones as
# soon as its netfront is up, before `xl create`: its own creation and
# start-up are then in the window and are measured alone, without cloning,
# as the "base" of the same consumer, for bench/clone.py to subtract; `xl
# create` returns long after the guest started under TCG), and closes once the last
# clone returned in the parent and every child is running (forker: its first
# heartbeat; server-udp: its vif enslaved in bond0 and "Listening") or, for
# the floor, once the parent's last clone returned; plus XB_SETTLE s. No
# Xenstore client runs inside a window. An idle window (XB_IDLE s, nothing
# happening) after each consumer starts gives Dom0's background CPU rate.

xb_arg() { sed -n "s/.*xc\.$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
XB_FORKS=$(xb_arg bench_forks); XB_FORKS=${XB_FORKS:-5}
XB_BATCHES=$(xb_arg bench_batches | tr ':' ' '); XB_BATCHES=${XB_BATCHES:-1 4}
XB_DAEMONS=$(xb_arg bench_daemons | tr ':' ' '); XB_DAEMONS=${XB_DAEMONS:-floor ours nephele}
XB_DELAY=$(xb_arg bench_delay_ms); XB_DELAY=${XB_DELAY:-2000}
XB_START=$(xb_arg bench_start_ms); XB_START=${XB_START:-8000}
XB_VIF=${XB_VIF:-0}
XB_SETTLE=${XB_SETTLE:-2}
XB_IDLE=${XB_IDLE:-10}
XB_IP=10.8.0.2
XB_VIFLINE="vif = [ \"bridge=bond0,mac=00:16:3e:00:08:02,ip=$XB_IP 255.255.255.0 10.8.0.1\" ]"
xc_log "bench-clone: $XN_XENSTORED, vif=$XB_VIF, forks=$XB_FORKS, batches '$XB_BATCHES', consumers '$XB_DAEMONS', delay ${XB_DELAY} ms, nproc $(nproc)"
echo "XC-BENCH-CONFIG xenstored=$XN_XENSTORED vif=$XB_VIF forks=$XB_FORKS batches=$(echo $XB_BATCHES | tr ' ' ':') daemons=$(echo $XB_DAEMONS | tr ' ' ':') delay_ms=$XB_DELAY start_ms=$XB_START settle_s=$XB_SETTLE hz=$(getconf CLK_TCK 2>/dev/null || echo 100)"

# --- Dom0 CPU time -------------------------------------------------------------
# xb_cpu_snap FILE: "pid ppid own_ticks reaped_children_ticks comm" of every
# process (one cat, one awk: the comm may hold spaces, the fields after the
# last ')' do not), and /proc/stat's cpu line in FILE.stat.
xb_cpu_snap() {
	cat /proc/[0-9]*/stat 2>/dev/null | awk '{
		l = $0; c = l; sub(/^[^(]*\(/, "", c); sub(/\) [^)]*$/, "", c); gsub(/ /, "_", c)
		r = l; sub(/^.*\) /, "", r); split(r, f, " ")
		print $1, f[2], f[12] + f[13], f[14] + f[15], c }' >"$1"
	head -n 1 /proc/stat >"$1.stat"
}
# xb_cpu_delta A B CONSUMER_PID: "cpu_consumer=MS cpu_xenstored=MS ..." between
# two snapshots. Consumer: its own time and its reaped children's (hotplug
# scripts); kernel threads: kthreadd's children (a thread born in the window
# counts whole); irq, softirq, system: all CPUs, from /proc/stat.
xb_cpu_delta() {
	awk -v a="$1" -v b="$2" -v cp="${3:-0}" -v xs="$(cat /run/xenstored.pid 2>/dev/null)" \
		-v xcon="$(cat /run/xenconsoled.pid 2>/dev/null)" -v hz="$(getconf CLK_TCK 2>/dev/null || echo 100)" '
	BEGIN {
		while ((getline l < a) > 0) { split(l, f, " "); t0[f[1]] = f[3]; c0[f[1]] = f[4] }
		while ((getline l < b) > 0) {
			split(l, f, " "); p = f[1]; d = f[3] - t0[p]
			if (p == cp) cons += d + f[4] - c0[p]
			else if (p == xs) xst += d
			else if (p == xcon) xc += d
			else if (f[2] == 2 || p == 2) { kt += d; if (d > 0) ktd[f[5]] += d }
		}
		getline l < (a ".stat"); split(l, s0, " "); getline l < (b ".stat"); split(l, s1, " ")
		ms = 1000 / hz
		printf "cpu_consumer=%d cpu_xenstored=%d cpu_xenconsoled=%d cpu_kthreads=%d cpu_irq=%d cpu_softirq=%d cpu_system=%d cpu_user=%d\n",
			cons * ms, xst * ms, xc * ms, kt * ms, (s1[7] - s0[7]) * ms, (s1[8] - s0[8]) * ms,
			(s1[4] - s0[4]) * ms, (s1[2] + s1[3] - s0[2] - s0[3]) * ms
		# The busiest kernel threads (name: ms), on a line of their own.
		top = ""
		for (k = 0; k < 4; k++) {
			best = ""; bv = 0
			for (n in ktd) if (ktd[n] > bv) { bv = ktd[n]; best = n }
			if (best == "") break
			top = top (top == "" ? "" : ",") best ":" bv * ms; delete ktd[best]
		}
		print "kthreads_top=" (top == "" ? "-" : top)
	}'
}

# --- marks: Xenstore requests, CPU, the consumer's own per-clone times ------
# xb_xs_slice FROM TO: the xenstored's request log between two byte offsets
# (marks record the log's size: O(1), where counting lines of a log that
# grows by every request would take seconds under TCG).
xb_xs_slice() { tail -c +"$(($1 + 1))" "$(xn_xs_log)" | head -c "$(($2 - $1))"; }
# xb_xs_count FROM TO: requests served between two marks (xn_xs_requests'
# rules); xb_xs_clones FROM TO: XS_CLONE requests among them.
xb_xs_count() {
	case $XN_XENSTORED in
	oxenstored) xb_xs_slice "$1" "$2" | grep -cvE '(newconn|endconn|coalesce|commit|conflict|w event|w notfired) ' ;;
	*) xb_xs_slice "$1" "$2" | grep -c '^IN ' ;;
	esac
}
# xb_xs_daemon FROM TO: the requests of the clone daemon's own connections
# among them: those that sent XS_INTRODUCE (only the daemon introduces the
# clones' stores; the others are xenconsoled's, the kernel's, the guests').
xb_xs_daemon() {
	xb_xs_slice "$1" "$2" | case $XN_XENSTORED in
	oxenstored) grep -vE '(newconn|endconn|coalesce|commit|conflict|w event|w notfired) ' |
		awk '{ sub(/^\[[^]]*\] */, ""); c = $1; sub(/\..*/, "", c); print c, $2 }' ;;
	*) awk '$1 == "IN" { print $2, $5 }' ;;
	esac | awk '{ n[$1]++ } tolower($2) == "introduce" { d[$1] = 1 }
		END { t = 0; for (c in d) t += n[c]; print t }'
}
xb_xs_clones() {
	case $XN_XENSTORED in
	oxenstored) xb_xs_slice "$1" "$2" | grep -c ' clone ' ;;
	*) echo 0 ;;
	esac
}
# xb_mark TAG: snapshot everything a window is measured from.
xb_mark() {
	_m0=$(xc_now_ms)
	stat -c %s "$(xn_xs_log)" >/tmp/xb.$1.xs
	xb_cpu_snap /tmp/xb.$1.cpu
	xc_now_ms >/tmp/xb.$1.t
	case $XN_DAEMON in
	floor) wc -l </tmp/clone-floor.log ;;
	nephele) wc -l </tmp/nephele-xencloned.log ;;
	ours | xsfloor) tr -d '\n' </run/xencloned/stats.1.json 2>/dev/null | sed 's/, *"recent".*//; s/ \{2,\}/ /g' >/tmp/xb.$1.stats; echo 0 ;;
	esac >/tmp/xb.$1.dlog
	echo "$1 $(( $(xc_now_ms) - _m0 ))" >>/tmp/xb.marks
}
# xb_window KIND B E N: one "XC-BENCH" line for the window between marks B and
# E: what KIND (seq, batch, base, first) did with N clones.
xb_window() {
	echo "XC-BENCH kind=$1 daemon=$XN_DAEMON vif=$XB_VIF n=$4 wall_ms=$(( $(cat /tmp/xb.$3.t) - $(cat /tmp/xb.$2.t) ))" \
		"xs_requests=$(xb_xs_count "$(cat /tmp/xb.$2.xs)" "$(cat /tmp/xb.$3.xs)")" \
		"xs_clone_ops=$(xb_xs_clones "$(cat /tmp/xb.$2.xs)" "$(cat /tmp/xb.$3.xs)")" \
		"xs_daemon=$(xb_xs_daemon "$(cat /tmp/xb.$2.xs)" "$(cat /tmp/xb.$3.xs)")" \
		"$(xb_cpu_delta /tmp/xb.$2.cpu /tmp/xb.$3.cpu "$(xb_consumer_pid)" | head -n 1)"
	xc_log "kthreads $XN_DAEMON $1 n=$4: $(xb_cpu_delta /tmp/xb.$2.cpu /tmp/xb.$3.cpu "$(xb_consumer_pid)" | sed -n 's/^kthreads_top=//p')"
	# The consumer's own per-clone times within the window.
	case $XN_DAEMON in
	floor)
		_v=$(sed -n "$(( $(cat /tmp/xb.$2.dlog) + 1 )),$(cat /tmp/xb.$3.dlog)p" /tmp/clone-floor.log |
			sed -n 's/^entry .* us=\([0-9]*\)$/\1/p' | awk '{ printf "%s%.3f", (NR > 1 ? "," : ""), $1 / 1000 }')
		echo "XC-BENCH-DAEMON kind=$1 daemon=floor n=$4 ms=$_v" ;;
	nephele)
		_v=$(sed -n "$(( $(cat /tmp/xb.$2.dlog) + 1 )),$(cat /tmp/xb.$3.dlog)p" /tmp/nephele-xencloned.log |
			sed -n 's/.*clone completion domid=[0-9]* msec=\([0-9.]*\).*/\1/p' | tr '\n' ',' | sed 's/,$//')
		echo "XC-BENCH-DAEMON kind=$1 daemon=nephele n=$4 ms=$_v" ;;
	ours | xsfloor)
		echo "XC-BENCH-STATS kind=$1 daemon=$XN_DAEMON n=$4 when=before $(cat /tmp/xb.$2.stats)"
		echo "XC-BENCH-STATS kind=$1 daemon=$XN_DAEMON n=$4 when=after $(cat /tmp/xb.$3.stats)"
		# Per clone: the stats file's recent list (the last 32), the window's
		# part (windows that end with the series: seq, batch).
		case $1 in seq | batch) ;; *) return 0 ;; esac
		_k=$4; [ "$_k" -gt 32 ] && _k=32
		_v=$(sed -n 's/.*"latency_ms": \([0-9.]*\), "stages_ms".*/\1/p' /run/xencloned/stats.1.json | tail -n "$_k" |
			tr '\n' ',' | sed 's/,$//')
		echo "XC-BENCH-DAEMON kind=$1 daemon=$XN_DAEMON n=$4 ms=$_v" ;;
	esac
}
xb_consumer_pid() {
	case $XN_DAEMON in
	floor) cat /tmp/clone-floor.pid ;;
	nephele) cat /tmp/nephele-xencloned.pid ;;
	ours | xsfloor) xc_xencloned_pid 1 ;;
	esac
}

# --- consumers -----------------------------------------------------------------
xb_start() {
	XN_DAEMON=$1
	case $1 in
	floor)
		xc_check floor-setup sh -c 'lsmod | grep -q "^netback_clone " || modprobe netback_clone' || return 1
		xc_check floor-module-load xn_xcd_load || return 1
		clone-floor >/tmp/clone-floor.log 2>&1 &
		echo $! >/tmp/clone-floor.pid
		xc_check floor-start xc_wait 10 grep -q 'clone-floor ready' /tmp/clone-floor.log
		;;
	ours) xn_setup ;;
	xsfloor) xc_check xen-clone-dev-load xn_xcd_load && xc_check xencloned-start xc_xencloned_run 1 --bench-xs-floor ;;
	nephele)
		# The ring is Nephele's daemon's own: our module must let go of it.
		if lsmod | grep -q '^xen_clone_dev '; then xc_check nephele-rmmod-ours rmmod xen_clone_dev || return 1; fi
		xn_setup
		;;
	esac
}
xb_stop() {
	case $XN_DAEMON in
	floor)
		kill "$(cat /tmp/clone-floor.pid)" 2>/dev/null
		xc_wait 10 sh -c "! kill -0 $(cat /tmp/clone-floor.pid)"
		tail -n 1 /tmp/clone-floor.log | sed 's/^/XC-LOG floor: /'
		xc_check floor-rmmod xc_wait 10 rmmod xen_clone_dev ;;
	ours)
		xc_log "stats: $(tr -d '\n' </run/xencloned/stats.1.json | sed 's/"recent".*//')"
		xn_finish >/tmp/xb.finish.log; grep -v '^XC-LOG xencloned.1: .* INFO ' /tmp/xb.finish.log
		xc_check ours-rmmod xc_wait 10 rmmod xen_clone_dev ;;
	xsfloor)
		xc_log "stats: $(tr -d '\n' </run/xencloned/stats.1.json | sed 's/"recent".*//')"
		xc_xencloned_finish 1 >/tmp/xb.finish.log; grep -v '^XC-LOG xencloned.1: .* INFO ' /tmp/xb.finish.log
		xc_check xsfloor-rmmod xc_wait 10 rmmod xen_clone_dev ;;
	nephele) xn_finish | grep -v 'XCF\|clone_destroy\|clone_io_done' | tail -n 20 ;;
	esac
}

# --- guests --------------------------------------------------------------------
# xb_domids: every domain but Dom0.
xb_domids() { xl list | awk 'NR > 2 { print $2 }' | sort -n; }
# xb_cleanup BEFORE: destroy every domain not in BEFORE (parent, children).
xb_cleanup() {
	# Twelve `xl destroy` at a time: one takes ~20 s with a vif under TCG. (A
	# bare `wait` would also wait for the consumer, a child of this shell.)
	_p=
	for _d in $(xb_domids | grep -vxF "$1"); do
		xl destroy "$_d" >/dev/null 2>&1 &
		_p="$_p $!"
		# shellcheck disable=SC2086
		[ "$(echo $_p | wc -w)" -ge 12 ] && { wait $_p; _p=; }
	done
	# shellcheck disable=SC2086
	[ -n "$_p" ] && wait $_p
	xc_wait 60 sh -c "[ -z \"\$(xl list | awk 'NR > 2 { print \$2 }' | grep -vxF '$1')\" ]" ||
		xc_log "left after cleanup: $(xl list | tr '\n' '|')"
	xc_wait 30 sh -c '[ -z "$(cat /sys/class/net/bond0/bonding/slaves 2>/dev/null)" ]'
}
# xb_children_up NAME N: N children of NAME run: forker's first heartbeat;
# server-udp: "Listening" and N+1 vifs in bond0 (the parent's and theirs).
xb_children_up() {
	_c=$(cat /var/log/xen/console/guest-"$1"-child-*.log 2>/dev/null | grep -c 'XCF child .*tick=1\|Listening')
	[ "$_c" -ge "$2" ] || return 1
	[ "$XB_VIF" = 0 ] && return 0
	[ "$(wc -w </sys/class/net/bond0/bonding/slaves)" -gt "$2" ]
}
# xb_done_wait NAME PATTERN N SECONDS: the parent printed PATTERN, then (but
# for the floor) its N children run. Polls once a second (a poll is a process
# or two that competes with what is measured).
xb_done_wait() {
	XC_WAIT_S=1 xc_wait "$4" xn_console_has "$1" "$2" || return 1
	case $XN_DAEMON in floor | xsfloor) return 0 ;; esac
	XC_WAIT_S=1 xc_wait "$4" xb_children_up "$1" "$3"
}
# xb_guest NAME N ARGS: forker or server-udp, max_clones N.
xb_guest() {
	if [ "$XB_VIF" = 0 ]; then
		xn_guest "$1" forker "$2" "$3"
	else
		xn_guest "$1" server-udp "$2" "$3" "$XB_VIFLINE"
	fi
}

# xb_base: server-udp's own creation and start-up without cloning, in a
# window like the series' (from before `xl create` to "Listening" + settle).
xb_base() {
	_g=base-$XN_DAEMON
	_before=$(xb_domids)
	xb_mark b0
	if xc_check "$XN_DAEMON-base-created" xb_guest "$_g" 1 "-a server-udp"; then
		if XC_WAIT_S=1 xc_wait 120 xn_console_has "$_g" 'Listening'; then
			sleep "$XB_SETTLE"
			xb_mark b1
			xb_window base b0 b1 0
		else
			xc_fail "$XN_DAEMON-base-listening" "$(tail -n 3 "$(xn_console "$_g")" | tr '\n' '|')"
		fi
	fi
	xb_cleanup "$_before"
}

# xb_seq: XB_FORKS sequential fork()s of one parent.
xb_seq() {
	n=$XB_FORKS; _g=seq-$XN_DAEMON; _to=$((120 + n * 20))
	_before=$(xb_domids)
	if [ "$XB_VIF" = 0 ]; then
		xc_check "$XN_DAEMON-seq-created" xb_guest "$_g" "$n" \
			"mode=fork count=$n start_ms=$XB_START delay_ms=$XB_DELAY ticks=1 tick_ms=200" || { xb_cleanup "$_before"; return; }
		XC_WAIT_S=0.2 xc_wait 60 xn_console_has "$_g" 'XCF parent .*start' || xc_fail "$XN_DAEMON-seq-started"
		xb_mark s0
		xn_console_has "$_g" 'XCF parent .*fork i=' &&
			xc_fail "$XN_DAEMON-seq-window-opened-before-clone" "a fork returned before the window opened: raise xc.bench_start_ms"
		# The first clone also reads the parent: counted apart.
		XC_WAIT_S=0.2 xc_wait "$_to" xn_console_has "$_g" 'XCF parent .*fork i=1 ' || xc_fail "$XN_DAEMON-seq-first-returned"
		xb_mark s1
		xn_console_has "$_g" 'XCF parent .*fork i=2 ' &&
			xc_log "$XN_DAEMON: fork 2 returned before the first-clone window closed: first/rest split unreliable"
		_pat="XCF parent .*done forks=$n"
	else
		xb_mark s0
		xc_check "$XN_DAEMON-seq-created" xb_guest "$_g" "$n" "-a server-udp -f -c $n" || { xb_cleanup "$_before"; return; }
		_pat=Listening
	fi
	if xb_done_wait "$_g" "$_pat" "$n" "$_to"; then
		sleep "$XB_SETTLE"
		xb_mark s2
		xc_pass "$XN_DAEMON-seq-done" "$n forks"
	else
		xb_mark s2
		xc_fail "$XN_DAEMON-seq-done" "$(grep -c . "$(xn_console "$_g")") console lines, last: $(tail -n 2 "$(xn_console "$_g")" | tr '\n' '|'); children up: $(cat /var/log/xen/console/guest-"$_g"-child-*.log 2>/dev/null | grep -c 'tick=1\|Listening'); bond0: $(cat /sys/class/net/bond0/bonding/slaves 2>/dev/null)"
	fi
	# Guest-side fork() times.
	if [ "$XB_VIF" = 0 ]; then
		sed -n 's/.*XCF parent .*fork i=\([0-9]*\) rc=\(-*[0-9]*\) ms=\([0-9.]*\).*/\1 \2 \3/p' "$(xn_console "$_g")"
	else
		grep -o 'info: [0-9]*\.[0-9]\{6\}' "$(xn_console "$_g")" | head -n "$n" |
			awk '{ split($2, t, "."); printf "%d 0 %.3f\n", NR, t[1] * 1000 + t[2] / 1000 }'
	fi | while read -r i rc ms; do echo "XC-BENCH-FORK daemon=$XN_DAEMON vif=$XB_VIF i=$i rc=$rc ms=$ms"; done
	_got=$(grep -c "XCF parent .*fork i=[0-9]* rc=[0-9]" "$(xn_console "$_g")")
	[ "$XB_VIF" = 1 ] && _got=$(grep -c 'info: [0-9]*\.[0-9]\{6\}' "$(xn_console "$_g")")
	[ "$_got" -ge "$n" ] && xc_pass "$XN_DAEMON-seq-forks-returned" "$_got" ||
		xc_fail "$XN_DAEMON-seq-forks-returned" "$_got of $n"
	[ "$XB_VIF" = 0 ] && xb_window first s0 s1 1
	xb_window seq s0 s2 "$n"
	# Where the time goes: the xenstored's own log of the series' last
	# requests (time-stamped: the last clone's requests, who sent them, and
	# the gaps between them), after the window closed.
	xb_xs_slice "$(cat /tmp/xb.s0.xs)" "$(cat /tmp/xb.s2.xs)" | grep -vE ' (coalesce|w notfired) ' |
		tail -n "${XB_TRACE_LINES:-60}" | cut -c1-160 | sed "s/^/XC-LOG xs-trace $XN_DAEMON: /"
	# With vifs: netback_clone's own attach time of each (xenwatch thread),
	# the kernel's part of the devices stage.
	[ "$XB_VIF" = 1 ] && dmesg | grep -o 'vif[0-9.]*: attached to cloned frontend .*' | tail -n "$n" |
		sed "s/^/XC-LOG nbc-attach $XN_DAEMON: /"
	[ "$XB_VIF" = 0 ] && xb_window rest s1 s2 $((n - 1))
	xb_cleanup "$_before"
}

# xb_batch B: one clone() of B children.
xb_batch() {
	b=$1; _g=b$b-$XN_DAEMON; _to=$((120 + b * 20))
	_before=$(xb_domids)
	if [ "$XB_VIF" = 0 ]; then
		xc_check "$XN_DAEMON-batch-$b-created" xb_guest "$_g" "$b" "mode=batch n=$b start_ms=$XB_START ticks=1 tick_ms=200" ||
			{ xb_cleanup "$_before"; return; }
		XC_WAIT_S=0.2 xc_wait 60 xn_console_has "$_g" 'XCF parent .*start' || xc_fail "$XN_DAEMON-batch-$b-started"
		xb_mark c0
		xn_console_has "$_g" 'XCF parent batch n=' &&
			xc_fail "$XN_DAEMON-batch-$b-window-opened-before-clone" "the clone returned before the window opened: raise xc.bench_start_ms"
		_pat="XCF parent batch n=$b rc="
	else
		xb_mark c0
		xc_check "$XN_DAEMON-batch-$b-created" xb_guest "$_g" "$b" "-a server-udp -x -c $b" || { xb_cleanup "$_before"; return; }
		_pat=Listening
	fi
	if xb_done_wait "$_g" "$_pat" "$b" "$_to"; then
		sleep "$XB_SETTLE"
		xb_mark c1
		xc_pass "$XN_DAEMON-batch-$b-done"
	else
		xb_mark c1
		xc_fail "$XN_DAEMON-batch-$b-done" "last: $(tail -n 2 "$(xn_console "$_g")" | tr '\n' '|'); children up: $(cat /var/log/xen/console/guest-"$_g"-child-*.log 2>/dev/null | grep -c 'tick=1\|Listening'); bond0: $(cat /sys/class/net/bond0/bonding/slaves 2>/dev/null | wc -w)"
	fi
	if [ "$XB_VIF" = 0 ]; then
		_l=$(grep -m1 "XCF parent batch n=$b" "$(xn_console "$_g")")
		_ms=$(echo "$_l" | sed -n 's/.* ms=\([0-9.]*\).*/\1/p'); _rc=$(echo "$_l" | sed -n 's/.* rc=\(-*[0-9]*\) .*/\1/p')
	else
		_ms=$(grep -o 'info: [0-9]*\.[0-9]\{6\}' "$(xn_console "$_g")" | head -n 1 |
			awk '{ split($2, t, "."); printf "%.3f", t[1] * 1000 + t[2] / 1000 }')
		_rc=$(grep -o 'info: rc=-*[0-9]*' "$(xn_console "$_g")" | head -n 1 | sed 's/.*=//')
	fi
	echo "XC-BENCH-BATCH daemon=$XN_DAEMON vif=$XB_VIF n=$b rc=${_rc:--} ms=${_ms:--}"
	[ "$_rc" = 0 ] && xc_pass "$XN_DAEMON-batch-$b-returned" "${_ms} ms" || xc_fail "$XN_DAEMON-batch-$b-returned" "rc '${_rc}'"
	[ -n "$_ms" ] && xc_time "$XN_DAEMON-vif$XB_VIF-batch-$b" "${_ms%.*}"
	xb_window batch c0 c1 "$b"
	xb_cleanup "$_before"
}

# Kernel messages off the console while measuring (they interleave with the
# XC-BENCH lines and cost serial time); its problem reports are put back on
# the console at the end, for the run's checks.
dmesg -n 1
if [ "$XB_VIF" = 1 ]; then
	modprobe bonding max_bonds=0
	xc_check bond0-up xc_bond bond0 10.8.0.1/24
fi
for XB_D in $XB_DAEMONS; do
	xc_log "=== consumer $XB_D"
	xb_start "$XB_D" || { xc_fail "$XB_D-started"; continue; }
	# Dom0's background CPU with this consumer and nothing to do (TCG makes
	# even an idle kernel busy): bench/clone.py takes it out of the windows.
	xb_mark i0; sleep "$XB_IDLE"; xb_mark i1; xb_window idle i0 i1 0
	[ "$XB_VIF" = 1 ] && xb_base
	xb_seq
	for XB_B in $XB_BATCHES; do xb_batch "$XB_B"; done
	xb_stop
	xc_log "mark durations (tag ms): $(tr '\n' ' ' </tmp/xb.marks)"; : >/tmp/xb.marks
done
dmesg -n 7
dmesg | grep -E 'WARNING:|BUG:|Oops|Kernel panic|general protection fault|locking|lock held|RCU usage|KASAN|UBSAN|blocked for more than|soft lockup|hard LOCKUP|corruption|Poison overwritten|Redzone|slab error|Freepointer' |
	sed 's/^/XC-LOG dmesg: /'
