# xen-clone top-level build.
#
#   make                 kernel modules + userspace against the test kernel
#   make KDIR=/path      modules against your own (patched, CONFIG_RUST=y) Dom0 build tree
#   make modules-clippy  modules with CLIPPY=1 (warnings are errors)
#   make kernel          the patched test kernel (scripts/build-kernel.sh)
#   make install         after a build: modules, xencloned, its unit, configuration
#                        and man page (DESTDIR=, PREFIX=/usr, KDIR=; see "Installing")
#
# The two commands of the README are scripts/demo.sh and scripts/test.sh.

XC_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/xen-clone
KDIR ?= $(XC_CACHE)/kbuild/current
LLVM_BIN ?= /usr/lib/llvm-22/bin
export PATH := $(LLVM_BIN):$(XC_CACHE)/tools/bin:$(HOME)/.cargo/bin:$(PATH)

MODULE_DIRS := rust/xen_clone_dev rust/netback_clone
KMAKE = $(MAKE) -C $(KDIR) LLVM=1

.PHONY: all modules modules-clippy modules-fmt-check patches-check modules-clean userspace kernel clean
.PHONY: install install-modules install-userspace install-dist

all: modules userspace

modules:
	@test -f $(KDIR)/Module.symvers || { echo "no kernel build tree at KDIR=$(KDIR): run 'make kernel' or pass KDIR=" >&2; exit 1; }
	@for d in $(MODULE_DIRS); do $(KMAKE) M=$(CURDIR)/$$d modules || exit 1; done

modules-clippy:
	@for d in $(MODULE_DIRS); do \
		$(KMAKE) M=$(CURDIR)/$$d clean >/dev/null && \
		$(KMAKE) M=$(CURDIR)/$$d CLIPPY=1 KRUSTFLAGS=-Dwarnings modules || exit 1; done

# rustfmt with the kernel's own configuration; kernel C with checkpatch.
modules-fmt-check:
	@rustfmt --check --config-path $(KDIR)/source/.rustfmt.toml $(foreach d,$(MODULE_DIRS),$(wildcard $(d)/*.rs))
	@for f in $(filter-out %.mod.c,$(foreach d,$(MODULE_DIRS),$(wildcard $(d)/*.[ch]))); do \
		$(KDIR)/source/scripts/checkpatch.pl --no-tree --quiet --no-summary --terse -f $$f || exit 1; done

# checkpatch of linux-patches/, from the kernel source tree. Ignored: quoted
# kernel log lines in commit messages (kept unwrapped on purpose), the
# CamelCase of Xen's own enum names (XenbusStateConnected), and "does
# MAINTAINERS need updating?" for new files, which all lie under existing
# entries (include/xen/, include/uapi/xen/, rust/kernel/xen/ added by 0008),
# and "unknown commit id" for the Fixes: tags of 0004 and 0005: the pinned
# source is Debian's linux-source package, with no upstream history to look
# the mainline commits up in.
patches-check:
	@cd $(KDIR)/source && for p in $(CURDIR)/linux-patches/*.patch; do \
		PATH=/usr/bin:$$PATH scripts/checkpatch.pl --quiet --no-summary --terse \
			--ignore COMMIT_LOG_LONG_LINE,CAMELCASE,FILE_PATH_CHANGES,UNKNOWN_COMMIT_ID $$p || exit 1; done

modules-clean:
	@for d in $(MODULE_DIRS); do $(KMAKE) M=$(CURDIR)/$$d clean; done

userspace:
	cd userspace && cargo build --release --workspace

kernel:
	scripts/build-kernel.sh

clean: modules-clean
	cd userspace && cargo clean

# Installing, like a Dom0 component. Modules go to /lib/modules/<kver>/extra of
# DESTDIR (kver: the KDIR build tree's kernel.release), followed by depmod -b
# DESTDIR; the rest under PREFIX, configuration under DESTDIR/etc.
PREFIX ?= /usr
SBINDIR ?= $(PREFIX)/sbin
MANDIR ?= $(PREFIX)/share/man
DATADIR ?= $(PREFIX)/share/xen-clone
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
SYSCONFDIR ?= /etc
DEPMOD ?= /sbin/depmod
MODINFO ?= /sbin/modinfo
MODULE_KOS := $(foreach d,$(MODULE_DIRS),$(d)/$(notdir $(d)).ko)
KVER = $(shell cat $(KDIR)/include/config/kernel.release 2>/dev/null)
RELEASE_DIR := userspace/target/release
DEST := $(abspath $(or $(DESTDIR),/))

install: install-modules install-userspace install-dist

# Nothing is built here: run `make` (or `make modules userspace`) first. The
# modules must have been built for KDIR's kernel (their vermagic).
install-modules:
	@test -n "$(KVER)" || { echo "no $(KDIR)/include/config/kernel.release: is KDIR a built kernel tree?" >&2; exit 1; }
	@for ko in $(MODULE_KOS); do \
		test -f $$ko || { echo "$$ko: not built; run 'make modules' first" >&2; exit 1; }; \
		v=$$($(MODINFO) -F vermagic $$ko | cut -d' ' -f1); \
		test "$$v" = "$(KVER)" || { echo "$$ko: built for $$v, KDIR is $(KVER); run 'make modules' again" >&2; exit 1; }; \
	done
	install -d $(DEST)/lib/modules/$(KVER)/extra
	install -m 0644 $(MODULE_KOS) $(DEST)/lib/modules/$(KVER)/extra/
	$(DEPMOD) -b $(DEST) $(KVER)

# The man page is generated into the build tree from the same clap definitions
# as --help (the hidden `xencloned man`); a temporary file of its own per
# install, so concurrent installs (test harnesses) do not race.
install-userspace:
	@test -x $(RELEASE_DIR)/xencloned || { echo "$(RELEASE_DIR)/xencloned: not built; run 'make userspace' first" >&2; exit 1; }
	$(RELEASE_DIR)/xencloned man > $(RELEASE_DIR)/xencloned.8.$$$$ && \
		mv $(RELEASE_DIR)/xencloned.8.$$$$ $(RELEASE_DIR)/xencloned.8
	install -D -m 0755 $(RELEASE_DIR)/xencloned $(DEST)$(SBINDIR)/xencloned
	install -D -m 0644 $(RELEASE_DIR)/xencloned.8 $(DEST)$(MANDIR)/man8/xencloned.8

install-dist:
	install -d $(DEST)$(SYSTEMDUNITDIR) $(DEST)$(DATADIR) \
		$(DEST)$(SYSCONFDIR)/modprobe.d $(DEST)$(SYSCONFDIR)/modules-load.d
	sed 's|@SBINDIR@|$(SBINDIR)|g' dist/xencloned.service > $(DEST)$(SYSTEMDUNITDIR)/xencloned.service
	chmod 0644 $(DEST)$(SYSTEMDUNITDIR)/xencloned.service
	sed 's|@SBINDIR@|$(SBINDIR)|g' dist/rc.local.xen-clone > $(DEST)$(DATADIR)/rc.local.xen-clone
	chmod 0755 $(DEST)$(DATADIR)/rc.local.xen-clone
	install -m 0644 dist/modprobe.d-xen-clone.conf $(DEST)$(SYSCONFDIR)/modprobe.d/xen-clone.conf
	install -m 0644 dist/modules-load.d-xen-clone.conf $(DEST)$(SYSCONFDIR)/modules-load.d/xen-clone.conf
