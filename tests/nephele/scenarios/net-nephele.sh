# Baseline: the net scenario with Nephele's own C xencloned instead of ours,
# on the same boot image (xn_setup, XN_DAEMON=nephele).
XN_DAEMON=nephele
. /xc/scenarios/net.sh
