# bench-clone-vif: the real-clone benchmark of bench-clone.sh with one vif
# per guest: Nephele's server-udp (Mini-OS + lwIP + netfront, vif in bond0)
# forks at start-up ("-f -c N", its fork() times as "info: 0.123456" lines)
# or clones a batch ("-x -c B"); every child's vif is attached by
# netback_clone and enslaved in bond0 by the daemon (not by the floor, whose
# children stay paused).
XB_VIF=1
. /xc/scenarios/bench-clone.sh
