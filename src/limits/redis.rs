//! The Redis store: every decision is one Lua script, atomic on the server, so that several
//! failmail instances sharing one Redis enforce one set of limits.
//!
//! Keys live under `failmail:` (limits: sorted sets of `token` scored by time; greylist: first
//! sight; sequences: counters; the offset of the clock the instances share, see
//! [`super::shared_clock`]). When Redis is unreachable, operations fail with [`StoreError`],
//! which the policy answers with a temporary 451 4.3.0: never "accept without limits".
//!
//! A reservation whose answer did not come is cancelled in the background (`cancel`), so
//! that a frozen Redis that later runs the queued script leaves no use behind. A call that
//! finds the connection dropped (Redis restarted while the connection was idle) is sent once
//! more on the new connection, instead of being answered 451 at once.

mod cancel;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{RedisResult, Script};

use cancel::{Cancel, Canceller};

use super::listing::{GreyEntry, Listing, SequenceEntry, Top};
use super::shared_clock::RedisClock;
use super::{Greylist, LimitCheck, LimitStore, Reserve, StoreError, Usage};
use crate::clock::{Reading, SharedClock};
use crate::eventual::Eventual;

const PREFIX: &str = "failmail:";
/// Where greylisting triplets live: their first sight, in ms.
const GREY_PREFIX: &str = "failmail:grey:";
/// Where sequences live: their attempt counters.
const SEQ_PREFIX: &str = "failmail:seq:";
/// Keys asked for per `SCAN` when listing.
const SCAN_PAGE: usize = 1000;

/// The offset of the clock the instances share, in milliseconds (see `super::shared_clock`).
pub(crate) const CLOCK_KEY: &str = "failmail:clock:offset_ms";

/// Every time-based script starts here: `KEYS[1]` is [`CLOCK_KEY`], `ARGV[1]` and `ARGV[2]` the
/// caller's [`Reading`]. The time of the decision is the caller's, with the shared offset as this
/// Redis holds it now, so that an instance that has not yet heard of another's
/// `POST /api/clock/advance` still decides exactly as that one does.
macro_rules! now_lua {
    () => {
        "local now = tonumber(ARGV[1]) - tonumber(ARGV[2]) \
         + tonumber(redis.call('GET', KEYS[1]) or '0')\n"
    };
}

/// KEYS: [`CLOCK_KEY`], the limit keys, then the token's cancellation mark. Returns 0
/// (reserved), the 1-based index of the full limit, or -1 (the token was cancelled: its answer
/// was given up on). A second run with the same token (a retry) finds its use and takes no other.
const RESERVE: &str = concat!(
    now_lua!(),
    r"
local token = ARGV[3]
local last = #KEYS - 1
if redis.call('EXISTS', KEYS[#KEYS]) == 1 then
  return -1
end
if last >= 2 and redis.call('ZSCORE', KEYS[2], token) then
  return 0
end
for i = 2, last do
  local window = tonumber(ARGV[2 * i])
  local max = tonumber(ARGV[1 + 2 * i])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - window)
  if redis.call('ZCARD', KEYS[i]) >= max then
    return i - 1
  end
end
for i = 2, last do
  local window = tonumber(ARGV[2 * i])
  redis.call('ZADD', KEYS[i], now, token)
  redis.call('PEXPIRE', KEYS[i], window)
end
return 0
"
);

const GREYLIST: &str = concat!(
    now_lua!(),
    r"
local delay = tonumber(ARGV[3])
local window = tonumber(ARGV[4])
local first = tonumber(redis.call('GET', KEYS[2]))
if first == nil or now - first > window then
  redis.call('SET', KEYS[2], now, 'PX', window * 2)
  return 0
end
if now - first >= delay then
  return 1
end
return 0
"
);

const USAGE: &str = concat!(
    now_lua!(),
    r"
local window = tonumber(ARGV[3])
local out = {}
local cursor = '0'
repeat
  local page = redis.call('SCAN', cursor, 'MATCH', ARGV[4], 'COUNT', 1000)
  cursor = page[1]
  for _, key in ipairs(page[2]) do
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
    local used = redis.call('ZCARD', key)
    if used > 0 then
      local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
      table.insert(out, key)
      table.insert(out, used)
      table.insert(out, tonumber(oldest[2]))
    end
  end
until cursor == '0'
return out
"
);

/// Deletes every key of failmail's but the shared clock's offset (which `POST /api/reset` resets
/// through the clock, so that every instance hears of it).
const RESET: &str = r"
local cursor = '0'
repeat
  local page = redis.call('SCAN', cursor, 'MATCH', ARGV[1], 'COUNT', 1000)
  cursor = page[1]
  for _, key in ipairs(page[2]) do
    if key ~= ARGV[2] then
      redis.call('DEL', key)
    end
  end
until cursor == '0'
return 0
";

/// Limits, greylisting and sequences in a Redis server.
#[derive(Clone)]
pub struct RedisStore {
    client: redis::Client,
    connection: ConnectionManager,
    reserve: Script,
    greylist: Script,
    usage: Script,
    reset: Script,
    cancel: Script,
    canceller: Arc<Canceller>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedisStore")
    }
}

