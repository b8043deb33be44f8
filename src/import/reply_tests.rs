use super::*;

fn status(text: &str) -> Option<EnhancedStatus> {
    EnhancedStatus::parse(text)
}

#[test]
fn a_one_line_reply_in_a_postfix_sentence() {
    let found = find_reply(
        "<a@x.example>: host mx.x.example[192.0.2.8] said:\n    550 5.1.1 Address rejected a@x.example (in reply to\n    RCPT TO command)",
    )
    .unwrap();
    assert_eq!(found.code, 550);
    assert_eq!(found.status, status("5.1.1"));
    assert_eq!(found.lines, ["Address rejected a@x.example"]);
}

#[test]
fn gmail_folded_into_one_line_gets_its_lines_back() {
    let found = find_reply(
        "smtp; 550-5.1.1 The email account that you tried to reach does not exist. Please try\n 550-5.1.1 double-checking the recipient's email address for typos or 550-5.1.1\n unnecessary spaces. Learn more at 550 5.1.1  https://support.google.com/mail/?p=NoSuchUser x12si - gsmtp",
    )
    .unwrap();
    assert_eq!(found.code, 550);
    assert_eq!(found.lines.len(), 4, "{found:?}");
    assert_eq!(
        found.lines[0],
        "The email account that you tried to reach does not exist. Please try"
    );
    assert_eq!(
        found.lines[3],
        "https://support.google.com/mail/?p=NoSuchUser x12si - gsmtp"
    );
}

#[test]
fn exim_kept_lines_keep_their_spacing() {
    let found = find_reply(
        "  a@gmail.com\n    host gmail-smtp-in.l.google.com [192.0.2.1]\n    SMTP error from remote mail server after RCPT TO:<a@gmail.com>:\n    550-5.1.1 The email account that you tried to reach does not exist. Please try\n    550-5.1.1 double-checking the recipient's email address for typos or\n    550-5.1.1 unnecessary spaces. Learn more at\n    550 5.1.1  https://support.google.com/mail/?p=NoSuchUser x - gsmtp\n",
    )
    .unwrap();
    assert_eq!(found.lines.len(), 4);
    assert_eq!(
        found.lines[3],
        " https://support.google.com/mail/?p=NoSuchUser x - gsmtp"
    );
}

#[test]
fn sendmail_transcript_qmail_exchange_zoho_and_bare_codes() {
    let sendmail = find_reply(">>> RCPT To:<a@x>\n<<< 554 5.7.1 <a@x>: Relay access denied\n554 5.0.0 Service unavailable").unwrap();
    assert_eq!(
        (sendmail.code, sendmail.lines[0].as_str()),
        (554, "<a@x>: Relay access denied")
    );
    let qmail = find_reply("192.0.2.135 does not like recipient.\nRemote host said: 450 4.2.2 <a@x>... Mailbox Full\nGiving up on 192.0.2.135.").unwrap();
    assert_eq!((qmail.code, qmail.lines.len()), (450, 1));
    assert_eq!(qmail.lines[0], "<a@x>... Mailbox Full");
    let exchange = find_reply("a@x\nRemote Server returned '550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup'").unwrap();
    assert_eq!(
        exchange.lines[0],
        "RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup"
    );
    let zoho =
        find_reply("a@x Invalid Address, ERROR_CODE :550, ERROR_CODE :5.1.1 <a@x>... User Unknown")
            .unwrap();
    assert_eq!(
        (zoho.code, zoho.status, zoho.lines[0].as_str()),
        (550, status("5.1.1"), "<a@x>... User Unknown")
    );
    let bare = find_reply("    (reason: 550 Unknown user)").unwrap();
    assert_eq!(
        (bare.code, bare.status, bare.lines[0].as_str()),
        (550, None, "Unknown user")
    );
    let hash = find_reply("#550 5.1.1 RESOLVER.ADR.RecipNotFound; not found ##").unwrap();
    assert_eq!(hash.code, 550);
}

#[test]
fn numbers_that_are_not_codes_are_skipped() {
    for text in [
        "Received: from x [192.0.2.222] port=51580 SIZE=1543 at 2010 +0900",
        "#216 lpn LPN000_630 [416] AS(201806281) (10485760)",
        "no reply here",
    ] {
        assert_eq!(find_reply(text), None, "{text}");
    }
    assert_eq!(fold("  a \n\t b  "), "a b");
}

#[test]
fn a_code_said_twice_counts_once() {
    let found = find_reply(
        "The error that the other server returned was: 550 550 5.1.1 user unknown (UserSearch) (state 14).",
    )
    .unwrap();
    assert_eq!((found.code, found.status), (550, status("5.1.1")));
    assert_eq!(found.lines, ["user unknown (UserSearch) (state 14)."]);
}
