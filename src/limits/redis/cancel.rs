//! Reservations the Redis store could not settle, cancelled in the background once Redis
//! answers again.
//!
//! A reservation whose answer did not come (Redis frozen: the response timeout passed, yet the
//! script still sits in Redis's socket buffer and runs when Redis resumes) has an unknown outcome:
//! the session answered `451 4.3.0` and will never release it. Such a token is queued here and
//! cancelled by one Lua script that removes the token's use from every key *and* leaves a mark
//! that makes a reservation script still to come with that token refuse to take anything. The
//! cancel is idempotent and correct in either order (before or after the stuck script runs), so
//! it is simply retried until Redis answers. A release that failed (Redis away when a transaction
//! ended) is retried the same way, without the mark (its reservation is known to have happened).
//! The queue is bounded; past [`MAX_PENDING`] the oldest entry is dropped, with a warning (its
//! use then frees with its window).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::Script;
use tokio::sync::Notify;

/// Most cancellations kept waiting for Redis (a few hundred bytes each).
pub(super) const MAX_PENDING: usize = 100_000;

/// Pause between attempts while Redis does not answer.
const RETRY_PAUSE: Duration = Duration::from_millis(250);

/// Removes `ARGV[1]` from every key but the last, and marks the token as cancelled for
/// `ARGV[2]` ms (0: no mark) in the last key, which the reservation script checks first.
pub(super) const CANCEL: &str = r"
local token = ARGV[1]
local mark = tonumber(ARGV[2])
for i = 1, #KEYS - 1 do
  redis.call('ZREM', KEYS[i], token)
end
if mark > 0 then
  redis.call('SET', KEYS[#KEYS], 1, 'PX', mark)
end
return 0
";

/// One token's uses to give back.
#[derive(Debug, Clone)]
pub(super) struct Cancel {
    /// The limit keys, in Redis form (`failmail:limit:…`).
    pub(super) keys: Vec<String>,
    /// The token's cancellation mark key.
    pub(super) mark_key: String,
    /// The token.
    pub(super) token: u64,
    /// How long the mark lives (ms): the longest window of the keys; 0 for a plain release.
    pub(super) mark_ms: u64,
}

/// The queue of cancellations and the task that works through it, stopped when dropped.
pub(super) struct Canceller {
    queue: Arc<Mutex<VecDeque<Cancel>>>,
    wake: Arc<Notify>,
    task: tokio::task::AbortHandle,
}

impl Canceller {
    /// Starts the background task on the current runtime.
    pub(super) fn start(connection: ConnectionManager) -> Self {
        let queue = Arc::new(Mutex::new(VecDeque::new()));
        let wake = Arc::new(Notify::new());
        let task = tokio::spawn(work(queue.clone(), wake.clone(), connection)).abort_handle();
        Self { queue, wake, task }
    }

    /// Queues `cancel` to be done as soon as Redis answers.
    pub(super) fn push(&self, cancel: Cancel) {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if queue.len() >= MAX_PENDING {
            queue.pop_front();
            tracing::warn!(
                "too many limit reservations wait to be cancelled; the oldest expires with its window"
            );
        }
        queue.push_back(cancel);
        drop(queue);
        self.wake.notify_one();
    }
}

impl Drop for Canceller {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Runs one cancellation.
pub(super) async fn run(
    script: &Script,
    connection: &mut ConnectionManager,
    cancel: &Cancel,
) -> redis::RedisResult<()> {
    let mut invocation = script.prepare_invoke();
    for key in &cancel.keys {
        invocation.key(key);
    }
    invocation
        .key(&cancel.mark_key)
        .arg(cancel.token)
        .arg(cancel.mark_ms);
    invocation.invoke_async(connection).await
}

async fn work(
    queue: Arc<Mutex<VecDeque<Cancel>>>,
    wake: Arc<Notify>,
    mut connection: ConnectionManager,
) {
    let script = Script::new(CANCEL);
    loop {
        let next = queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .front()
            .cloned();
        let Some(cancel) = next else {
            wake.notified().await;
            continue;
        };
        let result = run(&script, &mut connection, &cancel).await;
        let unreachable = result.as_ref().is_err_and(|error| {
            error.is_io_error() || error.is_timeout() || error.is_connection_refusal()
        });
        if unreachable {
            tracing::debug!("cannot cancel a limit reservation yet; retrying");
            tokio::time::sleep(RETRY_PAUSE).await;
            continue;
        }
        // Done, or refused by Redis itself (retrying would not help): next.
        if let Err(error) = result {
            tracing::warn!(%error, "a limit reservation could not be cancelled");
        }
        let mut queue = queue.lock().unwrap_or_else(|e| e.into_inner());
        if queue.front().is_some_and(|c| c.token == cancel.token) {
            queue.pop_front();
        }
    }
}
