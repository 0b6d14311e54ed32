//! The component: `tessera:plugin/filing` over HTTP, with [`crate::logic`].
//!
//! Configuration: `chunk-bytes` (the step of each host-side copy, default 1 MiB) and
//! `max-redirects` (default 5). Log lines and errors name servers by scheme and authority
//! only.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use tessera_plugin_sdk::filer::{FileKind, Filer, PluginError, StagedFile, workspace};
use tessera_plugin_sdk::http::{self, Method, Request};
use tessera_plugin_sdk::streams::CopyError;
use tessera_plugin_sdk::{config, debug, info};

use crate::logic::{self, DEFAULT_CHUNK, DEFAULT_MAX_REDIRECTS, SNIPPET, Verdict};

tessera_plugin_sdk::no_std_runtime!();

struct HttpFiler;

tessera_plugin_sdk::export_filer!(HttpFiler);

const USER_AGENT: &str = concat!("tessera-filer-http/", env!("CARGO_PKG_VERSION"));

fn chunk() -> Result<u64, PluginError> {
    Ok(config::parse_or("chunk-bytes", DEFAULT_CHUNK)?.max(1))
}

impl Filer for HttpFiler {
    fn stage_in(url: String, path: String, kind: FileKind) -> Result<Vec<StagedFile>, PluginError> {
        let origin = logic::origin(&url);
        if kind == FileKind::Directory {
            return Err(PluginError::invalid_input(format!(
                "{origin}: plain HTTP has no directory listing, so a DIRECTORY cannot be \
                 staged in from it (stage its files one by one, or use another filer)"
            )));
        }
        let chunk = chunk()?;
        let max_redirects: u32 = config::parse_or("max-redirects", DEFAULT_MAX_REDIRECTS)?;
        let mut current = url.clone();
        let mut hops = 0u32;
        let response = loop {
            let origin = logic::origin(&current);
            let response = Request::new(Method::Get, current.as_str())
                .header("user-agent", USER_AGENT)
                .send_streaming()
                .map_err(|e| failed("GET", origin, e))?;
            match logic::verdict(response.status) {
                Verdict::Success => break response,
                Verdict::Redirect if hops < max_redirects => {
                    let next = response
                        .header("location")
                        .and_then(|l| logic::resolve_location(&current, l))
                        .ok_or_else(|| {
                            PluginError::invalid_input(format!(
                                "GET {origin} answered {} without a usable http(s) location",
                                response.status
                            ))
                        })?;
                    debug!(
                        "GET {origin}: {} to {}",
                        response.status,
                        logic::origin(&next)
                    );
                    drop(response);
                    current = next;
                    hops += 1;
                }
                verdict => return Err(refused("GET", origin, &response, verdict)),
            }
        };
        let file = workspace::open_write(&path)?;
        let size = response
            .copy_to(&file, chunk)
            .map_err(|e| copy_failed("GET", logic::origin(&current), &path, e))?;
        if let Some(expected) = response.content_length()
            && expected != size
        {
            return Err(PluginError::unavailable(format!(
                "GET {}: the body ended after {size} of {expected} bytes",
                logic::origin(&current)
            )));
        }
        info!("staged in {origin} to {path} ({size} bytes)");
        Ok(vec![StagedFile { url, path, size }])
    }

