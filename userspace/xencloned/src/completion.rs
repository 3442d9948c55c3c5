//! Stage 5: **completion** of a clone through the clone source (the
//! hypervisor's clone hypercall then stops waiting for it) and unpause.
//!
//! Policy: every clone is completed, successful or not, so the parent is
//! never left blocked in the hypervisor. A child whose clone failed is
//! completed but NOT unpaused and NOT destroyed: its devices are
//! incomplete, so running it would only produce a guest without
//! network; destroying it from here would bypass the toolstack and leave
//! libxl's state behind. It stays paused with `hotplug-error` set on the
//! failed vif, logged with its domid, for `xl destroy <child>` (or a
//! retry) by the operator.
//!
//! Late success wins: when the only failures were vifs (a timeout,
//! netback's error), the daemon keeps the clone for `LATE_KEEP` after
//! completion. A vif of it that comes up later (its `online` uevent, or
//! found in sysfs) is connected and its `hotplug-error` removed; once all
//! are, the child is unpaused (unless `-p`): nothing lost, nothing hung.
//! Only a child whose vifs never come up stays paused.
//!
//! A completion the hypervisor does not accept yet (`EAGAIN` from
//! `/dev/xen/clone`: Nephele's Xen answered `-EINVAL`, the id is not in its
//! completion ring yet, which it enters once the parent's clone hypercall
//! makes room) is retried by the daemon ([`Outcome::Retry`], backoff up to
//! [`RETRY_MAX`]); the clone stays in flight meanwhile. One the hypervisor
//! refuses for good (`ECANCELED`: the module released the entry after its
//! `reject_grace`, dmesg names it) is a failed clone: completed as far as
//! the daemon can, child left paused, the reason logged.
//!
//! An entry flagged `XEN_CLONE_ENTRY_AUTO_COMPLETED` was completed by the
//! module's orphan policy while no daemon was reading: the parent has
//! returned already. It is not completed again; its child is set up like
//! any other and unpaused (unless `-p`), as it would have been had the
//! daemon been there.

use crate::clone::{Clone, Phase};
use crate::hypervisor::Hypervisor;
use crate::source::CloneSource;
use crate::source::SourceError;
use crate::stats::{CloneRecord, Stats};
use std::time::{Duration, Instant};
use xen_clone_abi::XEN_CLONE_ENTRY_AUTO_COMPLETED;

/// First delay before a completion the hypervisor did not accept yet is
/// tried again; it doubles up to [`RETRY_MAX`].
pub const RETRY_FIRST: Duration = Duration::from_millis(20);
/// Longest delay between two tries of a completion.
pub const RETRY_MAX: Duration = Duration::from_secs(1);

/// What [`complete`] did with the clone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Finished: completed (or failed for good) and unpaused or left paused.
    Done,
    /// The hypervisor does not accept the completion yet: call again later
    /// (the clone is unchanged apart from its stage timings).
    Retry,
}

fn errno_of(e: &SourceError) -> Option<i32> {
    match e {
        SourceError::Complete { source, .. } => source.raw_os_error(),
        _ => None,
    }
}

/// Completes clone `c` (its parent's hypercall stops waiting for it).
/// `retrying`: this is a repeated try after [`Outcome::Retry`]. After
/// [`Outcome::Done`] the caller calls [`finish`] (at once, or once the
/// other clones it is setting up are completed: a parent waiting for a
/// batch of children needs their completions, not their unpauses).
pub fn complete(
    source: &mut dyn CloneSource,
    c: &mut Clone,
    stats: &mut Stats,
    retrying: bool,
) -> Outcome {
    let (p, ch, id) = (c.parent(), c.child(), c.entry.id);
    if !retrying {
        // Time since the last stage: waiting for netback's uevents.
        c.stage_done("devices");
    }
    let completed = if c.entry.flags & XEN_CLONE_ENTRY_AUTO_COMPLETED != 0 {
        stats.auto_completed += 1;
        tracing::warn!(
            parent = p,
            child = ch,
            id,
            "clone was completed by xen_clone_dev's orphan policy while no daemon was reading: its parent has returned; child {ch} set up now and not completed again"
        );
        true
    } else {
        match source.complete(id) {
            Ok(()) => true,
            Err(e) if errno_of(&e) == Some(libc::EAGAIN) => {
                stats.completion_retries += 1;
                if !retrying {
                    tracing::warn!(
                        parent = p,
                        child = ch,
                        id,
                        "the hypervisor does not accept the completion yet (id not in its completion ring: {e}); retrying, child {ch} stays paused meanwhile"
                    );
                }
                return Outcome::Retry;
            }
            Err(e) if errno_of(&e) == Some(libc::ECANCELED) => {
                stats.completion_errors += 1;
                stats.completions_rejected += 1;
                tracing::error!(
                    parent = p,
                    child = ch,
                    id,
                    "the hypervisor refused the completion for good and xen_clone_dev released it (see dmesg): child {ch} stays paused (xl unpause {ch} or xl destroy {ch})"
                );
                c.fail(format!(
                    "completion refused by the hypervisor (released by xen_clone_dev): {e}"
                ));
                false
            }
            Err(e) => {
                stats.completion_errors += 1;
                tracing::error!(parent = p, child = ch, id, "completion failed: {e}");
                c.fail(format!("completion: {e}"));
                false
            }
        }
    };
    c.stage_done("completion");
    c.completed = completed;
    Outcome::Done
}

/// After [`complete`]: unpauses the child of a successful clone (unless
/// `leave_paused`), logs and records the clone.
pub fn finish(hv: &mut dyn Hypervisor, c: &mut Clone, leave_paused: bool, stats: &mut Stats) {
    let (p, ch, id) = (c.parent(), c.child(), c.entry.id);
    if c.ok() && c.completed && !leave_paused {
        match hv.unpause(ch) {
            Ok(()) => c.stage_done("unpause"),
            Err(e) => {
                stats.unpause_errors += 1;
                tracing::error!(parent = p, child = ch, id, "unpause failed: {e}");
                c.fail(format!("unpause: {e}"));
            }
        }
    }
    c.phase = Phase::Completed;
    let latency = Instant::now() - c.started;
    if c.ok() {
        tracing::info!(
            parent = p,
            child = ch,
            id,
            msec = latency.as_secs_f64() * 1000.0,
            "clone completed"
        );
    } else {
        tracing::error!(
            parent = p,
            child = ch,
            id,
            msec = latency.as_secs_f64() * 1000.0,
            error = c.error.as_deref().unwrap_or("device failure"),
            "clone FAILED: completed so the parent continues; child {ch} left paused (xl destroy {ch})"
        );
    }
    stats.record(CloneRecord {
        id,
        parent: p,
        child: ch,
        ok: c.ok(),
        error: c.error.clone().or_else(|| {
            c.vifs.iter().find_map(|v| match &v.state {
                crate::clone::VifState::Failed(why) => Some(why.clone()),
                _ => None,
            })
        }),
        latency,
        stages: c.stages.clone(),
    });
}
