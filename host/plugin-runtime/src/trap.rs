//! What a failed instantiation or call was: a timeout, an out-of-memory, a trap (with
//! where it happened), or a failure to instantiate.

use wasmtime::{Trap, WasmBacktrace};

use crate::error::CallError;
use crate::host::HostState;

/// Turns a wasmtime error from instantiating or calling into a [`CallError`].
pub(crate) fn classify(e: wasmtime::Error, state: &HostState, instantiating: bool) -> CallError {
    let trap = e.downcast_ref::<Trap>().copied();
    if trap == Some(Trap::Interrupt) {
        return CallError::Timeout;
    }
    if state.limiter.hit {
        return CallError::OutOfMemory;
    }
    match trap {
        Some(trap) => {
            // The whole error carries the wasm backtrace (a kilobyte or more): the
            // reason a task or an operator sees is the trap and where it happened; the
            // rest goes to the debug log.
            tracing::debug!(plugin = %state.ctx.name, version = %state.ctx.version, error = %one_line(&e), "plugin trapped");
            CallError::Trap(trap_reason(&e, trap))
        }
        None if instantiating => CallError::Instantiate(one_line(&e)),
        None => CallError::Trap(one_line(&e)),
    }
}

/// "wasm `unreachable` instruction executed in parse_config", or without a name
/// section "… in function 17".
fn trap_reason(e: &wasmtime::Error, trap: Trap) -> String {
    let frame = e
        .downcast_ref::<WasmBacktrace>()
        .and_then(|bt| bt.frames().first());
    let what = trap.to_string();
    let what = what.strip_prefix("wasm trap: ").unwrap_or(&what);
    match frame {
        Some(f) => match f.func_name() {
            Some(name) => format!("{what} in {name}"),
            None => format!("{what} in function {}", f.func_index()),
        },
        None => what.to_string(),
    }
}

/// An error and its causes on one line, whitespace collapsed (backtraces are multi-line).
pub(crate) fn one_line(e: &wasmtime::Error) -> String {
    format!("{e:#}")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}
