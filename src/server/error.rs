//! The server's one error type and its one table from error to HTTP status.
//!
//! Every error a client can see is an [`ApiError`]; its `Display` is the
//! sentence sent as `{"error": "<message>"}`. Handlers return it, the body
//! extractor returns it, and the fallback middleware ([`super::middleware`])
//! turns actix's own bare error responses (404, 405, ...) into the same body.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpResponse, ResponseError};

use std::time::Duration;

use crate::engine::{self, Fault};

use super::errlog;

/// Which clock a request body ran out of ([`super::intake`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// The whole body did not arrive within this long.
    Whole(Duration),
    /// No piece of the body arrived for this long.
    Idle(Duration),
}

impl std::fmt::Display for Timeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Timeout::Whole(d) => write!(
                f,
                "request body not received in full within {} s",
                d.as_secs_f64()
            ),
            Timeout::Idle(d) => write!(
                f,
                "request body stalled: nothing received for {} s",
                d.as_secs_f64()
            ),
        }
    }
}

/// What is wrong with a key taken from a path or a batch operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyProblem {
    /// Zero bytes.
    #[error("key must not be empty")]
    Empty,
    /// Longer than the configured limit.
    #[error("key is {len} bytes; the limit is {max}")]
    TooLong {
        /// Bytes in the key.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// Percent-decoded bytes that are not UTF-8.
    #[error("key must be UTF-8")]
    NotUtf8,
    /// A batch operation's key that is not a JSON string.
    #[error("key must be a string")]
    NotString,
}

/// What is wrong with one operation of a batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpProblem {
    /// The operation is not a JSON object.
    #[error("must be an object like {{\"op\": \"set\", \"key\": \"k\", \"value\": 1}}")]
    NotObject,
    /// No `op` field.
    #[error("missing \"op\" (set, get or delete)")]
    MissingOp,
    /// An `op` other than set, get, delete.
    #[error("unknown op {0} (expected \"set\", \"get\" or \"delete\")")]
    UnknownOp(String),
    /// No `key` field.
    #[error("missing \"key\"")]
    MissingKey,
    /// A bad key.
    #[error("{0}")]
    Key(KeyProblem),
    /// A `set` without `value`.
    #[error("set needs a \"value\"")]
    MissingValue,
    /// A `ttl` that is not a number.
    #[error("ttl must be a number of seconds or null")]
    BadTtl,
    /// The same field twice, or another shape error.
    #[error("{0}")]
    Malformed(String),
}

/// What is wrong with a request body that is valid JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyProblem {
    /// A PUT body that is not an object.
    #[error("body must be a JSON object like {{\"value\": <any JSON>, \"ttl\": <seconds>}}")]
    PutNotObject,
    /// A PUT body without `value`.
    #[error("body must have a \"value\" field")]
    MissingValue,
    /// A PUT `ttl` that is not a number.
    #[error("ttl must be a number of seconds or null")]
    BadTtl,
    /// A batch body that is not an object.
    #[error("body must be a JSON object like {{\"operations\": [...]}}")]
    BatchNotObject,
    /// A batch whose `operations` is missing or not an array.
    #[error("operations must be an array of operations")]
    OperationsNotArray,
    /// A body-keyed write (`/store`, `PUT /kv`) that is not an object.
    #[error(
        "body must be a JSON object like {{\"key\": \"k\", \"value\": <any JSON>, \"ttl\": <seconds>}}"
    )]
    KeyedNotObject,
    /// A `DELETE /kv` body that is not an object.
    #[error("body must be a JSON object like {{\"key\": \"k\"}}")]
    DeleteNotObject,
    /// A body-keyed request without `key`.
    #[error("body must have a \"key\" field")]
    MissingKey,
    /// A `POST /admin/backup` body that is not `{"to": "<dir>"}`.
    #[error("body must be a JSON object like {{\"to\": \"<directory>\"}} with a non-empty string")]
    BackupNotObject,
}

