#!/usr/bin/env bash
# Fetch Debian's Xen hypervisor and tools (pins.env: XEN_VERSION_SERIES) and
# extract them into the cache; nothing is installed system-wide. Prints the
# extraction root on stdout. Used by the QEMU harness (hypervisor, Dom0
# initramfs) and by userspace tests (a real xenstored).
. "$(dirname "$0")/lib.sh"

v=$XEN_VERSION_SERIES
root=$XC_CACHE/xen-$v/root
xc_lock "xen-$v"
if [ -f "$root/.xc-extracted" ]; then echo "$root"; exit 0; fi

PKGS=("xen-hypervisor-$v-amd64" "xen-utils-$v" xen-utils-common xenstore-utils
	libxencall1 libxenevtchn1 libxenforeignmemory1 libxengnttab1 "libxenmisc$v"
	libxenstore4 libxentoollog1 libxentoolcore1 libxendevicemodel1 libxenhypfs1
	libyajl2 libncurses6 libtinfo6 libext2fs2 libuuid1 libzstd1 liblzma5 zlib1g libgcc-s1)
debs=$XC_CACHE/xen-$v/debs
mkdir -p "$debs"
log "downloading Xen $v packages"
(cd "$debs" && apt-get download -q -o APT::Sandbox::User=root "${PKGS[@]}" >&2) || {
	avail=$(apt-cache search '^xen-hypervisor-[0-9.]+-amd64$' | awk '{print $1}' | tr '\n' ' ')
	die "cannot download Xen $v packages (available hypervisors: ${avail:-none}); run 'apt-get update' or update XEN_VERSION_SERIES in scripts/pins.env"
}
rm -rf "$root.tmp"; mkdir -p "$root.tmp"
for d in "$debs"/*.deb; do dpkg-deb -x "$d" "$root.tmp"; done
gunzip -c "$root.tmp"/boot/xen-$v-amd64.gz >"$root.tmp/boot/xen-$v-amd64"
rm -rf "$root"; mv "$root.tmp" "$root"

# Every binary the harness uses must resolve all its libraries from the
# extraction or the system.
missing=
for b in xl xenstored xenconsoled xen-init-dom0 libxl-save-helper; do
	f=$root/usr/lib/xen-$v/bin/$b
	[ -x "$f" ] || die "Xen package lacks usr/lib/xen-$v/bin/$b"
	missing+=$(LD_LIBRARY_PATH=$(xen_ld_path "$root") ldd "$f" | grep 'not found' || true)
done
[ -z "$missing" ] || die "Xen tools miss libraries: $missing"
touch "$root/.xc-extracted"
echo "$root"
