/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The C functions of netback_clone: implemented in Rust (nbc_rs_*) and in
 * shim.c (nbc_*, declared again by hand in ffi.rs).
 */
#ifndef NETBACK_CLONE_SHIM_H
#define NETBACK_CLONE_SHIM_H

struct xenbus_device;

/* netback_clone_rs.rs (ffi.rs) */
int nbc_rs_attach(struct xenbus_device *dev);
void nbc_rs_detach(struct xenbus_device *dev);

/* shim.c */
int nbc_register(void);
void nbc_unregister(void);
const char *nbc_dev_nodename(const struct xenbus_device *dev);
const char *nbc_dev_otherend(const struct xenbus_device *dev);
int nbc_dev_otherend_id(const struct xenbus_device *dev);
int nbc_xs_read(const char *dir, const char *node, char *buf, unsigned int size);
int nbc_evtchn_status(unsigned int domid, unsigned int port,
		      unsigned int *status, unsigned int *remote);
int nbc_probe_grant(struct xenbus_device *dev, unsigned int ref);

#endif /* NETBACK_CLONE_SHIM_H */
