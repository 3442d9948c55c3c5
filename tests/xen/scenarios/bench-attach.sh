# Benchmark 1 of issue 7, vif attach latency on stock Xen under QEMU TCG. Not
# in suite.list: bench/attach.sh runs it and parses its XC-BENCH lines.
# N vifs are attached at once (N = 1, 8, 32; ROUNDS repeats the small N), over
# NDOMU DomUs, all into bond0, by both paths in the same run:
#   stock: N concurrent "xl network-attach DOMU bridge=bond0 devid=K": libxl
#          writes frontend + backend, netback and netfront negotiate, libxl
#          runs the stock vif-bridge script ("ip link set master bond0", up,
#          hotplug-status=connected);
#   clone: the same N vifs, once connected, are made clone-shaped (backend
#          nodes removed, netback released the vifs; see net-clone.sh) and
#          written back with state=4 + cloned=true by N concurrent
#          xenstore-write processes (one transaction each): netback_clone
#          connects them to the existing rings, xencloned --adopt-only
#          enslaves each on its online uevent and writes
#          hotplug-status=connected.
# Per vif, latency = from its backend node appearing to its hotplug-status
# written with the vif a slave of bond0, both seen by one xenstore watch on
# the backend directory (xc_attach_watch_start: clock /proc/schedstat jiffies).
# Per round it prints one line per vif measured and one per round:
#   XC-BENCH path=stock|clone n=N rep=R vif=vifD.K ms=MS late=POLLS ok=0|1
#   XC-BENCH-ROUND path=stock|clone n=N rep=R vifs=ATTEMPTED ok=CONNECTED
ROUNDS=${XC_BENCH_ROUNDS:-1:6 8:2 32:1}
NDOMU=4
modprobe bonding max_bonds=0
xc_check bond0-up xc_bond bond0 10.8.0.1/24
xc_check netback-clone-load modprobe netback_clone
xc_check xencloned-start xc_xencloned_run 1 --adopt-only || xc_xencloned_log 1
k=1
while [ $k -le $NDOMU ]; do
	xc_check "domu-create-b$k" xc_clone_domu "b$k" "10.8.0.$((10 + k))" - - &&
		eval "dom$k=\$(xc_domid b$k) next$k=0"
	k=$((k + 1))
done
xc_log "bench: rounds '$ROUNDS' over $NDOMU DomUs (128 MB, 1 vCPU); clock $(xc_jiffy_ms) ms per jiffy"