/// Every error the HTTP API answers with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The key is absent, deleted or expired.
    #[error("key not found")]
    KeyNotFound,
    /// `POST /store` of a key that has a live value; nothing changed.
    #[error("key already exists")]
    KeyExists,
    /// No route has this path.
    #[error("not found: no route for {path}")]
    NoRoute {
        /// The request path.
        path: String,
    },
    /// The path exists but not with this method.
    #[error("method {method} is not allowed on {path}")]
    MethodNotAllowed {
        /// The request method.
        method: String,
        /// The request path.
        path: String,
    },
    /// The key in the path is unusable.
    #[error("invalid key: {0}")]
    InvalidKey(KeyProblem),
    /// The body is not valid JSON (or not UTF-8).
    #[error("invalid JSON body: {0}")]
    InvalidJson(String),
    /// The body is JSON of the wrong shape.
    #[error("{0}")]
    InvalidBody(BodyProblem),
    /// A query parameter is unusable.
    #[error("invalid query parameter {name}: {reason}")]
    InvalidQuery {
        /// The parameter.
        name: &'static str,
        /// Why.
        reason: String,
    },
    /// A required query parameter is absent.
    #[error("missing query parameter {name}: send {example}")]
    MissingQuery {
        /// The parameter.
        name: &'static str,
        /// A request that has it.
        example: &'static str,
    },
    /// One operation of a batch is invalid; nothing was applied.
    #[error("operation {index}: {problem}")]
    InvalidOperation {
        /// Index of the operation in `operations`.
        index: usize,
        /// What is wrong with it.
        problem: OpProblem,
    },
    /// The body is larger than the configured limit.
    #[error("request body is larger than the limit of {limit} bytes")]
    BodyTooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// The batch has more operations than the configured limit.
    #[error("batch has {count} operations; the limit is {max}")]
    TooManyOperations {
        /// Operations sent.
        count: usize,
        /// The configured limit.
        max: usize,
    },
    /// The body has a content type other than JSON.
    #[error("unsupported content type {0:?}: send application/json")]
    UnsupportedMediaType(String),
    /// Auth is on and the bearer token is missing or wrong.
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// The body did not arrive in time; the connection is closed.
    #[error("{0}")]
    BodyTimeout(Timeout),
    /// The server is at a limit that protects it (the in-flight body budget).
    #[error("{0}")]
    Busy(String),
    /// The engine refused or failed. Its message is sent without the data
    /// directory's paths ([`engine_message`]); the log has them.
    #[error("{}", engine_message(.0))]
    Engine(#[from] engine::Error),
    /// A failure outside the engine (a blocking task that died, ...).
    #[error("internal error: {0}")]
    Internal(String),
    /// Cluster mode: no leader could be reached within the quorum timeout,
    /// or the leader could not reach a majority; nothing was applied.
    #[error("no quorum: {0}")]
    NoQuorum(String),
    /// An error status actix produced on its own, kept with its status.
    #[error("{reason}")]
    Http {
        /// The status actix chose.
        status: StatusCode,
        /// Its canonical reason.
        reason: String,
    },
}

impl ApiError {
    /// The one table from error to status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::KeyNotFound | ApiError::NoRoute { .. } => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::KeyExists => StatusCode::CONFLICT,
            ApiError::InvalidKey(_)
            | ApiError::InvalidJson(_)
            | ApiError::InvalidBody(_)
            | ApiError::InvalidQuery { .. }
            | ApiError::MissingQuery { .. }
            | ApiError::InvalidOperation { .. } => StatusCode::BAD_REQUEST,
            ApiError::BodyTooLarge { .. } | ApiError::TooManyOperations { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Busy(_) | ApiError::NoQuorum(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Engine(e) => engine_status(e),
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Http { status, .. } => *status,
        }
    }
}

