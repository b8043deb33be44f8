//! Heap allocations on the protocol's common path, counted by a counting allocator: commands
//! such as NOOP and RSET allocate nothing, and a whole transaction allocates only what it keeps
//! (sender, recipients, the message and its queue id). Counts, unlike timings, are exact and
//! repeatable.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;

use bytes::BytesMut;
use failmail::smtp::policy::Decision;
use failmail::smtp::session::{drive, Session, SessionConfig, Step};

/// Counts the allocations of the current thread (tests run on several threads at once).
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        unsafe { System.alloc(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// A session driven as the connection task drives it, with every phase accepted.
struct Driver {
    session: Session,
    input: BytesMut,
    out: BytesMut,
    accepted: usize,
}

impl Driver {
    fn new() -> Self {
        // Thousands of NOOPs in a row: without the junk-command limit, which would close.
        let config = Arc::new(SessionConfig {
            max_junk_commands: 0,
            ..SessionConfig::default()
        });
        let mut driver = Self {
            session: Session::new(config, 1, "127.0.0.1:4000".parse().unwrap(), false),
            // As the connection task sizes them.
            input: BytesMut::with_capacity(64 * 1024),
            out: BytesMut::with_capacity(64 * 1024),
            accepted: 0,
        };
        let step = driver.session.start();
        driver.run(step);
        driver.out.clear();
        driver
    }

    fn run(&mut self, step: Step) {
        let accepted = &mut self.accepted;
        let step = drive::run(
            &mut self.session,
            &mut self.input,
            &mut self.out,
            step,
            |_, _| Decision::CONTINUE,
            |message| {
                // The connection task stores it; here it is dropped.
                drop(message);
                *accepted += 1;
                Ok(())
            },
        );
        // What the metrics read; dropped here as the connection task carries it away.
        self.session.drain_trace().for_each(drop);
        assert_eq!(step, Step::NeedInput, "unexpected step");
    }

    /// Feeds `bytes`, runs the session, and returns how many allocations that took.
    fn feed(&mut self, bytes: &[u8]) -> u64 {
        self.input.extend_from_slice(bytes);
        let before = allocations();
        let step = self.session.advance(&mut self.input, &mut self.out);
        self.run(step);
        let used = allocations() - before;
        self.out.clear();
        used
    }
}

const TRANSACTION: &[u8] = b"MAIL FROM:<load-sender@load.example> SIZE=1024\r\n\
RCPT TO:<load-rcpt@sink.example>\r\n\
DATA\r\n\
Subject: allocation count\r\n\
\r\n\
..a line with a leading dot\r\n\
body body body body body body body body body body body body body body body body\r\n\
.\r\n";

#[test]
fn noop_rset_and_ehlo_allocate_nothing() {
    let mut driver = Driver::new();
    // The first two EHLOs size the name buffers that later ones reuse.
    driver.feed(b"EHLO client.example\r\n");
    driver.feed(b"EHLO client.example\r\n");
    assert_eq!(driver.feed(&b"NOOP\r\n".repeat(1000)), 0, "1000 NOOPs");
    assert_eq!(driver.feed(&b"RSET\r\n".repeat(1000)), 0, "1000 RSETs");
    assert_eq!(
        driver.feed(b"EHLO client.example\r\n"),
        0,
        "EHLO again with the same name"
    );
}

#[test]
fn a_transaction_allocates_only_what_it_keeps() {
    let mut driver = Driver::new();
    driver.feed(b"EHLO client.example\r\n");
    // The first transactions size the buffers that later ones reuse.
    for _ in 0..3 {
        driver.feed(TRANSACTION);
    }
    let counts: Vec<u64> = (0..100).map(|_| driver.feed(TRANSACTION)).collect();
    assert_eq!(driver.accepted, 103);
    // What the stored message keeps: its bytes at their exact size, its queue id, and its copy
    // of the envelope (HELO name, sender, recipient list, recipient). Was 11 before address
    // buffers and the queue-id buffer were reused.
    let most = *counts.iter().max().unwrap();
    assert!(
        most <= 7,
        "a steady-state transaction allocated {most} times: {counts:?}"
    );
}
