# Fault suite (issue 7), part 2: xencloned killed with SIGKILL in the middle of
# a burst of 200 clones, then restarted: every clone is completed exactly once
# (the simulated hypervisor of xen_clone_dev simulate=1 counts completions,
# double and invalid ones), none is lost (each child has its Xenstore tree),
# none is redone by the second daemon, and the module's orphan policy played no
# part. The ring has 128 entries, so the burst also runs into back-pressure.
# Own scenario (own VM time budget): 200 deep copies take minutes under TCG.
burst() {
	xc_sim_parent 7 || return 1
	c0=$(xc_sim completed); d0=$(xc_sim double_completions); i0=$(xc_sim invalid_completions)
	a0=$(xc_xcd_counter auto_completions); bp0=$(xc_sim backpressure)
	xc_xencloned_start 1 || { echo "daemon 1 not ready"; return 1; }
	t0=$(xc_now_ms)
	xc_sim_inject 7 1000 200
	# Kill once some, but not all, clones are done.
	xc_wait 60 xc_sim_completed_over $((c0 + 19)) ||
		{ echo "daemon 1 completed fewer than 20 clones in 60 s"; return 1; }
	kill -9 "$(xc_xencloned_pid 1)"
	xc_wait 10 sh -c "! kill -0 $(xc_xencloned_pid 1)" || { echo "daemon 1 survived SIGKILL"; return 1; }
	at_kill=$(( $(xc_sim completed) - c0 ))
	echo "killed with $at_kill of 200 completed; device: $(tr '\n' ' ' <$XC_XCD/state)"
	[ "$at_kill" -lt 200 ] || { echo "the burst was over before the kill: nothing tested"; return 1; }
	xc_xencloned_start 2 || { echo "daemon 2 not ready"; return 1; }
	xc_wait 170 xc_sim_idle || { echo "not idle 170 s after restart: $(tr '\n' ' ' <$XC_XCD/sim_status)"; return 1; }
	xc_time burst-200 $(( $(xc_now_ms) - t0 ))
	sleep 1
	done_n=$(( $(xc_sim completed) - c0 ))
	dbl=$(( $(xc_sim double_completions) - d0 )); inv=$(( $(xc_sim invalid_completions) - i0 ))
	auto=$(( $(xc_xcd_counter auto_completions) - a0 )); bp=$(( $(xc_sim backpressure) - bp0 ))
	echo "completed $done_n (at kill $at_kill), double $dbl, invalid $inv, auto $auto, back-pressure $bp, redelivered $(xc_stat 2 redelivered)"
	[ "$done_n" = 200 ] && [ "$dbl" = 0 ] && [ "$inv" = 0 ] || return 1
	# Completed by the daemons, not by the module's orphan policy.
	[ "$auto" = 0 ] || return 1
	# None lost: every child has its Xenstore tree.
	lost=
	c=1000
	while [ $c -lt 1200 ]; do
		[ "$(xenstore-read /local/domain/$c/domid 2>/dev/null)" = $c ] || lost="$lost $c"
		c=$((c + 1))
	done
	[ -z "$lost" ] || { echo "children without a Xenstore tree:$lost"; return 1; }
	# None failed in either daemon; daemon 2 completed exactly the rest.
	f1=$(xc_stat 1 clones_failed); f2=$(xc_stat 2 clones_failed); n2=$(xc_stat 2 clones_completed)
	echo "daemon 1: failed ${f1:-?} (its last stats write); daemon 2: completed $n2, failed $f2"
	[ "${f1:-0}" = 0 ] && [ "$f2" = 0 ] || return 1
	[ "$n2" = $((200 - at_kill)) ] || { echo "daemon 2 completed $n2, want $((200 - at_kill))"; return 1; }
}
if xc_check fault-burst-load xc_xcd_load ring_pages=1 orphan_timeout=30; then
	if out=$(burst 2>&1); then
		xc_pass fault-sigkill-burst "$(echo "$out" | tr '\n' '|')"
	else
		xc_fail fault-sigkill-burst "$(echo "$out" | tr '\n' '|')"
		xc_xencloned_log 1; xc_xencloned_log 2
	fi
	echo "$out" | grep '^XC-TIME'
	kill "$(xc_xencloned_pid 2)" 2>/dev/null
	xc_wait 10 sh -c "! kill -0 $(xc_xencloned_pid 2)"
	xc_check fault-burst-unload rmmod xen_clone_dev
fi
