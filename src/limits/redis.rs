//! The Redis store: every decision is one Lua script, atomic on the server, so that several
//! failmail instances sharing one Redis enforce one set of limits.
//!
//! Keys live under `failmail:` (limits: sorted sets of `token` scored by time; greylist: first
//! sight; sequences: counters). When Redis is unreachable, operations fail with [`StoreError`],
//! which the policy answers with a temporary 451 4.3.0: never "accept without limits".

use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::Script;

use super::{Greylist, LimitCheck, LimitStore, Reserve, StoreError, Usage};
use crate::eventual::Eventual;

const PREFIX: &str = "failmail:";

const RESERVE: &str = r"
local now = tonumber(ARGV[1])
local token = ARGV[2]
for i, key in ipairs(KEYS) do
  local window = tonumber(ARGV[1 + 2 * i])
  local max = tonumber(ARGV[2 + 2 * i])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  if redis.call('ZCARD', key) >= max then
    return i
  end
end
for i, key in ipairs(KEYS) do
  local window = tonumber(ARGV[1 + 2 * i])
  redis.call('ZADD', key, now, token)
  redis.call('PEXPIRE', key, window)
end
return 0
";

const GREYLIST: &str = r"
local now = tonumber(ARGV[1])
local delay = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local first = tonumber(redis.call('GET', KEYS[1]))
if first == nil or now - first > window then
  redis.call('SET', KEYS[1], now, 'PX', window * 2)
  return 0
end
if now - first >= delay then
  return 1
end
return 0
";

const USAGE: &str = r"
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local out = {}
local cursor = '0'
repeat
  local page = redis.call('SCAN', cursor, 'MATCH', ARGV[3], 'COUNT', 1000)
  cursor = page[1]
  for _, key in ipairs(page[2]) do
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
    local used = redis.call('ZCARD', key)
    if used > 0 then
      local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
      table.insert(out, key)
      table.insert(out, used)
      table.insert(out, oldest[2])
    end
  end
until cursor == '0'
return out
";

const RESET: &str = r"
local cursor = '0'
repeat
  local page = redis.call('SCAN', cursor, 'MATCH', ARGV[1], 'COUNT', 1000)
  cursor = page[1]
  for _, key in ipairs(page[2]) do
    redis.call('DEL', key)
  end
until cursor == '0'
return 0
";

/// Limits, greylisting and sequences in a Redis server.
#[derive(Clone)]
pub struct RedisStore {
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
        let connection = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(store_error)?;
        Ok(Self {
            connection,
            reserve: Script::new(RESERVE),
            greylist: Script::new(GREYLIST),
            usage: Script::new(USAGE),
            reset: Script::new(RESET),
        })
    }
}

fn limit_key(key: &str) -> String {
    format!("{PREFIX}limit:{key}")
}

impl LimitStore for RedisStore {
    fn reserve<'a>(
        &'a self,
        checks: &'a [LimitCheck],
        now_ms: u64,
        token: u64,
    ) -> Eventual<'a, Result<Reserve, StoreError>> {
        let mut invocation = self.reserve.prepare_invoke();
        invocation.arg(now_ms).arg(token);
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
        now_ms: u64,
        delay: Duration,
        retry_window: Duration,
    ) -> Eventual<'a, Result<Greylist, StoreError>> {
        let mut invocation = self.greylist.prepare_invoke();
        invocation
            .key(format!("{PREFIX}grey:{key}"))
            .arg(now_ms)
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
        now_ms: u64,
        prefix: &'a str,
        window: Duration,
    ) -> Eventual<'a, Result<Vec<Usage>, StoreError>> {
        let mut invocation = self.usage.prepare_invoke();
        invocation
            .arg(now_ms)
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
                    // A score comes back as a string ("1700000000000", or in e-notation).
                    let oldest: String = redis::from_redis_value(oldest).map_err(store_error)?;
                    let oldest_ms = oldest.parse::<f64>().map_or(now_ms, |ms| ms as u64);
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
        invocation.arg(format!("{PREFIX}*"));
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
