#!/usr/bin/env bash
# Bisectability of linux-patches/: every prefix of the series must pass
# checkpatch and build (bzImage + modules, the test configuration), the way
# a maintainer applying the series one patch at a time would build it.
#
#   scripts/check-series.sh [FIRST [LAST]]   patches FIRST..LAST (numbers, default all)
#
# Needs a finished scripts/build-kernel.sh: its build directory seeds a
# scratch one ($XC_CACHE/series-check/build), so each step rebuilds only what
# the patch touches. The patches are applied with git am in a separate
# worktree of the kernel source ($XC_CACHE/series-check/src); neither the
# kernel source tree nor kbuild/current is modified. Prints one line per
# patch (OK, or the failing step and the log file) and a summary; exit
# status 1 if any step failed.
. "$(dirname "$0")/lib.sh"

first=${1:-1}
last=${2:-9999}
src=$("$XC_ROOT/scripts/fetch-kernel.sh")
cur=$XC_CACHE/kbuild/current
[ -e "$cur/.config" ] || die "no kernel build in $cur: run scripts/build-kernel.sh first"
xc_lock kernel-build

top=$XC_CACHE/series-check
wt=$top/src
bdir=$top/build
mkdir -p "$top"
GIT=(git -C "$src" -c user.name=xen-clone -c user.email=xen-clone@localhost -c advice.detachedHead=false)
if [ ! -e "$wt/.git" ]; then
	"${GIT[@]}" worktree prune
	"${GIT[@]}" worktree add -q --detach "$wt" xc-base || die "cannot create $wt"
fi
WGIT=(git -C "$wt" -c user.name=xen-clone -c user.email=xen-clone@localhost -c advice.detachedHead=false)
"${WGIT[@]}" am --abort >/dev/null 2>&1 || true
"${WGIT[@]}" checkout -q -f --detach xc-base
if [ ! -e "$bdir/.config" ]; then
	log "seeding $bdir from $(readlink -f "$cur")"
	rm -rf "$bdir.tmp" && cp -a "$(readlink -f "$cur")" "$bdir.tmp" && mv "$bdir.tmp" "$bdir"
fi
MAKE=(make -C "$wt" O="$bdir" LLVM=1 ARCH=x86_64 -j"$JOBS")

n=0 failed=0 t_all=$(date +%s)
while read -r p; do
	case "$p" in ''|'#'*) continue ;; esac
	n=$((n + 1))
	"${WGIT[@]}" am -q --keep-cr "$XC_ROOT/linux-patches/$p" ||
		{ "${WGIT[@]}" am --abort; die "$p does not apply"; }
	[ "$n" -lt "$first" ] || [ "$n" -gt "$last" ] && continue
	t0=$(date +%s)
	logf=$top/$(printf %04d "$n").log
	step=checkpatch
	if (cd "$wt" && PATH=/usr/bin:$PATH scripts/checkpatch.pl --quiet --no-summary --terse \
		--ignore COMMIT_LOG_LONG_LINE,CAMELCASE,FILE_PATH_CHANGES \
		"$XC_ROOT/linux-patches/$p") >"$logf" 2>&1; then
		step=build
		"${MAKE[@]}" -s olddefconfig >>"$logf" 2>&1 &&
			"${MAKE[@]}" bzImage modules >>"$logf" 2>&1 && step=
	fi
	if [ -z "$step" ]; then
		echo "OK    $p ($(($(date +%s) - t0)) s)"
	else
		failed=$((failed + 1))
		echo "FAIL  $p: $step (see $logf)"
	fi
done < "$XC_ROOT/linux-patches/series"
echo "series check: $((n < last ? n : last)) patches, $failed failed, $(($(date +%s) - t_all)) s"
[ "$failed" = 0 ]
