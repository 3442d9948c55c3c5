#!/usr/bin/env bash
# Benchmark 2 of issue 7, "Dom0 pipeline throughput": xencloned's real
# pipeline in-process (simulated clone device and netback uevents) against
# Debian's C xenstored 4.17. Writes OUTDIR/pipeline.json, pipeline.csv and
# the printed table (pipeline.txt). About 2-3 minutes on 2 cores.
#
#   bench/pipeline.sh OUTDIR [bench-pipeline options]   (--help lists them)
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/../scripts/lib.sh"

[ $# -ge 1 ] || die "usage: $0 OUTDIR [bench-pipeline options]"
out=$1
shift
mkdir -p "$out"

XC_XENSTORED_ROOT=$("$XC_ROOT/scripts/fetch-xen.sh") || die "no Xen tools (scripts/fetch-xen.sh failed)"
export XC_XENSTORED_ROOT

log "building bench-pipeline (release)"
(cd "$XC_ROOT/userspace" && cargo build -q --release -p bench-pipeline)
bin=${CARGO_TARGET_DIR:-$XC_ROOT/userspace/target}/release/bench-pipeline

log "pipeline benchmark -> $out (xenstored from $XC_XENSTORED_ROOT)"
"$bin" --out "$out" "$@" | tee "$out/pipeline.txt"
log "pipeline benchmark done"
