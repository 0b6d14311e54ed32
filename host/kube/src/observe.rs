//! What a task's Job and pod say, read as plain functions (no I/O): the job's phase, the
//! reason it waits or failed, and each container's result.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use tessera_executor::job::{JobPhase, JobStatus};

use crate::manifest::Slot;

/// Waiting reasons that mean a container cannot start as things are (the kubelet
/// retries, but only a change to the task or the cluster helps).
const STUCK: [&str; 7] = [
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// What the termination message of a wrapped executor says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wrapped {
    Exit(i64),
    /// An earlier executor failed: this one did not run.
    Skipped,
}

/// `tessera stage exec`'s termination message.
pub fn wrapped_message(message: &str) -> Option<Wrapped> {
    let m = message.trim();
    if m == "skipped" {
        return Some(Wrapped::Skipped);
    }
    m.strip_prefix("exit=")?.parse().ok().map(Wrapped::Exit)
}

/// The termination message `tessera stage exec` writes.
pub fn wrapped_exit_message(code: Option<i64>) -> String {
    match code {
        Some(c) => format!("exit={c}"),
        None => "skipped".into(),
    }
}

fn statuses(pod: &Pod) -> Vec<&ContainerStatus> {
    let Some(status) = pod.status.as_ref() else {
        return Vec::new();
    };
    status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
        .collect()
}

/// The status of `name`'s container in the pod.
pub fn container_status<'a>(pod: &'a Pod, name: &str) -> Option<&'a ContainerStatus> {
    statuses(pod).into_iter().find(|s| s.name == name)
}

fn reason_text(reason: Option<&String>, message: Option<&String>) -> Option<String> {
    match (reason, message) {
        (Some(r), Some(m)) if !m.is_empty() => Some(format!("{r}: {m}")),
        (Some(r), _) => Some(r.clone()),
        (None, Some(m)) => Some(m.clone()),
        (None, None) => None,
    }
}

/// Why the Job failed as the job controller says it (deadline, or another reason),
/// unless it failed because a container did (which the containers tell).
fn job_failure(job: &Job) -> Option<(String, bool)> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    let failed = conditions
        .iter()
        .find(|c| c.type_ == "Failed" && c.status == "True")?;
    let reason = failed.reason.clone().unwrap_or_default();
    match reason.as_str() {
        "DeadlineExceeded" => Some((
            reason_text(failed.reason.as_ref(), failed.message.as_ref()).unwrap_or(reason),
            true,
        )),
        // A failed container: its exit code is the result.
        "BackoffLimitExceeded" | "PodFailurePolicy" => None,
        _ => Some((
            reason_text(failed.reason.as_ref(), failed.message.as_ref()).unwrap_or(reason),
            false,
        )),
    }
}

/// The phase of a task's job from the Job and its pod (`None`: not created yet).
pub fn status(job: &Job, pod: Option<&Pod>, slots: &[Slot]) -> JobStatus {
    let started = pod.and_then(first_step_start);
    if let Some((reason, deadline)) = job_failure(job) {
        return JobStatus {
            phase: JobPhase::Failed { reason, deadline },
            started,
        };
    }
    let Some(pod) = pod else {
        let done = job.status.as_ref().and_then(|s| s.completion_time.as_ref());
        let phase = if done.is_some() {
            JobPhase::Ended
        } else {
            JobPhase::Pending { reason: None }
        };
        return JobStatus { phase, started };
    };
    let status = pod.status.clone().unwrap_or_default();
    if status.reason.as_deref() == Some("Evicted") {
        return JobStatus {
            phase: JobPhase::Failed {
                reason: reason_text(status.reason.as_ref(), status.message.as_ref())
                    .unwrap_or_else(|| "Evicted".into()),
                deadline: false,
            },
            started,
        };
    }
    if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
        return JobStatus {
            phase: JobPhase::Ended,
            started,
        };
    }
    for slot in slots {
        let Some(cs) = container_status(pod, &slot.container_name()) else {
            break;
        };
        let state = cs.state.clone().unwrap_or_default();
        if state.terminated.is_some() {
            continue;
        }
        if let Some(w) = &state.waiting {
            let reason = w.reason.clone().unwrap_or_default();
            if STUCK.contains(&reason.as_str()) {
                return JobStatus {
                    phase: JobPhase::Pending {
                        reason: reason_text(w.reason.as_ref(), w.message.as_ref()),
                    },
                    started,
                };
            }
            break;
        }
        if state.running.is_some() {
            let phase = match slot {
                Slot::StageIn => JobPhase::StagingIn,
                Slot::Step(index) => JobPhase::Running { index: *index },
                Slot::StageOut => JobPhase::StagingOut,
            };
            return JobStatus { phase, started };
        }
    }
    // Not running yet: what holds it (e.g. unschedulable).
    let reason = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")
        .and_then(|c| reason_text(c.reason.as_ref(), c.message.as_ref()));
    JobStatus {
        phase: JobPhase::Pending { reason },
        started,
    }
}

fn first_step_start(pod: &Pod) -> Option<String> {
    statuses(pod)
        .into_iter()
        .filter(|s| matches!(Slot::from_container_name(&s.name), Some(Slot::Step(_))))
        .find_map(|s| {
            let state = s.state.as_ref()?;
            state
                .running
                .as_ref()
                .and_then(|r| r.started_at.as_ref())
                .or_else(|| {
                    state
                        .terminated
                        .as_ref()
                        .and_then(|t| t.started_at.as_ref())
                })
                .map(|t| t.0.to_string())
        })
}

/// A container's result: exit code (the wrapper's, when `wrapped`), OOM, start and end.
pub struct Ended {
    pub exit_code: Option<i64>,
    pub oom_killed: bool,
    pub start: Option<String>,
    pub end: Option<String>,
    pub message: Option<String>,
}

