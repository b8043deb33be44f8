use super::*;

fn one(text: &str) -> Record {
    let found = records(text);
    assert_eq!(found.len(), 1, "{found:#?}");
    found.into_iter().next().unwrap()
}

#[test]
fn postfix_exim_qmail_sendmail() {
    let postfix = one("<a@x.example>: host mx.x.example[192.0.2.8] said: 550\n    5.1.1 <a@x.example>... User Unknown (in reply to RCPT TO\n    command)\n");
    assert_eq!(
        (postfix.rcpt.as_deref(), postfix.phase),
        (Some("a@x.example"), Some(Phase::Rcpt))
    );
    let exim = records("  a@x.example\n    SMTP error from remote mail server after RCPT TO:<a@x.example>:\n    host mx [192.0.2.1]: 550 5.1.1 unknown\n  b@x.example\n    SMTP error from remote mail server after end of data:\n    host mx [192.0.2.1]: 554 5.7.0 Header error\n");
    assert_eq!(exim.len(), 2);
    assert_eq!(
        (exim[1].rcpt.as_deref(), exim[1].phase),
        (Some("b@x.example"), Some(Phase::DataEnd))
    );
    let mail = one("  kijitora\n    SMTP error from remote mail server after MAIL FROM:<s@y.example> SIZE=1543:\n    host mx [192.0.2.20]: 550 5.7.0 <s@y.example>... no\n");
    assert_eq!((mail.rcpt, mail.phase), (None, Some(Phase::Mail)));
    let qmail = one("<a@x.example>:\n192.0.2.135 does not like recipient.\nRemote host said: 450 4.2.2 <a@x.example>... Mailbox Full\nGiving up on 192.0.2.135.\n");
    assert_eq!((qmail.reply.code, qmail.phase), (450, Some(Phase::Rcpt)));
    let sendmail = records("<a@x.example>\n    (reason: 554 5.7.1 <a@x.example>: Relay access denied)\n\n   ----- Transcript of session follows -----\n... while talking to mx.x.example.:\n>>> RCPT To:<a@x.example>\n<<< 554 5.7.1 <a@x.example>: Relay access denied\n554 5.0.0 Service unavailable\n");
    assert_eq!(sendmail.len(), 2);
    assert_eq!(sendmail[1].phase, Some(Phase::Rcpt));
    assert_eq!(sendmail[0].reply, sendmail[1].reply);
    let named = one("Delivery to the following recipients failed permanently:\n\n   * a@x.example\n\nSMTP:RCPT host 192.0.2.8: 553 5.3.0 <a@x.example>... No such user here\n");
    assert_eq!((named.reply.code, named.phase), (553, Some(Phase::Rcpt)));
    let data = one("SMTP:DATA host 192.0.2.8: 554 5.6.0 Message rejected\n");
    assert_eq!(data.phase, Some(Phase::Data));
    // Without `host` after it, `SMTP:` is no phase (a Diagnostic-Code type, a URL).
    let not_named = one("Diagnostic-Code: smtp:rcpt 550 5.1.1 unknown\n");
    assert_ne!(not_named.phase, Some(Phase::Rcpt));
}

#[test]
fn log_lines_and_bare_transcripts() {
    let log = records("May 01 17:56:05 mx postfix/smtp[7]: 9A7: to=<a@mail.ru>, relay=mxs.mail.ru[217.69.139.150]:25, dsn=5.0.0, status=bounced (host mxs.mail.ru[217.69.139.150] said: 550 Message was not accepted -- invalid mailbox.  Local mailbox a@mail.ru is unavailable: user not found (in reply to end of DATA command))\nMay 01 17:56:06 mx postfix/smtp[7]: 9A8: to=<b@x.example>, relay=x, status=deferred (host x said: 450 4.7.1 later (in reply to RCPT TO command))\n");
    assert_eq!(log.len(), 2);
    assert_eq!(
        (log[0].rcpt.as_deref(), log[0].phase),
        (Some("a@mail.ru"), Some(Phase::DataEnd))
    );
    assert_eq!(log[0].reply.lines, ["Message was not accepted -- invalid mailbox. Local mailbox a@mail.ru is unavailable: user not found"]);
    assert_eq!((log[1].reply.code, log[1].phase), (450, Some(Phase::Rcpt)));
    let bare = one("550-5.1.1 The email account that you tried to reach does not exist.\n550 5.1.1  https://support.google.com/mail/?p=NoSuchUser x - gsmtp\n");
    assert_eq!(
        (bare.rcpt, bare.phase, bare.reply.lines.len()),
        (None, None, 2)
    );
    let session = one(
        "C: MAIL FROM:<s@y.example>\nS: 250 2.1.0 Ok\nC: RCPT TO:<a@x.example>\n552 5.2.2 full\n",
    );
    assert_eq!(
        (session.rcpt.as_deref(), session.phase),
        (Some("a@x.example"), Some(Phase::Rcpt))
    );
}
