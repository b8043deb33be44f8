use super::*;
use crate::import::read_bounce;

const BOUNCE: &str = "<a@gmail.com>: host mx said: 550-5.1.1 The email account that you tried to reach does not exist. Please try\n550-5.1.1 double-checking the recipient's email address for typos or\n550-5.1.1 unnecessary spaces. Learn more at\n550 5.1.1  https://support.google.com/mail/?p=NoSuchUser abc - gsmtp\n";

#[test]
fn a_new_scenario_loads_and_keeps_every_line() {
    let bounce = read_bounce("gmail.txt", BOUNCE.as_bytes()).unwrap();
    let (text, problems) = new_scenario(&[bounce]);
    assert!(problems.is_empty(), "{problems:?}");
    assert!(text.contains("# From gmail.txt"), "{text}");
    let scenario = Scenario::parse("imported.toml", &text).expect(&text);
    assert_eq!(scenario.rules.len(), 1);
    assert_eq!(scenario.rules[0].phase, Phase::Rcpt);
    assert!(
        text.contains("\" https://support.google.com/mail/?p=NoSuchUser abc - gsmtp\""),
        "{text}"
    );
}

#[test]
fn rules_are_added_to_a_scenario_with_its_comments_kept() {
    let existing = "# my scenario\n[server]\nflavor = \"gmail\" # keep me\n\n[[rule]]\n# first\nrcpt = \"x@y\"\nreply = \"user_unknown\"\n";
    let bounce = read_bounce("gmail.txt", BOUNCE.as_bytes()).unwrap();
    let (text, problems) = add_to_scenario("mine.toml", existing, &[bounce]).unwrap();
    assert!(problems.is_empty());
    assert!(text.starts_with(existing.trim_end()), "{text}");
    assert_eq!(Scenario::parse("mine.toml", &text).unwrap().rules.len(), 2);
    let error = add_to_scenario("bad.toml", "rule = 3\n", &[])
        .unwrap_err()
        .to_string();
    assert!(error.contains("bad.toml"), "{error}");
}

#[test]
fn magic_addresses_where_the_catalog_has_the_text() {
    let bounce = read_bounce("gmail.txt", BOUNCE.as_bytes()).unwrap();
    let lines = magic_addresses(&[bounce]);
    assert_eq!(
        lines,
        ["gmail.txt: a@gmail.com: user_unknown+gmail@gmail.com (the same code, status and text)"]
    );
    let other = read_bounce(
        "x.txt",
        b"<a@x.example>: host mx said: 550 5.1.1 no such person (in reply to RCPT TO command)\n",
    )
    .unwrap();
    let lines = magic_addresses(&[other]);
    assert!(
        lines[0].contains("550-5.1.1@x.example (the same code and status;"),
        "{lines:?}"
    );
    assert_eq!(rcpt_pattern(Some("we*rd@x")), "/(?i)^we\\*rd@x$/");
}
