# shellcheck shell=bash
# Helpers to assemble initramfs trees from host binaries. Source after scripts/lib.sh.

# ir_init DIR: empty tree with busybox-static and its applets.
ir_init() {
	local d=$1
	rm -rf "$d"; mkdir -p "$d"/{bin,sbin,etc,proc,sys,dev,tmp,run,root,lib64,usr/bin,usr/sbin,var/log,var/run,var/lib,var/lock}
	cp /bin/busybox "$d/bin/busybox"
	local a
	for a in $("$d/bin/busybox" --list); do
		[ -e "$d/bin/$a" ] || ln -s busybox "$d/bin/$a"
	done
	# The kernel runs /sbin/poweroff and /sbin/modprobe as usermode helpers.
	for a in poweroff reboot halt modprobe; do ln -s ../bin/busybox "$d/sbin/$a"; done
}

# ir_add_bin DIR SRC [DEST]: copy a binary and every library ldd resolves for it
# (LD_LIBRARY_PATH may point into an extracted package tree).
ir_add_bin() {
	local d=$1 src=$2 dest=${3:-$2}
	mkdir -p "$d/$(dirname "$dest")"
	rm -f "$d/$dest"
	cp -L "$src" "$d/$dest"
	local lib
	for lib in $(ldd "$src" 2>/dev/null | grep -o '/[^ ]*' | sort -u); do
		ir_add_lib "$d" "$lib"
	done
}

# ir_add_lib DIR LIB: copy a library to its canonical place (/lib/x86_64-linux-gnu
# for anything found in an extracted tree, its own path otherwise).
ir_add_lib() {
	local d=$1 lib=$2 dest
	case "$lib" in
	/lib64/*|/lib/*|/usr/lib/*) dest=$lib ;;
	*) dest=/lib/x86_64-linux-gnu/$(basename "$lib") ;;
	esac
	[ -e "$d/$dest" ] && return 0
	mkdir -p "$d/$(dirname "$dest")"
	cp -L "$lib" "$d/$dest"
}

# ir_pack DIR OUT: newc cpio, gzip -1 (TCG decompression time matters more than size).
ir_pack() {
	(cd "$1" && find . -print0 | cpio --null -o -H newc --quiet) | gzip -1 >"$2"
}
