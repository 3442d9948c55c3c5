/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * Test-only LD_PRELOAD shim that lets Debian's C xenstored 4.17 run on a
 * host without Xen. Xen 4.17's `-D` (no domain init) crashes on the first
 * request (its domain hashtable is only created by domain_init; upstream
 * later fixed this with domain_static_init and then dropped -D), so the
 * tests run xenstored WITH domain init and fake the hypervisor libraries:
 * - libxenctrl/libxenevtchn/libxengnttab entry points become no-ops
 *   (grant maps are fresh anonymous pages, event channels never fire);
 * - /proc/xen/xsd_port and /proc/xen/xsd_kva are redirected to files in
 *   $XENSTORED_RUNDIR (created by the test harness).
 * Only the Xenstore protocol logic of xenstored is exercised, which is
 * what the tests need. Compiled by xenstore::testing at test time.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int dummy;
static int evfd[2] = { -1, -1 };
static int next_port = 10;

void *xc_interface_open(void *a, void *b, unsigned f) { (void)a; (void)b; (void)f; return &dummy; }
int xc_interface_close(void *x) { (void)x; return 0; }
int xc_domain_getinfo(void *x, uint32_t first, unsigned int max, void *info)
{ (void)x; (void)first; (void)max; (void)info; errno = ESRCH; return -1; }

void *xenevtchn_open(void *l, unsigned f)
{ (void)l; (void)f; if (evfd[0] < 0 && pipe(evfd)) return NULL; return &dummy; }
void *xenevtchn_fdopen(void *l, int fd, unsigned f) { (void)fd; return xenevtchn_open(l, f); }
int xenevtchn_close(void *h) { (void)h; return 0; }
int xenevtchn_fd(void *h) { (void)h; return evfd[0]; }
int xenevtchn_bind_virq(void *h, unsigned int v) { (void)h; (void)v; return 1; }
int xenevtchn_bind_interdomain(void *h, uint32_t d, uint32_t p) { (void)h; (void)d; (void)p; return next_port++; }
int xenevtchn_notify(void *h, uint32_t p) { (void)h; (void)p; return 0; }
int xenevtchn_pending(void *h) { (void)h; errno = EAGAIN; return -1; }
int xenevtchn_unmask(void *h, uint32_t p) { (void)h; (void)p; return 0; }
int xenevtchn_unbind(void *h, uint32_t p) { (void)h; (void)p; return 0; }

void *xengnttab_open(void *l, unsigned f) { (void)l; (void)f; return &dummy; }
int xengnttab_close(void *h) { (void)h; return 0; }
int xengnttab_set_max_grants(void *h, uint32_t n) { (void)h; (void)n; return 0; }
void *xengnttab_map_grant_ref(void *h, uint32_t d, uint32_t r, int prot)
{
	void *p;
	(void)h; (void)d; (void)r;
	p = mmap(NULL, 4096, prot | PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}
int xengnttab_unmap(void *h, void *a, uint32_t n) { (void)h; return munmap(a, 4096 * (size_t)n); }

static const char *redirect(const char *path, char *buf, size_t len)
{
	const char *dir = getenv("XENSTORED_RUNDIR");
	if (!dir || !path)
		return path;
	if (!strcmp(path, "/proc/xen/xsd_port")) {
		snprintf(buf, len, "%s/xsd_port", dir);
		return buf;
	}
	if (!strcmp(path, "/proc/xen/xsd_kva")) {
		snprintf(buf, len, "%s/xsd_kva", dir);
		return buf;
	}
	return path;
}

typedef int (*open_fn)(const char *, int, ...);

static int do_open(const char *sym, const char *path, int flags, mode_t mode)
{
	char buf[4096];
	open_fn real = (open_fn)dlsym(RTLD_NEXT, sym);
	if (!real) {
		errno = ENOSYS;
		return -1;
	}
	return real(redirect(path, buf, sizeof(buf)), flags, mode);
}

int open(const char *path, int flags, ...)
{
	mode_t mode = 0;
	if (flags & (O_CREAT | O_TMPFILE)) {
		va_list ap;
		va_start(ap, flags);
		mode = va_arg(ap, int);
		va_end(ap);
	}
	return do_open("open", path, flags, mode);
}

int open64(const char *path, int flags, ...)
{
	mode_t mode = 0;
	if (flags & (O_CREAT | O_TMPFILE)) {
		va_list ap;
		va_start(ap, flags);
		mode = va_arg(ap, int);
		va_end(ap);
	}
	return do_open("open64", path, flags, mode);
}
