//! The clock of instances that share one Redis: its offset lives in Redis, so that
//! `POST /api/clock/advance` on any instance moves every instance's clock.
//!
//! Without this, each instance had its own offset: advanced by an hour, one instance stamped its
//! uses an hour ahead and found its window free, while the other still counted them, and the pair
//! accepted twice the limit in one real hour.
//!
//! Two things keep the instances alike:
//!
//! - **Decisions are exact.** Every time-based script of the Redis store reads the offset from
//!   Redis itself (see [`Reading`] and `super::redis`), so a limit or greylist decision made on
//!   one instance right after another one moved the clock already uses the new time.
//! - **Each instance's own reading follows.** Event stamps, reply texts and `GET /api/clock` read
//!   a local copy of the offset: the instance that moves the clock sets its copy from Redis's
//!   answer before it answers; the others are told on a Redis channel (and read the offset again
//!   every few seconds, and whenever they reconnect, in case a message was missed).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use redis::aio::ConnectionManager;
use redis::Script;
use tokio::task::JoinHandle;

use super::redis::CLOCK_KEY;
use super::StoreError;
use crate::clock::{Clock, ClockError, Reading, SharedClock};
use crate::eventual::Eventual;

/// The channel on which a moved clock is announced.
const CHANNEL: &str = "failmail:clock";

/// How often an instance reads the shared offset again even if it heard nothing.
const REFRESH_EVERY: Duration = Duration::from_secs(5);

/// Adds `ARGV[1]` ms to the shared offset (0 with `ARGV[2] = "reset"`: sets it to zero), tells
/// every instance, and answers the new offset.
const MOVE: &str = r"
local offset
if ARGV[2] == 'reset' then
  redis.call('SET', KEYS[1], 0)
  offset = 0
else
  offset = redis.call('INCRBY', KEYS[1], ARGV[1])
end
redis.call('PUBLISH', ARGV[3], offset)
return offset
";

/// `base` (the real clock, or a test's) moved forward by an offset every instance sharing the
/// Redis reads.
pub struct RedisClock {
    base: SharedClock,
    /// This instance's copy of the shared offset, in milliseconds.
    shared_ms: Arc<AtomicU64>,
    connection: ConnectionManager,
    script: Script,
    follower: JoinHandle<()>,
}

impl std::fmt::Debug for RedisClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisClock")
            .field("base", &self.base)
            .field("shared_ms", &self.shared_ms.load(Ordering::SeqCst))
            .finish()
    }
}

impl RedisClock {
    /// Reads the shared offset, then follows its changes for as long as the clock lives.
    pub(crate) async fn start(
        client: redis::Client,
        mut connection: ConnectionManager,
        base: SharedClock,
    ) -> Result<Self, StoreError> {
        let shared_ms = Arc::new(AtomicU64::new(read_offset(&mut connection).await?));
        let follower = tokio::spawn(follow(client, connection.clone(), shared_ms.clone()));
        Ok(Self {
            base,
            shared_ms,
            connection,
            script: Script::new(MOVE),
            follower,
        })
    }

    fn shared(&self) -> u64 {
        self.shared_ms.load(Ordering::SeqCst)
    }

    /// Runs [`MOVE`] and keeps Redis's answer as this instance's copy at once.
    fn move_shared(
        &self,
        by_ms: u64,
        reset: bool,
    ) -> impl std::future::Future<Output = Result<(), ClockError>> + Send + '_ {
        let mut invocation = self.script.prepare_invoke();
        invocation
            .key(CLOCK_KEY)
            .arg(by_ms)
            .arg(if reset { "reset" } else { "add" })
            .arg(CHANNEL);
        let mut connection = self.connection.clone();
        let shared_ms = self.shared_ms.clone();
        async move {
            let offset: u64 = invocation
                .invoke_async(&mut connection)
                .await
                .map_err(|e| ClockError(e.to_string()))?;
            shared_ms.store(offset, Ordering::SeqCst);
            Ok(())
        }
    }
}

impl Drop for RedisClock {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

impl Clock for RedisClock {
    fn now(&self) -> Duration {
        self.base.now() + Duration::from_millis(self.shared())
    }

    fn reading(&self) -> Reading {
        let shared = self.shared();
        Reading {
            ms: self.base.now_ms() + shared,
            shared_offset_ms: shared,
        }
    }

    fn offset(&self) -> Duration {
        self.base.offset() + Duration::from_millis(self.shared())
    }

    fn advance(&self, by: Duration) -> Eventual<'_, Result<Duration, ClockError>> {
        let moved = self.move_shared(by.as_millis() as u64, false);
        Eventual::later(async move {
            moved.await?;
            Ok(self.offset())
        })
    }

    fn reset(&self) -> Eventual<'_, Result<(), ClockError>> {
        let moved = self.move_shared(0, true);
        Eventual::later(async move {
            moved.await?;
            self.base.reset().await
        })
    }
}

async fn read_offset(connection: &mut ConnectionManager) -> Result<u64, StoreError> {
    let offset: Option<u64> = redis::cmd("GET")
        .arg(CLOCK_KEY)
        .query_async(connection)
        .await
        .map_err(|e| StoreError(e.to_string()))?;
    Ok(offset.unwrap_or(0))
}

/// Keeps `shared_ms` equal to the offset in Redis: reads it again on every announcement (the
/// message itself is not trusted: reading after it can never go back to an older value), every
/// [`REFRESH_EVERY`], and after every reconnection.
async fn follow(
    client: redis::Client,
    mut connection: ConnectionManager,
    shared_ms: Arc<AtomicU64>,
) {
    loop {
        let subscribed = match client.get_async_pubsub().await {
            Ok(mut pubsub) => pubsub.subscribe(CHANNEL).await.is_ok().then_some(pubsub),
            Err(_) => None,
        };
        // Subscribed first, read second: no change falls between the two.
        refresh(&mut connection, &shared_ms).await;
        if let Some(mut pubsub) = subscribed {
            let mut messages = pubsub.on_message();
            loop {
                tokio::select! {
                    message = messages.next() => match message {
                        Some(_) => refresh(&mut connection, &shared_ms).await,
                        None => break,
                    },
                    _ = tokio::time::sleep(REFRESH_EVERY) => {
                        refresh(&mut connection, &shared_ms).await;
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn refresh(connection: &mut ConnectionManager, shared_ms: &AtomicU64) {
    if let Ok(offset) = read_offset(connection).await {
        shared_ms.store(offset, Ordering::SeqCst);
    }
}
