# crash-restart: xencloned is killed with SIGKILL in the middle of a batch of
# XN_BATCH (16) real clones (one clone() call of the guest), then started
# again. The kernel keeps the ring and re-delivers what the dead daemon had
# read but not completed: every child must be completed exactly once (the
# hypervisor rejects a second completion: no hypervisor error), run, and the
# parent's clone() must return.
nb=${XN_BATCH:-16}
xn_setup || return 0
# Kill after the first few completions, before the last.
xc_check guest-created xn_guest crash1 forker "$nb" "mode=batch n=$nb start_ms=1000"
xc_wait 120 sh -c "[ \"\$(sed -n 's/^completions //p' $XN_XCD/counters)\" -ge 2 ]" ||
	xc_fail daemon-1-progress "completions: $(xn_xcd_counter completions)"
kill -9 "$(xc_xencloned_pid 1)"
xc_wait 10 sh -c "! kill -0 $(xc_xencloned_pid 1)" || xc_fail daemon-1-killed
at_kill=$(xn_xcd_counter completions)
xc_log "killed daemon 1 with $at_kill of $nb completed; device: $(tr '\n' ' ' <$XN_XCD/state)"
[ "$at_kill" -lt "$nb" ] && xc_pass killed-mid-batch "$at_kill of $nb completed at SIGKILL" ||
	xc_fail killed-mid-batch "the batch was over before the kill: nothing tested"
xc_check daemon-2-start xc_xencloned_run 2
if xc_wait 180 xn_console_has crash1 "XCF parent .*batch n=$nb rc=0"; then
	xc_pass parent-clone-returned
else
	xc_fail parent-clone-returned "$(grep XCF "$(xn_console crash1)" | tail -n 2 | tr '\n' '|')"
fi
children=$(grep -m1 "XCF parent .*batch n=$nb" "$(xn_console crash1)" | sed -n 's/.* children=\([0-9,]*\).*/\1/p' | tr ',' ' ')
set -- $children
[ $# = "$nb" ] && xc_pass children-reported "$#" || xc_fail children-reported "want $nb, got '$children'"
bad=
for c in $children; do
	xc_wait 30 xn_console_has "crash1-child-$c" "XCF child domid=$c .*tick=" && ! xn_paused "$c" ||
		bad="$bad $c(state '$(xn_state "$c")')"
done
[ -z "$bad" ] && xc_pass every-child-runs "$nb" || xc_fail every-child-runs "$bad"
sleep 1
nt=$(xn_xcd_counter notifications); co=$(xn_xcd_counter completions)
he=$(xn_xcd_counter hypervisor_errors); au=$(xn_xcd_counter auto_completions); re=$(xn_xcd_counter redeliveries)
[ "$nt" = "$nb" ] && [ "$co" = "$nb" ] && [ "$he" = 0 ] && [ "$au" = 0 ] &&
	xc_pass completed-exactly-once "notifications $nt, completions $co, redeliveries $re, hypervisor errors $he, auto $au" ||
	xc_fail completed-exactly-once "notifications $nt, completions $co, redeliveries $re, hypervisor errors $he, auto $au"
n2=$(xc_stat 2 clones_completed)
[ "$n2" = $((nb - at_kill)) ] && xc_pass daemon-2-completed-the-rest "$n2" ||
	xc_fail daemon-2-completed-the-rest "daemon 2 completed '$n2', want $((nb - at_kill))"
xc_check daemon-2-none-failed xc_stat_is 2 clones_failed 0
xc_xencloned_finish 2
