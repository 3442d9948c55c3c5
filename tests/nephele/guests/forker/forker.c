/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * forker: a Mini-OS guest for xen-clone's tests on Nephele's hypervisor. It
 * clones itself with Mini-OS's fork() or clone(n, ids) and prints one line per
 * event, starting with "XCF ", through printk: with CONFIG_USE_XEN_CONSOLE=y
 * each line goes both to the Xen console (serial, prefixed "(dN) " by Xen) and
 * to the domain's PV console.
 *
 * Parameters: key=value words of the domain's command line (xl: extra="...").
 *   mode=fork|batch|idle  fork: <count> sequential fork()s; batch: <rounds>
 *                         clone(<n>, ids); idle: no cloning, heartbeat only
 *                         (for clones made from Dom0 with 'xl clone')  [fork]
 *   count=N       forks in mode=fork                                   [1]
 *   n=N           children per clone() in mode=batch, 1..128           [16]
 *   rounds=N      clone() calls in mode=batch                          [1]
 *   start_ms=N    pause before the first fork/clone                    [0]
 *   delay_ms=N    pause between two forks/clones                       [1000]
 *   ticks=N       heartbeat lines of each child (and of mode=idle),
 *                 0 = forever                                          [30]
 *   tick_ms=N     heartbeat period                                     [1000]
 *   sleep=timer|poll  how pauses wait: timer = msleep (block on the Xen
 *                 timer); poll = yield to Xen until the time has come  [timer]
 *   hold=0|1      1: the parent idles after the series; 0: it powers off  [1]
 *   child_exit=0|1  1: a child powers off after its heartbeats          [0]
 *
 * Lines (D: a domid read from Xenstore's relative "domid" key, "unknown" if
 * the read failed; MS: elapsed milliseconds with microsecond digits, from
 * Mini-OS's monotonic clock around the hypercall):
 *   XCF parent domid=D start mode=M count=N n=N rounds=N start_ms=N delay_ms=N ticks=N tick_ms=N sleep=S hold=H
 *   XCF parent domid=D fork i=I rc=R ms=MS     R: the child's domid, or -1
 *   XCF parent batch n=N rc=R ms=MS children=D1,D2,...   R: clone()'s result
 *   XCF parent done forks=N failed=F           N: children created in all
 *   XCF parent domid=D exit                    (hold=0)
 *   XCF child parent=P i=I resumed             first line of a child, before
 *   XCF child parent=P round=R resumed         any Xenstore access (fork|batch)
 *   XCF child domid=D parent=P i=I alive
 *   XCF child domid=D tick=K                   K = 1, 2, ...
 *   XCF child domid=D exit                     (child_exit=1)
 *   XCF idle domid=D tick=K                    mode=idle; D re-read each tick
 *   XCF error ...                              bad parameters
 * I numbers children 1, 2, ... in creation order: the fork number in mode=fork,
 * (round-1)*n + position in the batch's id list in mode=batch.
 */

#include <mini-os/os.h>
#include <mini-os/types.h>
#include <mini-os/kernel.h>
#include <mini-os/lib.h>
#include <mini-os/console.h>
#include <mini-os/sched.h>
#include <mini-os/time.h>
#include <mini-os/xenbus.h>
#include <mini-os/xmalloc.h>
#include <mini-os/unistd.h>
#include <xen/sched.h>

/* 128 five-digit domids fit in one printk (1024 bytes). */
#define MAX_BATCH 128

enum mode { MODE_FORK, MODE_BATCH, MODE_IDLE };
static const char *const mode_names[] = { "fork", "batch", "idle" };

static struct {
	enum mode mode;
	unsigned long count, n, rounds, start_ms, delay_ms, ticks, tick_ms;
	int poll, hold, child_exit;
} opt = {
	.mode = MODE_FORK, .count = 1, .n = 16, .rounds = 1, .start_ms = 0,
	.delay_ms = 1000, .ticks = 30, .tick_ms = 1000,
	.poll = 0, .hold = 1, .child_exit = 0,
};

/* Domid as text: "unknown" when Xenstore does not answer the read. */
struct domid_str { char s[16]; };

static struct domid_str self_domid(long *id)
{
	struct domid_str d;
	char *val = NULL, *err;

	*id = -1;
	err = xenbus_read(XBT_NIL, "domid", &val);
	if (err) {
		free(err);
		strcpy(d.s, "unknown");
		return d;
	}
	*id = (long)strtoul(val, NULL, 10);
	free(val);
	snprintf(d.s, sizeof(d.s), "%ld", *id);
	return d;
}

/* Milliseconds with microsecond digits. */
struct ms_str { char s[32]; };

static struct ms_str ms_of(s_time_t ns)
{
	struct ms_str m;

	if (ns < 0)
		ns = 0;
	snprintf(m.s, sizeof(m.s), "%lu.%03lu", (unsigned long)(ns / 1000000),
		 (unsigned long)((ns / 1000) % 1000));
	return m;
}

static void wait_ms(unsigned long ms)
{
	s_time_t until;

	if (!ms)
		return;
	if (!opt.poll) {
		msleep(ms);
		return;
	}
	/* Never block: the other threads still run, Xen still gets the CPU. */
	until = NOW() + MILLISECS(ms);
	while (NOW() < until) {
		schedule();
		HYPERVISOR_sched_op(SCHEDOP_yield, NULL);
	}
}

static void power_off(void)
{
	struct sched_shutdown s = { .reason = SHUTDOWN_poweroff };

	for (;;)
		HYPERVISOR_sched_op(SCHEDOP_shutdown, &s);
}

static int parse_ulong(const char *key, const char *val, unsigned long *out)
{
	char *end;
	unsigned long v = strtoul(val, &end, 10);

	if (!*val || *end) {
		printk("XCF error bad value %s=%s\n", key, val);
		return -1;
	}
	*out = v;
	return 0;
}

static int parse_args(void)
{
	static char buf[MAX_CMDLINE_SIZE];
	char *p = buf, *word, *val;
	unsigned long v = 0;
	int bad = 0;

	strncpy(buf, cmdline, sizeof(buf) - 1);
	for (;;) {
		while (*p == ' ' || *p == '\t')
			p++;
		if (!*p)
			break;
		word = p;
		while (*p && *p != ' ' && *p != '\t')
			p++;
		if (*p)
			*p++ = '\0';
		val = strchr(word, '=');
		if (!val) {
			printk("XCF error bad word '%s' (want key=value)\n", word);
			bad = 1;
			continue;
		}
		*val++ = '\0';

		if (!strcmp(word, "mode")) {
			if (!strcmp(val, "fork"))
				opt.mode = MODE_FORK;
			else if (!strcmp(val, "batch"))
				opt.mode = MODE_BATCH;
			else if (!strcmp(val, "idle"))
				opt.mode = MODE_IDLE;
			else {
				printk("XCF error bad value mode=%s\n", val);
				bad = 1;
			}
		} else if (!strcmp(word, "sleep")) {
			if (!strcmp(val, "timer"))
				opt.poll = 0;
			else if (!strcmp(val, "poll"))
				opt.poll = 1;
			else {
				printk("XCF error bad value sleep=%s\n", val);
				bad = 1;
			}
		} else if (!strcmp(word, "count")) {
			bad |= parse_ulong(word, val, &opt.count) != 0;
		} else if (!strcmp(word, "n")) {
			bad |= parse_ulong(word, val, &opt.n) != 0;
		} else if (!strcmp(word, "rounds")) {
			bad |= parse_ulong(word, val, &opt.rounds) != 0;
		} else if (!strcmp(word, "start_ms")) {
			bad |= parse_ulong(word, val, &opt.start_ms) != 0;
		} else if (!strcmp(word, "delay_ms")) {
			bad |= parse_ulong(word, val, &opt.delay_ms) != 0;
		} else if (!strcmp(word, "ticks")) {
			bad |= parse_ulong(word, val, &opt.ticks) != 0;
		} else if (!strcmp(word, "tick_ms")) {
			bad |= parse_ulong(word, val, &opt.tick_ms) != 0;
		} else if (!strcmp(word, "hold")) {
			bad |= parse_ulong(word, val, &v) != 0;
			opt.hold = v != 0;
		} else if (!strcmp(word, "child_exit")) {
			bad |= parse_ulong(word, val, &v) != 0;
			opt.child_exit = v != 0;
		} else {
			printk("XCF error unknown parameter %s=%s\n", word, val);
			bad = 1;
		}
	}
	if (opt.mode == MODE_BATCH && (opt.n < 1 || opt.n > MAX_BATCH)) {
		printk("XCF error n=%lu out of 1..%d\n", opt.n, MAX_BATCH);
		bad = 1;
	}
	return bad ? -1 : 0;
}

static void heartbeat(const char *who, int reread)
{
	struct domid_str me;
	unsigned long k;
	long id;

	me = self_domid(&id);
	for (k = 1; !opt.ticks || k <= opt.ticks; k++) {
		wait_ms(opt.tick_ms);
		if (reread)
			me = self_domid(&id);
		printk("XCF %s domid=%s tick=%lu\n", who, me.s, k);
	}
}

/* A child continues here after fork()/clone() returned in it. */
/* first: I of the fork, or of the batch's first child. */
static void child(const char *parent, const domid_t *batch, unsigned long first)
{
	struct domid_str me;
	unsigned long i = first, j;
	long id;

	if (batch)
		printk("XCF child parent=%s round=%lu resumed\n", parent, first / opt.n + 1);
	else
		printk("XCF child parent=%s i=%lu resumed\n", parent, first);
	me = self_domid(&id);
	if (batch) {
		i = 0;
		for (j = 0; j < opt.n; j++)
			if (id >= 0 && batch[j] == id)
				i = first + j;
	}
	printk("XCF child domid=%s parent=%s i=%lu alive\n", me.s, parent, i);
	heartbeat("child", 0);
	if (opt.child_exit) {
		printk("XCF child domid=%s exit\n", me.s);
		power_off();
	}
}

/* Returns 1 in a child (which has run its course), 0 in the parent. */
static int run_fork(const char *me, unsigned long *ok, unsigned long *failed)
{
	unsigned long i;
	s_time_t t0, t1;
	pid_t pid;

	for (i = 1; i <= opt.count; i++) {
		if (i > 1)
			wait_ms(opt.delay_ms);
		t0 = NOW();
		pid = fork();
		t1 = NOW();
		if (pid == 0) {
			child(me, NULL, i);
			return 1;
		}
		printk("XCF parent domid=%s fork i=%lu rc=%d ms=%s\n", me, i, pid,
		       ms_of(t1 - t0).s);
		if (pid > 0)
			(*ok)++;
		else
			(*failed)++;
	}
	return 0;
}

static int run_batch(const char *me, unsigned long *ok, unsigned long *failed)
{
	static domid_t ids[MAX_BATCH];
	static char list[MAX_BATCH * 6 + 1];
	unsigned long r, j;
	s_time_t t0, t1;
	size_t len;
	int rc;

	for (r = 1; r <= opt.rounds; r++) {
		if (r > 1)
			wait_ms(opt.delay_ms);
		memset(ids, 0, sizeof(ids));
		t0 = NOW();
		rc = clone(opt.n, ids);
		t1 = NOW();
		if (rc == 1) {
			child(me, ids, (r - 1) * opt.n + 1);
			return 1;
		}
		list[0] = '\0';
		len = 0;
		if (rc == 0) {
			for (j = 0; j < opt.n; j++)
				len += snprintf(list + len, sizeof(list) - len, "%s%u",
						j ? "," : "", ids[j]);
			*ok += opt.n;
		} else {
			*failed += opt.n;
		}
		printk("XCF parent batch n=%lu rc=%d ms=%s children=%s\n", opt.n, rc,
		       ms_of(t1 - t0).s, list);
	}
	return 0;
}

static void forker_main(void *unused)
{
	struct domid_str me;
	unsigned long ok = 0, failed = 0;
	long id;
	int in_child;

	(void)unused;
	if (parse_args()) {
		printk("XCF error parameters rejected, cmdline '%s'\n", cmdline);
		return;
	}
	me = self_domid(&id);
	printk("XCF parent domid=%s start mode=%s count=%lu n=%lu rounds=%lu "
	       "start_ms=%lu delay_ms=%lu ticks=%lu tick_ms=%lu sleep=%s hold=%d\n",
	       me.s, mode_names[opt.mode], opt.count, opt.n, opt.rounds,
	       opt.start_ms, opt.delay_ms, opt.ticks, opt.tick_ms,
	       opt.poll ? "poll" : "timer", opt.hold);

	if (opt.mode == MODE_IDLE) {
		heartbeat("idle", 1);
		return;
	}
	wait_ms(opt.start_ms);
	if (opt.mode == MODE_FORK)
		in_child = run_fork(me.s, &ok, &failed);
	else
		in_child = run_batch(me.s, &ok, &failed);
	if (in_child)
		return;
	printk("XCF parent done forks=%lu failed=%lu\n", ok, failed);
	if (!opt.hold) {
		printk("XCF parent domid=%s exit\n", me.s);
		power_off();
	}
	/* hold: the thread ends, the domain stays up on Mini-OS's idle thread. */
}

/* Called by Mini-OS's start_kernel() before its scheduler runs: start a thread. */
int app_main(void *p)
{
	(void)p;
	if (!create_thread("forker", forker_main, NULL))
		printk("XCF error cannot create the forker thread\n");
	return 0;
}
