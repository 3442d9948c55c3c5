# shellcheck shell=bash
# The parts of a test Dom0 initramfs that do not depend on the hypervisor:
# busybox, iproute2, bash, the test kernel's modules, ours and xencloned as
# `make install DESTDIR=` puts them, and the static test tools. Source after scripts/lib.sh
# and tests/lib/initramfs.sh; the Xen toolstack is added by each harness
# (tests/xen/run.sh: Debian's Xen 4.17; tests/nephele/run.sh: Nephele's).

# xc_dom0_base DIR KDIR KVER
xc_dom0_base() {
	local d=$1 kdir=$2 kver=$3 b t
	ir_init "$d"
	rm -rf "$d/var/run"; ln -s ../run "$d/var/run"
	# Xen's vif-bridge prefers brctl when one is on PATH; busybox's cannot
	# enslave to a bond, iproute2's "ip link set master" can.
	rm -f "$d/bin/brctl"
	ir_add_bin "$d" "$(command -v ip)" /sbin/ip
	ir_add_bin "$d" /bin/bash /bin/bash
	# xl aborts at exit without libgcc_s (pthread_cancel unwinding).
	ir_add_lib "$d" "$(readlink -f "$(gcc -print-file-name=libgcc_s.so.1)")"
	mkdir -p "$d/lib/modules" "$d/xc"
	cp -a "$kdir/modinst/lib/modules/$kver" "$d/lib/modules/"
	# Our modules, xencloned, its configuration and units: what a user
	# installs (make install), so that what the tests run is what users get,
	# built from the tree as it is (a run never tests a stale build).
	make -s -C "$XC_ROOT" userspace >/dev/null || die "make userspace failed"
	if [ -n "$(find "$XC_ROOT/rust" \( -name '*.rs' -o -name '*.[ch]' -o -name Kbuild \) \
		-newer "$XC_ROOT/rust/xen_clone_dev/xen_clone_dev.ko" 2>/dev/null | head -n 1)" ] ||
		[ ! -f "$XC_ROOT/rust/xen_clone_dev/xen_clone_dev.ko" ] ||
		[ "$(modinfo -F vermagic "$XC_ROOT/rust/xen_clone_dev/xen_clone_dev.ko" | cut -d' ' -f1)" != "$kver" ]; then
		make -s -C "$XC_ROOT" modules KDIR="$kdir" >/dev/null || die "make modules failed"
	fi
	make -s -C "$XC_ROOT" install DESTDIR="$d" KDIR="$kdir" PREFIX=/usr >/dev/null ||
		die "make install DESTDIR=$d failed"
	# The test-only module (simulated hypervisor) is never installed by make
	# install; the fault suite loads it by path.
	install -m644 "$XC_ROOT/rust/xen_clone_dev/xen_clone_sim.ko" "$d/lib/modules/$kver/extra/" ||
		die "rust/xen_clone_dev/xen_clone_sim.ko not built (a kernel with CONFIG_KUNIT)"
	b=$XC_ROOT/userspace/target/release/clone-dev-check
	[ -x "$b" ] && ir_add_bin "$d" "$b" /usr/local/bin/clone-dev-check
	# Test tools, static (tests/xen/tools/), and extra binaries for diagnostics.
	for t in "$XC_ROOT"/tests/xen/tools/*.c; do
		b=$XC_CACHE/initramfs/$(basename "$t" .c)
		if [ ! -x "$b" ] || [ "$t" -nt "$b" ]; then
			gcc -static -O1 -Wall -o "$b" "$t" || die "cannot build $t"
		fi
		install -m755 "$b" "$d/usr/local/bin/${b##*/}"
	done
	for b in ${XC_DOM0_EXTRA_BINS:-}; do install -m755 "$b" "$d/usr/local/bin/${b##*/}"; done
	cp "$XC_ROOT/tests/xen/dom0/lib.sh" "$d/xc/lib.sh"
}

# xc_nephele_toolstack DIR NEPH: Nephele's toolstack from the install tree
# NEPH/dist of scripts/build-nephele.sh, at the paths it was built for (xl,
# libxl/libxc, oxenstored and the C xenstored, xenconsoled, xen-init-dom0,
# xenstore-* clients, /etc/xen), every library ldd resolves for them, and
# Nephele's own C xencloned as /usr/local/bin/nephele-xencloned (the baseline;
# ours is /usr/local/bin/xencloned). Interpreted tools (Python) are left out:
# the Dom0 has no Python and the scenarios need none of them.
xc_nephele_toolstack() {
	local d=$1 dist=$2/dist f rel
	local LD_LIBRARY_PATH
	LD_LIBRARY_PATH=$(xc_nephele_ld_path "$2")
	export LD_LIBRARY_PATH
	for f in "$dist"/usr/sbin/* "$dist"/usr/bin/* "$dist"/usr/lib/xen/bin/* "$dist"/usr/libexec/xen/bin/*; do
		[ -e "$f" ] || continue
		[ "${f##*/}" = xencloned ] && continue
		rel=${f#"$dist"}
		mkdir -p "$d/${rel%/*}"
		if [ -L "$f" ]; then
			cp -a "$f" "$d$rel"
		elif [ "$(head -c 4 "$f" | tr -d '\0')" = "$(printf '\177ELF')" ]; then
			ir_add_bin "$d" "$f" "$rel"
		elif head -n 1 "$f" | grep -q '^#!.*sh'; then
			install -m755 "$f" "$d$rel"
		fi
	done
	cp -a "$dist/etc/xen" "$d/etc/"
	[ -d "$dist/etc/default" ] && cp -a "$dist/etc/default" "$d/etc/"
	[ -x "$dist/usr/sbin/xencloned" ] || die "Nephele's xencloned is not in $dist/usr/sbin"
	ir_add_bin "$d" "$dist/usr/sbin/xencloned" /usr/local/bin/nephele-xencloned
}

# xc_nephele_ld_path NEPH: library path of Nephele's install tree.
xc_nephele_ld_path() { echo "$1/dist/usr/lib:$1/dist/usr/lib64:$1/dist/usr/lib/x86_64-linux-gnu"; }

# xc_xen_cmdline: the hypervisor's command line for both harnesses (plus
# XC_XEN_EXTRA). smap=0: QEMU 7.2 with -cpu max crashes a PV Dom0 at once
# otherwise. spec-ctrl=eager-fpu: QEMU's "max" CPU looks like AMD, where Xen
# defaults to lazy FPU switching (CR0.TS and #NM); under QEMU 7.2 TCG that
# loses vector register state between vCPUs, so that with DomUs running Dom0
# processes see other processes' ymm/xmm contents and crash in libc (memcpy,
# strlen, TLS setup). Eager switching saves and restores on every vCPU switch;
# the fpu-state scenario checks the registers survive.
xc_xen_cmdline() {
	echo "console=com1 com1=115200 dom0_mem=1G,max:1G dom0_max_vcpus=2 loglvl=all guest_loglvl=all smap=0 spec-ctrl=eager-fpu ${XC_XEN_EXTRA:-}"
}
