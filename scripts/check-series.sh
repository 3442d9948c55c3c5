#!/usr/bin/env bash
# Bisectability of linux-patches/: every prefix of the series must pass
# checkpatch and build (bzImage + modules, the test configuration), the way
# a maintainer applying the series one patch at a time would build it.
#
#   scripts/check-series.sh [FIRST [LAST]]   patches FIRST..LAST (numbers, default all)
#
# Needs a finished scripts/build-kernel.sh for the current series: that build
# (kbuild/current) is the full series, built from the source tree's branch
# xen-clone, one commit per patch. Under the kernel-build lock, the tree is
# then walked backwards, xen-clone~1, ~2, ... down to the prefix ending in
# FIRST, and each prefix is built in a scratch copy of kbuild/current
# ($XC_CACHE/series-check): same source path, and each checkout rewrites only
# the files of the one patch it drops, so each build recompiles just what that
# patch touched. (Walking forwards from xc-base would first recompile
# everything the whole series touches.) At the end the tree is back on branch
# xen-clone and kbuild/current is untouched. Prints one line per patch (OK
# with its build time, or the failing step and its log) and a summary; exit
# status 1 if any step failed.
. "$(dirname "$0")/lib.sh"

src=$("$XC_ROOT/scripts/fetch-kernel.sh")
cur=$XC_CACHE/kbuild/current
[ -e "$cur/.xc-built" ] || die "no kernel build in $cur: run scripts/build-kernel.sh first"
[ "$(readlink -f "$cur")" = "$(readlink -f "$(kernel_build_dir)")" ] ||
	die "$cur is not the build of the current linux-patches/: run scripts/build-kernel.sh first"
xc_lock kernel-build

mapfile -t patches < <(grep -v -e '^#' -e '^$' "$XC_ROOT/linux-patches/series")
total=${#patches[@]}
first=${1:-1}
last=${2:-$total}
[ "$last" -le "$total" ] || last=$total
[ "$first" -ge 1 ] && [ "$first" -le "$last" ] || die "no patch in $first..$last (the series has $total)"

top=$XC_CACHE/series-check
bdir=$top/build
mkdir -p "$top"
GIT=(git -C "$src" -c advice.detachedHead=false)
[ -z "$("${GIT[@]}" status --porcelain --untracked-files=no)" ] || die "$src has local changes"
[ "$("${GIT[@]}" symbolic-ref -q --short HEAD)" = xen-clone ] || die "$src is not on branch xen-clone"
# One commit per patch on top of xc-base, with the patches' subjects.
[ "$("${GIT[@]}" rev-list --count xc-base..xen-clone)" = "$total" ] ||
	die "branch xen-clone of $src does not hold the $total patches of linux-patches/series"
for i in $(seq 1 "$total"); do
	want=$(sed -n 's/^Subject: \(\[PATCH[^]]*\] \)\{0,1\}//p' "$XC_ROOT/linux-patches/${patches[$((i - 1))]}" | head -n1)
	have=$("${GIT[@]}" log -1 --format=%s "xen-clone~$((total - i))")
	case "$have" in "$want"*) ;; *) die "commit $i of xen-clone is '$have', not patch ${patches[$((i - 1))]}" ;; esac
done

restore() { "${GIT[@]}" checkout -q -f xen-clone || echo "warning: $src not restored to branch xen-clone" >&2; }
trap restore EXIT
t_all=$(date +%s)
rm -rf "$bdir" && cp -a "$(readlink -f "$cur")" "$bdir"
MAKE=(make -C "$src" O="$bdir" LLVM=1 ARCH=x86_64 -j"$JOBS")

checked=0 failed=0
# checkpatch does not depend on the tree's state: all patches first.
for n in $(seq "$first" "$last"); do
	p=${patches[$((n - 1))]}
	if ! (cd "$src" && PATH=/usr/bin:$PATH scripts/checkpatch.pl --quiet --no-summary --terse \
		--ignore COMMIT_LOG_LONG_LINE,CAMELCASE,FILE_PATH_CHANGES,UNKNOWN_COMMIT_ID \
		"$XC_ROOT/linux-patches/$p") >"$top/$(printf %04d "$n").checkpatch.log" 2>&1; then
		failed=$((failed + 1))
		echo "FAIL  $p: checkpatch (see $top/$(printf %04d "$n").checkpatch.log)"
	fi
done
for n in $(seq "$last" -1 "$first"); do
	p=${patches[$((n - 1))]}
	checked=$((checked + 1))
	if [ "$n" = "$total" ]; then
		echo "OK    $p (the full series: $(basename "$(readlink -f "$cur")"), built by build-kernel.sh)"
		continue
	fi
	t0=$(date +%s)
	logf=$top/$(printf %04d "$n").log
	if "${GIT[@]}" checkout -q "xen-clone~$((total - n))" >"$logf" 2>&1 &&
		"${MAKE[@]}" -s olddefconfig >>"$logf" 2>&1 &&
		"${MAKE[@]}" -s bzImage modules >>"$logf" 2>&1; then
		echo "OK    $p ($(($(date +%s) - t0)) s)"
	else
		failed=$((failed + 1))
		echo "FAIL  $p: build (see $logf)"
	fi
done
restore
trap - EXIT
echo "series check: $checked prefixes built, $failed failures, $(($(date +%s) - t_all)) s"
[ "$failed" = 0 ]
