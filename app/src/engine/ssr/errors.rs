//! The engine's failures in words an operator can act on (no socket, permission denied, refused).

use super::*;

pub(super) fn call_error(endpoint: &str, what: &str, e: &bollard::errors::Error) -> EngineError {
    EngineError::Call {
        endpoint: endpoint.to_string(),
        what: what.to_string(),
        reason: describe(e),
    }
}

/// The operator's sentence for a bollard error: the io cause when there is one, else the engine's words.
pub(super) fn describe(e: &bollard::errors::Error) -> String {
    use bollard::errors::Error as B;
    use std::io::ErrorKind;
    if let Some(io) = io_cause(e) {
        return match io.kind() {
            ErrorKind::NotFound => "the socket does not exist (is dockerd running?)".into(),
            ErrorKind::PermissionDenied => {
                "permission denied (the console's user needs access to the socket: root or the docker group)"
                    .into()
            }
            ErrorKind::ConnectionRefused => "connection refused (no engine listens there)".into(),
            _ => io.to_string(),
        };
    }
    match e {
        B::SocketNotFoundError(_) => "the socket does not exist (is dockerd running?)".into(),
        B::DockerResponseServerError {
            status_code,
            message,
        } => {
            format!("the engine answered HTTP {status_code}: {message}")
        }
        B::RequestTimeoutError => "no answer in time".into(),
        other => other.to_string(),
    }
}

/// The io error behind a bollard error. `IOError` is `#[error(transparent)]`, so its `source()` skips
/// the io error itself: look at it first, then walk the chain (hyper wraps connection errors deeper).
pub(super) fn io_cause(e: &bollard::errors::Error) -> Option<&std::io::Error> {
    if let bollard::errors::Error::IOError { err } = e {
        return Some(err);
    }
    let mut cause = std::error::Error::source(e);
    while let Some(err) = cause {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        cause = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_causes_are_worded_for_the_operator() {
        use std::io::{Error, ErrorKind};
        // A socket the console's user may not open (the tests run as root, for whom none is forbidden,
        // so the cause is built here the way bollard wraps it).
        let forbidden = bollard::errors::Error::from(Error::from(ErrorKind::PermissionDenied));
        assert_eq!(
            describe(&forbidden),
            "permission denied (the console's user needs access to the socket: root or the docker group)"
        );
        let refused = bollard::errors::Error::from(Error::from(ErrorKind::ConnectionRefused));
        assert_eq!(
            describe(&refused),
            "connection refused (no engine listens there)"
        );
        let answered = bollard::errors::Error::DockerResponseServerError {
            status_code: 403,
            message: "authorization denied by plugin".into(),
        };
        assert_eq!(
            describe(&answered),
            "the engine answered HTTP 403: authorization denied by plugin"
        );
    }
}
