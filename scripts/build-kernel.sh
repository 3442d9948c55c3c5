#!/usr/bin/env bash
# Build the patched test/Dom0 kernel (bzImage + modules) out of tree, in the
# cache. Prints the build directory (KDIR for module builds) on stdout.
#
#   source:  $XC_CACHE/src/<pin>           git tree: pristine tag xc-base + linux-patches/ (git am)
#   build:   $XC_CACHE/kbuild/<key>         key = hash(pin, patches, configs, toolchain)
#   current: $XC_CACHE/kbuild/current ->    the last successful build
#
# An unchanged tree is a no-op (seconds). When patches change, the new build
# directory is seeded from the previous one, so make only rebuilds what the
# patches touch.
. "$(dirname "$0")/lib.sh"

src=$("$XC_ROOT/scripts/fetch-kernel.sh")
xc_lock kernel-build
key=$(kernel_build_key)
bdir=$XC_CACHE/kbuild/$key
MAKE=(make -C "$src" O="$bdir" LLVM=1 ARCH=x86_64 -j"$JOBS")

if [ -f "$bdir/.xc-built" ] && [ -f "$bdir/arch/x86/boot/bzImage" ]; then
	log "kernel $key up to date"
	ln -sfn "$key" "$XC_CACHE/kbuild/current"
	echo "$bdir"; exit 0
fi

# --- source: pristine + our series, applied with git am --------------------
GIT=(git -C "$src" -c user.name=xen-clone -c user.email=xen-clone@localhost -c advice.detachedHead=false)
if ! "${GIT[@]}" rev-parse -q --verify xc-base >/dev/null 2>&1; then
	log "turning $src into a git tree (once, ~1 min)"
	"${GIT[@]}" init -q
	"${GIT[@]}" add -f -A . >/dev/null
	"${GIT[@]}" commit -q -m "$KERNEL_SRC_PKG $KERNEL_SRC_VERSION (pristine)"
	"${GIT[@]}" tag xc-base
fi
series_key=$(cd "$XC_ROOT/linux-patches" && cat series $(grep -v '^#' series) | sha256sum | cut -c1-16)
if [ "$("${GIT[@]}" config --get xc.series 2>/dev/null)" != "$series_key" ] ||
   [ -n "$("${GIT[@]}" status --porcelain --untracked-files=no)" ]; then
	log "applying linux-patches/ on xc-base"
	"${GIT[@]}" am --abort >/dev/null 2>&1 || true
	# checkout only rewrites files that differ, so untouched files keep
	# their mtime and the seeded build stays incremental.
	"${GIT[@]}" checkout -q -f -B xen-clone xc-base
	while read -r p; do
		case "$p" in ''|'#'*) continue ;; esac
		"${GIT[@]}" am -q --keep-cr "$XC_ROOT/linux-patches/$p" ||
			{ "${GIT[@]}" am --abort || true; die "linux-patches/$p does not apply to $KERNEL_SRC_VERSION"; }
	done < "$XC_ROOT/linux-patches/series"
	"${GIT[@]}" config xc.series "$series_key"
fi

# --- build directory, seeded from the last build ---------------------------
kind=cold
if [ ! -d "$bdir" ] && [ -e "$XC_CACHE/kbuild/current/.config" ]; then
	kind=incremental
	prev=$(readlink -f "$XC_CACHE/kbuild/current")
	log "seeding $key from $(basename "$prev")"
	cp -a "$prev" "$bdir.tmp" && mv "$bdir.tmp" "$bdir"
	rm -f "$bdir/.xc-built"
fi
mkdir -p "$bdir"

# --- configuration ---------------------------------------------------------
frags=("$src/arch/x86/configs/x86_64_defconfig" "$src/arch/x86/configs/xen.config"
	"$XC_ROOT"/configs/*.config "$XC_ROOT/Kconfig.fragment")
log "merging config: ${frags[*]##*/}"
(cd "$src" && ARCH=x86_64 LLVM=1 scripts/kconfig/merge_config.sh -m -O "$bdir" "${frags[@]}" >"$bdir/.xc-merge.log")
"${MAKE[@]}" -s olddefconfig
"${MAKE[@]}" -s rustavailable >"$bdir/.xc-rustavailable" 2>&1 ||
	{ cat "$bdir/.xc-rustavailable" >&2; die "Rust is not available for this kernel build (see above)"; }

# Every option our own fragments ask for must have survived olddefconfig:
# a silently dropped CONFIG_RUST or CONFIG_XEN_DOM0 is a wasted 20 minutes.
bad=()
for f in "$XC_ROOT"/configs/*.config "$XC_ROOT/Kconfig.fragment"; do
	while IFS= read -r line; do
		case "$line" in
		CONFIG_*=*) want=$line ;;
		'# CONFIG_'*' is not set') want=$line ;;
		*) continue ;;
		esac
		opt=${line#\# }; opt=${opt%%[= ]*}
		have=$(grep -E "^(# )?$opt[= ]" "$bdir/.config" || echo "# $opt is not set")
		[ "$have" = "$want" ] || bad+=("${f##*/}: want '$want', got '$have'")
	done <"$f"
done
if ((${#bad[@]})); then printf '  %s\n' "${bad[@]}" >&2; die "kernel config does not match configs/ and Kconfig.fragment"; fi

# --- build -----------------------------------------------------------------
log "building bzImage + modules in $bdir (-j$JOBS; a cold build takes ~20 min)"
start=$(date +%s)
"${MAKE[@]}" -s bzImage modules
rm -rf "$bdir/modinst"
"${MAKE[@]}" -s INSTALL_MOD_PATH="$bdir/modinst" INSTALL_MOD_STRIP=1 DEPMOD=true modules_install
log "kernel built in $(($(date +%s) - start)) s ($kind)"
# For scripts/bench.sh: how long the last full build of this tree took.
echo "$kind $(($(date +%s) - start))" >"$bdir/.xc-build-time"
touch "$bdir/.xc-built"
ln -sfn "$key" "$XC_CACHE/kbuild/current"
# Older build directories only served as seeds (0.8 GB each).
for old in "$XC_CACHE"/kbuild/*/; do
	old=${old%/}
	[ "$old" = "$bdir" ] || [ -L "$old" ] || rm -rf "$old"
done
echo "$bdir"
