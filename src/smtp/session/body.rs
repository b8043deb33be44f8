//! Message bodies: DATA (dot-stuffed, up to `CRLF.CRLF`) and BDAT chunks (RFC 3030), refused
//! chunks read and dropped to stay in sync, and the abort that answers the first body byte.

use bytes::{Buf, BytesMut};

use super::output::{EnvelopeTrace, Step, Trace};
use super::{Mode, Pending, Session};
use crate::smtp::data::keep_within_limit;
use crate::smtp::header;
use crate::smtp::reply::{fixed, Reply};

impl Session {
    /// Takes body bytes in one of the body modes.
    pub(super) fn body_input(&mut self, input: &mut BytesMut, out: &mut BytesMut) -> Option<Step> {
        match &mut self.mode {
            Mode::Skip { remaining, last } => {
                let take = (*remaining).min(input.len() as u64) as usize;
                input.advance(take);
                *remaining -= take as u64;
                if *remaining > 0 {
                    return Some(Step::NeedInput);
                }
                if *last {
                    self.transaction.clear();
                }
                self.mode = Mode::Command;
            }
            Mode::AbortOnData(reply, decided) => {
                if input.is_empty() {
                    return Some(Step::NeedInput);
                }
                let reply = reply.clone();
                self.deciding = decided.take();
                self.send(out, &reply);
                self.deciding = None;
                input.clear();
                self.mode = Mode::Closed;
            }
            Mode::Data(decoder) => {
                let decoded = decoder.decode(input, &mut self.transaction.body);
                input.advance(decoded.consumed);
                if !decoded.finished {
                    return Some(Step::NeedInput);
                }
                let overflowed = decoder.overflowed();
                self.mode = Mode::Command;
                self.end_of_message(overflowed, out);
            }
            Mode::Chunk {
                remaining,
                last,
                refusal,
            } => {
                let take = (*remaining).min(input.len() as u64) as usize;
                if refusal.is_none() {
                    keep_within_limit(
                        &mut self.transaction.received,
                        self.config.max_message_size,
                        &input[..take],
                        &mut self.transaction.body,
                    );
                }
                input.advance(take);
                *remaining -= take as u64;
                if *remaining > 0 {
                    return Some(Step::NeedInput);
                }
                let (last, refusal) = (*last, refusal.take());
                self.mode = Mode::Command;
                self.end_of_chunk(last, refusal, out);
            }
            _ => {}
        }
        None
    }

    fn end_of_message(&mut self, overflowed: bool, out: &mut BytesMut) {
        if self.envelope_tracing {
            let message_id = header::message_id(&self.transaction.body);
            self.trace
                .push(Trace::Envelope(EnvelopeTrace::DataEnd { message_id }));
        }
        if overflowed {
            self.transaction.clear();
            self.send(out, &fixed::MESSAGE_TOO_BIG);
        } else {
            self.pending = Some(Pending::DataEnd);
        }
    }

    fn end_of_chunk(&mut self, last: bool, refusal: Option<Reply>, out: &mut BytesMut) {
        if let Some(reply) = refusal {
            self.send(out, &reply);
            if reply.closes_connection() {
                self.mode = Mode::Closed;
            }
            if last {
                self.transaction.clear();
            }
            return;
        }
        let overflowed = self.transaction.received > self.config.max_message_size;
        if last {
            self.end_of_message(overflowed, out);
        } else if overflowed {
            self.transaction.chunk_failed = true;
            self.send(out, &fixed::MESSAGE_TOO_BIG);
        } else {
            self.chunk_received(out);
        }
    }
}
