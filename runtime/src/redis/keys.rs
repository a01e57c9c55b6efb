//! The names of everything the executor and its workers keep in Redis, under one prefix, so
//! that several deployments can share a server.

/// The consumer group every worker reads the task stream through.
pub(crate) const GROUP: &str = "workers";

/// The key names under one prefix.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// The stream of submitted tasks.
    pub(crate) fn tasks(&self) -> String {
        format!("{}:tasks", self.prefix)
    }

    /// The dead-letter stream: tasks no worker will run, with the reason.
    pub(crate) fn dead(&self) -> String {
        format!("{}:dead", self.prefix)
    }

    /// Where the result of task `id` is kept (first writer wins).
    pub(crate) fn result(&self, id: &str) -> String {
        format!("{}:result:{id}", self.prefix)
    }

    /// The stream on which the results of one executor's tasks are announced.
    pub(crate) fn reply(&self, client: &str) -> String {
        format!("{}:reply:{client}", self.prefix)
    }
}
