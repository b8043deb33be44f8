//! The mail transaction being received: envelope, body, and buffers kept for the next one, so
//! that MAIL and RCPT need no allocation on a reused connection.

use bytes::BytesMut;

/// A message buffer up to this size is kept for the connection's next message; a larger one is
/// freed, so that idle connections that once received a big message stay small.
pub(super) const REUSED_BODY_CAPACITY: usize = 64 * 1024;

/// Room made for a message body when DATA starts: most test messages fit.
pub(super) const INITIAL_BODY_CAPACITY: usize = 8 * 1024;

/// At most this many address buffers are kept for reuse, each at most this large.
const SPARE_ADDRESSES: usize = 8;
const SPARE_ADDRESS_CAPACITY: usize = 512;

#[derive(Debug, Default)]
pub(super) struct Transaction {
    pub(super) from: Option<String>,
    pub(super) smtputf8: bool,
    pub(super) binary: bool,
    pub(super) recipients: Vec<String>,
    pub(super) recipient_attempted: bool,
    pub(super) chunking: bool,
    pub(super) chunk_failed: bool,
    pub(super) body: BytesMut,
    pub(super) received: u64,
    /// Address buffers of earlier transactions, reused so that MAIL and RCPT need no allocation.
    spare: Vec<String>,
    /// A buffer for the queue id in the 250 reply, reused.
    pub(super) queue_id: String,
    /// RFC 3461 parameters and later fates, per accepted recipient.
    pub(super) dsn: super::dsn::DsnParams,
}

impl Transaction {
    pub(super) fn clear(&mut self) {
        if let Some(from) = self.from.take() {
            self.keep_spare(from);
        }
        self.smtputf8 = false;
        self.binary = false;
        while let Some(recipient) = self.recipients.pop() {
            self.keep_spare(recipient);
        }
        self.recipient_attempted = false;
        self.chunking = false;
        self.chunk_failed = false;
        self.body.clear();
        // A buffer grown by a big message that was refused or reset is not kept for the
        // connection's life.
        if self.body.capacity() > REUSED_BODY_CAPACITY {
            self.body = BytesMut::new();
        }
        self.received = 0;
        self.dsn.clear();
    }

    fn keep_spare(&mut self, mut buffer: String) {
        if self.spare.len() < SPARE_ADDRESSES && buffer.capacity() <= SPARE_ADDRESS_CAPACITY {
            buffer.clear();
            self.spare.push(buffer);
        }
    }

    /// A buffer to receive the next address: a spare one if any.
    pub(super) fn buffer(&mut self) -> String {
        self.spare.pop().unwrap_or_default()
    }
}
