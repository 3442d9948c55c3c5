#!/usr/bin/env bash
# Benchmarks (not tests): builds what is needed, then measures
#   clone     real clones on Nephele's hypervisor under QEMU: fork() latency,
#             Dom0 overhead over the floor (a consumer that completes each
#             clone at once), Xenstore requests and Dom0 CPU per clone, batch
#             time against batch size; ours vs Nephele's C xencloned, on
#             oxenstored (XS_CLONE) and the C xenstored (deep copy), 0 and
#             1 vif, with the XS_CLONE floor (xencloned --bench-xs-floor:
#             only the XS_CLONEs and XS_INTRODUCE no XS_CLONE daemon can do
#             without) on oxenstored without vif, one boot per
#             configuration (bench/clone.sh; 30-45 min
#             per XS_CLONE configuration and more per deep-copy one with the
#             default 30 forks and batches of 1, 16, 64 under TCG, about 3 h
#             in all; options in XC_BENCH_CLONE_ARGS, e.g. "--forks 5
#             --batches '1 4'" or "--configs 'oxenstored:0 oxenstored:1'")
#   attach    vif attach latency, clone path vs stock path, N = 1, 8, 32 vifs,
#             on stock Xen 4.17 under QEMU (bench/attach.sh)
#   pipeline  xencloned clones/s with the simulated clone device and a real
#             xenstored, RSS per in-flight clone, Xenstore requests per clone
#             (bench/pipeline.sh)
#   build     kernel (cold: as recorded by the last cold build; unchanged
#             tree) and module-only build times
# and writes tables (report.md, *.json, *.csv) and a plot (report.svg) to
# $XC_CACHE/bench/<date>/ (printed at the end).
#
#   scripts/bench.sh                     everything
#   XC_BENCH="pipeline build" scripts/bench.sh    a subset
#   XC_BENCH_OUT=DIR                     where to write (default: dated)
#   python3 bench/report.py DIR          tables and plot again from DIR's JSON
. "$(dirname "$0")/lib.sh"

BENCHES=${XC_BENCH:-clone attach pipeline build}
out=${XC_BENCH_OUT:-$XC_CACHE/bench/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
"$XC_ROOT/scripts/build.sh"
rc=0

build_bench() {
	local kdir t0 warm mod cold
	kdir=$(readlink -f "$XC_CACHE/kbuild/current")
	t0=$(date +%s%N)
	"$XC_ROOT/scripts/build-kernel.sh" >/dev/null
	warm=$((($(date +%s%N) - t0) / 1000000))
	make -s -C "$XC_ROOT" modules-clean >/dev/null
	t0=$(date +%s%N)
	make -s -C "$XC_ROOT" modules
	mod=$((($(date +%s%N) - t0) / 1000000))
	# A cold build takes ~16 min: it is measured by the cold build itself
	# (build-kernel.sh records it), not repeated here.
	cold=$(cat "$kdir/.xc-build-time" 2>/dev/null || echo "unknown -")
	python3 - "$out/build.json" "$cold" "$warm" "$mod" <<'PY'
import json, sys
path, cold, warm, mod = sys.argv[1], sys.argv[2].split(), int(sys.argv[3]), int(sys.argv[4])
kind, secs = cold[0], (int(cold[1]) if cold[1:] and cold[1].isdigit() else None)
json.dump({
    "kernel_last_full": {"seconds": secs,
                         "note": f"{kind} build (bzImage + modules, -j2), recorded by build-kernel.sh"},
    "kernel_unchanged": {"seconds": round(warm / 1000, 1), "note": "scripts/build-kernel.sh, inputs unchanged"},
    "modules_only": {"seconds": round(mod / 1000, 1),
                     "note": "make modules after modules-clean (xen_clone_dev + netback_clone)"},
}, open(path, "w"), indent=1)
PY
}

for b in $BENCHES; do
	log "=== bench $b"
	case $b in
	# XC_BENCH_CLONE_ARGS: options of bench/clone.sh, with shell quoting.
	clone) eval "\"\$XC_ROOT/bench/clone.sh\" \"\$out\" ${XC_BENCH_CLONE_ARGS:-}" || { log "bench clone failed"; rc=1; } ;;
	attach) "$XC_ROOT/bench/attach.sh" "$out" || { log "bench attach failed"; rc=1; } ;;
	pipeline) "$XC_ROOT/bench/pipeline.sh" "$out" || { log "bench pipeline failed"; rc=1; } ;;
	build) build_bench || { log "bench build failed"; rc=1; } ;;
	*) die "unknown benchmark '$b' (clone, attach, pipeline, build)" ;;
	esac
done
python3 "$XC_ROOT/bench/report.py" "$out" || rc=1
log "results: $out (report.md, report.svg)"
exit $rc
