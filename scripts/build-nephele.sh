#!/usr/bin/env bash
# Build Nephele's own stack (scripts/fetch-nephele.sh, pins: NEPHELE_* in
# scripts/pins.env) and our Mini-OS test guests, in the cache. Prints the output
# root on stdout. Layout of the output root <out>:
#
#   xen/xen             the hypervisor: multiboot ELF for QEMU's -kernel (debug build)
#   xen/xen-syms        its symbols
#   xen/config          the .config it was built with (experiments' build/xen/config)
#   dist/               the tools' install tree (Xen's dist/install, --prefix=/usr):
#     usr/sbin/           xl, oxenstored (with XS_CLONE), xenstored (C), xenconsoled,
#                         xencloned (Nephele's C daemon, tools/xenclone)
#     usr/lib/xen/bin/    xen-init-dom0, libxl-save-helper
#     usr/bin/            xenstore, xenstore-{read,write,ls,list,rm,exists,chmod,watch}
#     usr/lib/            libxenlight, libxenctrl, libxenguest, libxenstore, ... (.so)
#     etc/xen/            oxenstored.conf, xl.conf, scripts/
#   guests/forker       our forking Mini-OS app (tests/nephele/guests/forker/), stripped ELF;
#   guests/forker.gz    gzipped; guests/forker-debug: with symbols
#   guests/server-udp   cloning-apps' server-udp (lwIP + netfront; needs extra="-a server-udp ...")
#                       and server-udp.gz, server-udp-debug
#   manifest            "<name> <path relative to <out>>" for every file above that a
#                       harness looks up, plus "ld-library-path <dir>[:<dir>...]" (relative)
#
# Three stages, each built once in $XC_CACHE/nephele/stage/<stage>-<key>, keyed by
# a hash of its own inputs (pinned commits, archive names, the stage's recipe in
# this script, toolchain versions, and for the guests our guest sources), so a
# change to the forker does not rebuild Xen. <out> = $XC_CACHE/nephele/out/<key>
# (hard links into the stages; key: the stage keys and this whole script);
# $XC_CACHE/nephele/current points at the last one. Unchanged inputs: seconds.
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

src=$("$XC_ROOT/scripts/fetch-nephele.sh")
XEN_SRC=$src/xen-$NEPHELE_XEN_COMMIT
MINIOS_SRC=$src/mini-os-$NEPHELE_MINI_OS_COMMIT
LWIP_SRC=$src/lwip-$NEPHELE_LWIP_COMMIT
APPS_SRC=$src/cloning-apps-$NEPHELE_CLONING_APPS_COMMIT
HV_CONFIG=$src/xen-hypervisor-$NEPHELE_EXPERIMENTS_COMMIT.config
GUESTS=$XC_ROOT/tests/nephele/guests
base=$XC_CACHE/nephele
mkdir -p "$base/stage" "$base/out"
exec 8>"$base/.build.lock"
flock 8

# --- stage recipes (their text is part of their key) ------------------------

# Hypervisor, Nephele's way (experiments' config, CONFIG_MEM_SHARING=y).
# gcc 12 warns (-Waddress) in drivers/passthrough/x86/hvm.c: not an error here.
build_hv() {
	local o=$1 w=$1/work
	cp -a "$XEN_SRC" "$w"
	cp "$HV_CONFIG" "$w/xen/.config"
	make -C "$w/xen" olddefconfig
	make -C "$w/xen" -j"$JOBS" CONFIG_MEM_SHARING=y EXTRA_CFLAGS_XEN_CORE=-Wno-error
	mkdir -p "$o/xen"
	cp "$w/xen/xen" "$w/xen/xen-syms" "$o/xen/"
	cp "$w/xen/.config" "$o/xen/config"
	rm -rf "$w"
}

# tools/xenclone (xencloned) is built with OVS_RUN_ONLY_AS_COMMAND: of Open
# vSwitch it only names struct ovs_cmdl_context, from OVS's lib/command-line.h.
ovs_stub() {
	mkdir -p "$1/lib"
	cat >"$1/lib/command-line.h" <<-'EOF'
	/* Stand-in for Open vSwitch's lib/command-line.h, written by xen-clone's
	 * scripts/build-nephele.sh: xencloned runs OVS as commands only. */
	#ifndef OVS_COMMAND_LINE_H
	#define OVS_COMMAND_LINE_H 1
	struct ovs_cmdl_context {
	    int argc;
	    char **argv;
	    void *pvt;
	};
	#endif
	EOF
}

