# batch: one clone() call of XN_BATCH (16) children from inside a guest, then
# `xl clone -b XN_XL_BATCH` (4) of a running guest from Dom0, with the
# daemon as a user starts it. Every child gets its own domid, name, Xenstore
# home, and runs; the guest's clone() and xl clone return; the module and the
# daemon count every clone once.
nb=${XN_BATCH:-16}; nx=${XN_XL_BATCH:-4}
xn_setup || return 0

xc_check guest-created xn_guest batch1 forker "$((nb + nx))" "mode=batch n=$nb start_ms=1000" &&
	parent=$(xc_domid batch1)
t0=$(xc_now_ms)
if xc_wait 180 xn_console_has batch1 "XCF parent .*batch n=$nb rc=0"; then
	xc_pass guest-clone-returned "clone($nb) returned 0 after $(( $(xc_now_ms) - t0 )) ms (Dom0 clock)"
else
	xc_fail guest-clone-returned "$(grep XCF "$(xn_console batch1)" | tail -n 3 | tr '\n' '|')"
fi
l=$(grep -m1 "XCF parent .*batch n=$nb" "$(xn_console batch1)")
ms=$(echo "$l" | sed -n 's/.* ms=\([0-9]*\).*/\1/p'); [ -n "$ms" ] && xc_time "guest-batch-$nb" "$ms"
children=$(echo "$l" | sed -n 's/.* children=\([0-9,]*\).*/\1/p' | tr ',' ' ')
set -- $children
[ $# = "$nb" ] && xc_pass children-reported "$#" || xc_fail children-reported "want $nb, got '$children'"

bad=
for c in $children; do
	nm=batch1-child-$c
	[ "$(xn_name "$c")" = "$nm" ] && [ "$(xenstore-read "/local/domain/$c/domid" 2>/dev/null)" = "$c" ] &&
		! xn_paused "$c" || bad="$bad $c(name '$(xn_name "$c")' state '$(xn_state "$c")')"
done
[ -z "$bad" ] && xc_pass guest-children-named-homed-running "$nb" || xc_fail guest-children-named-homed-running "$bad"
quiet=
for c in $children; do
	xc_wait 30 xn_console_has "batch1-child-$c" "XCF child domid=$c .*tick=" || quiet="$quiet $c"
done
[ -z "$quiet" ] && xc_pass guest-children-console-and-run || xc_fail guest-children-console-and-run "no tick from:$quiet"

# From Dom0: xl clone -b of the same (running) guest. Its children resume in
# the parent's idle loop: they run, but print nothing (a parent blocked in a
# timer sleep, see ../shared/notes/nephele-stack.md): check domains, names,
# homes and state.
before=$(xl list | awk 'NR > 1 { print $2 }' | sort -n)
t0=$(xc_now_ms)
if out=$(timeout 120 xl clone -b "$nx" batch1 2>&1); then
	xc_time "xl-clone-b$nx" $(( $(xc_now_ms) - t0 ))
	xc_pass xl-clone-returned
else
	xc_fail xl-clone-returned "$(echo "$out" | tail -n 3 | tr '\n' '|')"
fi
new=$(xl list | awk 'NR > 1 { print $2 }' | sort -n | grep -vxF "$before")
set -- $new
[ $# = "$nx" ] && xc_pass xl-clone-children "$*" || xc_fail xl-clone-children "want $nx new domains, got '$*'"
bad=
for c in $new; do
	[ "$(xn_name "$c")" = "batch1-child-$c" ] && [ "$(xenstore-read "/local/domain/$c/domid" 2>/dev/null)" = "$c" ] &&
		! xn_paused "$c" || bad="$bad $c(name '$(xn_name "$c")' state '$(xn_state "$c")')"
done
[ -z "$bad" ] && xc_pass xl-children-named-homed-running || xc_fail xl-children-named-homed-running "$bad"
xn_paused "$parent" && xc_fail parent-unpaused-after-xl-clone || xc_pass parent-unpaused-after-xl-clone

sleep 1
total=$((nb + nx))
xc_check stats-completed-all xc_stat_is 1 clones_completed "$total"
xc_check stats-none-failed xc_stat_is 1 clones_failed 0
nt=$(xn_xcd_counter notifications); co=$(xn_xcd_counter completions)
[ "$nt" = "$total" ] && [ "$co" = "$total" ] && xc_pass module-counters "notifications $nt, completions $co" ||
	xc_fail module-counters "notifications '$nt', completions '$co', want $total"
xc_xencloned_finish 1
