//! Open connections per client IP: the one counter behind both `--max-connections-per-ip`
//! (refused at accept) and a scenario's `[limits] connections_per_ip` (refused at the greeting,
//! in the scenario's wording).
//!
//! The server counts every accepted connection here, so the count is right whatever the live
//! scenario is (a reload never forgets the connections already open). The map is locked only
//! for an increment when a connection is accepted and a decrement when it ends, never across an
//! `.await`, and holds only the addresses with connections open.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Open connections per (canonical) client IP.
#[derive(Debug, Default)]
pub struct OpenConnections {
    open: Mutex<HashMap<IpAddr, u32>>,
}

impl OpenConnections {
    /// Counts one more connection from `ip`; the count goes down when the slot is dropped.
    pub fn open(self: &Arc<Self>, ip: IpAddr) -> ConnectionSlot {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(ip).or_insert(0);
        *count = count.saturating_add(1);
        ConnectionSlot {
            counter: self.clone(),
            ip,
            count: *count,
        }
    }

    /// How many connections from `ip` are open now.
    pub fn count(&self, ip: IpAddr) -> u32 {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.get(&ip).copied().unwrap_or(0)
    }
}

/// One open connection, counted in [`OpenConnections`] until it is dropped.
#[derive(Debug)]
pub struct ConnectionSlot {
    counter: Arc<OpenConnections>,
    ip: IpAddr,
    count: u32,
}

impl ConnectionSlot {
    /// Connections open from this IP when this one was counted, itself included.
    pub fn count(&self) -> u32 {
        self.count
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self.counter.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_go_up_and_down_per_ip() {
        let counter = Arc::new(OpenConnections::default());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = counter.open(a);
        let second = counter.open(a);
        let other = counter.open(b);
        assert_eq!((first.count(), second.count(), other.count()), (1, 2, 1));
        drop(first);
        assert_eq!(counter.count(a), 1);
        drop((second, other));
        assert_eq!((counter.count(a), counter.count(b)), (0, 0));
        assert!(
            counter.open.lock().unwrap().is_empty(),
            "nothing kept for closed IPs"
        );
    }
}
