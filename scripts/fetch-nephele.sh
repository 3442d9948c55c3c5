#!/usr/bin/env bash
# Fetch Nephele's own stack at the commits pinned in scripts/pins.env (NEPHELE_*)
# and extract it into the cache, once. Prints the source root on stdout:
#
#   <root>/xen-<commit>/            nephele-vm/xen           (hypervisor + tools)
#   <root>/mini-os-<commit>/        nephele-vm/mini-os
#   <root>/lwip-<commit>/           nephele-vm/lwip
#   <root>/cloning-apps-<commit>/   nephele-vm/cloning-apps
#   <root>/xen-hypervisor-<commit>.config   nephele-vm/experiments build/xen/config
#
# Each directory's .xc-extracted says where it came from. Sources, first found:
#   1. $XC_NEPHELE_SRC, or ../shared/nephele beside the repository: git archives
#      named <repo>-<commit>.tar.xz plus xen-hypervisor.config (checked against
#      the pins whenever the directory is there);
#   2. the pinned commits, with git, from $NEPHELE_GITHUB (machines with internet).
# Nothing is installed system-wide and nothing is written into the repository.
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

REPOS=(xen mini-os lwip cloning-apps)
commit_of() { local v="NEPHELE_${1//-/_}_COMMIT"; v=${v^^}; printf '%s' "${!v}"; }

root=$XC_CACHE/nephele/src
cfg=$root/xen-hypervisor-$NEPHELE_EXPERIMENTS_COMMIT.config
mkdir -p "$root"
exec 9>"$root/.lock"
flock 9

# The default source: shared/ beside the repository (CI: a read-only copy).
shared=$(dirname "$XC_ROOT")/shared/nephele
if [ -n "${XC_NEPHELE_SRC:-}" ]; then
	srcdir=$XC_NEPHELE_SRC
	[ -d "$srcdir" ] || die "XC_NEPHELE_SRC=$srcdir is not a directory"
elif [ -d "$shared" ]; then
	srcdir=$shared
else
	srcdir=
fi

# The archives must be the pinned ones: a stale shared/ (or stale pins) is an
# error, not a silent build of something else.
if [ -n "$srcdir" ]; then
	bad=()
	for r in "${REPOS[@]}"; do
		want=$r-$(commit_of "$r").tar.xz
		[ -f "$srcdir/$want" ] && continue
		have=$(cd "$srcdir" && find . -maxdepth 1 -name "$r-*.tar.xz" -printf '%f\n' |
			grep -E "^$r-[0-9a-f]{40}\.tar\.xz\$" | paste -sd' ') || true
		bad+=("$want missing (there: ${have:-nothing for $r})")
	done
	if [ ! -f "$srcdir/xen-hypervisor.config" ]; then
		bad+=("xen-hypervisor.config missing")
	elif [ -f "$srcdir/README.md" ] && ! grep -q "$NEPHELE_EXPERIMENTS_COMMIT" "$srcdir/README.md"; then
		bad+=("README.md does not name the pinned experiments commit $NEPHELE_EXPERIMENTS_COMMIT for xen-hypervisor.config")
	fi
	if ((${#bad[@]})); then
		printf '  %s\n' "${bad[@]}" >&2
		die "Nephele archives in $srcdir do not match scripts/pins.env (see above): update the pins or the archives"
	fi
fi

done_all() {
	local r
	for r in "${REPOS[@]}"; do [ -f "$root/$r-$(commit_of "$r")/.xc-extracted" ] || return 1; done
	[ -f "$cfg" ]
}
if done_all; then echo "$root"; exit 0; fi

if [ -z "$srcdir" ]; then
	export GIT_TERMINAL_PROMPT=0
	timeout 30 git ls-remote -q "$NEPHELE_GITHUB/xen" "refs/tags/$NEPHELE_TAG" >/dev/null 2>&1 ||
		die "no Nephele sources: $shared does not exist and $NEPHELE_GITHUB is unreachable; set XC_NEPHELE_SRC to a directory with <repo>-<commit>.tar.xz for ${REPOS[*]} and xen-hypervisor.config (commits: scripts/pins.env)"
fi

# git fetch of one pinned commit into $3 (GitHub serves commits by id).
git_get() {
	local url=$1 commit=$2 dest=$3
	git init -q "$dest"
	git -C "$dest" fetch -q --depth 1 "$url" "$commit" ||
		die "git fetch $url $commit failed"
	git -C "$dest" -c advice.detachedHead=false checkout -q FETCH_HEAD
	rm -rf "$dest/.git"
}

for r in "${REPOS[@]}"; do
	c=$(commit_of "$r")
	d=$root/$r-$c
	[ -f "$d/.xc-extracted" ] && continue
	rm -rf "$d.tmp"; mkdir -p "$d.tmp"
	if [ -n "$srcdir" ]; then
		log "extracting $r-$c.tar.xz"
		tar -xJf "$srcdir/$r-$c.tar.xz" -C "$d.tmp" --strip-components=1
		origin="archive $srcdir/$r-$c.tar.xz"
	else
		log "fetching $NEPHELE_GITHUB/$r $c"
		rmdir "$d.tmp"
		git_get "$NEPHELE_GITHUB/$r" "$c" "$d.tmp"
		origin="git $NEPHELE_GITHUB/$r $c"
	fi
	# git archive records the commit for the xen tree: check it.
	if [ -f "$d.tmp/.gitarchive-info" ]; then
		got=$(sed -n 's/^Changeset: *//p' "$d.tmp/.gitarchive-info")
		case "$got" in "$c"*|"\$Format"*|'') ;; *) die "$r archive is commit $got, pinned $c" ;; esac
	fi
	echo "$origin" >"$d.tmp/.xc-extracted"
	rm -rf "$d"; mv "$d.tmp" "$d"
done

if [ ! -f "$cfg" ]; then
	if [ -n "$srcdir" ]; then
		install -m 0644 "$srcdir/xen-hypervisor.config" "$cfg.tmp"
	else
		log "fetching $NEPHELE_GITHUB/experiments $NEPHELE_EXPERIMENTS_COMMIT"
		rm -rf "$root/.experiments.tmp"
		git_get "$NEPHELE_GITHUB/experiments" "$NEPHELE_EXPERIMENTS_COMMIT" "$root/.experiments.tmp"
		install -m 0644 "$root/.experiments.tmp/build/xen/config" "$cfg.tmp"
		rm -rf "$root/.experiments.tmp"
	fi
	mv "$cfg.tmp" "$cfg"
fi
echo "$root"
