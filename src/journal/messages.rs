//! The accepted messages, kept in a bounded ring so that tests and people can look at it.
//!
//! The ring never grows past its capacity, in messages and in bytes: the oldest messages are
//! dropped and the drops are counted. The byte bound matters under load with large messages
//! (10,000 messages of 100 KiB would be a gigabyte).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::smtp::session::Message;

/// One accepted message as kept by the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Store-wide id, increasing from 1.
    pub id: u64,
    /// When it was accepted.
    pub received_at: SystemTime,
    /// The message and its envelope.
    pub message: Message,
    /// For a notification failmail made itself (a DSN, a complaint, an auto-reply): its id under
    /// `/api/bounces/{id}`.
    pub bounce: Option<u64>,
}

/// A bounded, thread-safe ring of accepted messages.
#[derive(Debug)]
pub struct MessageStore {
    ring: Mutex<Ring>,
    capacity: usize,
    max_bytes: usize,
    next_id: AtomicU64,
    dropped: AtomicU64,
}

/// The kept messages and the size of their contents.
#[derive(Debug, Default)]
struct Ring {
    messages: VecDeque<Arc<StoredMessage>>,
    bytes: usize,
}

/// What [`MessageStore::new`] allows in bytes unless told otherwise: 256 MiB.
pub const DEFAULT_MAX_BYTES: usize = 256 * 1024 * 1024;

impl MessageStore {
    /// A store that keeps the latest `capacity` messages (0 keeps none, for load tests), within
    /// [`DEFAULT_MAX_BYTES`] of message content.
    pub fn new(capacity: usize) -> Self {
        Self::with_max_bytes(capacity, DEFAULT_MAX_BYTES)
    }

    /// A store that keeps the latest `capacity` messages whose contents add up to at most
    /// `max_bytes` (the newest message is always kept, whatever its size, unless `capacity` is 0).
    pub fn with_max_bytes(capacity: usize, max_bytes: usize) -> Self {
        Self {
            ring: Mutex::new(Ring {
                messages: VecDeque::with_capacity(capacity.min(1024)),
                bytes: 0,
            }),
            capacity,
            max_bytes,
            next_id: AtomicU64::new(1),
            dropped: AtomicU64::new(0),
        }
    }

    /// Whether messages are kept at all (a capacity of 0 keeps none, for load tests).
    pub fn keeps(&self) -> bool {
        self.capacity > 0
    }

    /// Gives an id to a message that is not kept at all (capacity 0), counted as dropped like
    /// one pushed out of the ring, without the message being copied first.
    pub fn pass_over(&self) -> u64 {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Keeps a message, dropping the oldest ones past the bounds; returns its id.
    pub fn push(&self, message: Message) -> u64 {
        self.push_marked(message, None)
    }

    /// Keeps a message, marked as the notification `bounce` when failmail made it.
    pub fn push_marked(&self, message: Message, bounce: Option<u64>) -> u64 {
        if self.capacity == 0 {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return self.next_id.fetch_add(1, Ordering::Relaxed);
        }
        let size = message.data.len();
        let mut dropped = Vec::new();
        let id = {
            let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
            // The id is taken under the lock, so the ring is in id order.
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            while !ring.messages.is_empty()
                && (ring.messages.len() >= self.capacity
                    || ring.bytes.saturating_add(size) > self.max_bytes)
            {
                if let Some(oldest) = ring.messages.pop_front() {
                    ring.bytes -= oldest.message.data.len();
                    dropped.push(oldest);
                }
            }
            ring.bytes += size;
            ring.messages.push_back(Arc::new(StoredMessage {
                id,
                received_at: SystemTime::now(),
                message,
                bounce,
            }));
            id
        };
        // Freed outside the lock: dropping a large message is not free.
        self.dropped
            .fetch_add(dropped.len() as u64, Ordering::Relaxed);
        drop(dropped);
        id
    }

    /// The kept messages, oldest first.
    pub fn list(&self) -> Vec<Arc<StoredMessage>> {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        ring.messages.iter().cloned().collect()
    }

    /// Forgets every kept message.
    pub fn clear(&self) {
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        let messages = std::mem::take(&mut *ring);
        drop(ring);
        drop(messages);
    }

    /// How many bytes of message content are kept.
    pub fn kept_bytes(&self) -> usize {
        self.ring.lock().unwrap_or_else(|e| e.into_inner()).bytes
    }

    /// How many messages were accepted in all.
    pub fn accepted(&self) -> u64 {
        self.next_id.load(Ordering::Relaxed) - 1
    }

    /// How many accepted messages fell out of the ring.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn message(n: u8) -> Message {
        Message {
            session_id: 1,
            queue_id: format!("Q{n}"),
            peer: "127.0.0.1:1".parse().unwrap(),
            helo: None,
            auth_user: None,
            tls: false,
            mail_from: "a@b".into(),
            recipients: vec!["c@d".into()],
            data: Bytes::from(vec![n]),
            dsn: None,
        }
    }

    #[test]
    fn ring_keeps_latest_and_counts_drops() {
        let store = MessageStore::new(2);
        for n in 0..5 {
            store.push(message(n));
        }
        let kept: Vec<_> = store.list().iter().map(|m| m.message.data[0]).collect();
        assert_eq!(kept, vec![3, 4]);
        assert_eq!(store.accepted(), 5);
        assert_eq!(store.dropped(), 3);
        store.clear();
        assert!(store.list().is_empty());
    }

    fn sized(n: u8, size: usize) -> Message {
        Message {
            data: Bytes::from(vec![n; size]),
            ..message(n)
        }
    }

    #[test]
    fn byte_budget_drops_oldest_first() {
        let store = MessageStore::with_max_bytes(100, 250);
        for n in 0..4 {
            store.push(sized(n, 100));
        }
        let kept: Vec<_> = store.list().iter().map(|m| m.message.data[0]).collect();
        assert_eq!(kept, vec![2, 3]);
        assert_eq!(store.kept_bytes(), 200);
        assert_eq!(store.dropped(), 2);
        // A message larger than the whole budget is still kept, alone.
        store.push(sized(9, 1000));
        let kept: Vec<_> = store.list().iter().map(|m| m.message.data[0]).collect();
        assert_eq!(kept, vec![9]);
        assert_eq!(store.kept_bytes(), 1000);
        store.clear();
        assert_eq!(store.kept_bytes(), 0);
    }

    #[test]
    fn zero_capacity_keeps_nothing() {
        let store = MessageStore::new(0);
        assert_eq!(store.push(message(1)), 1);
        assert!(store.list().is_empty());
        assert_eq!(store.dropped(), 1);
    }
}
