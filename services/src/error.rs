//! Why starting or reconfiguring the services failed.

/// Why [`Services::start`](crate::Services::start) or
/// [`Services::reconfigure`](crate::Services::reconfigure) failed. A failed reconfiguration
/// changes nothing: every service keeps its previous backend.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The `[services]` table has problems, each as `(path, message)`, the path relative to
    /// `[services]`.
    #[error("services config: {}", list(.0))]
    Config(Vec<(String, String)>),
    /// `start` was polled outside a Tokio runtime, which the background tasks need.
    #[error("services: start() must run inside a Tokio runtime")]
    NoRuntime,
    /// The configured Redis did not answer.
    #[error("services: cannot connect to Redis at {url}: {source}")]
    Connect {
        /// The URL with any password replaced by `***`.
        url: String,
        /// What the client reported.
        #[source]
        source: redis::RedisError,
    },
    /// Copying this node's exactly-once keys into the new Redis failed, so the switch to it was
    /// not made (switching without them could let a repeat through).
    #[error("services: cannot copy exactly-once keys into Redis at {url}: {source}")]
    MigrateOnceKeys {
        /// The URL with any password replaced by `***`.
        url: String,
        /// What the client reported.
        #[source]
        source: redis::RedisError,
    },
    /// A metric family could not be registered (for example: registered twice in one registry).
    #[error("services: cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// [`Services::shutdown`](crate::Services::shutdown) has run.
    #[error("services: already shut down")]
    ShutDown,
}

fn list(problems: &[(String, String)]) -> String {
    problems
        .iter()
        .map(|(path, message)| format!("`{path}` {message}"))
        .collect::<Vec<_>>()
        .join("; ")
}
