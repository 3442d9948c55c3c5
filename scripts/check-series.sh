#!/usr/bin/env bash
# Bisectability of linux-patches/: every prefix of the series must pass
# checkpatch and build (bzImage + modules, the test configuration), the way
# a maintainer applying the series one patch at a time would build it.
#
#   scripts/check-series.sh [FIRST [LAST]]   patches FIRST..LAST (numbers, default all)
#
# Needs a finished scripts/build-kernel.sh. Under its lock, the kernel source
# tree is checked out at each prefix in turn (branch xc-series-check, made
# with git am from xc-base) and built in a scratch copy of kbuild/current
# ($XC_CACHE/series-check): same source path, so each step rebuilds only
# what the patch changes. At the end the tree is back on branch xen-clone
# (the full series) and kbuild/current is untouched. Prints one line per
# patch (OK with its build time, or the failing step and its log) and a
# summary; exit status 1 if any step failed.
. "$(dirname "$0")/lib.sh"

first=${1:-1}
last=${2:-9999}
src=$("$XC_ROOT/scripts/fetch-kernel.sh")
cur=$XC_CACHE/kbuild/current
[ -e "$cur/.xc-built" ] || die "no kernel build in $cur: run scripts/build-kernel.sh first"
xc_lock kernel-build

top=$XC_CACHE/series-check
bdir=$top/build
mkdir -p "$top"
GIT=(git -C "$src" -c user.name=xen-clone -c user.email=xen-clone@localhost -c advice.detachedHead=false)
[ -z "$("${GIT[@]}" status --porcelain --untracked-files=no)" ] || die "$src has local changes"
restore() {
	"${GIT[@]}" am --abort >/dev/null 2>&1 || true
	"${GIT[@]}" checkout -q -f xen-clone || echo "warning: $src not restored to branch xen-clone" >&2
}
trap restore EXIT
rm -rf "$bdir" && cp -a "$(readlink -f "$cur")" "$bdir"
MAKE=(make -C "$src" O="$bdir" LLVM=1 ARCH=x86_64 -j"$JOBS")

"${GIT[@]}" checkout -q -f -B xc-series-check xc-base
n=0 checked=0 failed=0 t_all=$(date +%s)
while read -r p; do
	case "$p" in ''|'#'*) continue ;; esac
	n=$((n + 1))
	"${GIT[@]}" am -q --keep-cr "$XC_ROOT/linux-patches/$p" || die "$p does not apply"
	if [ "$n" -lt "$first" ] || [ "$n" -gt "$last" ]; then continue; fi
	checked=$((checked + 1))
	t0=$(date +%s)
	logf=$top/$(printf %04d "$n").log
	step=checkpatch
	if (cd "$src" && PATH=/usr/bin:$PATH scripts/checkpatch.pl --quiet --no-summary --terse \
		--ignore COMMIT_LOG_LONG_LINE,CAMELCASE,FILE_PATH_CHANGES \
		"$XC_ROOT/linux-patches/$p") >"$logf" 2>&1; then
		step=build
		"${MAKE[@]}" -s olddefconfig >>"$logf" 2>&1 &&
			"${MAKE[@]}" -s bzImage modules >>"$logf" 2>&1 && step=
	fi
	if [ -z "$step" ]; then
		echo "OK    $p ($(($(date +%s) - t0)) s)"
	else
		failed=$((failed + 1))
		echo "FAIL  $p: $step (see $logf)"
	fi
done < "$XC_ROOT/linux-patches/series"
restore
trap - EXIT
echo "series check: $checked patches checked, $failed failed, $(($(date +%s) - t_all)) s"
[ "$failed" = 0 ]