build_tools() {
	local o=$1 w=$1/work
	# configure takes python3 (and python3-config) from PATH whatever PYTHON says:
	# the system's, not a pyenv shim that may come first in a developer's PATH.
	export PATH=/usr/bin:/bin:$PATH
	cp -a "$XEN_SRC" "$w"
	ovs_stub "$w/.xc-ovs"
	(cd "$w" && ./configure --prefix=/usr --disable-docs --disable-stubdom \
		--disable-qemu-traditional --with-system-qemu=/bin/false --disable-seabios \
		--disable-rombios --disable-ipxe --disable-golang --disable-pvshim \
		--disable-xsmpolicy --with-xenstored=oxenstored)
	make -C "$w" -j"$JOBS" dist-tools OCAML_TOOLS=y CONFIG_QEMU_XEN=n \
		EXTRA_CFLAGS_XEN_TOOLS=-Wno-error PYTHON=/usr/bin/python3 OVS_SRC="$w/.xc-ovs"
	mv "$w/dist/install" "$o/dist"
	rm -rf "$w"
}

# One Mini-OS image from private copies of its trees (Mini-OS writes objects
# into the trees of lwIP and cloning-apps too). Mini-OS carries its own Xen
# headers: XEN_ROOT must stay unset (it would make Mini-OS look for itself
# under $XEN_ROOT/extras/mini-os).
MINIOS_COMMON=(debug=n CONFIG_PARAVIRT=y CONFIG_BLKFRONT=n CONFIG_CONSFRONT=n
	CONFIG_FBFRONT=n CONFIG_KBDFRONT=n CONFIG_USE_XEN_CONSOLE=y CONFIG_CLONING=y)
minios_image() {
	local name=$1 o=$2 w=$2/work/$1
	shift 2
	mkdir -p "$w" "$o/guests"
	cp -a "$MINIOS_SRC" "$w/mini-os"
	# The generated headers first: objects of lwIP and cloning-apps are built by
	# make's implicit rule, which does not wait for them (a -j race).
	env -u XEN_ROOT make -C "$w/mini-os" "${MINIOS_COMMON[@]}" "$@" links
	env -u XEN_ROOT make -C "$w/mini-os" -j"$JOBS" "${MINIOS_COMMON[@]}" "$@"
	cp "$w/mini-os/mini-os" "$o/guests/$name"
	cp "$w/mini-os/mini-os.gz" "$o/guests/$name.gz"
	cp "$w/mini-os/mini-os-debug" "$o/guests/$name-debug"
}

build_guests() {
	local o=$1 w=$1/work/server-udp
	minios_image forker "$o" -f "$GUESTS/forker/Makefile.minios" \
		CONFIG_NETFRONT=n CONFIG_START_NETWORK=n lwip=n
	mkdir -p "$w"
	cp -a "$LWIP_SRC" "$w/lwip"
	cp -a "$APPS_SRC" "$w/cloning-apps"
	minios_image server-udp "$o" CONFIG_NETFRONT=y CONFIG_START_NETWORK=y \
		lwip=y LWIPDIR="$w/lwip" CLONING_APPS_DIR="$w/cloning-apps" APP=server-udp
	rm -rf "$o/work"
}

# --- keys ---------------------------------------------------------------------
toolchain() {
	gcc --version | head -n1
	ld --version | head -n1
	make --version | head -n1
}
hash16() { sha256sum | cut -c1-16; }
hv_key=$({
	echo "xen $NEPHELE_XEN_COMMIT experiments $NEPHELE_EXPERIMENTS_COMMIT"
	cat "$XEN_SRC/.xc-extracted" "$HV_CONFIG"
	toolchain; declare -f build_hv
} | hash16)
tools_key=$({
	echo "xen $NEPHELE_XEN_COMMIT"
	cat "$XEN_SRC/.xc-extracted"
	toolchain; ocamlfind ocamlopt -version 2>/dev/null || echo no-ocaml
	/usr/bin/python3 --version 2>&1
	declare -f build_tools ovs_stub
} | hash16)
guests_key=$({
	echo "mini-os $NEPHELE_MINI_OS_COMMIT lwip $NEPHELE_LWIP_COMMIT cloning-apps $NEPHELE_CLONING_APPS_COMMIT"
	cat "$MINIOS_SRC/.xc-extracted" "$LWIP_SRC/.xc-extracted" "$APPS_SRC/.xc-extracted"
	(cd "$GUESTS" && find . -type f | LC_ALL=C sort | xargs sha256sum)
	toolchain; declare -p MINIOS_COMMON; declare -f build_guests minios_image
} | hash16)
key=$({ echo "$hv_key $tools_key $guests_key"; cat "$0"; } | hash16)
out=$base/out/$key

if [ -f "$out/.xc-built" ]; then
	log "Nephele stack $key up to date"
	ln -sfn "out/$key" "$base/current"
	echo "$out"; exit 0
fi

