# shellcheck shell=bash
# Common settings for xen-clone scripts. Source, do not execute.
set -euo pipefail

XC_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/pins.env
. "$XC_ROOT/scripts/pins.env"

# Everything built or downloaded lives outside the repository.
XC_CACHE=${XC_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/xen-clone}
XC_TOOLS=$XC_CACHE/tools
mkdir -p "$XC_CACHE" "$XC_TOOLS"

export PATH="/usr/lib/llvm-$LLVM_VERSION/bin:$XC_TOOLS/bin:$HOME/.cargo/bin:$PATH"

JOBS=${JOBS:-$(nproc)}

# xc_lock NAME: hold an exclusive lock on $XC_CACHE/NAME.lock until the calling
# script exits, so that two scripts that fill the same cache entry (a helper's
# test run and a build, say) never extract into one directory at once.
xc_lock() {
	exec {_xc_lock_fd}>"$XC_CACHE/$1.lock"
	flock "$_xc_lock_fd"
}

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Path of the extracted, pristine kernel source tree.
kernel_src_dir() { echo "$XC_CACHE/src/$KERNEL_SRC_PKG-$KERNEL_SRC_VERSION"; }

# Hash of everything that determines the kernel build: source pin, patches,
# config fragments, toolchain versions. The build tree is keyed by it.
kernel_build_key() {
	{
		echo "$KERNEL_SRC_PKG $KERNEL_SRC_VERSION"
		cat "$XC_ROOT/linux-patches/series"
		while read -r p; do
			case "$p" in ''|'#'*) continue ;; esac
			cat "$XC_ROOT/linux-patches/$p"
		done < "$XC_ROOT/linux-patches/series"
		cat "$XC_ROOT"/configs/*.config "$XC_ROOT/Kconfig.fragment"
		rustc --version 2>/dev/null || true
		clang --version 2>/dev/null | head -n1 || true
	} | sha256sum | cut -c1-16
}

kernel_build_dir() { echo "$XC_CACHE/kbuild/$(kernel_build_key)"; }

# Library path for binaries of an extracted Xen tools tree.
xen_ld_path() {
	local r=$1
	echo "$r/usr/lib/x86_64-linux-gnu:$r/lib/x86_64-linux-gnu:$r/usr/lib/xen-$XEN_VERSION_SERIES/lib"
}
