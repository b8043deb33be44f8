//! The in-memory store: sharded maps, each behind its own short lock; no global lock, no await.

use std::collections::{HashMap, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::listing::{GreyEntry, Listing, SequenceEntry, Top};
use super::{Greylist, LimitCheck, LimitStore, Reserve, StoreError, Usage};
use crate::clock::Reading;
use crate::eventual::Eventual;

const SHARDS: usize = 64;
/// Greylist and sequence keys kept per shard before the shard forgets them (bounded memory).
const KEYS_PER_SHARD: usize = 65_536;

#[derive(Debug, Default)]
struct Shard {
    /// key → (timestamp ms, token) of each use, oldest first.
    windows: HashMap<String, VecDeque<(u64, u64)>>,
    /// greylist key → first sight (ms).
    greylist: HashMap<String, u64>,
    /// sequence key → attempts.
    sequences: HashMap<String, u64>,
}

/// Limits, greylisting and sequences in this process's memory.
#[derive(Debug)]
pub struct MemoryStore {
    shards: Vec<Mutex<Shard>>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
        }
    }
}

fn shard_of(key: &str) -> usize {
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    (hasher.finish() % SHARDS as u64) as usize
}

fn prune(uses: &mut VecDeque<(u64, u64)>, now_ms: u64, window: Duration) {
    // A use taken at `at` counts while `now < at + window`.
    let window = window.as_millis() as u64;
    while uses
        .front()
        .is_some_and(|(at, _)| at.saturating_add(window) <= now_ms)
    {
        uses.pop_front();
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self, index: usize) -> MutexGuard<'_, Shard> {
        self.shards[index].lock().unwrap_or_else(|e| e.into_inner())
    }

    fn reserve_now(&self, checks: &[LimitCheck], now_ms: u64, token: u64) -> Reserve {
        // Lock every shard involved, in index order (no deadlock), so the check and the taking
        // of uses are one atomic step even when the keys live in different shards.
        let mut indexes: Vec<usize> = checks.iter().map(|c| shard_of(&c.key)).collect();
        indexes.sort_unstable();
        indexes.dedup();
        let mut guards: Vec<(usize, MutexGuard<'_, Shard>)> =
            indexes.iter().map(|&i| (i, self.lock(i))).collect();
        let guard_of = |key: &str| indexes.binary_search(&shard_of(key)).expect("locked above");
        for (position, check) in checks.iter().enumerate() {
            let slot = guard_of(&check.key);
            let shard = &mut guards[slot].1;
            if let Some(uses) = shard.windows.get_mut(&check.key) {
                prune(uses, now_ms, check.per);
                if uses.len() as u64 >= check.max {
                    return Reserve::Full(position);
                }
            } else if check.max == 0 {
                return Reserve::Full(position);
            }
        }
        for check in checks {
            let slot = guard_of(&check.key);
            let shard = &mut guards[slot].1;
            shard
                .windows
                .entry(check.key.clone())
                .or_default()
                .push_back((now_ms, token));
        }
        Reserve::Reserved
    }
}

