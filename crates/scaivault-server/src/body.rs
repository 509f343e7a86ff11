//! Request bodies that must keep arriving: a body that stalls for longer than a gap (the
//! header timeout) between two frames fails, and so does one that is not complete by a
//! deadline (set for the routes a client without a token can reach). A client cannot hold a
//! connection, a handler and a buffer by announcing a body and sending it a byte at a time.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

pub(crate) struct TimedBody<B> {
    inner: B,
    gap: Duration,
    deadline: Option<Instant>,
    /// Made on the first wait: most bodies (every GET's) arrive at once or are never read,
    /// and then cost no timer at all.
    timer: Option<Pin<Box<Sleep>>>,
}

impl<B> TimedBody<B> {
    /// Fails when no frame arrives for `gap`.
    pub fn new(inner: B, gap: Duration) -> TimedBody<B> {
        TimedBody {
            inner,
            gap,
            deadline: None,
            timer: None,
        }
    }

    /// Fails when no frame arrives for `gap`, or the body is not complete by `deadline`.
    pub fn with_deadline(inner: B, gap: Duration, deadline: Instant) -> TimedBody<B> {
        let mut b = TimedBody::new(inner, gap);
        b.deadline = Some(deadline);
        b.timer = Some(Box::pin(tokio::time::sleep_until(
            (Instant::now() + gap).min(deadline),
        )));
        b
    }

    fn next_deadline(&self) -> Instant {
        let next = Instant::now() + self.gap;
        self.deadline.map_or(next, |d| next.min(d))
    }
}

fn too_slow() -> axum::BoxError {
    Box::new(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "the request body arrived too slowly",
    ))
}

impl<B> Body for TimedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(f) => {
                if this.timer.is_some() {
                    let next = this.next_deadline();
                    if let Some(t) = this.timer.as_mut() {
                        t.as_mut().reset(next);
                    }
                }
                Poll::Ready(f.map(|r| r.map_err(Into::into)))
            }
            Poll::Pending => {
                let next = this.next_deadline();
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(next)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(too_slow()))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body that sends one frame, then nothing.
    struct Stalls(bool);

    impl Body for Stalls {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            if self.0 {
                Poll::Pending
            } else {
                self.0 = true;
                Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"{")))))
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_fails_after_the_gap() {
        use http_body_util::BodyExt as _;
        let mut b = TimedBody::new(Stalls(false), Duration::from_secs(10));
        assert!(b.frame().await.unwrap().is_ok());
        let started = Instant::now();
        let e = b.frame().await.unwrap().unwrap_err();
        assert!(e.to_string().contains("too slowly"));
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }
}
