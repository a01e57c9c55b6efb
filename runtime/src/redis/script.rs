//! The server-side steps that must not be split:
//!
//! - finishing a task, atomic so that no crash can split it: the result is stored (first
//!   writer wins), announced to the submitter, and only then is the task acknowledged and
//!   removed from the stream. With a reason, the task goes to the dead-letter stream in the
//!   same step;
//! - a heartbeat: which of its tasks a worker still owns, and resetting their idle time,
//!   in one step, so that no other worker's claim can come in between.

use std::sync::OnceLock;

use redis::Script;

/// KEYS: result key, reply stream, task stream, dead-letter stream.
/// ARGV: value, ttl (s), task id, group, entry id, dead-letter reason ("" for none),
/// consumer, deliveries, body, sig.
///
/// The value announced is the one stored: a task that ran twice (redelivered after a lost
/// worker, or added twice by a retried XADD) resolves its future with its first result.
const FINISH: &str = r"
local stored = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2])
local value = ARGV[1]
if not stored then
  value = redis.call('GET', KEYS[1]) or ARGV[1]
end
if ARGV[6] ~= '' then
  redis.call('XADD', KEYS[4], '*', 'id', ARGV[3], 'reason', ARGV[6], 'entry', ARGV[5],
    'consumer', ARGV[7], 'deliveries', ARGV[8], 'body', ARGV[9], 'sig', ARGV[10])
end
redis.call('XADD', KEYS[2], '*', 'id', ARGV[3], 'v', value)
redis.call('EXPIRE', KEYS[2], ARGV[2])
redis.call('XACK', KEYS[3], ARGV[4], ARGV[5])
redis.call('XDEL', KEYS[3], ARGV[5])
if stored then return 1 else return 0 end
";

pub(crate) fn finish() -> &'static Script {
    static SCRIPT: OnceLock<Script> = OnceLock::new();
    SCRIPT.get_or_init(|| Script::new(FINISH))
}

/// KEYS: task stream. ARGV: group, consumer, then the entry ids the worker holds.
///
/// Resets the idle time of each entry still pending under `consumer` (`XCLAIM ... JUSTID`,
/// which does not count a delivery); an entry another worker claimed is left to it. Checked
/// and claimed in one step: checked in one round trip and claimed in the next, a claim by
/// another worker in between was taken back, and the task ran in two places. Returns how
/// many entries were refreshed.
const HEARTBEAT: &str = r"
local beaten = 0
for i = 3, #ARGV do
  local mine = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2])
  if #mine == 1 then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    beaten = beaten + 1
  end
end
return beaten
";

pub(crate) fn heartbeat() -> &'static Script {
    static SCRIPT: OnceLock<Script> = OnceLock::new();
    SCRIPT.get_or_init(|| Script::new(HEARTBEAT))
}

/// Prepares a new connection: the task stream's consumer group exists (created to deliver
/// from the start of the stream, so tasks added before any worker came are not skipped), and
/// the scripts are loaded (a restarted server has forgotten them), so that they can be sent
/// by hash.
pub(crate) fn prepare(conn: &mut redis::Connection, tasks: &str) -> redis::RedisResult<()> {
    let created: redis::RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(tasks)
        .arg(crate::redis::keys::GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .query(conn);
    match created {
        // A server out of memory under `noeviction` refuses `XGROUP CREATE` even when the
        // group exists (it almost always does): refusing the connection for it would leave a
        // worker unable to reach Redis at all, heartbeats included, until memory frees up. A
        // group really missing shows as `NOGROUP` later, and the next connection creates it.
        Err(error) if error.code() == Some("OOM") => {
            tracing::debug!(%error, "cannot make sure the consumer group exists");
        }
        Err(error) if error.code() != Some("BUSYGROUP") => return Err(error),
        _ => {}
    }
    finish().load(conn)?;
    heartbeat().load(conn).map(drop)
}
