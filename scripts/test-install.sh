#!/bin/bash
# Checks `make install DESTDIR=<tmp>`: every file in place with its mode, the
# units and snippets well-formed, depmod's modules.dep naming our modules. Run
# after a build (make modules + the release userspace); the lint stage of
# scripts/test.sh runs it. Extra arguments go to make (KDIR=, KVER=, ...).
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
fail=0
bad() { echo "test-install: $*" >&2; fail=1; }

kdir=$XC_CACHE/kbuild/current
for a in "$@"; do case $a in KDIR=*) kdir=${a#KDIR=} ;; esac; done
kver=$(cat "$kdir/include/config/kernel.release") || die "no kernel build tree at $kdir"
for a in "$@"; do case $a in KVER=*) kver=${a#KVER=} ;; esac; done

# As the harness does: the kernel's own modules first, then ours, so depmod
# resolves netback_clone's dependency on xen-netback.
modinst=$kdir/modinst/lib/modules/$kver
if [ -d "$modinst" ]; then
	mkdir -p "$d/lib/modules"
	cp -a "$modinst" "$d/lib/modules/"
fi
make -s -C "$XC_ROOT" install DESTDIR="$d" "$@" >/dev/null || die "make install failed"

# path mode
while read -r p m; do
	if [ ! -e "$d$p" ]; then bad "$p: missing"; continue; fi
	got=$(stat -c %a "$d$p")
	[ "$got" = "$m" ] || bad "$p: mode $got, expected $m"
done <<EOF
/lib/modules/$kver/extra/xen_clone_dev.ko 644
/lib/modules/$kver/extra/netback_clone.ko 644
/lib/modules/$kver/modules.dep 644
/usr/sbin/xencloned 755
/usr/share/man/man8/xencloned.8 644
/usr/lib/systemd/system/xencloned.service 644
/usr/share/xen-clone/rc.local.xen-clone 755
/etc/modprobe.d/xen-clone.conf 644
/etc/modules-load.d/xen-clone.conf 644
EOF

dep=$d/lib/modules/$kver/modules.dep
for m in xen_clone_dev netback_clone; do
	grep -q "^extra/$m.ko:" "$dep" || bad "modules.dep has no extra/$m.ko"
	grep -qx "$m" "$d/etc/modules-load.d/xen-clone.conf" || bad "modules-load.d does not load $m"
done
if [ -d "$modinst" ] && find "$modinst" -name xen-netback.ko | grep -q .; then
	grep -q '^extra/netback_clone.ko:.*xen-netback.ko' "$dep" ||
		bad "modules.dep: netback_clone does not depend on xen-netback: $(grep netback_clone "$dep")"
fi
grep -q '^#options xen_clone_dev ring_pages=7 orphan_timeout=60 page_sharing_pool=0$' \
	"$d/etc/modprobe.d/xen-clone.conf" || bad "modprobe.d: no commented defaults"

unit=$d/usr/lib/systemd/system/xencloned.service
grep -qx 'Type=notify' "$unit" || bad "unit: not Type=notify"
grep -qx 'ExecStart=/usr/sbin/xencloned' "$unit" || bad "unit: ExecStart is not /usr/sbin/xencloned"
grep -q '@SBINDIR@' "$unit" "$d/usr/share/xen-clone/rc.local.xen-clone" && bad "@SBINDIR@ left unsubstituted"
if command -v systemd-analyze >/dev/null; then
	# verify wants the binary where ExecStart says: point it into DESTDIR.
	sed "s|^ExecStart=/usr/sbin/|ExecStart=$d/usr/sbin/|" "$unit" >"$d/xencloned.service"
	systemd-analyze verify --man=no "$d/xencloned.service" || bad "systemd-analyze verify failed"
	rm -f "$d/xencloned.service"
fi
sh -n "$d/usr/share/xen-clone/rc.local.xen-clone" || bad "rc.local snippet: syntax"
if command -v shellcheck >/dev/null; then
	shellcheck -s sh "$XC_ROOT/dist/rc.local.xen-clone" || bad "rc.local snippet: shellcheck"
fi

"$d/usr/sbin/xencloned" --help | grep -q -- '--stats-file' || bad "xencloned --help"
head -n 5 "$d/usr/share/man/man8/xencloned.8" | grep -q '^\.TH xencloned 8 ' || bad "man page: no .TH"
if command -v man >/dev/null; then
	man -l "$d/usr/share/man/man8/xencloned.8" 2>/dev/null | grep -q 'COMMANDS' || bad "man page does not render"
fi

# PREFIX moves the binary and what names it.
make -s -C "$XC_ROOT" install-dist DESTDIR="$d/local" PREFIX=/usr/local >/dev/null || bad "install-dist PREFIX=/usr/local"
grep -qx 'ExecStart=/usr/local/sbin/xencloned' "$d/local/usr/local/lib/systemd/system/xencloned.service" ||
	bad "PREFIX=/usr/local: ExecStart not in /usr/local/sbin"

[ $fail = 0 ] && echo "test-install: ok ($d, kernel $kver)"
exit $fail
