//! The accepted messages, kept in a bounded ring so that tests and people can look at it.
//!
//! The ring never grows past its capacity: the oldest message is dropped and the drop is counted.

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
}

/// A bounded, thread-safe ring of accepted messages.
#[derive(Debug)]
pub struct MessageStore {
    ring: Mutex<VecDeque<Arc<StoredMessage>>>,
    capacity: usize,
    next_id: AtomicU64,
    dropped: AtomicU64,
}

impl MessageStore {
    /// A store that keeps the latest `capacity` messages (0 keeps none, for load tests).
    pub fn new(capacity: usize) -> Self {
        Self {
            ring: Mutex::new(VecDeque::with_capacity(capacity.min(1024))),
            capacity,
            next_id: AtomicU64::new(1),
            dropped: AtomicU64::new(0),
        }
    }

    /// Keeps a message, dropping the oldest one when full; returns its id.
    pub fn push(&self, message: Message) -> u64 {
        if self.capacity == 0 {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return self.next_id.fetch_add(1, Ordering::Relaxed);
        }
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        // The id is taken under the lock, so the ring is in id order.
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let stored = Arc::new(StoredMessage {
            id,
            received_at: SystemTime::now(),
            message,
        });
        if ring.len() >= self.capacity {
            ring.pop_front();
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        ring.push_back(stored);
        id
    }

    /// The kept messages, oldest first.
    pub fn list(&self) -> Vec<Arc<StoredMessage>> {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        ring.iter().cloned().collect()
    }

    /// Forgets every kept message.
    pub fn clear(&self) {
        self.ring.lock().unwrap_or_else(|e| e.into_inner()).clear();
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

    #[test]
    fn zero_capacity_keeps_nothing() {
        let store = MessageStore::new(0);
        assert_eq!(store.push(message(1)), 1);
        assert!(store.list().is_empty());
        assert_eq!(store.dropped(), 1);
    }
}