    fn stage_out(
        path: String,
        url: String,
        kind: FileKind,
    ) -> Result<Vec<StagedFile>, PluginError> {
        let chunk = chunk()?;
        if !logic::is_http(&url) {
            return Err(PluginError::invalid_input(format!(
                "{}: not an http:// or https:// URL",
                logic::origin(&url)
            )));
        }
        let entries = workspace::walk(&path)?;
        let is_file = matches!(entries.as_slice(), [one] if one.relative_path.is_empty());
        let staged = match kind {
            FileKind::File => {
                let [one] = entries.as_slice() else {
                    return Err(not_a_file(&path));
                };
                if !is_file {
                    return Err(not_a_file(&path));
                }
                put(&path, &url, one.size, chunk)?;
                vec![StagedFile {
                    url: url.clone(),
                    path: path.clone(),
                    size: one.size,
                }]
            }
            FileKind::Directory => {
                if is_file {
                    return Err(PluginError::invalid_input(format!(
                        "`{path}` is a file, not a directory"
                    )));
                }
                let mut staged = Vec::with_capacity(entries.len());
                for entry in entries {
                    let file_url = logic::join_url(&url, &entry.relative_path);
                    let file_path = logic::join_path(&path, &entry.relative_path);
                    put(&file_path, &file_url, entry.size, chunk)?;
                    staged.push(StagedFile {
                        url: file_url,
                        path: file_path,
                        size: entry.size,
                    });
                }
                staged
            }
        };
        let bytes: u64 = staged.iter().map(|s| s.size).sum();
        info!(
            "staged out {path} to {} ({} files, {bytes} bytes)",
            logic::origin(&url),
            staged.len()
        );
        Ok(staged)
    }
}

fn not_a_file(path: &str) -> PluginError {
    PluginError::invalid_input(format!("`{path}` is a directory, not a file"))
}

/// PUTs the workspace file at `path` (`size` bytes) to `url`, streamed.
fn put(path: &str, url: &str, size: u64, chunk: u64) -> Result<(), PluginError> {
    let origin = logic::origin(url);
    let file = workspace::open_read(path)?;
    let response = Request::new(Method::Put, url)
        .header("user-agent", USER_AGENT)
        .header("content-type", "application/octet-stream")
        .max_body(SNIPPET)
        .send_from(&file, size, chunk)
        .map_err(|e| failed("PUT", origin, e))?;
    match logic::verdict(response.status) {
        Verdict::Success => {
            debug!("PUT {origin}: {} ({size} bytes)", response.status);
            Ok(())
        }
        verdict => Err(error_of(
            verdict,
            logic::answer(
                "PUT",
                origin,
                response.status,
                meaning(verdict),
                &response.body,
            ),
        )),
    }
}

fn meaning(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Success => "success",
        Verdict::Redirect => "a redirect",
        Verdict::NotFound => "not found",
        Verdict::Denied => "refused",
        Verdict::Unavailable => "try again later",
        Verdict::Invalid => "not accepted",
    }
}

fn error_of(verdict: Verdict, message: String) -> PluginError {
    match verdict {
        Verdict::NotFound => PluginError::not_found(message),
        Verdict::Denied => PluginError::denied(message),
        Verdict::Unavailable => PluginError::unavailable(message),
        Verdict::Success | Verdict::Redirect | Verdict::Invalid => {
            PluginError::invalid_input(message)
        }
    }
}

/// An answer that is not a success, with the start of its body.
fn refused(
    method: &str,
    origin: &str,
    response: &http::StreamingResponse,
    verdict: Verdict,
) -> PluginError {
    let body = response
        .read_to_end(SNIPPET)
        .map(|(b, _)| b)
        .unwrap_or_default();
    error_of(
        verdict,
        logic::answer(method, origin, response.status, meaning(verdict), &body),
    )
}

/// A failed request as a plugin error of the same kind, naming the server.
fn failed(method: &str, origin: &str, e: http::Error) -> PluginError {
    let message = format!("{method} {origin}: {e}");
    match PluginError::from(e) {
        PluginError::Denied(_) => PluginError::denied(message),
        PluginError::InvalidInput(_) => PluginError::invalid_input(message),
        _ => PluginError::unavailable(message),
    }
}

/// A body that could not be copied into the workspace.
fn copy_failed(method: &str, origin: &str, path: &str, e: CopyError) -> PluginError {
    match e {
        CopyError::Write(m) => PluginError::other(format!("writing `{path}`: {m}")),
        e => PluginError::unavailable(format!("{method} {origin}: {e}")),
    }
}
