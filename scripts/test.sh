#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what it needs, builds
# the kernel, modules and userspace, then runs every stage and prints one
# closing line "N passed, M failed". Stages keep going after a failure so the
# summary is complete; the exit status is non-zero if any stage failed.
#
#   scripts/test.sh              everything
#   XC_STAGES="cargo kunit" scripts/test.sh   a subset (stage names below)
. "$(dirname "$0")/lib.sh"
. "$XC_ROOT/tests/lib/results.sh"
set +e

XEN_SCENARIOS=$(grep -v '^#' "$XC_ROOT/tests/xen/suite.list")
# tests/nephele/suite.list: "SCENARIO XENSTORED [TIMEOUT_S [NAME=VALUE...]]"
# per line; stage nephele-SCENARIO-XENSTORED.
NEPHELE_RUNS=$(grep -v '^#' "$XC_ROOT/tests/nephele/suite.list" | awk 'NF { print $1 "-" $2 }')
ALL_STAGES="build lint cargo kunit $(for s in $NEPHELE_RUNS; do printf 'nephele-%s ' "$s"; done)"
ALL_STAGES+=" $(for s in $XEN_SCENARIOS; do printf 'xen-%s ' "$s"; done)"
ALL_STAGES+=" series"
STAGES=${XC_STAGES:-$ALL_STAGES}
mkdir -p "$XC_RESULTS"
passed=0 failed=0 summary=()
t_all=$(date +%s)

stage() {
	local name=$1; shift
	case " $STAGES " in *" $name "*) ;; *) return 0 ;; esac
	log "=== stage $name"
	local t0 rc
	t0=$(date +%s)
	"$@"
	rc=$?
	local dt=$(($(date +%s) - t0))
	if [ $rc = 0 ]; then passed=$((passed + 1)); summary+=("PASS $name (${dt}s)")
	else failed=$((failed + 1)); summary+=("FAIL $name (${dt}s, exit $rc)"); fi
	log "=== stage $name: $([ $rc = 0 ] && echo PASS || echo FAIL) in ${dt}s"
	# Without a build nothing else can run meaningfully.
	if [ "$name" = build ] && [ $rc != 0 ]; then finish; fi
}

lint() {
	local rc=0
	(cd "$XC_ROOT/userspace" && cargo fmt --all --check) || { echo "cargo fmt: not clean" >&2; rc=1; }
	(cd "$XC_ROOT/userspace" && cargo clippy -q --workspace --all-targets -- -D warnings) || rc=1
	make -s -C "$XC_ROOT" modules-fmt-check || { echo "kernel module sources: rustfmt/checkpatch not clean" >&2; rc=1; }
	make -s -C "$XC_ROOT" patches-check || { echo "linux-patches/: checkpatch not clean" >&2; rc=1; }
	make -s -C "$XC_ROOT" modules-clippy || rc=1
	# modules-clippy leaves clippy-built objects; rebuild the plain ones for the VMs.
	make -s -C "$XC_ROOT" modules || rc=1
	# make install DESTDIR=<tmp>: the tree, modes, units, depmod.
	"$XC_ROOT/scripts/test-install.sh" || rc=1
	return $rc
}

cargo_tests() {
	XC_XENSTORED_ROOT=$("$XC_ROOT/scripts/fetch-xen.sh") || return 1
	export XC_XENSTORED_ROOT
	(cd "$XC_ROOT/userspace" && cargo test --workspace 2>&1) | tee "$XC_RESULTS/cargo-test.log"
	local rc=${PIPESTATUS[0]}
	# A test that skips must say why; report them so a skip is never silent.
	grep -E '^SKIP' "$XC_RESULTS/cargo-test.log" | sort -u | sed 's/^/  /'
	return "$rc"
}

finish() {
	printf '\n== summary (%s s)\n' "$(($(date +%s) - t_all))"
	printf '  %s\n' "${summary[@]}"
	printf '%s passed, %s failed\n' "$passed" "$failed"
	[ "$failed" = 0 ]
	exit
}

stage build "$XC_ROOT/scripts/build.sh"
stage lint lint
stage cargo cargo_tests
stage kunit "$XC_ROOT/tests/kunit/run.sh"
while read -r scen xs tmo envs <&3; do
	case $scen in ''|'#'*) continue ;; esac
	# shellcheck disable=SC2086
	stage "nephele-$scen-$xs" "$XC_ROOT/tests/nephele/run.sh" "$scen" "$xs" ${tmo:+--timeout "$tmo"} $envs
done 3< "$XC_ROOT/tests/nephele/suite.list"
for s in $XEN_SCENARIOS; do
	stage "xen-$s" "$XC_ROOT/tests/xen/run.sh" "$s"
done
# Last: it checks the kernel source out at every prefix of linux-patches/
# (restored at the end) and builds each in a scratch copy of the kernel build.
stage series "$XC_ROOT/scripts/check-series.sh"
finish
