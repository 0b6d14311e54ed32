//! The registry as the runner's router: each call goes to the router bound for the
//! task's group, or the default one (scope `""`), on a warm instance kept per group.

use tessera_core::routing::{self, Decision, RouteError, RouteRequest, Router};
use tessera_plugin_runtime::CallError;

use crate::Registry;

impl Router for Registry {
    fn route(&self, group: &str, request: &RouteRequest) -> Result<Vec<Decision>, RouteError> {
        let routers = self.routers();
        let slot = routers.get(group).or_else(|| routers.get("")).ok_or_else(|| RouteError {
            router: String::new(),
            message: "no router plugin is active; activate one with `tessera plugin activate NAME VERSION`".into(),
        })?;
        let active = match slot {
            Ok(a) => a,
            Err((b, why)) => {
                return Err(RouteError {
                    router: format!("{}@{}", b.plugin, b.version),
                    message: why.clone(),
                });
            }
        };
        let label = format!("{}@{}", active.binding.plugin, active.binding.version);
        // Take this group's warm instance if it belongs to this activation (a call in
        // flight elsewhere keeps its own; the one left behind is rebuilt).
        let taken = self
            .0
            .warm
            .lock()
            .ok()
            .and_then(|mut w| w.remove(group))
            .filter(|(g, _)| *g == active.generation);
        let mut warm = match taken {
            Some((_, w)) => w,
            None => active.plugin.warm(),
        };
        let answer = warm.route(&to_plugin(request));
        if let Ok(mut w) = self.0.warm.lock() {
            // Keep it unless a newer activation came meanwhile.
            let now = self.routers();
            let current = now
                .get(group)
                .or_else(|| now.get(""))
                .and_then(|s| s.as_ref().ok().map(|a| a.generation));
            if current == Some(active.generation) {
                w.insert(group.to_string(), (active.generation, warm));
            }
        }
        match answer {
            Ok(decisions) => Ok(decisions.into_iter().map(from_plugin).collect()),
            Err(e) => Err(RouteError {
                router: label,
                message: call_error_text(&e),
            }),
        }
    }
}

pub(crate) fn call_error_text(e: &CallError) -> String {
    e.to_string()
}

pub(crate) fn to_plugin(r: &RouteRequest) -> tessera_plugin_runtime::RouteRequest {
    tessera_plugin_runtime::RouteRequest {
        labels: r
            .labels
            .iter()
            .map(|l| match l {
                routing::Label::Tag(k, v) => {
                    tessera_plugin_runtime::Label::Tag((k.clone(), v.clone()))
                }
                routing::Label::Group(g) => tessera_plugin_runtime::Label::Group(g.clone()),
            })
            .collect(),
        tasks: r
            .tasks
            .iter()
            .map(|t| tessera_plugin_runtime::RouteTask {
                needs: t.needs,
                group: t.group,
                priority: t.priority,
                cpu_cores: t.cpu_cores,
                ram_bytes: t.ram_bytes,
                queued_at_ms: t.queued_at_ms,
            })
            .collect(),
        targets: r
            .targets
            .iter()
            .map(|t| tessera_plugin_runtime::RouteTarget {
                holds: t.holds,
                free_slots: t.free_slots,
                cpu_cores_free: t.cpu_cores_free,
                ram_bytes_free: t.ram_bytes_free,
            })
            .collect(),
    }
}

pub(crate) fn from_plugin(d: tessera_plugin_runtime::Decision) -> Decision {
    match d {
        tessera_plugin_runtime::Decision::Assign(i) => Decision::Assign(i),
        tessera_plugin_runtime::Decision::Defer(why) => Decision::Defer(why),
    }
}
