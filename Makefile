# xen-clone top-level build.
#
#   make                 kernel modules + userspace against the test kernel
#   make KDIR=/path      modules against your own (patched, CONFIG_RUST=y) Dom0 build tree
#   make modules-clippy  modules with CLIPPY=1 (warnings are errors)
#   make kernel          the patched test kernel (scripts/build-kernel.sh)
#
# The two commands of the README are scripts/demo.sh and scripts/test.sh.

XC_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/xen-clone
KDIR ?= $(XC_CACHE)/kbuild/current
LLVM_BIN ?= /usr/lib/llvm-22/bin
export PATH := $(LLVM_BIN):$(XC_CACHE)/tools/bin:$(HOME)/.cargo/bin:$(PATH)

MODULE_DIRS := rust/xen_clone_dev rust/netback_clone
KMAKE = $(MAKE) -C $(KDIR) LLVM=1

.PHONY: all modules modules-clippy modules-fmt-check patches-check modules-clean userspace kernel clean

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
# kernel log lines in commit messages (kept unwrapped on purpose) and the
# CamelCase of Xen's own enum names (XenbusStateConnected).
patches-check:
	@cd $(KDIR)/source && for p in $(CURDIR)/linux-patches/*.patch; do \
		PATH=/usr/bin:$$PATH scripts/checkpatch.pl --quiet --no-summary --terse \
			--ignore COMMIT_LOG_LONG_LINE,CAMELCASE $$p || exit 1; done

modules-clean:
	@for d in $(MODULE_DIRS); do $(KMAKE) M=$(CURDIR)/$$d clean; done

userspace:
	cd userspace && cargo build --release --workspace

kernel:
	scripts/build-kernel.sh

clean: modules-clean
	cd userspace && cargo clean
