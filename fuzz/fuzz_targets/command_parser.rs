//! Arbitrary bytes as one SMTP command line.
//!
//! The parser is the first code that sees what a client sends, and it slices strings by hand, so
//! a wrong index would be a remotely triggered panic. Besides never panicking it must: borrow every
//! string it returns from the line, refuse only with a 5xx reply, read verbs case-insensitively,
//! and ignore trailing blanks.
#![no_main]

use failmail::smtp::command::{parse_command, Command};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|line: &[u8]| {
    let parsed = parse_command(line);
    match parsed {
        Ok(command) => {
            // An empty string (the null path `<>`) need not point anywhere.
            for text in borrowed(&command).into_iter().filter(|t| !t.is_empty()) {
                let range = line.as_ptr_range();
                let start = text.as_ptr();
                assert!(
                    range.start <= start && start as usize + text.len() <= range.end as usize,
                    "{text:?} is not a slice of the line"
                );
            }
        }
        Err(error) => {
            let reply = error.reply();
            assert!((500..600).contains(&reply.code()), "{error:?} -> {reply:?}");
        }
    }

    // The verb's case does not matter.
    let verb_end = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
    for change in [
        <[u8]>::make_ascii_uppercase as fn(&mut [u8]),
        <[u8]>::make_ascii_lowercase,
    ] {
        let mut other = line.to_vec();
        change(&mut other[..verb_end]);
        assert_eq!(
            parse_command(&other),
            parsed,
            "verb case changed the result"
        );
    }

    // Trailing spaces and tabs are not part of the command.
    let mut padded = line.to_vec();
    padded.extend_from_slice(b" \t ");
    assert_eq!(
        parse_command(&padded),
        parsed,
        "trailing blanks changed the result"
    );
});

/// Every string a command carries.
fn borrowed<'a>(command: &Command<'a>) -> Vec<&'a str> {
    match *command {
        Command::Ehlo(text) | Command::Helo(text) | Command::Vrfy(text) | Command::Expn(text) => {
            vec![text]
        }
        Command::Mail(mail) => [Some(mail.from), mail.envid, mail.auth]
            .into_iter()
            .flatten()
            .collect(),
        Command::Rcpt(rcpt) => [Some(rcpt.to), rcpt.orcpt].into_iter().flatten().collect(),
        Command::Auth { mechanism, initial } => {
            [Some(mechanism), initial].into_iter().flatten().collect()
        }
        Command::Data
        | Command::Bdat { .. }
        | Command::Rset
        | Command::Noop
        | Command::Quit
        | Command::Help
        | Command::StartTls => Vec::new(),
    }
}
