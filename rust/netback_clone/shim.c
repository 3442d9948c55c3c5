// SPDX-License-Identifier: GPL-2.0
/*
 * C side of netback_clone: what Rust cannot reach without bindgen (which
 * out-of-tree modules do not have): THIS_MODULE for the handler's owner,
 * fields of struct xenbus_device, xenbus_read() and a Xen hypercall.
 * Mechanics only; every decision is in the Rust code, which declares these
 * functions in ffi.rs (and shim.h).
 */
#include <linux/err.h>
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <xen/xenbus.h>
#include <xen/netback-clone.h>
#include <xen/interface/event_channel.h>
#include <asm/xen/hypercall.h>

#include "shim.h"

static const struct xenvif_clone_handler nbc_handler = {
	.owner = THIS_MODULE,
	.attach = nbc_rs_attach,
	.detach = nbc_rs_detach,
};

int nbc_register(void)
{
	return xenvif_register_clone_handler(&nbc_handler);
}

void nbc_unregister(void)
{
	xenvif_unregister_clone_handler(&nbc_handler);
}

const char *nbc_dev_nodename(const struct xenbus_device *dev)
{
	return dev->nodename;
}

const char *nbc_dev_otherend(const struct xenbus_device *dev)
{
	return dev->otherend;
}

int nbc_dev_otherend_id(const struct xenbus_device *dev)
{
	return dev->otherend_id;
}

/*
 * Read <dir>/<node> into @buf as a NUL-terminated string. Returns its
 * length, -ENOENT if it does not exist, -E2BIG if it does not fit.
 */
int nbc_xs_read(const char *dir, const char *node, char *buf, unsigned int size)
{
	unsigned int len;
	char *val;

	val = xenbus_read(XBT_NIL, dir, node, &len);
	if (IS_ERR(val))
		return PTR_ERR(val);
	if (len >= size) {
		kfree(val);
		return -E2BIG;
	}
	memcpy(buf, val, len);
	buf[len] = '\0';
	kfree(val);
	return len;
}

/*
 * EVTCHNOP_status of port @port of domain @domid: its EVTCHNSTAT_* state
 * and, for unbound and interdomain ports, the peer domain.
 */
int nbc_evtchn_status(unsigned int domid, unsigned int port,
		      unsigned int *status, unsigned int *remote)
{
	struct evtchn_status st = { .dom = domid, .port = port };
	int err;

	err = HYPERVISOR_event_channel_op(EVTCHNOP_status, &st);
	if (err)
		return err;
	*status = st.status;
	if (st.status == EVTCHNSTAT_unbound)
		*remote = st.u.unbound.dom;
	else if (st.status == EVTCHNSTAT_interdomain)
		*remote = st.u.interdomain.dom;
	else
		*remote = DOMID_INVALID;
	return 0;
}

/* Map and unmap one grant of the frontend: used to name a failing grant. */
int nbc_probe_grant(struct xenbus_device *dev, unsigned int ref)
{
	grant_ref_t gref = ref;
	void *addr;
	int err;

	err = xenbus_map_ring_valloc(dev, &gref, 1, &addr);
	if (err)
		return err;
	return xenbus_unmap_ring_vfree(dev, addr);
}