pub fn ended(pod: &Pod, slot: Slot, wrapped: bool) -> Option<Ended> {
    let cs = container_status(pod, &slot.container_name())?;
    let t = cs.state.as_ref()?.terminated.as_ref()?;
    let exit_code = match (wrapped, matches!(slot, Slot::Step(_))) {
        (true, true) => match t.message.as_deref().and_then(wrapped_message) {
            Some(Wrapped::Exit(c)) => Some(c),
            Some(Wrapped::Skipped) => None,
            // The wrapper itself did not finish (killed): the container's code.
            None => Some(i64::from(t.exit_code)),
        },
        _ => Some(i64::from(t.exit_code)),
    };
    Some(Ended {
        exit_code,
        oom_killed: t.reason.as_deref() == Some("OOMKilled"),
        start: t.started_at.as_ref().map(|s| s.0.to_string()),
        end: t.finished_at.as_ref().map(|s| s.0.to_string()),
        message: t.message.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    fn job(v: serde_json::Value) -> Job {
        serde_json::from_value(v).unwrap()
    }

    const SLOTS: [Slot; 3] = [Slot::StageIn, Slot::Step(0), Slot::StageOut];

    #[test]
    fn a_running_executor_is_running_and_its_start_is_the_tasks() {
        let p = pod(
            json!({"status": {"phase": "Pending", "initContainerStatuses": [
            {"name": "stage-in", "image": "t", "imageID": "", "ready": false, "restartCount": 0,
             "state": {"terminated": {"exitCode": 0}}},
            {"name": "step-0", "image": "b", "imageID": "", "ready": false, "restartCount": 0,
             "state": {"running": {"startedAt": "2026-12-07T10:00:00Z"}}}]}}),
        );
        let s = status(&job(json!({})), Some(&p), &SLOTS);
        assert_eq!(s.phase, JobPhase::Running { index: 0 });
        assert!(s.started.unwrap().contains("2026-12-07"));
    }

    #[test]
    fn a_missing_image_is_pending_with_the_kubelets_reason() {
        let p = pod(
            json!({"status": {"phase": "Pending", "initContainerStatuses": [
            {"name": "stage-in", "image": "t", "imageID": "", "ready": false, "restartCount": 0,
             "state": {"terminated": {"exitCode": 0}}},
            {"name": "step-0", "image": "nope", "imageID": "", "ready": false, "restartCount": 0,
             "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"nope\""}}}]}}),
        );
        let s = status(&job(json!({})), Some(&p), &SLOTS);
        assert_eq!(
            s.phase,
            JobPhase::Pending {
                reason: Some("ImagePullBackOff: Back-off pulling image \"nope\"".into())
            }
        );
    }

    #[test]
    fn deadline_and_eviction_fail_the_job_and_a_failed_container_ends_it() {
        let deadline = job(json!({"status": {"conditions": [
            {"type": "Failed", "status": "True", "reason": "DeadlineExceeded",
             "message": "Job was active longer than specified deadline"}]}}));
        assert!(matches!(
            status(&deadline, None, &SLOTS).phase,
            JobPhase::Failed { deadline: true, .. }
        ));
        let evicted = pod(json!({"status": {"phase": "Failed", "reason": "Evicted",
            "message": "The node was low on resource: memory."}}));
        assert_eq!(
            status(&job(json!({})), Some(&evicted), &SLOTS).phase,
            JobPhase::Failed {
                reason: "Evicted: The node was low on resource: memory.".into(),
                deadline: false
            }
        );
        let backoff = job(json!({"status": {"conditions": [
            {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}}));
        let failed = pod(json!({"status": {"phase": "Failed"}}));
        assert_eq!(
            status(&backoff, Some(&failed), &SLOTS).phase,
            JobPhase::Ended
        );
    }

    #[test]
    fn unschedulable_is_pending_with_the_schedulers_reason() {
        let p = pod(json!({"status": {"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
             "message": "0/1 nodes are available: 1 Insufficient cpu."}]}}));
        assert_eq!(
            status(&job(json!({})), Some(&p), &SLOTS).phase,
            JobPhase::Pending {
                reason: Some("Unschedulable: 0/1 nodes are available: 1 Insufficient cpu.".into())
            }
        );
    }

    #[test]
    fn wrapped_results_come_from_the_termination_message() {
        let p = pod(
            json!({"status": {"phase": "Succeeded", "initContainerStatuses": [
            {"name": "step-0", "image": "b", "imageID": "", "ready": false, "restartCount": 0,
             "state": {"terminated": {"exitCode": 0, "message": "exit=3"}}}],
            "containerStatuses": [
            {"name": "step-1", "image": "b", "imageID": "", "ready": false, "restartCount": 0,
             "state": {"terminated": {"exitCode": 0, "message": "skipped"}}},
            {"name": "step-2", "image": "b", "imageID": "", "ready": false, "restartCount": 0,
             "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}}),
        );
        assert_eq!(ended(&p, Slot::Step(0), true).unwrap().exit_code, Some(3));
        assert_eq!(ended(&p, Slot::Step(1), true).unwrap().exit_code, None);
        let oom = ended(&p, Slot::Step(2), true).unwrap();
        assert_eq!(oom.exit_code, Some(137));
        assert!(oom.oom_killed);
        assert_eq!(ended(&p, Slot::Step(0), false).unwrap().exit_code, Some(0));
        for code in [Some(0), Some(-1), None] {
            let m = wrapped_exit_message(code);
            assert_eq!(
                wrapped_message(&m),
                Some(code.map_or(Wrapped::Skipped, Wrapped::Exit))
            );
        }
    }
}
