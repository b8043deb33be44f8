//! The TLS stream of a session, which sends whatever the TLS layer has to send after every read.
//!
//! rustls answers some records by itself, with no application data: the `no_renegotiation`
//! alert to a TLS 1.2 client that asks to renegotiate, the reply to a TLS 1.3 key update
//! request. tokio-rustls writes such records only when the application writes or flushes, and a
//! session waiting for the client's next command does neither, so the client waited until the
//! command timeout (RFC 5321: 5 minutes) for its answer. Here a read that leaves records to send
//! flushes them at once.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::server::TlsStream;

/// A server-side TLS stream that flushes the TLS layer's own records after each read.
pub(crate) struct FlushingTls<IO>(pub(crate) TlsStream<IO>);

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for FlushingTls<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let stream = &mut self.get_mut().0;
        let read = Pin::new(&mut *stream).poll_read(cx, buf);
        if stream.get_ref().1.wants_write() {
            // Pending means the socket is full: its wake-up polls this read again, which goes on
            // flushing. An error is the read's only while the read itself waits.
            if let Poll::Ready(Err(error)) = Pin::new(&mut *stream).poll_flush(cx) {
                if read.is_pending() {
                    return Poll::Ready(Err(error));
                }
            }
        }
        read
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for FlushingTls<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}