fn store_error(error: redis::RedisError) -> StoreError {
    StoreError(error.to_string())
}

/// Runs `call` on the connection; when it fails because the connection was dropped (Redis
/// restarted since the last call), runs it once more: the connection manager reconnects on that
/// error, and the second call waits for the new connection.
async fn retry_once<T, F, Fut>(connection: &ConnectionManager, mut call: F) -> RedisResult<T>
where
    F: FnMut(ConnectionManager) -> Fut,
    Fut: Future<Output = RedisResult<T>>,
{
    match call(connection.clone()).await {
        Err(error) if error.is_connection_dropped() => {
            tracing::debug!(%error, "Redis connection dropped; sending again");
            call(connection.clone()).await
        }
        other => other,
    }
}

impl RedisStore {
    /// Connects to `url` (`redis://127.0.0.1:6379`). Reconnects by itself after an outage.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(store_error)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(2))
            .set_response_timeout(Duration::from_secs(2))
            .set_number_of_retries(1);
        let connection = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(store_error)?;
        Ok(Self {
            client,
            canceller: Arc::new(Canceller::start(connection.clone())),
            connection,
            reserve: Script::new(RESERVE),
            greylist: Script::new(GREYLIST),
            usage: Script::new(USAGE),
            reset: Script::new(RESET),
            cancel: Script::new(cancel::CANCEL),
        })
    }

    /// The clock of an instance that shares this Redis: `base` moved by the offset kept here, so
    /// that `POST /api/clock/advance` on one instance moves them all.
    pub async fn shared_clock(&self, base: SharedClock) -> Result<RedisClock, StoreError> {
        RedisClock::start(self.client.clone(), self.connection.clone(), base).await
    }
}

fn limit_key(key: &str) -> String {
    format!("{PREFIX}limit:{key}")
}

impl RedisStore {
    /// Runs a script, once more if the connection had dropped.
    async fn invoke<T: redis::FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> RedisResult<T> {
        retry_once(&self.connection, |mut connection| async move {
            invocation.invoke_async(&mut connection).await
        })
        .await
    }
}

impl RedisStore {
    /// Calls `found` with every key under `prefix` (without it) and its value. The keys are
    /// walked with `SCAN` a page at a time and read with `MGET`, so that Redis serves other
    /// clients between pages instead of being held for the whole walk; a key that expires
    /// between the two is skipped.
    async fn scan_values(
        &self,
        prefix: &str,
        mut found: impl FnMut(String, String) + Send,
    ) -> Result<(), StoreError> {
        let pattern = format!("{prefix}*");
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<Vec<u8>>) =
                retry_once(&self.connection, |mut connection| {
                    let pattern = &pattern;
                    async move {
                        redis::cmd("SCAN")
                            .arg(cursor)
                            .arg("MATCH")
                            .arg(pattern)
                            .arg("COUNT")
                            .arg(SCAN_PAGE)
                            .query_async(&mut connection)
                            .await
                    }
                })
                .await
                .map_err(store_error)?;
            if !keys.is_empty() {
                let values: Vec<Option<Vec<u8>>> =
                    retry_once(&self.connection, |mut connection| {
                        let keys = &keys;
                        async move {
                            redis::cmd("MGET")
                                .arg(keys)
                                .query_async(&mut connection)
                                .await
                        }
                    })
                    .await
                    .map_err(store_error)?;
                for (key, value) in keys.iter().zip(values) {
                    let (Some(value), Some(key)) = (value, key.strip_prefix(prefix.as_bytes()))
                    else {
                        continue;
                    };
                    found(
                        String::from_utf8_lossy(key).into_owned(),
                        String::from_utf8_lossy(&value).into_owned(),
                    );
                }
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }
}

fn mark_key(token: u64) -> String {
    format!("{PREFIX}cancelled:{token:016x}")
}

