//! The one error type of this crate, and the mapping from bollard's errors onto it.

/// Everything that can go wrong talking to the Docker engine.
///
/// The variants are chosen by what a caller does about them: an unreachable engine is a
/// system problem (retry later), a failed pull or a missing command is the task's fault
/// (report it to the user), `NotFound` / `Conflict` are the usual HTTP outcomes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DockerError {
    /// The engine could not be reached at all: socket missing, connection refused, the
    /// connection dropped, or the engine did not answer in time.
    #[error("Docker engine unreachable: {0}")]
    Unreachable(String),
    /// The image is not present locally and pulling it failed; `reason` is the daemon's
    /// (or the registry's, as relayed by the daemon) message.
    #[error("cannot pull image {image}: {reason}")]
    ImagePull { image: String, reason: String },
    /// The container could not be started because its executable does not exist
    /// (OCI runtime "executable file not found" / "no such file or directory"). Carries
    /// the daemon's message.
    #[error("command not found: {0}")]
    CommandNotFound(String),
    /// No such container (or, for `create`, no such image or network).
    #[error("no such container or image")]
    NotFound,
    /// The name is already in use (or the container is in a state that forbids the
    /// operation).
    #[error("conflict: name already in use or container busy")]
    Conflict,
    /// Anything else, with a description.
    #[error("{0}")]
    Other(String),
}

impl DockerError {
    /// True for [`DockerError::Unreachable`].
    pub fn is_unreachable(&self) -> bool {
        matches!(self, DockerError::Unreachable(_))
    }

    /// True for [`DockerError::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, DockerError::NotFound)
    }
}

pub(crate) use tessera_core::error::chain;

/// The daemon's own message where there is one, else a description of the error.
pub(crate) fn message(err: &bollard::errors::Error) -> String {
    use bollard::errors::Error as B;
    match err {
        B::DockerResponseServerError { message, .. } => message.clone(),
        B::DockerStreamError { error } => error.clone(),
        B::DockerContainerWaitError { error, .. } => error.clone(),
        other => chain(other),
    }
}

/// Maps a bollard error onto [`DockerError`] by kind: transport failures are
/// `Unreachable`, HTTP 404/409 are `NotFound`/`Conflict`, the rest `Other`.
pub(crate) fn map(err: bollard::errors::Error) -> DockerError {
    use bollard::errors::Error as B;
    match err {
        B::DockerResponseServerError {
            status_code: status @ (404 | 409),
            message,
        } => {
            tracing::debug!(status, "Docker: {message}");
            if status == 404 {
                DockerError::NotFound
            } else {
                DockerError::Conflict
            }
        }
        B::DockerResponseServerError {
            status_code,
            message,
        } => DockerError::Other(format!("Docker answered {status_code}: {message}")),
        B::SocketNotFoundError(path) => {
            DockerError::Unreachable(format!("socket {path} does not exist"))
        }
        B::RequestTimeoutError => {
            DockerError::Unreachable("the engine did not answer in time".to_owned())
        }
        ref e @ (B::HyperLegacyError { .. } | B::HyperResponseError { .. } | B::IOError { .. }) => {
            DockerError::Unreachable(chain(e))
        }
        other => DockerError::Other(chain(&other)),
    }
}

/// True when a start error says the executable does not exist.
///
/// Docker 20.10 + runc 1.1 answer `400` with e.g.
/// `... unable to start container process: exec: "nope": executable file not found in $PATH: unknown`
/// or, for an absolute path, `exec: "/nope": stat /nope: no such file or directory`.
pub(crate) fn is_command_not_found(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("executable file not found")
        || (m.contains("no such file or directory")
            && (m.contains("exec: \"") || m.contains("exec /")))
}

/// Maps an error of the container start call, recognising a missing executable.
pub(crate) fn map_start(err: bollard::errors::Error) -> DockerError {
    if let bollard::errors::Error::DockerResponseServerError { message, .. } = &err
        && is_command_not_found(message)
    {
        return DockerError::CommandNotFound(message.clone());
    }
    map(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_missing_executables() {
        assert!(is_command_not_found(
            "failed to create shim task: OCI runtime create failed: runc create failed: unable to \
             start container process: exec: \"nope\": executable file not found in $PATH: unknown"
        ));
        assert!(is_command_not_found(
            "OCI runtime create failed: container_linux.go:380: starting container process caused: \
             exec: \"/nope\": stat /nope: no such file or directory: unknown"
        ));
        assert!(is_command_not_found(
            "exec /script.sh: no such file or directory"
        ));
        assert!(!is_command_not_found(
            "error mounting \"/x\" to rootfs at \"/y\": mkdir /y: no such file or directory"
        ));
        assert!(!is_command_not_found("permission denied"));
    }

    #[test]
    fn maps_status_codes() {
        use bollard::errors::Error as B;
        let e = |status_code: u16| B::DockerResponseServerError {
            status_code,
            message: "msg".into(),
        };
        assert_eq!(map(e(404)), DockerError::NotFound);
        assert_eq!(map(e(409)), DockerError::Conflict);
        assert!(
            matches!(map(e(500)), DockerError::Other(m) if m.contains("500") && m.contains("msg"))
        );
        assert!(map(B::SocketNotFoundError("/nope".into())).is_unreachable());
        assert!(map(B::RequestTimeoutError).is_unreachable());
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(map(B::IOError { err: io }).is_unreachable());
    }

    #[test]
    fn start_errors_become_command_not_found() {
        let err = bollard::errors::Error::DockerResponseServerError {
            status_code: 400,
            message: "exec: \"nope\": executable file not found in $PATH".into(),
        };
        assert!(matches!(map_start(err), DockerError::CommandNotFound(m) if m.contains("nope")));
    }
}
