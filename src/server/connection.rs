//! One client connection: moves bytes between the socket and the [`Session`], nothing more.
//!
//! Reads what the client sent, lets the session process every complete command in it, writes all
//! the replies with one flush, asks the policy when the session needs a decision, upgrades to TLS
//! on STARTTLS, and applies the RFC 5321 timeouts and the shutdown rules.

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tracing::{debug, warn, Instrument};

use super::{Shared, ShutdownState};
use crate::policy::{Phase, SessionPolicy, Verdict};
use crate::smtp::reply::{fixed, Reply};
use crate::smtp::session::{Session, Step, Waiting};

/// Read buffer growth step; a session never buffers more than one such read plus one line.
const READ_CHUNK: usize = 16 * 1024;

enum Outcome {
    Closed,
    StartTls,
}

struct Buffers {
    input: BytesMut,
    output: BytesMut,
}

/// Serves one accepted TCP connection until it ends.
pub(crate) async fn serve(
    stream: TcpStream,
    implicit_tls: bool,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<ShutdownState>,
) {
    let peer = match stream.peer_addr() {
        Ok(peer) => peer,
        Err(_) => return,
    };
    let _ = stream.set_nodelay(true);
    let id = shared.next_session_id();
    let span = tracing::debug_span!("session", id, %peer);
    run(stream, implicit_tls, shared, shutdown, id, peer)
        .instrument(span)
        .await;
}

async fn run(
    stream: TcpStream,
    implicit_tls: bool,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<ShutdownState>,
    id: u64,
    peer: std::net::SocketAddr,
) {
    debug!(implicit_tls, "connected");
    let mut session = Session::new(shared.session_config.load_full(), id, peer, implicit_tls);
    let mut policy = shared.policy.load().open(peer);
    let mut buffers = Buffers {
        input: BytesMut::with_capacity(1024),
        output: BytesMut::with_capacity(1024),
    };
    let first = session.start();
    let result = if implicit_tls {
        match handshake(&shared, stream).await {
            Some(mut tls) => {
                drive(
                    &mut tls,
                    &mut session,
                    policy.as_mut(),
                    &mut buffers,
                    &shared,
                    &mut shutdown,
                    first,
                )
                .await
            }
            None => return,
        }
    } else {
        let mut plain = stream;
        match drive(
            &mut plain,
            &mut session,
            policy.as_mut(),
            &mut buffers,
            &shared,
            &mut shutdown,
            first,
        )
        .await
        {
            Ok(Outcome::StartTls) => match handshake(&shared, plain).await {
                Some(mut tls) => {
                    session.tls_established();
                    drive(
                        &mut tls,
                        &mut session,
                        policy.as_mut(),
                        &mut buffers,
                        &shared,
                        &mut shutdown,
                        Step::NeedInput,
                    )
                    .await
                }
                None => return,
            },
            other => other,
        }
    };
    match result {
        Ok(_) => debug!("closed"),
        Err(error) => debug!(%error, "connection ended by I/O error"),
    }
}

async fn handshake(
    shared: &Shared,
    stream: TcpStream,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let acceptor = shared.tls.as_ref()?;
    let handshake = acceptor.accept(stream);
    match tokio::time::timeout(shared.timeouts.command, handshake).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(error)) => {
            debug!(%error, "TLS handshake failed");
            None
        }
        Err(_) => {
            debug!("TLS handshake timed out");
            None
        }
    }
}

async fn drive<IO: AsyncRead + AsyncWrite + Unpin>(
    io: &mut IO,
    session: &mut Session,
    policy: &mut dyn SessionPolicy,
    buffers: &mut Buffers,
    shared: &Shared,
    shutdown: &mut watch::Receiver<ShutdownState>,
    mut step: Step,
) -> std::io::Result<Outcome> {
    loop {
        match step {
            Step::Decide(phase) => {
                decide(io, session, policy, buffers, shared, phase).await?;
                step = session.advance(&mut buffers.input, &mut buffers.output);
            }
            Step::StartTls => {
                flush(io, &mut buffers.output).await?;
                return Ok(Outcome::StartTls);
            }
            Step::Close => {
                flush(io, &mut buffers.output).await?;
                let _ = io.shutdown().await;
                return Ok(Outcome::Closed);
            }
            Step::NeedInput => {
                flush(io, &mut buffers.output).await?;
                let state = *shutdown.borrow();
                if state != ShutdownState::Running && !session.in_message() {
                    return close_with(io, &fixed::SHUTTING_DOWN).await;
                }
                let timeout = match session.waiting() {
                    Waiting::Command => shared.timeouts.command,
                    Waiting::Data => shared.timeouts.data,
                };
                if buffers.input.capacity() - buffers.input.len() < READ_CHUNK / 4 {
                    buffers.input.reserve(READ_CHUNK);
                }
                tokio::select! {
                    read = io.read_buf(&mut buffers.input) => {
                        if read? == 0 {
                            return Ok(Outcome::Closed);
                        }
                        step = session.advance(&mut buffers.input, &mut buffers.output);
                    }
                    _ = tokio::time::sleep(timeout) => {
                        if session.is_hung() {
                            return Ok(Outcome::Closed);
                        }
                        debug!(?timeout, "timeout");
                        return close_with(io, &fixed::TIMEOUT).await;
                    }
                    changed = shutdown.changed() => {
                        let state = if changed.is_ok() { *shutdown.borrow() } else { ShutdownState::Force };
                        if state == ShutdownState::Force || !session.in_message() {
                            return close_with(io, &fixed::SHUTTING_DOWN).await;
                        }
                        // Draining: let the message in progress finish.
                    }
                }
            }
        }
    }
}

/// Asks the policy about a phase and hands the verdict to the session.
async fn decide<IO: AsyncWrite + Unpin>(
    io: &mut IO,
    session: &mut Session,
    policy: &mut dyn SessionPolicy,
    buffers: &mut Buffers,
    shared: &Shared,
    phase: Phase,
) -> std::io::Result<()> {
    let decision = policy.decide(phase, &session.view()).resolve().await;
    if let Some(delay) = decision.delay {
        flush(io, &mut buffers.output).await?;
        tokio::time::sleep(delay).await;
    }
    let mut verdict = decision.verdict;
    let accepts = match &verdict {
        Verdict::Continue => true,
        Verdict::Reply(reply) => reply.is_positive(),
        _ => false,
    };
    if phase == Phase::DataEnd && accepts {
        let message = session.take_message();
        match shared.deliver(message) {
            Ok(()) => {
                if let Some(counting) = policy.accepted(&session.view()) {
                    counting.await;
                }
            }
            Err(error) => {
                warn!(%error, "message could not be stored");
                verdict = Verdict::Reply(fixed::STORE_FAILED);
            }
        }
    }
    session.answer(verdict, &mut buffers.output);
    Ok(())
}

async fn flush<IO: AsyncWrite + Unpin>(io: &mut IO, output: &mut BytesMut) -> std::io::Result<()> {
    if !output.is_empty() {
        io.write_all(output).await?;
        output.clear();
    }
    io.flush().await
}

async fn close_with<IO: AsyncWrite + Unpin>(
    io: &mut IO,
    reply: &Reply,
) -> std::io::Result<Outcome> {
    io.write_all(reply.wire()).await?;
    io.flush().await?;
    let _ = io.shutdown().await;
    Ok(Outcome::Closed)
}
