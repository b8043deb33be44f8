//! The messages the history follows, in a bounded queue, with the indexes that find the message
//! an attempt continues: by `Message-ID`, by (sender, recipient) and by sender.
//!
//! Index keys are hashes of the addresses (ASCII case folded) or of the `Message-ID`, made with
//! keys random per history (foldhash's fast hasher, a fraction of SipHash's cost per attempt),
//! so that no client can aim at collisions; a hit is checked against the message itself, so
//! that a collision only misses.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::Arc;

use foldhash::fast::RandomState;

use smallvec::SmallVec;

use super::attempt::Attempt;
use super::book::FollowedMessage;

/// A map from index keys, which are hashes already: they are used as they are.
type KeyMap = HashMap<u64, u64, BuildHasherDefault<KeyHasher>>;

/// Passes an index key (a hash) through unchanged.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

/// The index keys of one attempt, hashed once: its `Message-ID`, its sender, and (sender,
/// recipient) for each of its recipients, in order.
pub(super) struct Keys {
    pub(super) id: Option<u64>,
    pub(super) sender: u64,
    pub(super) pairs: SmallVec<[u64; 4]>,
}

/// The messages followed and their indexes.
#[derive(Debug, Default)]
pub(super) struct Followed {
    pub(super) next_attempt: u64,
    next_key: u64,
    /// Oldest first; keys are consecutive, so the key is the position plus the first key.
    pub(super) messages: VecDeque<FollowedMessage>,
    /// `Message-ID` → its message.
    by_id: KeyMap,
    /// (sender, recipient), case folded → the latest message of that sender with them.
    pub(super) by_envelope: KeyMap,
    /// Sender, case folded → its latest message.
    pub(super) by_sender: KeyMap,
    hashing: RandomState,
}

impl Followed {
    /// The index keys of `attempt`.
    pub(super) fn keys(&self, attempt: &Attempt) -> Keys {
        let sender = self.folded(0, &attempt.sender);
        Keys {
            id: attempt.message_id.as_deref().map(|id| self.id_key(id)),
            sender,
            pairs: attempt
                .recipients
                .iter()
                .map(|(rcpt, _)| self.pair(sender, rcpt))
                .collect(),
        }
    }

    /// The (sender, recipient) key of `rcpt` with the sender whose key is `sender`: the sender
    /// is hashed once per attempt, not once per recipient.
    pub(super) fn pair(&self, sender: u64, rcpt: &str) -> u64 {
        self.folded(sender, rcpt)
    }

    /// A hash of `prefix` and `text`, ASCII case folded, without a heap copy.
    fn folded(&self, prefix: u64, text: &str) -> u64 {
        let mut hasher = self.hashing.build_hasher();
        hasher.write_u64(prefix);
        let mut buffer = [0u8; 64];
        for chunk in text.as_bytes().chunks(buffer.len()) {
            let lower = &mut buffer[..chunk.len()];
            lower.copy_from_slice(chunk);
            lower.make_ascii_lowercase();
            hasher.write(lower);
        }
        hasher.finish()
    }

    fn id_key(&self, message_id: &str) -> u64 {
        self.hashing.hash_one(message_id)
    }

    /// Where the message with `key` stands in the queue.
    pub(super) fn position(&self, key: u64) -> Option<usize> {
        let first = self.messages.front()?.key;
        let at = usize::try_from(key.checked_sub(first)?).ok()?;
        (at < self.messages.len()).then_some(at)
    }

    fn get(&self, key: u64) -> Option<&FollowedMessage> {
        self.position(key).map(|at| &self.messages[at])
    }

    /// The message `attempt` (with its index `keys`) continues, if any (see [`super`]).
    pub(super) fn target(&self, attempt: &Attempt, keys: &Keys) -> Option<u64> {
        if let (Some(id), Some(id_key)) = (&attempt.message_id, keys.id) {
            let key = self.by_id.get(&id_key).copied();
            let same = |key| {
                self.get(key)
                    .is_some_and(|m| m.message_id.as_deref() == Some(&**id))
            };
            if key.is_some_and(same) {
                return key;
            }
        }
        let fits = |key: u64| {
            self.get(key).is_some_and(|m| {
                (attempt.message_id.is_none() || m.message_id.is_none())
                    && m.sender.eq_ignore_ascii_case(&attempt.sender)
                    && m.continued_by(attempt)
            })
        };
        keys.pairs
            .iter()
            .filter_map(|pair| self.by_envelope.get(pair))
            .chain(self.by_sender.get(&keys.sender))
            .copied()
            .filter(|key| fits(*key))
            .max()
    }

    /// Names the message at `at` by `message_id` (its index key `id_key`), if it had no
    /// `Message-ID` yet.
    pub(super) fn name(&mut self, at: usize, message_id: &Arc<str>, id_key: u64) {
        if self.messages[at].message_id.is_none() {
            let key = self.messages[at].key;
            self.messages[at].message_id = Some(message_id.clone());
            self.by_id.insert(id_key, key);
        }
    }

    /// Starts following a new message for `attempt`; returns its key and the messages that fell
    /// out to make room.
    pub(super) fn start(
        &mut self,
        attempt: &Attempt,
        sender_key: u64,
        capacity: usize,
    ) -> (u64, Vec<FollowedMessage>) {
        self.next_key += 1;
        let key = self.next_key;
        self.messages
            .push_back(FollowedMessage::new(key, &attempt.sender, sender_key));
        let mut evicted = Vec::new();
        while self.messages.len() > capacity.max(1) {
            if let Some(old) = self.messages.pop_front() {
                self.forget(&old);
                evicted.push(old);
            }
        }
        (key, evicted)
    }

    /// Drops the index entries that point to `message`.
    fn forget(&mut self, message: &FollowedMessage) {
        let key = message.key;
        let unlink = |map: &mut KeyMap, index: u64| {
            if map.get(&index) == Some(&key) {
                map.remove(&index);
            }
        };
        if let Some(id) = &message.message_id {
            let index = self.id_key(id);
            unlink(&mut self.by_id, index);
        }
        for tally in &message.recipients {
            unlink(&mut self.by_envelope, tally.pair);
        }
        unlink(&mut self.by_sender, message.sender_key);
    }

    /// Forgets every message (keys and ids go on increasing).
    pub(super) fn clear(&mut self) {
        self.messages.clear();
        self.by_id.clear();
        self.by_envelope.clear();
        self.by_sender.clear();
    }
}
