/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Interface between shim.c and the Rust side of xen_clone_dev. The Rust side
 * declares the xcd_* functions by hand in ffi.rs; keep both in sync.
 */
#ifndef XEN_CLONE_DEV_SHIM_H
#define XEN_CLONE_DEV_SHIM_H

#include <linux/fs.h>
#include <linux/poll.h>
#include <linux/seq_file.h>
#include <linux/types.h>

/* Implemented in Rust (ffi.rs). */
void xcd_rs_drain(void *ctx);
void xcd_rs_orphan(void *ctx);
int xcd_rs_open(struct inode *inode, struct file *file);
int xcd_rs_release(struct inode *inode, struct file *file);
ssize_t xcd_rs_read(struct file *file, char __user *buf, size_t len,
		    loff_t *pos);
__poll_t xcd_rs_poll(struct file *file, poll_table *wait);
long xcd_rs_ioctl(struct file *file, unsigned int cmd, unsigned long arg);
void xcd_rs_show_fdinfo(struct seq_file *m, struct file *file);

/* Implemented in shim.c, called from Rust (ffi.rs). */
int xcd_xen_env(void);
long xcd_clone_op(unsigned int cmd, void *arg);
int xcd_virq_bind(void);
void xcd_virq_unbind(int irq);
void *xcd_ring_alloc(unsigned int pages);
void xcd_ring_free(void *ring, unsigned int pages);
void xcd_virt_rmb(void);
void xcd_virt_wmb(void);
void xcd_virt_mb(void);
bool xcd_capable_sys_admin(void);
void xcd_module_get(void);
void xcd_module_put(void);
int xcd_start(void *ctx);
void *xcd_stop(void);
void *xcd_ctx_get(void);
void xcd_kick_drain(void);
void xcd_schedule_orphan(unsigned int delay_ms);

#endif /* XEN_CLONE_DEV_SHIM_H */
