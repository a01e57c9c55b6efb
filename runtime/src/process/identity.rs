//! The build identity parent and worker compare at the handshake, so that a worker from
//! another build (a binary rebuilt while the parent runs, a stranger's executable) never runs
//! a task it would decode differently.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::OnceLock;

use crate::task::TaskRegistration;

/// A hash of the executable file (device, inode, size, modification time) and of every
/// registered task name and type. Computed once per process.
pub(crate) fn build_identity() -> u64 {
    static IDENTITY: OnceLock<u64> = OnceLock::new();
    *IDENTITY.get_or_init(|| {
        let mut hasher = DefaultHasher::new();
        env!("CARGO_PKG_VERSION").hash(&mut hasher);
        executable_fingerprint().hash(&mut hasher);
        let mut tasks: Vec<(&str, &str)> = inventory::iter::<TaskRegistration>
            .into_iter()
            .map(|r| (r.name(), r.type_path()))
            .collect();
        tasks.sort_unstable();
        tasks.hash(&mut hasher);
        hasher.finish()
    })
}

/// `/proc/self/exe` names the file this process was started from even after it was replaced
/// on disk; a worker started from the replacement sees another inode.
fn executable_fingerprint() -> Option<(u64, u64, u64, i64, i64)> {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::metadata("/proc/self/exe")
        .or_else(|_| std::env::current_exe().and_then(std::fs::metadata))
        .ok()?;
    Some((
        metadata.dev(),
        metadata.ino(),
        metadata.size(),
        metadata.mtime(),
        metadata.mtime_nsec(),
    ))
}