impl LimitStore for MemoryStore {
    fn reserve<'a>(
        &'a self,
        checks: &'a [LimitCheck],
        now: Reading,
        token: u64,
    ) -> Eventual<'a, Result<Reserve, StoreError>> {
        Eventual::now(Ok(self.reserve_now(checks, now.ms, token)))
    }

    fn release<'a>(
        &'a self,
        keys: &'a [String],
        token: u64,
    ) -> Eventual<'a, Result<(), StoreError>> {
        for key in keys {
            let mut shard = self.lock(shard_of(key));
            if let Some(uses) = shard.windows.get_mut(key) {
                if let Some(position) = uses.iter().rposition(|(_, t)| *t == token) {
                    uses.remove(position);
                }
                if uses.is_empty() {
                    shard.windows.remove(key);
                }
            }
        }
        Eventual::now(Ok(()))
    }

    fn greylist<'a>(
        &'a self,
        key: &'a str,
        now: Reading,
        delay: Duration,
        retry_window: Duration,
    ) -> Eventual<'a, Result<Greylist, StoreError>> {
        let now_ms = now.ms;
        let mut shard = self.lock(shard_of(key));
        if shard.greylist.len() >= KEYS_PER_SHARD && !shard.greylist.contains_key(key) {
            shard.greylist.clear();
        }
        let first = *shard.greylist.entry(key.to_owned()).or_insert(now_ms);
        let waited = now_ms.saturating_sub(first);
        let answer = if waited > retry_window.as_millis() as u64 {
            // The retry came too late: start over, like postgrey.
            shard.greylist.insert(key.to_owned(), now_ms);
            Greylist::Wait
        } else if waited >= delay.as_millis() as u64 {
            Greylist::Pass
        } else {
            Greylist::Wait
        };
        Eventual::now(Ok(answer))
    }

    fn bump<'a>(&'a self, key: &'a str) -> Eventual<'a, Result<u64, StoreError>> {
        let mut shard = self.lock(shard_of(key));
        if shard.sequences.len() >= KEYS_PER_SHARD && !shard.sequences.contains_key(key) {
            shard.sequences.clear();
        }
        let count = shard.sequences.entry(key.to_owned()).or_insert(0);
        let before = *count;
        *count += 1;
        Eventual::now(Ok(before))
    }

    fn usage<'a>(
        &'a self,
        now: Reading,
        prefix: &'a str,
        window: Duration,
    ) -> Eventual<'a, Result<Vec<Usage>, StoreError>> {
        let now_ms = now.ms;
        let mut all = Vec::new();
        for index in 0..SHARDS {
            let mut shard = self.lock(index);
            shard.windows.retain(|key, uses| {
                if !key.starts_with(prefix) {
                    return true;
                }
                prune(uses, now_ms, window);
                if !uses.is_empty() {
                    all.push(Usage {
                        key: key.clone(),
                        used: uses.len() as u64,
                        oldest_ms: uses.front().map_or(now_ms, |(at, _)| *at),
                    });
                }
                !uses.is_empty()
            });
        }
        all.sort_by(|a, b| a.key.cmp(&b.key));
        Eventual::now(Ok(all))
    }

    fn greylist_entries<'a>(
        &'a self,
        since_ms: u64,
        limit: usize,
    ) -> Eventual<'a, Result<Listing<GreyEntry>, StoreError>> {
        let mut top = Top::new(limit);
        for index in 0..SHARDS {
            let shard = self.lock(index);
            for (key, &first_seen_ms) in &shard.greylist {
                if first_seen_ms >= since_ms {
                    top.offer(GreyEntry {
                        key: key.clone(),
                        first_seen_ms,
                    });
                }
            }
        }
        Eventual::now(Ok(top.finish()))
    }

    fn sequences<'a>(
        &'a self,
        limit: usize,
    ) -> Eventual<'a, Result<Listing<SequenceEntry>, StoreError>> {
        let mut top = Top::new(limit);
        for index in 0..SHARDS {
            let shard = self.lock(index);
            for (key, &attempts) in &shard.sequences {
                top.offer(SequenceEntry {
                    key: key.clone(),
                    attempts,
                });
            }
        }
        Eventual::now(Ok(top.finish()))
    }

    fn reset<'a>(&'a self) -> Eventual<'a, Result<(), StoreError>> {
        for index in 0..SHARDS {
            *self.lock(index) = Shard::default();
        }
        Eventual::now(Ok(()))
    }

    fn is_immediate(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(key: &str, max: u64) -> LimitCheck {
        LimitCheck {
            key: key.to_owned(),
            max,
            per: Duration::from_secs(3600),
        }
    }

    fn now<T>(maybe: Eventual<'_, T>) -> T {
        match maybe {
            Eventual::Now(Some(value)) => value,
            _ => panic!("the memory store answers at once"),
        }
    }

    #[test]
    fn sliding_window_is_exact() {
        let store = MemoryStore::new();
        let checks = [check("account:a", 3)];
        let hour = 3_600_000;
        for (i, at) in [0, 10, 20].into_iter().enumerate() {
            assert_eq!(
                now(store.reserve(&checks, Reading::from(at), i as u64)).unwrap(),
                Reserve::Reserved
            );
        }
        assert_eq!(
            now(store.reserve(&checks, Reading::from(30), 9)).unwrap(),
            Reserve::Full(0)
        );
        // The first use leaves the window exactly one hour after it was taken.
        assert_eq!(
            now(store.reserve(&checks, Reading::from(hour - 1), 9)).unwrap(),
            Reserve::Full(0)
        );
        assert_eq!(
            now(store.reserve(&checks, Reading::from(hour), 9)).unwrap(),
            Reserve::Reserved
        );
        assert_eq!(
            now(store.reserve(&checks, Reading::from(hour + 5), 10)).unwrap(),
            Reserve::Full(0)
        );
    }

    #[test]
    fn refusal_takes_nothing_and_release_gives_back() {
        let store = MemoryStore::new();
        let both = [check("account:a", 5), check("ip:1", 1)];
        assert_eq!(
            now(store.reserve(&both, Reading::from(0), 1)).unwrap(),
            Reserve::Reserved
        );
        assert_eq!(
            now(store.reserve(&both, Reading::from(0), 2)).unwrap(),
            Reserve::Full(1)
        );
        let mut usage =
            now(store.usage(Reading::from(1), "account:", Duration::from_secs(3600))).unwrap();
        usage.extend(now(store.usage(Reading::from(1), "ip:", Duration::from_secs(3600))).unwrap());
        assert_eq!(
            usage.iter().map(|u| u.used).collect::<Vec<_>>(),
            [1, 1],
            "{usage:?}"
        );
        now(store.release(&["account:a".to_owned(), "ip:1".to_owned()], 1)).unwrap();
        assert_eq!(
            now(store.reserve(&both, Reading::from(0), 3)).unwrap(),
            Reserve::Reserved
        );
    }

    #[test]
    fn greylisting_waits_then_passes() {
        let store = MemoryStore::new();
        let delay = Duration::from_secs(300);
        let window = Duration::from_secs(2 * 86_400);
        assert_eq!(
            now(store.greylist("t", Reading::from(0), delay, window)).unwrap(),
            Greylist::Wait
        );
        assert_eq!(
            now(store.greylist("t", Reading::from(299_999), delay, window)).unwrap(),
            Greylist::Wait
        );
        assert_eq!(
            now(store.greylist("t", Reading::from(300_000), delay, window)).unwrap(),
            Greylist::Pass
        );
        assert_eq!(
            now(store.greylist("other", Reading::from(300_000), delay, window)).unwrap(),
            Greylist::Wait
        );
        // Too late a retry starts over.
        assert_eq!(
            now(store.greylist("late", Reading::from(0), delay, window)).unwrap(),
            Greylist::Wait
        );
        assert_eq!(
            now(store.greylist("late", Reading::from(3 * 86_400_000), delay, window)).unwrap(),
            Greylist::Wait
        );
    }

    #[test]
    fn sequences_count_and_reset_forgets() {
        let store = MemoryStore::new();
        assert_eq!(now(store.bump("k")).unwrap(), 0);
        assert_eq!(now(store.bump("k")).unwrap(), 1);
        now(store.reset()).unwrap();
        assert_eq!(now(store.bump("k")).unwrap(), 0);
    }

    #[test]
    fn greylist_and_sequences_are_listed_bounded() {
        let store = MemoryStore::new();
        let delay = Duration::from_secs(300);
        let window = Duration::from_secs(86_400);
        for (i, at) in [10, 30, 20].into_iter().enumerate() {
            now(store.greylist(&format!("t{i}"), Reading::from(at), delay, window)).unwrap();
        }
        let all = now(store.greylist_entries(0, 10)).unwrap();
        let listed: Vec<(&str, u64)> = all
            .entries
            .iter()
            .map(|e| (e.key.as_str(), e.first_seen_ms))
            .collect();
        assert_eq!(listed, [("t1", 30), ("t2", 20), ("t0", 10)]);
        assert!(!all.truncated);
        let newest = now(store.greylist_entries(0, 1)).unwrap();
        assert_eq!(newest.entries[0].key, "t1");
        assert!(newest.truncated);
        let recent = now(store.greylist_entries(20, 10)).unwrap();
        assert_eq!(recent.entries.len(), 2, "{recent:?}");

        for key in ["a", "b", "b", "b", "c", "c"] {
            now(store.bump(key)).unwrap();
        }
        let sequences = now(store.sequences(2)).unwrap();
        let listed: Vec<(&str, u64)> = sequences
            .entries
            .iter()
            .map(|e| (e.key.as_str(), e.attempts))
            .collect();
        assert_eq!(listed, [("b", 3), ("c", 2)]);
        assert!(sequences.truncated);
        now(store.reset()).unwrap();
        assert_eq!(now(store.sequences(2)).unwrap(), Listing::default());
        assert_eq!(
            now(store.greylist_entries(0, 2)).unwrap(),
            Listing::default()
        );
    }

    #[test]
    fn concurrent_reservations_never_exceed_max() {
        let store = std::sync::Arc::new(MemoryStore::new());
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    let checks = [check("account:race", 200), check("ip:race", 1000)];
                    (0..100)
                        .filter(|i| {
                            now(store.reserve(&checks, Reading::from(0), t * 1000 + i)).unwrap()
                                == Reserve::Reserved
                        })
                        .count()
                })
            })
            .collect();
        let accepted: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(accepted, 200);
    }
}
