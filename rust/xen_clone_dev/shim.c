// SPDX-License-Identifier: GPL-2.0
/*
 * C shim of xen_clone_dev.
 *
 * The few kernel and Xen facilities the Rust side has no abstraction for:
 * hypercall 43 (__HYPERVISOR_clone_op), the VIRQ_CLONED binding, the ring
 * pages, virt_*() barriers, the misc device with its poll-capable fops and
 * two work items with a synchronous shutdown. Every function here is
 * declared by hand in ffi.rs, the only Rust module that calls it.
 *
 * The device is single-instance (the hypervisor's clone ring is global), so
 * the state here is static. xcd_ctx is an opaque pointer owned by the Rust
 * side (an Arc<Device>); it is set by xcd_start() and handed back by
 * xcd_stop(), after which no work item runs and no file can be opened.
 */

#include <linux/capability.h>
#include <linux/compiler.h>
#include <linux/fs.h>
#include <linux/gfp.h>
#include <linux/interrupt.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/poll.h>
#include <linux/workqueue.h>
#include <asm/barrier.h>

#include <xen/xen.h>
#ifdef CONFIG_XEN
#include <xen/events.h>
#include <xen/interface/event_channel.h>
#include <xen/xen-ops.h>
#include <asm/xen/hypercall.h>
#endif

/* Nephele's hypervisor ABI; not in Linux headers. */
#define __HYPERVISOR_clone_op	43
#define XCD_VIRQ_CLONED		14

/* Environment, see enum XenEnv in ffi.rs. */
#define XCD_ENV_DOM0		0
#define XCD_ENV_NOT_XEN		1
#define XCD_ENV_NOT_PV		2
#define XCD_ENV_NOT_DOM0	3

#include "shim.h"

static void *xcd_ctx;

int xcd_xen_env(void)
{
	if (!xen_domain())
		return XCD_ENV_NOT_XEN;
	if (!xen_pv_domain())
		return XCD_ENV_NOT_PV;
	if (!xen_initial_domain())
		return XCD_ENV_NOT_DOM0;
	return XCD_ENV_DOM0;
}

/* Returns the hypervisor's answer: 0 or a negative errno. */
long xcd_clone_op(unsigned int cmd, void *arg)
{
#ifdef CONFIG_XEN_PV
	if (!xen_pv_domain())
		return -ENODEV;
	return _hypercall2(long, clone_op, cmd, arg);
#else
	return -ENODEV;
#endif
}

static void xcd_drain_fn(struct work_struct *work);
static void xcd_orphan_fn(struct work_struct *work);
static DECLARE_DELAYED_WORK(xcd_drain_work, xcd_drain_fn);
static DECLARE_DELAYED_WORK(xcd_orphan_work, xcd_orphan_fn);

static void xcd_drain_fn(struct work_struct *work)
{
	void *ctx = READ_ONCE(xcd_ctx);

	if (ctx)
		xcd_rs_drain(ctx);
}

static void xcd_orphan_fn(struct work_struct *work)
{
	void *ctx = READ_ONCE(xcd_ctx);

	if (ctx)
		xcd_rs_orphan(ctx);
}

/* Schedules a drain of the ring; callable from any context. */
void xcd_kick_drain(void)
{
	mod_delayed_work(system_dfl_wq, &xcd_drain_work, 0);
}

/* (Re)arms the orphan check to run in @delay_ms milliseconds. */
void xcd_schedule_orphan(unsigned int delay_ms)
{
	mod_delayed_work(system_dfl_wq, &xcd_orphan_work,
			 msecs_to_jiffies(delay_ms));
}

#ifdef CONFIG_XEN
/* Hard IRQ: only wake the consumer, which drains in process context. */
static irqreturn_t xcd_virq_handler(int irq, void *dev_id)
{
	xcd_kick_drain();
	return IRQ_HANDLED;
}
#endif

#ifdef CONFIG_XEN
/*
 * Whether VIRQ_CLONED is free in this domain: -EEXIST if anyone (e.g. a
 * process through /dev/xen/evtchn, like Nephele's xencloned) has bound it.
 * bind_virq_to_irq() alone cannot tell: on -EEXIST it looks for the bound
 * port, and if that is on vCPU 0 it silently takes over the other process's
 * event channel (and closes it at unbind); otherwise it fails with -EEXIST.
 * So bind it in Xen first, directly, and close that port again.
 */
