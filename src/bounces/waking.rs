//! The clock as the bounce scheduler needs it: moving it forward (`POST /api/clock/advance`,
//! `TestServer::advance_clock`) wakes the scheduler, so that a jump of five days sends every
//! notification due by then at once, without waiting.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::clock::{Clock, SharedClock};

/// A clock that tells the scheduler each time it is moved forward.
#[derive(Debug)]
pub struct WakingClock {
    inner: SharedClock,
    wake: Arc<Notify>,
}

impl WakingClock {
    /// `inner`, notifying `wake` on every advance.
    pub fn new(inner: SharedClock, wake: Arc<Notify>) -> Self {
        Self { inner, wake }
    }
}

impl Clock for WakingClock {
    fn now(&self) -> Duration {
        self.inner.now()
    }

    fn now_ms(&self) -> u64 {
        self.inner.now_ms()
    }

    fn advance(&self, by: Duration) {
        self.inner.advance(by);
        self.wake.notify_one();
    }

    fn offset(&self) -> Duration {
        self.inner.offset()
    }
}
