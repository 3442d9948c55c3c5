# fork: a Mini-OS guest calls fork() on Nephele's hypervisor, once and then
# again, XN_FORKS times in all, with xen_clone_dev, netback_clone and xencloned
# started as a user starts them (no flag: the daemon must choose XS_CLONE on
# oxenstored and deep copy on the C xenstored by itself). Each child must have
# its own domid, name and Xenstore home, its console output must reach
# xenconsoled, it must run; the parent's fork() must return each time; the
# daemon's stats, `xencloned status` and the module's counters must agree with
# what happened; the Xenstore daemon's own request log tells which path ran.
n=${XN_FORKS:-5}   # at least 2: the first clone is counted apart
XN_FORK_DAEMONS=${XN_FORK_DAEMONS:-ours}
# xn_fork_series DAEMON: the series with DAEMON (ours, nephele); check names
# are prefixed with "DAEMON-" when XN_FORK_DAEMONS names more than one.
xn_fork_series() {
	XN_DAEMON=$1
	g=fork-$XN_DAEMON
	P=; [ "$(echo $XN_FORK_DAEMONS | wc -w)" = 1 ] || P=$XN_DAEMON-
	xn_setup || return 0
	xc_check "${P}guest-created" xn_guest $g forker "$n" "mode=fork count=$n start_ms=4000 delay_ms=1500" &&
		parent=$(xc_domid $g)
	# The daemon's own requests are counted from here: every one of the
	# series' clones, the first (which also reads the parent) included. The
	# guest forks 4 s after it starts; xl, which also introduces a domain
	# (the parent), has exited.
	mark00=$(xn_xs_mark)
	xc_wait 30 xn_console_has $g 'XCF parent .*start' || xc_fail "${P}parent-started" "no start marker"
	req0=$(xn_xs_requests); cl0=$(xn_xs_clone_ops); mark0=$(xn_xs_mark)
	# The first clone of a parent also reads the parent (daemons cache it):
	# counted apart from the steady state of the next ones.
	XC_WAIT_S=0.5 xc_wait 60 xn_console_has $g "XCF parent .*fork i=1 " || xc_fail "${P}first-fork-returned"
	reqa=$(xn_xs_requests); marka=$(xn_xs_mark)
	if XC_WAIT_S=1 xc_wait 120 xn_console_has $g "XCF parent .*done forks=$n"; then
		xc_pass "${P}parent-fork-returned" "$n of $n fork() calls returned in the parent"
	else
		xc_fail "${P}parent-fork-returned" "$(grep XCF "$(xn_console $g)" | tail -n 3 | tr '\n' '|')"
	fi
	req1=$(xn_xs_requests); cl1=$(xn_xs_clone_ops); mark1=$(xn_xs_mark)
	xc_log "requests of forks 2..$n by connection and operation ($XN_DAEMON):"
	xn_xs_hist "$marka" "$mark1"
	sed -n "$((marka + 1)),$((marka + 40))p" "$(xn_xs_log)" | sed 's/^/XC-LOG xs-raw: /'
	# XN_XS_DUMP=1: every request of the daemon's connection in the first two
	# clones, to see what a clone costs.
	[ -z "$XN_XS_DUMP" ] || xn_xs_daemon_dump "$mark00" "$mark1" | head -n 600 | sed 's/^/XC-LOG xs-daemon: /'

	# Children, as the parent saw them: "XCF parent domid=P fork i=I rc=CHILD ms=T".
	children=$(sed -n 's/.*XCF parent .*fork i=[0-9]* rc=\([0-9]*\) .*/\1/p' "$(xn_console $g)")
	grep 'XCF parent .*fork i=' "$(xn_console $g)" | sed -n 's/.*fork i=\([0-9]*\) .*ms=\([0-9.]*\).*/\1 \2/p' |
		while read -r i ms; do xc_time "${P}fork-$i" "${ms%.*}"; done
	set -- $children
	[ $# = "$n" ] && xc_pass "${P}children-reported" "$*" || xc_fail "${P}children-reported" "want $n, got '$*'"
	uniq=$(printf '%s\n' $children | sort -u | wc -l)
	[ "$uniq" = "$n" ] && ! printf '%s\n' $children | grep -qx "$parent" &&
		xc_pass "${P}children-distinct-domids" || xc_fail "${P}children-distinct-domids" "parent $parent, children '$children'"

	for c in $children; do
		nm=$g-child-$c
		if [ "$(xn_name "$c")" = "$nm" ] && [ "$(xenstore-read "/local/domain/$c/name" 2>&1)" = "$nm" ] &&
			[ "$(xenstore-read "/local/domain/$c/domid" 2>&1)" = "$c" ]; then
			xc_pass "${P}child-$c-name-and-home" "$nm"
		else
			xc_fail "${P}child-$c-name-and-home" "xl: '$(xn_name "$c")', name '$(xenstore-read "/local/domain/$c/name" 2>&1)', domid '$(xenstore-read "/local/domain/$c/domid" 2>&1)'"
		fi
		# Its own console: its own lines, through xenconsoled, not the parent's.
		if xc_wait 30 xn_console_has "$nm" "XCF child domid=$c .*tick="; then
			xc_pass "${P}child-$c-console-and-runs" "$(grep -c "XCF child domid=$c" "$(xn_console "$nm")") lines"
		else
			xc_fail "${P}child-$c-console-and-runs" "log: $(tail -n 3 "$(xn_console "$nm")" 2>&1 | tr '\n' '|')"
		fi
		if xn_paused "$c"; then xc_fail "${P}child-$c-not-paused" "$(xn_state "$c")"; else xc_pass "${P}child-$c-not-paused" "$(xn_state "$c")"; fi
	done

	# What the daemon and the module counted (ours only).
	if xn_ours; then
		sleep 1
		xc_check "${P}stats-completed-all" xc_stat_is 1 clones_completed "$n"
		xc_check "${P}stats-none-failed" xc_stat_is 1 clones_failed 0
		nt=$(xn_xcd_counter notifications); co=$(xn_xcd_counter completions)
		[ "$nt" = "$n" ] && [ "$co" = "$n" ] && xc_pass "${P}module-counters" "notifications $nt, completions $co" ||
			xc_fail "${P}module-counters" "notifications '$nt', completions '$co', want $n"
		if st=$(xencloned status --stats-file /run/xencloned/stats.1.json 2>&1) &&
			echo "$st" | grep -Eq "clones_completed[\": ]+$n\b"; then
			xc_pass "${P}status-while-running"
		else
			xc_fail "${P}status-while-running" "$(echo "$st" | head -n 5 | tr '\n' '|')"
		fi
		# info reads the module's state, not the device the daemon holds.
		if inf=$(xencloned info 2>&1) && echo "$inf" | grep -Eq "completions[\": ]+$n\b"; then
			xc_pass "${P}info-while-running"
		else
			xc_fail "${P}info-while-running" "$(echo "$inf" | head -n 5 | tr '\n' '|')"
		fi
	fi

	# Which Xenstore path ran, by the xenstored's own count.
	per=$(( (req1 - reqa) / (n - 1) )); first=$((reqa - req0)); clones=$((cl1 - cl0))
	own=$(xn_xs_daemon_requests "$marka" "$mark1"); own=$(( own / (n - 1) ))
	# The daemon's whole series: no window to race with (a clone that
	# started before a mark was taken is still counted once).
	total=$(xn_xs_daemon_requests "$mark00" "$mark1")
	xc_log "Xenstore requests ($XN_XENSTORED, $XN_DAEMON): first clone $first, then $per per clone ($((req1 - reqa)) for $((n - 1))), $own of them the daemon's; the daemon's for all $n clones: $total; XS_CLONE requests: $clones"
	xc_count "${P}xs-requests-first-clone" "$first"
	xc_count "${P}xs-requests-per-clone" "$per"
	xc_count "${P}xs-daemon-requests-per-clone" "$own"
	xc_count "${P}xs-daemon-requests-series" "$total"
	[ "$own" -gt 0 ] && xc_pass "${P}daemon-connection-found" "$own requests per clone" ||
		xc_fail "${P}daemon-connection-found" "no connection sent XS_INTRODUCE"
	eval "xn_per_$XN_DAEMON=\$own xn_total_$XN_DAEMON=\$total"
	case $XN_XENSTORED in
	oxenstored)
		[ "$clones" -ge "$n" ] && xc_pass "${P}path-xs-clone" "$clones XS_CLONE for $n clones, $per requests per clone" ||
			xc_fail "${P}path-xs-clone" "$clones XS_CLONE for $n clones" ;;
	cxenstored)
		{ ! xn_ours || grep -q 'deep copy' /tmp/xencloned.1.log; } && [ "$per" -gt 0 ] &&
			xc_pass "${P}path-deep-copy" "$per requests per clone" ||
			xc_fail "${P}path-deep-copy" "$per requests per clone; daemon: $(grep -m1 -i dialect /tmp/xencloned.1.log 2>/dev/null)" ;;
	esac
	xn_finish
	xl destroy "$g"
	for c in $children; do xl destroy "$c"; done
	if xn_ours; then
		xc_log "stats: $(tr -d '\n' </run/xencloned/stats.1.json | sed 's/"recent".*//')"
		if xc_wait 10 rmmod xen_clone_dev; then
			xc_pass "${P}rmmod-after-series"
		else
			xc_fail "${P}rmmod-after-series" "refcnt $(cat /sys/module/xen_clone_dev/refcnt 2>&1); $(tr '\n' ' ' <$XN_XCD/state)"
		fi
	fi
}
for d in $XN_FORK_DAEMONS; do xn_fork_series "$d"; done
# Both daemons in this boot, same guest, same xenstored: ours must send
# fewer Xenstore requests than Nephele's for the whole series (each daemon's
# own connection, counted by the xenstored; the first clone, which reads the
# parent, included). With XS_CLONE (oxenstored) and with deep copy (C
# xenstored), where both copy what a clone needs (xenstore::profile).
if [ -n "${xn_total_ours:-}" ] && [ -n "${xn_total_nephele:-}" ]; then
	[ "$xn_total_ours" -lt "$xn_total_nephele" ] &&
		xc_pass xs-requests-below-nephele "ours $xn_total_ours, Nephele's $xn_total_nephele for $n clones ($XN_XENSTORED)" ||
		xc_fail xs-requests-below-nephele "ours $xn_total_ours, Nephele's $xn_total_nephele for $n clones ($XN_XENSTORED)"
fi
