//! The clock as the bounce scheduler needs it: moving it forward (`POST /api/clock/advance`,
//! `TestServer::advance_clock`) wakes the scheduler, so that a jump of five days sends every
//! notification due by then at once, without waiting.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::clock::{Clock, ClockError, Reading, SharedClock};
use crate::eventual::Eventual;

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

    fn reading(&self) -> Reading {
        self.inner.reading()
    }

    fn advance(&self, by: Duration) -> Eventual<'_, Result<Duration, ClockError>> {
        Eventual::later(async move {
            let moved = self.inner.advance(by).await;
            self.wake.notify_one();
            moved
        })
    }

    fn reset(&self) -> Eventual<'_, Result<(), ClockError>> {
        Eventual::later(async move {
            let reset = self.inner.reset().await;
            self.wake.notify_one();
            reset
        })
    }

    fn offset(&self) -> Duration {
        self.inner.offset()
    }
}
