#!/usr/bin/env bash
# Build everything, idempotently: toolchain check/install, Xen packages,
# Nephele's stack and our test guests, patched kernel, our kernel modules,
# userspace. Unchanged inputs make every step a no-op.
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
"$XC_ROOT/scripts/install-deps.sh"
"$XC_ROOT/scripts/fetch-xen.sh" >/dev/null
"$XC_ROOT/scripts/build-nephele.sh" >/dev/null
"$XC_ROOT/scripts/build-kernel.sh" >/dev/null
log "building modules"
make -s -C "$XC_ROOT" modules
log "building userspace"
(cd "$XC_ROOT/userspace" && cargo build -q --release --workspace)
log "build done"
