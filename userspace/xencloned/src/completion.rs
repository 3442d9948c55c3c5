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

use crate::clone::{Clone, Phase};
use crate::hypervisor::Hypervisor;
use crate::source::CloneSource;
use crate::stats::{CloneRecord, Stats};
use std::time::Instant;

pub fn complete(
    source: &mut dyn CloneSource,
    hv: &mut dyn Hypervisor,
    c: &mut Clone,
    leave_paused: bool,
    stats: &mut Stats,
) {
    let (p, ch, id) = (c.parent(), c.child(), c.entry.id);
    // Time since the last stage: waiting for netback's uevents.
    c.stage_done("devices");
    let completed = match source.complete(id) {
        Ok(()) => true,
        Err(e) => {
            stats.completion_errors += 1;
            tracing::error!(parent = p, child = ch, id, "completion failed: {e}");
            c.fail(format!("completion: {e}"));
            false
        }
    };
    c.stage_done("completion");
    let ok = c.ok();
    if ok && completed && !leave_paused {
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