# --- stages -------------------------------------------------------------------
# stage NAME KEY FUNCTION: run FUNCTION <dir> once into $base/stage/NAME-KEY,
# its output in <dir>/build.log; on failure the tail of the log and its path.
stage() {
	local name=$1 k=$2 fn=$3 d=$base/stage/$1-$2 rc start old
	[ -f "$d/.xc-built" ] && return 0
	rm -rf "$d.tmp"; mkdir -p "$d.tmp"
	log "building Nephele $name ($k, -j$JOBS)"
	start=$(date +%s)
	set +e
	(set -e; "$fn" "$d.tmp") >"$d.tmp/build.log" 2>&1
	rc=$?
	set -e
	if [ "$rc" != 0 ]; then
		tail -n 40 "$d.tmp/build.log" >&2
		die "Nephele $name build failed (exit $rc); full log: $d.tmp/build.log"
	fi
	echo "$(($(date +%s) - start))" >"$d.tmp/.xc-build-time"
	touch "$d.tmp/.xc-built"
	rm -rf "$d"; mv "$d.tmp" "$d"
	log "Nephele $name built in $(cat "$d/.xc-build-time") s"
	for old in "$base/stage/$name"-*; do
		[ "$old" = "$d" ] || rm -rf "$old"
	done
}
stage hv "$hv_key" build_hv
stage tools "$tools_key" build_tools
stage guests "$guests_key" build_guests

# --- output tree, checks, manifest ---------------------------------------------
rm -rf "$out.tmp"; mkdir -p "$out.tmp"
cp -al "$base/stage/hv-$hv_key/xen" "$out.tmp/xen"
cp -al "$base/stage/tools-$tools_key/dist" "$out.tmp/dist"
cp -al "$base/stage/guests-$guests_key/guests" "$out.tmp/guests"

cd "$out.tmp"
BINS=(xl oxenstored xenstored xenconsoled xen-init-dom0 libxl-save-helper xencloned
	xenstore xenstore-read xenstore-write xenstore-ls xenstore-list xenstore-rm
	xenstore-exists xenstore-chmod xenstore-watch)
LIBS=(libxenlight libxenctrl libxenguest libxenstore libxenevtchn libxengnttab
	libxencall libxenforeignmemory libxendevicemodel libxentoollog libxentoolcore)
manifest=(
	"hypervisor xen/xen" "hypervisor-syms xen/xen-syms" "hypervisor-config xen/config"
	"dist dist"
)
missing=()
for b in "${BINS[@]}"; do
	f=$(find dist -name "$b" -type f -perm -u+x | LC_ALL=C sort | head -n1)
	if [ -n "$f" ]; then manifest+=("$b $f"); else missing+=("binary $b"); fi
done
for l in "${LIBS[@]}"; do
	f=$(find dist -name "$l.so.*" -type f | LC_ALL=C sort | head -n1)
	if [ -n "$f" ]; then manifest+=("$l $f"); else missing+=("library $l.so"); fi
done
f=$(find dist -name oxenstored.conf -type f | head -n1)
[ -z "$f" ] || manifest+=("oxenstored.conf $f")
for g in forker server-udp; do
	for s in "" .gz -debug; do
		if [ -f "guests/$g$s" ]; then manifest+=("guest-$g$s guests/$g$s"); else missing+=("guest guests/$g$s"); fi
	done
done
((${#missing[@]} == 0)) || { printf '  %s\n' "${missing[@]}" >&2; die "Nephele build lacks (see above): $out.tmp"; }

# oxenstored must be Nephele's, with XS_CLONE (its access log names the op "clone").
grep -aq 'clone    ' "$(find dist -name oxenstored -type f | head -n1)" ||
	die "oxenstored in $out.tmp/dist has no XS_CLONE"

# Every binary must resolve every library from dist (where libxen* are) or the system.
ldpath=$(find dist -name 'libxen*.so*' -printf '%h\n' | LC_ALL=C sort -u | paste -sd:)
manifest+=("ld-library-path $ldpath")
abs_ldpath=$(tr ':' '\n' <<<"$ldpath" | sed "s|^|$out.tmp/|" | paste -sd:)
unresolved=()
for b in "${BINS[@]}"; do
	f=$(find dist -name "$b" -type f | head -n1)
	while read -r lib; do
		unresolved+=("$b: $lib")
	done < <(LD_LIBRARY_PATH=$abs_ldpath ldd "$f" 2>&1 | awk '/not found/ {print $1}')
done
((${#unresolved[@]} == 0)) ||
	{ printf '  %s\n' "${unresolved[@]}" >&2; die "Nephele tools miss libraries (see above), LD_LIBRARY_PATH=$abs_ldpath"; }

{
	echo "# build-nephele.sh $key: <name> <path relative to this directory>"
	printf '%s\n' "${manifest[@]}"
} >manifest
cd - >/dev/null
touch "$out.tmp/.xc-built"
rm -rf "$out"; mv "$out.tmp" "$out"
ln -sfn "out/$key" "$base/current"
for old in "$base"/out/*; do
	[ "$old" = "$out" ] || rm -rf "$old"
done
log "Nephele stack ready: $out"
echo "$out"
