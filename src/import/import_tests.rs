use super::*;

const POSTFIX: &str = "From: MAILER-DAEMON@mx.example (Mail Delivery System)\r\nSubject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\n<a@gmail.com>: host gmail-smtp-in.l.google.com[192.0.2.1] said:\r\n    550-5.1.1 The email account that you tried to reach does not exist. Please\r\n    try 550-5.1.1 double-checking the recipient's email address for typos or\r\n    550-5.1.1 unnecessary spaces. Learn more at 550 5.1.1\r\n    https://support.google.com/mail/?p=NoSuchUser x - gsmtp (in reply to RCPT\r\n    TO command)\r\n<b@x.example>: host mx.x.example[192.0.2.2] said: 550 Unknown user (in reply\r\n    to end of DATA command)\r\n\r\n--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example\r\n\r\nFinal-Recipient: rfc822; a@gmail.com\r\nAction: failed\r\nStatus: 5.1.1\r\nRemote-MTA: dns; gmail-smtp-in.l.google.com\r\nDiagnostic-Code: smtp; 550-5.1.1 The email account that you tried to reach does\r\n    not exist. Please try 550-5.1.1 double-checking the recipient's email\r\n    address for typos or 550-5.1.1 unnecessary spaces. Learn more at 550 5.1.1\r\n    https://support.google.com/mail/?p=NoSuchUser x - gsmtp\r\n\r\nFinal-Recipient: rfc822; b@x.example\r\nAction: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 Unknown user\r\n\r\nFinal-Recipient: rfc822; c@x.example\r\nAction: failed\r\nStatus: 5.4.4\r\nDiagnostic-Code: X-Postfix; Host or domain name not found\r\n\r\n--B--\r\n";

#[test]
fn a_dsn_gives_each_recipient_its_reply_phase_and_status() {
    let bounce = read_bounce("gmail.eml", POSTFIX.as_bytes()).unwrap();
    assert_eq!(bounce.reporter.as_deref(), Some("mx.example"));
    assert_eq!(bounce.failures.len(), 2, "{bounce:#?}");
    let a = &bounce.failures[0];
    assert_eq!(
        (a.code, a.status.to_string(), a.phase, a.phase_named),
        (550, "5.1.1".to_owned(), Phase::Rcpt, true)
    );
    assert_eq!(a.lines.len(), 4);
    assert_eq!(a.remote_mta.as_deref(), Some("gmail-smtp-in.l.google.com"));
    let b = &bounce.failures[1];
    assert_eq!(
        (b.phase, b.status_from),
        (Phase::DataEnd, StatusFrom::StatusField)
    );
    assert_eq!(b.lines, ["Unknown user"]);
    assert_eq!(bounce.problems.len(), 1, "{:?}", bounce.problems);
    assert!(
        bounce.problems[0].contains("c@x.example")
            && bounce.problems[0].contains("Host or domain name not found")
    );
}

#[test]
fn what_is_not_a_bounce_is_said_so() {
    let error = read_bounce("note.txt", b"Hello,\nplease call me.\n")
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("note.txt: it quotes no SMTP failure reply"),
        "{error}"
    );
    let error = read_bounce("dns.eml", b"Content-Type: multipart/report; boundary=\"B\"\r\n\r\n--B\r\nContent-Type: message/delivery-status\r\n\r\nFinal-Recipient: rfc822; c@x\r\nAction: failed\r\nStatus: 5.4.4\r\nDiagnostic-Code: X-Postfix; Host not found\r\n--B--\r\n").unwrap_err().to_string();
    assert!(
        error.contains("c@x: the bounce quotes no SMTP reply code"),
        "{error}"
    );
}

#[test]
fn temporary_failures_before_the_last_make_a_sequence() {
    let log = "Jan 1 00:00:01 mx postfix/smtp[1]: A: to=<a@x.example>, status=deferred (host x said: 451 4.7.1 try later (in reply to RCPT TO command))\nJan 1 01:00:01 mx postfix/smtp[1]: A: to=<a@x.example>, status=bounced (host x said: 550 5.7.1 go away (in reply to RCPT TO command))\n";
    let bounce = read_bounce("maillog", log.as_bytes()).unwrap();
    assert_eq!(bounce.failures.len(), 1);
    let failure = &bounce.failures[0];
    assert_eq!(
        failure.code, 550,
        "the last reply ended delivery: {failure:?}"
    );
    assert_eq!(failure.earlier.len(), 1);
    assert_eq!(
        (
            failure.earlier[0].code,
            failure.earlier[0].lines[0].as_str()
        ),
        (451, "try later")
    );
    let (text, problems) = emit::new_scenario(&[bounce]);
    assert!(problems.is_empty(), "{problems:?}");
    assert!(text.contains("sequence = [{ code = 451"), "{text}");
    crate::scenario::compile::Scenario::parse("seq.toml", &text).expect("loads");
}

#[test]
fn a_bare_transcript_has_no_recipient() {
    let bounce = read_bounce("-", b"550-5.7.26 Unauthenticated email is not accepted\n550 5.7.26  https://support.google.com/mail/?p=DmarcRejection x - gsmtp\n").unwrap();
    let failure = &bounce.failures[0];
    assert_eq!(
        (failure.rcpt.as_deref(), failure.phase, failure.phase_named),
        (None, Phase::Rcpt, false)
    );
    assert_eq!(
        failure.lines[1],
        " https://support.google.com/mail/?p=DmarcRejection x - gsmtp"
    );
}
