#!/usr/bin/env bash
# Install (idempotently) and check everything xen-clone needs on Debian 12:
# apt packages, rustup rust-src, bindgen-cli. Prints exactly what is missing.
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

APT_PKGS=(
	"clang-$LLVM_VERSION" "lld-$LLVM_VERSION" "llvm-$LLVM_VERSION" "libclang-$LLVM_VERSION-dev"
	flex bison libelf-dev libssl-dev bc cpio dwarves kmod zstd xz-utils rsync
	qemu-system-x86 busybox-static iproute2 bash util-linux
	git make gcc libc6-dev python3 python3-ply python3-git ca-certificates debian-archive-keyring
	# Nephele's Xen 4.16 hypervisor + tools (oxenstored: OCaml) and Mini-OS guests
	# (scripts/build-nephele.sh)
	ocaml-nox ocaml-findlib libyajl-dev acpica-tools libzstd-dev libudev-dev uuid-dev
	libncurses-dev zlib1g-dev liblzma-dev libbz2-dev python3-dev pkg-config
)

missing=()
for p in "${APT_PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
	log "installing apt packages: ${missing[*]}"
	SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
	$SUDO apt-get update -qq
	apt_install() { DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
	# A postinst can fail transiently on a container (invoke-rc.d); configure and retry once.
	apt_install || { $SUDO dpkg --configure -a || true; apt_install; } || die "apt-get install failed for: ${missing[*]}"
fi

if ! rustup component list --installed 2>/dev/null | grep -q '^rust-src'; then
	log "rustup component add rust-src"
	rustup component add rust-src
fi

if ! "$XC_TOOLS/bin/bindgen" --version 2>/dev/null | grep -q " $BINDGEN_VERSION\$"; then
	log "cargo install bindgen-cli $BINDGEN_VERSION into $XC_TOOLS (about 1.5 min)"
	cargo install --locked --quiet bindgen-cli --version "$BINDGEN_VERSION" --root "$XC_TOOLS"
fi

# Version checks: say exactly what is wrong.
errs=()
ver_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]; }
rv=$(rustc --version 2>/dev/null | awk '{print $2}') || true
[ -n "$rv" ] && ver_ge "$rv" 1.85.0 || errs+=("rustc >= 1.85 needed (have: ${rv:-none})")
bv=$(bindgen --version 2>/dev/null | awk '{print $2}') || true
[ -n "$bv" ] && ver_ge "$bv" 0.72.1 || errs+=("bindgen >= 0.72.1 needed (have: ${bv:-none})")
cv=$(clang --version 2>/dev/null | sed -n 's/.*clang version \([0-9.]*\).*/\1/p' | head -n1) || true
[ -n "$cv" ] && ver_ge "$cv" 17 || errs+=("clang >= 17 needed first in PATH (have: ${cv:-none})")
for t in ld.lld llvm-ar flex bison bc cpio pahole qemu-system-x86_64 busybox; do
	command -v "$t" >/dev/null || [ -x "/bin/$t" ] || errs+=("$t not found")
done
if ((${#errs[@]})); then
	printf 'missing or too old:\n' >&2; printf '  - %s\n' "${errs[@]}" >&2
	exit 1
fi
log "toolchain ok: rustc $rv, bindgen $bv, clang $cv"
