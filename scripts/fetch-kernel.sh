#!/usr/bin/env bash
# Fetch the pinned kernel source (scripts/pins.env) through a private apt
# configuration and extract it into the cache. Never installs anything
# system-wide. Prints the source directory on stdout.
. "$(dirname "$0")/lib.sh"

src=$(kernel_src_dir)
xc_lock kernel-src
if [ -f "$src/.xc-extracted" ]; then echo "$src"; exit 0; fi

apt_dir=$XC_CACHE/apt-$KERNEL_SRC_SUITE
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$XC_CACHE/debs"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $KERNEL_SRC_MIRROR $KERNEL_SRC_SUITE main" \
	> "$apt_dir/sources.list"
APT=(apt-get -q -o "Dir::Etc::sourcelist=$apt_dir/sources.list" -o Dir::Etc::sourceparts=-
	-o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache"
	-o APT::Get::List-Cleanup=0 -o APT::Sandbox::User=root)

deb=$XC_CACHE/debs/${KERNEL_SRC_PKG}_${KERNEL_SRC_VERSION//:/%3a}_all.deb
if [ ! -f "$deb" ]; then
	log "apt update ($KERNEL_SRC_SUITE, private configuration)"
	"${APT[@]}" update >&2 || die "apt-get update of $KERNEL_SRC_SUITE failed"
	avail=$(apt-cache -o "Dir::Etc::sourcelist=$apt_dir/sources.list" -o Dir::Etc::sourceparts=- \
		-o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache" \
		madison "$KERNEL_SRC_PKG" 2>/dev/null | awk '{print $3}') || true
	if ! grep -qxF "$KERNEL_SRC_VERSION" <<<"$avail"; then
		others=$(apt-cache -o "Dir::Etc::sourcelist=$apt_dir/sources.list" -o Dir::Etc::sourceparts=- \
			-o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache" \
			search '^linux-source-[0-9.]+$' 2>/dev/null | awk '{print $1}' | sort -V | tr '\n' ' ')
		die "pinned $KERNEL_SRC_PKG=$KERNEL_SRC_VERSION is no longer in $KERNEL_SRC_SUITE.
  versions of $KERNEL_SRC_PKG available: ${avail:-none}
  linux-source packages available: ${others:-none}
  update KERNEL_SRC_PKG/KERNEL_SRC_VERSION in scripts/pins.env"
	fi
	log "downloading $KERNEL_SRC_PKG=$KERNEL_SRC_VERSION"
	(cd "$XC_CACHE/debs" && "${APT[@]}" download "$KERNEL_SRC_PKG=$KERNEL_SRC_VERSION" >&2)
	[ -f "$deb" ] || deb=$(ls "$XC_CACHE"/debs/"${KERNEL_SRC_PKG}"_*.deb | head -n1)
fi

log "extracting $(basename "$deb")"
tmp=$XC_CACHE/src/.tmp.$$
rm -rf "$tmp"; mkdir -p "$tmp"
dpkg-deb -x "$deb" "$tmp"
tarball=$(ls "$tmp"/usr/src/linux-source-*.tar.* | head -n1)
[ -n "$tarball" ] || die "no source tarball in $deb"
rm -rf "$src"; mkdir -p "$src"
tar -xf "$tarball" -C "$src" --strip-components=1
rm -rf "$tmp"
touch "$src/.xc-extracted"
echo "$src"
