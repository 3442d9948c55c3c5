#!/usr/bin/env bash
# Benchmark 0 (issue 13): real clones on Nephele's hypervisor under QEMU TCG,
# our Dom0 stack against Nephele's, with the floor of the same boot. One boot
# per configuration (xenstored x vifs per guest), same image, each running
# tests/nephele/scenarios/bench-clone{,-vif}.sh with three consumers of the
# clone notifications in turn: the floor (tests/nephele/tools/clone-floor:
# completes each entry as soon as it is read), ours (xen_clone_dev +
# netback_clone + xencloned, default flags) and Nephele's C xencloned (-c;
# -c -d on the C xenstored). Each consumer gets FORKS sequential fork()s and
# one clone() per batch size.
#
#   bench/clone.sh OUTDIR [--forks N] [--batches "1 16 64"]
#                         [--configs "oxenstored:0:1,16,64:floor,xsfloor,ours,nephele oxenstored:1 cxenstored:0 cxenstored:1"]
#                         [--daemons "floor ours nephele"] [--timeout SECONDS]
#
# A configuration may name its own batches and consumers (commas), e.g.
# --configs "oxenstored:0:1,16:floor,xsfloor,ours,nephele oxenstored:1:1,16,64"
# (xsfloor: xencloned --bench-xs-floor, the XS_CLONE floor; oxenstored only).
#
# Needs the kernel, modules, userspace and Nephele's stack built
# (scripts/build.sh). Writes OUTDIR/clone.json (per configuration and
# consumer: guest fork() and batch times, daemon-side times and stages,
# Xenstore requests and Dom0 CPU per clone; Dom0 overhead over the floor and
# ratios ours/Nephele; issue 13's targets), OUTDIR/clone.csv (one row per
# sample) and each boot's serial log and result.json as
# OUTDIR/clone-XENSTORED-vifV-{serial.log,result.json}. Exits non-zero if a
# boot's checks failed (the numbers are still written).
#
# The boots queue on the VM lock with everyone else's (tests/lib/results.sh).
# Their Dom0 images are built in a cache of their own ($XC_CACHE/bench-vm,
# the rest of $XC_CACHE linked in): a test run started meanwhile repacks the
# shared one while ours waits for the lock. Results go to
# $XC_RESULTS/nephele-bench-clone{,-vif}-XENSTORED as for any scenario.
. "$(dirname "$0")/../scripts/lib.sh"

out=${1:?usage: bench/clone.sh OUTDIR [--forks N] [--batches LIST] [--configs LIST] [--daemons LIST] [--timeout S]}
shift
forks=30 batches="1 16 64"
configs="oxenstored:0:1,16,64:floor,xsfloor,ours,nephele oxenstored:1 cxenstored:0 cxenstored:1"
daemons="floor ours nephele" timeout_s=
while [ $# -gt 0 ]; do
	case $1 in
	--forks) forks=$2 ;;
	--batches) batches=$2 ;;
	--configs) configs=$2 ;;
	--daemons) daemons=$2 ;;
	--timeout) timeout_s=$2 ;;
	*) die "unknown option $1" ;;
	esac
	shift 2
done
[ "$forks" -ge 2 ] || die "--forks must be at least 2"
mkdir -p "$out"
results=${XC_RESULTS:-$XC_CACHE/results}
for f in "$XC_ROOT/rust/xen_clone_dev/xen_clone_dev.ko" "$XC_ROOT/rust/netback_clone/netback_clone.ko" \
	"$XC_ROOT/userspace/target/release/xencloned" "$XC_CACHE/kbuild/current/.xc-built"; do
	[ -e "$f" ] || die "$f missing: run scripts/build.sh first"
done

# The floor consumer, static, for the Dom0's /usr/local/bin.
vmcache=$XC_CACHE/bench-vm
mkdir -p "$vmcache/initramfs"
floor=$vmcache/clone-floor
src=$XC_ROOT/tests/nephele/tools/clone-floor.c
if [ ! -x "$floor" ] || [ "$src" -nt "$floor" ]; then
	gcc -static -O2 -Wall -Wextra -Werror -o "$floor" "$src" || die "cannot build $src"
fi
for e in "$XC_CACHE"/*; do
	case ${e##*/} in bench-vm | initramfs | results) continue ;; esac
	ln -sfn "$e" "$vmcache/${e##*/}"
done

rc=0
for c in $configs; do
	# XENSTORED:VIFS[:BATCHES[:CONSUMERS]], lists with commas.
	IFS=: read -r xs vif cb cd <<<"$c"
	batches_c=${cb:+$(echo "$cb" | tr ',' ' ')}; batches_c=${batches_c:-$batches}
	daemons_c=${cd:+$(echo "$cd" | tr ',' ' ')}; daemons_c=${daemons_c:-$daemons}
	sum=0; for b in $batches_c; do sum=$((sum + b)); done
	case $vif in 0) scen=bench-clone ;; 1) scen=bench-clone-vif ;; *) die "bad config $c (XENSTORED:0|1)" ;; esac
	# A deep copy on the C xenstored takes ~5-7 s per child under TCG, XS_CLONE
	# ~0.5-2 s, and `xl destroy` of a child with a vif ~20 s (12 at a time):
	# the budget is about twice that for every clone of the three consumers.
	per=8; [ "$xs" = cxenstored ] && per=20
	nd=$(echo $daemons_c | wc -w)
	t=${timeout_s:-$((600 + nd * per * (forks + sum)))}
	log "=== clone bench: $xs, $vif vif(s), forks $forks, batches '$batches_c', consumers '$daemons_c' (timeout ${t}s)"
	# What was measured: the tree's commit and whether it had local changes,
	# and the binaries that went into the image.
	{
		echo "commit $(git -C "$XC_ROOT" rev-parse --short HEAD 2>/dev/null || echo -)" \
			"local_changes $(git -C "$XC_ROOT" status --porcelain 2>/dev/null | grep -c .)"
		sha256sum "$XC_ROOT"/rust/*/*.ko "$XC_ROOT/userspace/target/release/xencloned" "$floor" |
			sed "s|$XC_ROOT/||; s|$vmcache/||"
	} >"$out/clone-$xs-vif$vif-build.txt"
	# Other VMs on the host while this one runs (all share 2 cores): one line
	# "epoch qemu_processes load1" every 20 s.
	(while :; do
		echo "$(date +%s) $(pgrep -c "^qemu-system" || true) $(cut -d' ' -f1 /proc/loadavg)"
		sleep 20
	done) >"$out/clone-$xs-vif$vif-host.txt" &
	sampler=$!
	r=0
	XC_CACHE=$vmcache XC_RESULTS=$results XC_DOM0_EXTRA_BINS="$floor" \
		XC_DOM0_EXTRA="xc.bench_forks=$forks xc.bench_batches=$(echo $batches_c | tr ' ' ':') xc.bench_daemons=$(echo $daemons_c | tr ' ' ':')" \
		"$XC_ROOT/tests/nephele/run.sh" "$scen" "$xs" --timeout "$t" || r=$?
	kill "$sampler" 2>/dev/null || true
	[ $r = 0 ] || { log "clone bench $xs vif=$vif: boot failed or a check failed (rc $r)"; rc=1; }
	res=$results/nephele-$scen-$xs
	cp "$res/serial.log" "$out/clone-$xs-vif$vif-serial.log" || rc=1
	cp "$res/result.json" "$out/clone-$xs-vif$vif-result.json" || rc=1
done
python3 "$XC_ROOT/bench/clone.py" "$out" || rc=1
log "clone: $out/clone.json, $out/clone.csv"
exit $rc