/// Engine errors: caller input → 400 (too large → 413), a full disk → 507,
/// closed, read-only or any other I/O failure → 503, anything else (a corrupt
/// record, ...) → 500.
fn engine_status(e: &engine::Error) -> StatusCode {
    use engine::Error as E;
    match e {
        E::ValueTooLarge { .. } | E::BatchTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        e if e.is_invalid_input() => StatusCode::BAD_REQUEST,
        e if is_disk_full(e) => StatusCode::INSUFFICIENT_STORAGE,
        E::BackupTarget { .. } => StatusCode::BAD_REQUEST,
        E::ReadOnly { .. } | E::Closed | E::Io { .. } => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A full disk, latched or not (the engine's own test, plus an I/O error
/// whose OS code is ENOSPC but whose kind is not `StorageFull`).
fn is_disk_full(e: &engine::Error) -> bool {
    e.is_disk_full()
        || matches!(e, engine::Error::Io { source, .. } if source.raw_os_error() == Some(ENOSPC))
}

/// ENOSPC on Linux and the BSDs.
const ENOSPC: i32 = 28;

/// The sentence a client gets for an engine error: what failed, never where.
/// Paths of the data directory tell a client about the server's file system
/// and nothing it can act on; the server log keeps the full error.
pub fn engine_message(e: &engine::Error) -> String {
    use engine::Error as E;
    if is_disk_full(e) {
        return "no space left on device: writes are refused until space is freed \
                (and the server restarted if the store went read-only)"
            .into();
    }
    match e {
        E::Io { action, source, .. } => format!("I/O error while {action}: {source}"),
        E::ReadOnly { cause } => format!(
            "store is read-only after a fault ({}); restart the server to recover",
            fault_message(cause)
        ),
        E::Locked { .. } => "data directory is locked by another engine".into(),
        E::Format { reason, .. } => format!("a data file has an unsupported format: {reason}"),
        E::ReadOnlyOpen { refused, .. } => {
            format!("store is open read-only; {refused} needs a read-write open")
        }
        E::Legacy { line, reason, .. } => {
            format!("cannot migrate the legacy log (line {line}): {reason}")
        }
        E::LegacyWithoutDecoder { .. } => "the log is in the legacy format".into(),
        // The target is the client's own, but it may name the data directory.
        E::BackupTarget { reason, .. } => format!("backup target {reason}"),
        // Variants without paths say nothing a client must not see.
        other => scrub(&other.to_string()),
    }
}

/// A fault's cause without paths.
pub fn fault_message(cause: &Fault) -> String {
    if cause.is_disk_full() {
        return "no space left on device".into();
    }
    match cause {
        Fault::Io {
            action, message, ..
        } => format!("{action} failed: {message}"),
        Fault::Panic { place, .. } => format!("a panic in {place}"),
        Fault::Removed { .. } => {
            "the write-ahead log was removed while open (was the data directory deleted?)".into()
        }
        other => scrub(&other.to_string()),
    }
}

/// `text` with every word that looks like a file path (holds a slash or a
/// backslash) replaced by `<path>`: the safety net for messages built elsewhere.
fn scrub(text: &str) -> String {
    text.split(' ')
        .map(|w| {
            if w.contains('/') || w.contains('\\') {
                "<path>"
            } else {
                w
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status();
        if status.is_server_error() && !matches!(self, ApiError::Busy(_)) {
            // The log gets the whole error (paths included), once per interval.
            let full = match self {
                ApiError::Engine(e) => e.to_string(),
                other => other.to_string(),
            };
            errlog::error(status.as_u16(), &format!("request failed: {full}"));
        }
        let body = serde_json::json!({ "error": self.to_string() }).to_string();
        let mut res = HttpResponse::build(status);
        res.insert_header((header::CONTENT_TYPE, "application/json"));
        match self {
            ApiError::Unauthorized => {
                res.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            ApiError::Busy(_) | ApiError::NoQuorum(_) => {
                res.insert_header((header::RETRY_AFTER, "1"));
            }
            // The rest of a late body may still come: the connection cannot
            // carry another request.
            ApiError::BodyTimeout(_) => {
                res.insert_header((header::CONNECTION, "close"));
            }
            _ => {}
        }
        res.body(body)
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::path::PathBuf;

    use super::*;

    fn io_error(raw: i32) -> engine::Error {
        engine::Error::Io {
            action: "writing",
            path: PathBuf::from("/srv/secret-data/wal.log"),
            source: io::Error::from_raw_os_error(raw),
        }
    }

    #[test]
    fn a_full_disk_is_507_and_other_io_faults_503_without_paths() {
        let full = ApiError::Engine(io_error(ENOSPC));
        assert_eq!(full.status(), StatusCode::INSUFFICIENT_STORAGE);
        assert!(full.to_string().starts_with("no space left on device"));
        let latched = ApiError::Engine(engine::Error::ReadOnly {
            cause: Fault::of(&io_error(5)),
        });
        assert_eq!(latched.status(), StatusCode::SERVICE_UNAVAILABLE);
        let eio = ApiError::Engine(io_error(5));
        assert_eq!(eio.status(), StatusCode::SERVICE_UNAVAILABLE);
        for e in [full, latched, eio] {
            let text = e.to_string();
            assert!(!text.contains("secret-data"), "{text}");
            assert!(!text.contains("/srv"), "{text}");
        }
    }

    #[test]
    fn a_latched_full_disk_is_507() {
        let e = ApiError::Engine(engine::Error::ReadOnly {
            cause: Fault::of(&io_error(ENOSPC)),
        });
        assert_eq!(e.status(), StatusCode::INSUFFICIENT_STORAGE);
        assert!(e.to_string().contains("no space left on device"));
    }

    #[test]
    fn words_that_look_like_paths_are_scrubbed() {
        assert_eq!(
            scrub("cannot open /var/lib/kv/00001.seg now"),
            "cannot open <path> now"
        );
    }
}
