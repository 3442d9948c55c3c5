# burst: a burst larger than the ring. xen_clone_dev with ring_pages=1 (128
# entries) and `xl clone -b XN_BURST` (150) of a running guest from Dom0:
# xl clone must return (no caller blocked forever), every child must be
# notified (none lost), and every child must end running, or paused with a
# reason logged by xencloned or the module that names it. The parent idles
# in a timer sleep, so its children block there too: they run but print
# nothing (polling children of 150 clones would eat TCG's CPU).
nb=${XN_BURST:-150}
xc_check netback-clone-load modprobe netback_clone
xc_check xen-clone-dev-load xn_xcd_load ring_pages=1
xc_check xencloned-start xc_xencloned_run 1
ents=$(sed -n 's/^entries_num //p' "$XN_XCD/state")
[ "$ents" -lt "$nb" ] && xc_pass ring-smaller-than-burst "$ents entries, burst $nb" ||
	xc_fail ring-smaller-than-burst "$ents entries, burst $nb"
xc_check guest-created xn_guest burst1 forker "$nb" "mode=idle"
t0=$(xc_now_ms)
if out=$(timeout 900 xl clone -b "$nb" burst1 2>&1); then
	xc_pass xl-clone-returned "$(( $(xc_now_ms) - t0 )) ms"
else
	xc_fail xl-clone-returned "rc $?: $(echo "$out" | tail -n 2 | tr '\n' '|')"
fi
XC_WAIT_S=2 xc_wait 600 sh -c "[ \"\$(sed -n 's/^notifications //p' $XN_XCD/counters)\" -ge $nb ]" &&
	xc_pass every-child-notified "$nb" || xc_fail every-child-notified "notifications $(xn_xcd_counter notifications) of $nb"
if XC_WAIT_S=2 xc_wait 600 sh -c "[ \$(( \$(sed -n 's/^ *\"clones_completed\": \([0-9]*\).*/\1/p' /run/xencloned/stats.1.json) + \$(sed -n 's/^ *\"clones_failed\": \([0-9]*\).*/\1/p' /run/xencloned/stats.1.json) )) -ge $nb ]"; then
	xc_pass daemon-saw-every-child
else
	xc_fail daemon-saw-every-child "$(grep -E 'clones_(completed|failed)' /run/xencloned/stats.1.json | tr -d ' \n')"
fi
xc_time "burst-$nb" $(( $(xc_now_ms) - t0 ))
# One `xl list` for all children (a process per child costs minutes under TCG).
xl list >/tmp/burst.list
children=$(awk '$1 ~ /^burst1-child-/ { print $2 }' /tmp/burst.list)
paused=$(awk '$1 ~ /^burst1-child-/ && $5 ~ /p/ { print $2 }' /tmp/burst.list)
set -- $children
[ $# = "$nb" ] && xc_pass children-exist "$#" || xc_fail children-exist "$# of $nb"
set -- $paused
npaused=$#
paused_ok=0 unexplained=
for c in $paused; do
	if grep -Eq "(WARN|ERROR).*child=$c\b" /tmp/xencloned.1.log || dmesg | grep -q "xen_clone_dev.*child domid $c\b"; then
		paused_ok=$((paused_ok + 1))
	else unexplained="$unexplained $c"; fi
done
running=$(( $(echo $children | wc -w) - npaused ))
xc_log "burst: $running running, $npaused paused ($paused_ok with a logged reason); module: $(tr '\n' ' ' <$XN_XCD/counters)"
[ -z "$unexplained" ] && xc_pass no-child-paused-without-reason "$running running, $paused_ok paused with a reason" ||
	xc_fail no-child-paused-without-reason "paused, no reason logged:$unexplained"
xn_paused "$(xc_domid burst1)" && xc_fail parent-running || xc_pass parent-running
xc_xencloned_finish 1