static int xcd_virq_probe(void)
{
	struct evtchn_bind_virq bind = {
		.virq = XCD_VIRQ_CLONED,
		.vcpu = xen_vcpu_nr(0),
	};
	struct evtchn_close close;
	int ret;

	ret = HYPERVISOR_event_channel_op(EVTCHNOP_bind_virq, &bind);
	if (ret)
		return ret;
	close.port = bind.port;
	/*
	 * If this fails the port stays bound on vCPU 0, and
	 * bind_virq_to_irq() adopts it: nobody else owns it.
	 */
	HYPERVISOR_event_channel_op(EVTCHNOP_close, &close);
	return 0;
}
#endif

/*
 * Binds VIRQ_CLONED as a global VIRQ on CPU 0; returns the IRQ or -errno,
 * -EEXIST if another process holds it.
 */
int xcd_virq_bind(void)
{
#ifdef CONFIG_XEN
	int ret = xcd_virq_probe();

	if (ret)
		return ret;
	return bind_virq_to_irqhandler(XCD_VIRQ_CLONED, 0, xcd_virq_handler,
				       0, "xen-clone", &xcd_drain_work);
#else
	return -ENODEV;
#endif
}

void xcd_virq_unbind(int irq)
{
#ifdef CONFIG_XEN
	unbind_from_irqhandler(irq, &xcd_drain_work);
#endif
}

/*
 * Ring pages: zeroed, physically contiguous, in the direct map (4 KiB PTEs
 * on PV), so ring_vaddr is a plain kernel address the hypervisor can walk.
 */
void *xcd_ring_alloc(unsigned int pages)
{
	return alloc_pages_exact((size_t)pages * PAGE_SIZE,
				 GFP_KERNEL | __GFP_ZERO);
}

void xcd_ring_free(void *ring, unsigned int pages)
{
	free_pages_exact(ring, (size_t)pages * PAGE_SIZE);
}

/* Barriers against the hypervisor (correct on UP kernels too). */
void xcd_virt_rmb(void)
{
	/* Orders the read of prod_idx before the reads of the entries. */
	virt_rmb();
}

void xcd_virt_wmb(void)
{
	/* Producer: orders the entry stores before the store of prod_idx. */
	virt_wmb();
}

void xcd_virt_mb(void)
{
	/* Orders the entry copies (loads) before the store of cons_idx. */
	virt_mb();
}

bool xcd_capable_sys_admin(void)
{
	return capable(CAP_SYS_ADMIN);
}

/* Held while clones are pending, so that rmmod fails with EBUSY. */
void xcd_module_get(void)
{
	__module_get(THIS_MODULE);
}

void xcd_module_put(void)
{
	module_put(THIS_MODULE);
}

static const struct file_operations xcd_fops = {
	.owner = THIS_MODULE,
	.open = xcd_rs_open,
	.release = xcd_rs_release,
	.read = xcd_rs_read,
	.poll = xcd_rs_poll,
	.unlocked_ioctl = xcd_rs_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.show_fdinfo = xcd_rs_show_fdinfo,
	.llseek = noop_llseek,
};

static struct miscdevice xcd_miscdev = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "xen/clone",
	.fops = &xcd_fops,
	.mode = 0600,
};

/* Publishes @ctx to the work items and the fops, then registers the device. */
int xcd_start(void *ctx)
{
	int ret;

	WRITE_ONCE(xcd_ctx, ctx);
	ret = misc_register(&xcd_miscdev);
	if (ret) {
		disable_delayed_work_sync(&xcd_drain_work);
		disable_delayed_work_sync(&xcd_orphan_work);
		WRITE_ONCE(xcd_ctx, NULL);
	}
	return ret;
}

/*
 * Undoes xcd_start(): after this no open can start (misc_deregister()
 * serialises with misc_open()), no work item runs or can be queued again.
 * Returns the context given to xcd_start().
 */
void *xcd_stop(void)
{
	void *ctx;

	misc_deregister(&xcd_miscdev);
	disable_delayed_work_sync(&xcd_drain_work);
	disable_delayed_work_sync(&xcd_orphan_work);
	ctx = READ_ONCE(xcd_ctx);
	WRITE_ONCE(xcd_ctx, NULL);
	return ctx;
}

/* The context, valid from xcd_start() until xcd_stop(); for fops->open. */
void *xcd_ctx_get(void)
{
	return READ_ONCE(xcd_ctx);
}