# bench_run PATH SKIP SECONDS GRACE CMD DOMID/DEVID...: the round of PATH:
# "CMD DOMID DEVID" for every vif at once, each in the background (exit status
# in /tmp/run.PATH.DOMID.DEVID.rc, output in .out), measured by the attach
# watch of PATH (SKIP: see xc_attach_watch_start); returns when every vif has
# its sample, or GRACE s after every command has exited, or after SECONDS.
# The stock path's command returns after the hotplug script, so a short grace
# suffices; the clone path's returns once the node is written, long before
# xenwatch has worked through N probes: its grace is the whole round.
bench_run() {
	_path=$1 _skip=$2 _secs=$3 _grace=$4 _cmd=$5; shift 5
	rm -f /tmp/run."$_path".*
	_w=; for _p in "$@"; do _w="$_w $_p:bond0"; done
	xc_attach_watch_start "$_path" "$_skip" $_w || { xc_log "$_path: attach watch did not start"; return 1; }
	for _p in "$@"; do
		_f=/tmp/run.$_path.${_p%/*}.${_p#*/}
		( $_cmd "${_p%/*}" "${_p#*/}" >"$_f.out" 2>&1; echo $? >"$_f.rc" ) &
	done
	_end=$(( $(xc_now_ms) + _secs * 1000 )) _idle=
	while kill -0 "$(cat "/tmp/attach.$_path.apid")" 2>/dev/null && [ "$(xc_now_ms)" -lt "$_end" ]; do
		if [ -z "$_idle" ]; then
			[ "$(ls /tmp/run."$_path".*.rc 2>/dev/null | wc -l)" = $# ] && _idle=$(xc_now_ms)
		elif [ $(( $(xc_now_ms) - _idle )) -gt $((_grace * 1000)) ]; then
			break
		fi
		sleep 0.2
	done
	xc_attach_watch_wait "$_path" 0
	for _f in /tmp/run."$_path".*.rc; do
		if [ -e "$_f" ] && [ "$(cat "$_f")" != 0 ]; then
			xc_log "$_path: ${_f%.rc} exit $(cat "$_f"): $(tr '\n' '|' <"${_f%.rc}.out" | cut -c1-300)"
		fi
	done
}
# bench_stock DOMID DEVID: the stock attach of one vif (vif-bridge, bond0).
bench_stock() { xl network-attach "$1" bridge=bond0 "devid=$2"; }
# bench_report PATH N R M: XC-BENCH lines of the round (N at once, repetition
# R; ok=0: hotplug-status not "connected" or never enslaved) and one
# XC-BENCH-ROUND line; fails unless each of the M vifs it attached has an ok
# sample.
bench_report() {
	_got=0 _bad=
	while read -r _k _a _b _late; do
		_ok=1
		[ "$(xenstore-read "$XC_BE/$_k/hotplug-status" 2>/dev/null)" = connected ] && [ "$_late" != -1 ] ||
			{ _bad="$_bad $_k"; _ok=0; }
		echo "XC-BENCH path=$1 n=$2 rep=$3 vif=vif${_k%/*}.${_k#*/} ms=$((_b - _a)) late=$_late ok=$_ok"
		_got=$((_got + 1))
	done <"/tmp/attach.$1"
	_nbad=$(echo $_bad | wc -w)
	echo "XC-BENCH-ROUND path=$1 n=$2 rep=$3 vifs=$4 ok=$((_got - _nbad))"
	_first=$(sort -k2n "/tmp/attach.$1" | head -n 1 | cut -d' ' -f2)
	_last=$(sort -k3n "/tmp/attach.$1" | tail -n 1 | cut -d' ' -f3)
	[ -n "$_first" ] && xc_time "bench-$1-n$2-r$3-span" $((_last - _first))
	if [ "$_got" = "$4" ] && [ -z "$_bad" ]; then
		xc_pass "bench-$1-n$2-r$3" "$4 vifs connected and enslaved"
	else
		xc_fail "bench-$1-n$2-r$3" "$_got of $4 samples; not connected/enslaved:${_bad:- none}"
		return 1
	fi
}
# bench_connected DOMID/DEVID...: those whose backend reached state 4 with
# hotplug-status=connected (waits up to 60 s for all of them).
bench_connected() {
	xc_wait 60 sh -c 'for p; do [ "$(xenstore-read '"$XC_BE"'/$p/state)" = 4 ] || exit 1; done' - "$@"
	for _p in "$@"; do
		[ "$(xenstore-read "$XC_BE/$_p/state" 2>/dev/null)" = 4 ] &&
			[ "$(xenstore-read "$XC_BE/$_p/hotplug-status" 2>/dev/null)" = connected ] && echo "$_p"
	done
}

# bench_topup DOMID/DEVID...: for each vif of the stock round that did not
# connect, a new one in the same DomU, attached alone (untimed); prints those
# that connected. Run it in this shell (not in $(...)): it advances next$K. Keeps the clone round at N vifs at once when the stock round
# could not attach them all.
bench_topup() {
	for _p in "$@"; do
		_k=1
		while [ $_k -le $NDOMU ]; do
			eval "[ \"\$dom$_k\" = \"${_p%/*}\" ]" && break
			_k=$((_k + 1))
		done
		eval "_dev=\$next$_k; next$_k=\$((_dev + 1))"
		if xl network-attach "${_p%/*}" bridge=bond0 "devid=$_dev" >/tmp/topup.out 2>&1; then
			bench_connected "${_p%/*}/$_dev"
		else
			xc_log "top-up: ${_p%/*}/$_dev: $(tr '\n' '|' </tmp/topup.out | cut -c1-200)" >&2
		fi
	done
}

adopted=0 rot=0
for round in $ROUNDS; do
	n=${round%:*} reps=${round#*:} r=1
	while [ $r -le $reps ]; do
		# N new vifs, spread over the DomUs from a rotating start.
		pairs= j=0
		while [ $j -lt $n ]; do
			k=$(( (rot + j) % NDOMU + 1 ))
			eval "d=\$dom$k dev=\$next$k; next$k=\$((dev + 1))"
			pairs="$pairs $d/$dev"
			j=$((j + 1))
		done
		rot=$((rot + 1))

		bench_run stock 1 300 5 bench_stock $pairs
		bench_report stock "$n" "$r" "$n"
		# The clone path takes the vifs the stock path connected (a
		# clone-shaped vif needs its frontend Connected), topped up to N.
		ok=$(bench_connected $pairs | tr '\n' ' ')
		m=$(echo $ok | wc -w)
		if [ "$m" -lt "$n" ]; then
			missing=$(for p in $pairs; do case " $ok " in *" $p "*) ;; *) echo "$p" ;; esac; done)
			bench_topup $missing >/tmp/topup.ok
			ok="$ok $(tr '\n' ' ' </tmp/topup.ok)"
			xc_log "clone round n=$n r=$r: $m vifs from the stock round, $(( $(echo $ok | wc -w) - m )) attached one at a time first"
			m=$(echo $ok | wc -w)
		fi
		if [ "$m" -gt 0 ]; then
			for p in $ok; do xc_clone_detach "${p%/*}" "${p#*/}" || xc_log "clone detach of $p failed"; done
			bench_run clone 0 180 180 xc_clone_attach $ok
			adopted=$((adopted + m))
			if ! bench_report clone "$n" "$r" "$m"; then
				kill -0 "$(xc_xencloned_pid 1)" || xc_log "xencloned is gone"
				tail -n 4 /tmp/xencloned.1.log | sed 's/^/XC-LOG xencloned: /'
			fi
		else
			echo "XC-BENCH-ROUND path=clone n=$n rep=$r vifs=0 ok=0"
			xc_fail "bench-clone-n$n-r$r" "no vif of the stock round to make clone-shaped"
		fi
		r=$((r + 1))
	done
done

# Every clone-path vif was the daemon's doing, and netback_clone's.
if xc_wait 5 xc_stat_is 1 orphan_vifs_adopted "$adopted"; then
	xc_pass bench-daemon-adopted-all "$adopted"
else
	xc_fail bench-daemon-adopted-all "$(xc_stat 1 orphan_vifs_adopted) of $adopted"
fi
if [ "$(xc_nbc_stat attached)" = "$adopted" ]; then
	xc_pass bench-nbc-attached-all
else
	xc_fail bench-nbc-attached-all "$(xc_nbc_stat attached) of $adopted"
fi
sed 's/^/XC-LOG netback_clone: /' /sys/kernel/debug/netback_clone/stats
xc_log "Dom0 memory: $(free -m | sed -n 2p)"
k=1
while [ $k -le $NDOMU ]; do xl destroy "b$k"; k=$((k + 1)); done
xc_xencloned_stop 1
grep ' ERROR ' /tmp/xencloned.1.log | head -n 20 | sed 's/^/XC-LOG xencloned: /'
