//! A value ready now or later: the one type for answers that usually come at once.
//!
//! The policy's decisions and the limit store's answers are ready at once on the common path
//! (rules in memory, the memory store) and need waiting only across a network (Redis). An
//! [`Eventual`] holds either, so that the common path neither boxes a future nor wakes a task.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A future that may need waiting for; boxed, because it is the rare path.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A value ready now, or a future of it.
pub enum Eventual<'a, T> {
    /// Ready (taken out once when polled as a future).
    Now(Option<T>),
    /// To be awaited.
    Later(BoxFuture<'a, T>),
}

impl<'a, T> Eventual<'a, T> {
    /// A value ready now.
    pub fn now(value: T) -> Self {
        Eventual::Now(Some(value))
    }

    /// A value to wait for.
    pub fn later(future: impl Future<Output = T> + Send + 'a) -> Self {
        Eventual::Later(Box::pin(future))
    }

    /// The value if it is ready, else the future to await: lets a synchronous caller (a test
    /// driver, a benchmark) take the common path without an executor.
    pub fn ready(self) -> Result<T, BoxFuture<'a, T>> {
        match self {
            Eventual::Now(Some(value)) => Ok(value),
            Eventual::Now(None) => panic!("an Eventual was taken twice"),
            Eventual::Later(future) => Err(future),
        }
    }
}

impl<T: Unpin> Future for Eventual<'_, T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match self.get_mut() {
            Eventual::Now(value) => {
                Poll::Ready(value.take().expect("an Eventual polled after completion"))
            }
            Eventual::Later(future) => future.as_mut().poll(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn now_and_later_give_their_value() {
        assert_eq!(Eventual::now(3).await, 3);
        assert_eq!(Eventual::later(async { 4 }).await, 4);
        assert_eq!(Eventual::now(5).ready().ok(), Some(5));
        assert!(Eventual::later(async { 6 }).ready().is_err());
    }
}
