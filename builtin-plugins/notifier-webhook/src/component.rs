//! The component: `tessera:plugin/notify` over [`crate::payload`].
//!
//! Configuration: `url` (optional when tasks give a notification URL). Secret:
//! `signing-key` (optional). The key is never logged, and log lines and errors name the
//! receiver by scheme and authority only (webhook paths often carry tokens).

use alloc::format;
use alloc::string::String;

use tessera_plugin_sdk::http::{self, Method, Request, Url};
use tessera_plugin_sdk::notifier::{Event, Notifier, PluginError};
use tessera_plugin_sdk::{config, debug};

use crate::payload::{self, SIGNATURE_HEADER, Verdict};

tessera_plugin_sdk::no_std_runtime!();

struct Webhook;

tessera_plugin_sdk::export_notifier!(Webhook);

/// Bytes of an error answer quoted in the error message.
const SNIPPET: usize = 200;

impl Notifier for Webhook {
    fn deliver(event: Event) -> Result<(), PluginError> {
        let configured = config::get("url");
        let url = payload::target(configured.as_deref(), event.notification_url.as_deref())
            .ok_or_else(|| {
                PluginError::invalid_input(
                    "no `url` is configured and the task gave no notification URL",
                )
            })?;
        let origin = Url::parse(url)?.origin();
        let task = &event.task;
        let body = payload::body(&payload::Event {
            task_id: &task.id,
            name: task.name.as_deref(),
            tags: &task.tags,
            from_state: event.from_state.as_deref(),
            to_state: &event.to_state,
            at: &event.at,
            reason: event.reason.as_deref(),
        });
        let mut request = Request::new(Method::Post, url)
            .header("content-type", "application/json")
            .header(
                "user-agent",
                concat!("tessera-notifier-webhook/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(key) = config::secret("signing-key") {
            request = request.header(
                SIGNATURE_HEADER,
                payload::signature(key.as_bytes(), body.as_bytes()),
            );
        }
        let response = request
            .body(body)
            .max_body(SNIPPET)
            .send()
            .map_err(|e| failed(&origin, e))?;
        let status = response.status;
        let answer = |what: &str| {
            let text = payload::snippet(&response.body, SNIPPET);
            if text.is_empty() {
                format!("{origin} answered {status} ({what})")
            } else {
                format!("{origin} answered {status} ({what}): {text}")
            }
        };
        match payload::verdict(status) {
            Verdict::Delivered => {
                debug!(
                    "delivered {} {} to {origin} ({status})",
                    task.id, event.to_state
                );
                Ok(())
            }
            Verdict::Denied => Err(PluginError::denied(answer("refused"))),
            Verdict::Invalid => Err(PluginError::invalid_input(answer("not accepted"))),
            Verdict::Unavailable => Err(PluginError::unavailable(answer("try again later"))),
        }
    }
}

/// A failed request as a plugin error of the same kind, naming the receiver.
fn failed(origin: &str, e: http::Error) -> PluginError {
    let message: String = format!("POST {origin}: {e}");
    match PluginError::from(e) {
        PluginError::Denied(_) => PluginError::denied(message),
        PluginError::InvalidInput(_) => PluginError::invalid_input(message),
        _ => PluginError::unavailable(message),
    }
}
