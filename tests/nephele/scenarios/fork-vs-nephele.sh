# Baseline: the fork series with our stack, then with Nephele's own C
# xencloned (xn_setup, XN_DAEMON=nephele) in the same boot, same guest image
# and same xenstored: both must pass, and ours must need fewer Xenstore
# requests per clone.
XN_FORK_DAEMONS="ours nephele"
. /xc/scenarios/fork.sh
