//! The Redis store: every decision is one Lua script, atomic on the server, so that several
//! failmail instances sharing one Redis enforce one set of limits.
//!
//! Keys live under `failmail:` (limits: sorted sets of `token` scored by time; greylist: first
//! sight; sequences: counters; the offset of the clock the instances share, see
//! [`super::shared_clock`]). When Redis is unreachable, operations fail with [`StoreError`],
//! which the policy answers with a temporary 451 4.3.0: never "accept without limits".

use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::Script;

use super::shared_clock::RedisClock;
use super::{Greylist, LimitCheck, LimitStore, Reserve, StoreError, Usage};
use crate::clock::{Reading, SharedClock};
use crate::eventual::Eventual;

const PREFIX: &str = "failmail:";

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

const RESERVE: &str = concat!(
    now_lua!(),
    r"
local token = ARGV[3]
for i = 2, #KEYS do
  local window = tonumber(ARGV[2 * i])
  local max = tonumber(ARGV[1 + 2 * i])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - window)
  if redis.call('ZCARD', KEYS[i]) >= max then
    return i - 1
  end
end
for i = 2, #KEYS do
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
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedisStore")
    }
}

fn store_error(error: redis::RedisError) -> StoreError {
    StoreError(error.to_string())
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
            connection,
            reserve: Script::new(RESERVE),
            greylist: Script::new(GREYLIST),
            usage: Script::new(USAGE),
            reset: Script::new(RESET),
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
        let mut connection = self.connection.clone();
        Eventual::later(async move {
            let full: usize = invocation
                .invoke_async(&mut connection)
                .await
                .map_err(store_error)?;
            Ok(if full == 0 {
                Reserve::Reserved
            } else {
                Reserve::Full(full - 1)
            })
        })
    }

    fn release<'a>(
        &'a self,
        keys: &'a [String],
        token: u64,
    ) -> Eventual<'a, Result<(), StoreError>> {
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.cmd("ZREM").arg(limit_key(key)).arg(token).ignore();
        }
        let mut connection = self.connection.clone();
        Eventual::later(async move {
            pipe.query_async::<()>(&mut connection)
                .await
                .map_err(store_error)
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
            .key(format!("{PREFIX}grey:{key}"))
            .arg(now.ms)
            .arg(now.shared_offset_ms)
            .arg(delay.as_millis() as u64)
            .arg(retry_window.as_millis() as u64);
        let mut connection = self.connection.clone();
        Eventual::later(async move {
            let pass: u8 = invocation
                .invoke_async(&mut connection)
                .await
                .map_err(store_error)?;
            Ok(if pass == 1 {
                Greylist::Pass
            } else {
                Greylist::Wait
            })
        })
    }

    fn bump<'a>(&'a self, key: &'a str) -> Eventual<'a, Result<u64, StoreError>> {
        let key = format!("{PREFIX}seq:{key}");
        let mut connection = self.connection.clone();
        Eventual::later(async move {
            let (count,): (u64,) = redis::pipe()
                .atomic()
                .cmd("INCR")
                .arg(&key)
                .cmd("EXPIRE")
                .arg(&key)
                .arg(35 * 86_400)
                .ignore()
                .query_async(&mut connection)
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
        let mut connection = self.connection.clone();
        Eventual::later(async move {
            let flat: Vec<redis::Value> = invocation
                .invoke_async(&mut connection)
                .await
                .map_err(store_error)?;
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

    fn reset<'a>(&'a self) -> Eventual<'a, Result<(), StoreError>> {
        let mut invocation = self.reset.prepare_invoke();
        invocation.arg(format!("{PREFIX}*")).arg(CLOCK_KEY);
        let mut connection = self.connection.clone();
        Eventual::later(async move {
            invocation
                .invoke_async::<()>(&mut connection)
                .await
                .map_err(store_error)
        })
    }

    fn is_immediate(&self) -> bool {
        false
    }
}
