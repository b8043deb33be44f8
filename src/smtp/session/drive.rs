//! A synchronous driver for a session over bytes already in hand: the one loop that unit tests,
//! integration tests, benchmarks and fuzz targets share. The server's connection task is the
//! asynchronous twin of [`run`]; both leave every protocol rule to the session.

use bytes::BytesMut;

use super::config::Message;
use super::output::{Step, StoreFailed};
use super::Session;
use crate::smtp::policy::{Decision, Phase, SessionView};

/// Runs `session` from `step` until it needs I/O, and returns that step: [`Step::NeedInput`]
/// (write `out`, then feed more with [`Session::advance`]), [`Step::StartTls`] or
/// [`Step::Close`]. Each phase is decided by `decide`; each accepted message goes to `store`.
pub fn run(
    session: &mut Session,
    input: &mut BytesMut,
    out: &mut BytesMut,
    mut step: Step,
    mut decide: impl FnMut(Phase, &SessionView<'_>) -> Decision,
    mut store: impl FnMut(Message) -> Result<(), StoreFailed>,
) -> Step {
    loop {
        match step {
            Step::Decide(phase) => {
                let decision = decide(phase, &session.view());
                session.answer(decision, out);
            }
            Step::Store => {
                let result = match session.message_to_store() {
                    Some(message) => store(message),
                    None => Ok(()),
                };
                session.stored(result, out);
            }
            done @ (Step::NeedInput | Step::StartTls | Step::Close) => return done,
        }
        step = session.advance(input, out);
    }
}

/// Feeds `bytes` to the session and runs it with [`run`] until it needs I/O again.
pub fn feed(
    session: &mut Session,
    input: &mut BytesMut,
    out: &mut BytesMut,
    bytes: &[u8],
    decide: impl FnMut(Phase, &SessionView<'_>) -> Decision,
    store: impl FnMut(Message) -> Result<(), StoreFailed>,
) -> Step {
    input.extend_from_slice(bytes);
    let step = session.advance(input, out);
    run(session, input, out, step, decide, store)
}