impl LimitStore for RedisStore {
    fn reserve<'a>(
        &'a self,
        checks: &'a [LimitCheck],
        now: Reading,
        token: u64,
    ) -> Eventual<'a, Result<Reserve, StoreError>> {
        let mut invocation = self.reserve.prepare_invoke();
        invocation
            .key(CLOCK_KEY)
            .arg(now.ms)
            .arg(now.shared_offset_ms)
            .arg(token);
        for check in checks {
            invocation.key(limit_key(&check.key));
            invocation.arg(check.per.as_millis() as u64).arg(check.max);
        }
        invocation.key(mark_key(token));
        Eventual::later(async move {
            match self.invoke::<i64>(&invocation).await {
                Ok(0) => Ok(Reserve::Reserved),
                Ok(full) if full > 0 => Ok(Reserve::Full(full as usize - 1)),
                Ok(_) => Err(StoreError("the reservation was cancelled".to_owned())),
                Err(error) => {
                    // Unknown outcome: the script may still run. Cancel it, whichever comes first.
                    self.canceller.push(Cancel {
                        keys: checks.iter().map(|c| limit_key(&c.key)).collect(),
                        mark_key: mark_key(token),
                        token,
                        mark_ms: checks
                            .iter()
                            .map(|c| c.per.as_millis() as u64)
                            .max()
                            .unwrap_or(0)
                            .max(1),
                    });
                    Err(store_error(error))
                }
            }
        })
    }

    fn release<'a>(
        &'a self,
        keys: &'a [String],
        token: u64,
    ) -> Eventual<'a, Result<(), StoreError>> {
        let release = Cancel {
            keys: keys.iter().map(|k| limit_key(k)).collect(),
            mark_key: mark_key(token),
            token,
            mark_ms: 0,
        };
        Eventual::later(async move {
            let done = retry_once(&self.connection, |mut connection| {
                let release = &release;
                async move { cancel::run(&self.cancel, &mut connection, release).await }
            })
            .await;
            done.map_err(|error| {
                // Given back later, when Redis answers again.
                self.canceller.push(release.clone());
                store_error(error)
            })
        })
    }

    fn greylist<'a>(
        &'a self,
        key: &'a str,
        now: Reading,
        delay: Duration,
        retry_window: Duration,
    ) -> Eventual<'a, Result<Greylist, StoreError>> {
        let mut invocation = self.greylist.prepare_invoke();
        invocation
            .key(CLOCK_KEY)
            .key(format!("{GREY_PREFIX}{key}"))
            .arg(now.ms)
            .arg(now.shared_offset_ms)
            .arg(delay.as_millis() as u64)
            .arg(retry_window.as_millis() as u64);
        Eventual::later(async move {
            let pass: u8 = self.invoke(&invocation).await.map_err(store_error)?;
            Ok(if pass == 1 {
                Greylist::Pass
            } else {
                Greylist::Wait
            })
        })
    }

    fn bump<'a>(&'a self, key: &'a str) -> Eventual<'a, Result<u64, StoreError>> {
        let key = format!("{SEQ_PREFIX}{key}");
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("INCR")
            .arg(&key)
            .cmd("EXPIRE")
            .arg(&key)
            .arg(35 * 86_400)
            .ignore();
        Eventual::later(async move {
            let (count,): (u64,) = retry_once(&self.connection, |mut connection| {
                let pipe = &pipe;
                async move { pipe.query_async(&mut connection).await }
            })
            .await
            .map_err(store_error)?;
            Ok(count - 1)
        })
    }

    fn usage<'a>(
        &'a self,
        now: Reading,
        prefix: &'a str,
        window: Duration,
    ) -> Eventual<'a, Result<Vec<Usage>, StoreError>> {
        let mut invocation = self.usage.prepare_invoke();
        invocation
            .key(CLOCK_KEY)
            .arg(now.ms)
            .arg(now.shared_offset_ms)
            .arg(window.as_millis() as u64)
            .arg(format!("{PREFIX}limit:{prefix}*"));
        Eventual::later(async move {
            let flat: Vec<redis::Value> = self.invoke(&invocation).await.map_err(store_error)?;
            let mut usage = Vec::new();
            for triple in flat.chunks(3) {
                if let [key, used, oldest] = triple {
                    let key: String = redis::from_redis_value(key).map_err(store_error)?;
                    let used: u64 = redis::from_redis_value(used).map_err(store_error)?;
                    let oldest_ms: u64 = redis::from_redis_value(oldest).map_err(store_error)?;
                    let key = key
                        .trim_start_matches(PREFIX)
                        .trim_start_matches("limit:")
                        .to_owned();
                    usage.push(Usage {
                        key,
                        used,
                        oldest_ms,
                    });
                }
            }
            usage.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(usage)
        })
    }

    fn greylist_entries<'a>(
        &'a self,
        since_ms: u64,
        limit: usize,
    ) -> Eventual<'a, Result<Listing<GreyEntry>, StoreError>> {
        Eventual::later(async move {
            let mut top = Top::new(limit);
            self.scan_values(GREY_PREFIX, |key, value| {
                // The script stores a Lua number: an integer, written without exponent.
                let Ok(first_seen) = value.parse::<f64>() else {
                    return;
                };
                let first_seen_ms = first_seen as u64;
                if first_seen_ms >= since_ms {
                    top.offer(GreyEntry { key, first_seen_ms });
                }
            })
            .await?;
            Ok(top.finish())
        })
    }

    fn sequences<'a>(
        &'a self,
        limit: usize,
    ) -> Eventual<'a, Result<Listing<SequenceEntry>, StoreError>> {
        Eventual::later(async move {
            let mut top = Top::new(limit);
            self.scan_values(SEQ_PREFIX, |key, value| {
                if let Ok(attempts) = value.parse::<u64>() {
                    top.offer(SequenceEntry { key, attempts });
                }
            })
            .await?;
            Ok(top.finish())
        })
    }

    fn reset<'a>(&'a self) -> Eventual<'a, Result<(), StoreError>> {
        let mut invocation = self.reset.prepare_invoke();
        invocation.arg(format!("{PREFIX}*")).arg(CLOCK_KEY);
        Eventual::later(async move { self.invoke::<()>(&invocation).await.map_err(store_error) })
    }

    fn is_immediate(&self) -> bool {
        false
    }
}
