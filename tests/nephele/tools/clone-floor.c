// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * clone-floor: the smallest possible consumer of /dev/xen/clone, for the
 * real-clone benchmark (bench/clone.sh): it completes every clone entry the
 * moment it has read it, and does nothing else (no Xenstore, no console, no
 * devices, no unpause: the children stay paused). A guest's fork() latency
 * with this consumer is the hypervisor's and the notification ring's cost
 * (clone, ring, event channel, module, one read and one ioctl), the floor
 * under which no Dom0 daemon can go; a daemon's Dom0 overhead is its fork()
 * latency minus this floor.
 *
 *   clone-floor [DEVICE]          (default /dev/xen/clone)
 *
 * Prints "clone-floor ready" once the device is open, then one line per entry
 *   entry id=ID parent=P child=C flags=F us=T
 * (T: microseconds from the read() that returned the entry to the return of
 * its completion ioctl, CLOCK_MONOTONIC) and flushes after each read batch.
 * Exits 0 on SIGTERM/SIGINT, 1 on an error. Built static by bench/clone.sh
 * and put in the Dom0 by XC_DOM0_EXTRA_BINS.
 *
 * ABI (rust/xen_clone_dev/abi.rs): read() returns whole 32-byte entries
 * {u32 version, u32 flags, u32 id, u16 parent, u16 child, u64 parent
 * start_info mfn, u64 child start_info mfn}; XEN_CLONE_IOC_COMPLETE =
 * _IOW(0xC1, 1, struct {u32 id; u32 flags;}). An entry the module completed
 * itself (flag AUTO_COMPLETED, ABI 2) needs no completion; EALREADY counts
 * as done; EAGAIN (the hypervisor refused the completion for now, ABI 2) is
 * retried after 100 us.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

struct xc_entry {
	uint32_t version;
	uint32_t flags;
	uint32_t id;
	uint16_t parent_domid;
	uint16_t child_domid;
	uint64_t parent_start_info_mfn;
	uint64_t child_start_info_mfn;
};

struct xc_complete {
	uint32_t id;
	uint32_t flags;
};

_Static_assert(sizeof(struct xc_entry) == 32, "entry is 32 bytes");
_Static_assert(sizeof(struct xc_complete) == 8, "complete is 8 bytes");

#define XEN_CLONE_IOC_COMPLETE _IOW(0xC1, 1, struct xc_complete)
#define XEN_CLONE_ENTRY_AUTO_COMPLETED (1u << 1)
#define BATCH 128

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static int64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int main(int argc, char **argv)
{
	const char *dev = argc > 1 ? argv[1] : "/dev/xen/clone";
	static struct xc_entry e[BATCH];
	struct sigaction sa;
	unsigned long total = 0;
	int fd;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal; /* no SA_RESTART: read() returns EINTR */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	fd = open(dev, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "clone-floor: open %s: %s\n", dev, strerror(errno));
		return 1;
	}
	printf("clone-floor ready device=%s\n", dev);
	fflush(stdout);

	while (!stop) {
		ssize_t n = read(fd, e, sizeof(e));
		int64_t t0 = now_us();
		int64_t done[BATCH];
		size_t i, k;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "clone-floor: read: %s\n", strerror(errno));
			return 1;
		}
		k = (size_t)n / sizeof(e[0]);
		/* Complete first, print afterwards: nothing but the ioctl between
		 * the read and the completion. */
		for (i = 0; i < k; i++) {
			struct xc_complete c = { .id = e[i].id, .flags = 0 };

			while (!(e[i].flags & XEN_CLONE_ENTRY_AUTO_COMPLETED) &&
			       ioctl(fd, XEN_CLONE_IOC_COMPLETE, &c) < 0) {
				if (errno == EINTR)
					continue;
				if (errno == EALREADY)
					break;
				if (errno == EAGAIN) {
					usleep(100);
					continue;
				}
				fprintf(stderr, "clone-floor: complete id=%u: %s\n", e[i].id,
					strerror(errno));
				return 1;
			}
			done[i] = now_us();
		}
		for (i = 0; i < k; i++)
			printf("entry id=%u parent=%u child=%u flags=%u us=%lld\n", e[i].id,
			       e[i].parent_domid, e[i].child_domid, e[i].flags,
			       (long long)(done[i] - t0));
		total += k;
		fflush(stdout);
	}
	printf("clone-floor stopped entries=%lu\n", total);
	close(fd);
	return 0;
}
