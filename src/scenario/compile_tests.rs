//! Loading scenario files: good ones compile, bad ones name line and column.

use super::*;
use crate::limits::Window;
use crate::scenario::rule::{Action, Outcome};

fn error(source: &str) -> ScenarioError {
    Scenario::parse("test.toml", source).expect_err("the scenario should be refused")
}

#[test]
fn design_sketch_compiles() {
    let scenario = Scenario::parse(
        "design.toml",
        r#"
[server]
hostname = "mx.failmail.test"
flavor = "ovh"

[limits]
per_account = { max = 200, per = "1h" }
per_ip      = { max = 300, per = "1h" }
reply = "rate_limited"

[[rule]]
rcpt = "*@nowhere.example"
reply = "user_unknown"

[[rule]]
rcpt = "flaky@*"
sequence = ["greylisted", "greylisted", "accept"]

[[rule]]
mail_from = "*@spam.example"
reply = { code = 554, status = "5.7.1", text = "Message refused as spam" }
probability = 0.5

[[rule]]
rcpt = "slow@*"
at = "data_end"
delay = "20s"
then = "disconnect"
"#,
    )
    .unwrap();
    assert_eq!(scenario.server.flavor, Flavor::Ovh);
    assert_eq!(scenario.rules.len(), 4);
    assert_eq!(scenario.rules[0].phase, Phase::Rcpt);
    assert_eq!(scenario.rules[1].phase, Phase::Rcpt);
    assert_eq!(scenario.rules[2].phase, Phase::Mail);
    assert_eq!(scenario.rules[3].phase, Phase::DataEnd);
    assert_eq!(scenario.rules[3].delay, Some(Duration::from_secs(20)));
    let limits = scenario.limits.clone().unwrap();
    assert_eq!(
        limits.per_account,
        Some(Window {
            max: 200,
            per: Duration::from_secs(3600)
        })
    );
    assert_eq!(limits.per_ip.unwrap().max, 300);
    assert_eq!(scenario.rules_at(Phase::Rcpt).count(), 2);
}

#[test]
fn unknown_key_names_line_and_column() {
    let e = error(
        "[server]\nhostname = \"x\"\n\n[[rule]]\nrcpt = \"a@b\"\nreplly = \"user_unknown\"\n",
    );
    assert_eq!((e.line, e.column), (6, 1), "{e}");
    assert!(e.message.contains("replly"), "{e}");
    assert!(e.to_string().starts_with("test.toml:6:1: "), "{e}");
    assert!(e.hint.is_some());
}

#[test]
fn bad_code_names_line_and_column() {
    let e = error(
        "[[rule]]\nrcpt = \"a@b\"\nreply = { code = 354, status = \"2.0.0\", text = \"go on\" }\n",
    );
    assert_eq!((e.line, e.column), (3, 9), "{e}");
    assert!(e.message.contains("354"), "{e}");
    let e = error(
        "[[rule]]\nrcpt = \"a@b\"\nreply = { code = 250, status = \"2.0.0\", text = \"ok\" }\n",
    );
    assert!(e.message.contains("not a failure"), "{e}");
    let e = error(
        "[[rule]]\nrcpt = \"a@b\"\nreply = { code = 550, status = \"4.1.1\", text = \"x\" }\n",
    );
    assert!(e.message.contains("does not match"), "{e}");
    let e = error("[[rule]]\nat = \"connect\"\nreply = \"auth_failed\"\n");
    assert_eq!((e.line, e.column), (3, 9), "{e}");
    let e = error("[[rule]]\nrcpt = \"a@b\"\nreply = { code = 550, text = \"x\" }\n");
    assert!(e.message.contains("status"), "{e}");
}

#[test]
fn bad_regex_names_line_and_column() {
    let e = error("[[rule]]\nreply = \"user_unknown\"\n  rcpt = \"/(unclosed/\"\n");
    assert_eq!((e.line, e.column), (3, 10), "{e}");
    assert!(e.message.contains("regex"), "{e}");
}

#[test]
fn unknown_catalog_name_names_line_and_column_and_suggests() {
    let e = error("[[rule]]\nrcpt = \"a@b\"\nreply = \"user_unknwn\"\n");
    assert_eq!((e.line, e.column), (3, 9), "{e}");
    assert!(e.message.contains("user_unknwn"), "{e}");
    assert!(e.hint.as_deref().unwrap().contains("user_unknown"), "{e}");
    let e = error("[[rule]]\nrcpt = \"a@b\"\nsequence = [\"greylisted\", \"nope\"]\n");
    assert_eq!((e.line, e.column), (3, 27), "{e}");
}

#[test]
fn other_faults() {
    assert!(error("not toml at all = = =").message.len() > 3);
    assert!(error("[server]\nflavor = \"hotmail\"\n")
        .message
        .contains("flavor"));
    assert!(error("[[rule]]\nrcpt = \"a@b\"\n")
        .message
        .contains("does nothing"));
    assert!(
        error("[[rule]]\nreply = { code = 550, status = \"5.0.0\", text = \"x\" }\n")
            .message
            .contains("phase")
    );
    assert!(
        error("[[rule]]\nat = \"mail\"\nrcpt = \"a@b\"\nthen = \"accept\"\n")
            .message
            .contains("rcpt")
    );
    assert!(
        error("[[rule]]\nrcpt = \"a@b\"\nreply = \"user_unknown\"\nprobability = 1.5\n")
            .message
            .contains("probability")
    );
    assert!(
        error("[[rule]]\nrcpt = \"a@b\"\nreply = \"user_unknown\"\ntimes = 0\n")
            .message
            .contains("times")
    );
    assert!(
        error("[[rule]]\nrcpt = \"a@b\"\nreply = \"user_unknown\"\ndelay = \"soon\"\n")
            .message
            .contains("duration")
    );
    assert!(
        error("[[rule]]\nrcpt = \"a@b\"\nthen = \"abort\"\nreply = \"spam_rejected\"\n")
            .message
            .contains("data")
    );
    assert!(
        error("[[rule]]\nclient_ip = \"10.0.0.0/40\"\nthen = \"disconnect\"\n")
            .message
            .contains("CIDR")
    );
    assert!(error("[limits]\nper_ip = { max = 0, per = \"1h\" }\n")
        .message
        .contains("max"));
    assert!(error("[server]\nauth = \"sometimes\"\n")
        .message
        .contains("auth"));
}

#[test]
fn abort_and_actions() {
    let scenario = Scenario::parse(
        "t.toml",
        "[[rule]]\nat = \"data\"\nrcpt = \"x@*\"\nreply = \"spam_rejected\"\nthen = \"abort\"\n\n[[rule]]\nat = \"connect\"\nthen = \"hang\"\nclient_ip = \"10.0.0.0/8\"\ntimes = 2\n",
    )
    .unwrap();
    assert!(matches!(
        scenario.rules[0].action,
        Action::Always(Outcome::Abort(_))
    ));
    assert!(matches!(
        scenario.rules[1].action,
        Action::Always(Outcome::Hang)
    ));
    assert_eq!(scenario.rules[1].times, Some(2));
}

#[test]
fn lose_reply_acts_at_the_end_of_data_only() {
    let scenario = Scenario::parse(
        "t.toml",
        "[[rule]]\nrcpt = \"dup@*\"\nthen = \"lose_reply\"\n\n[[rule]]\nrcpt = \"once@*\"\nsequence = [\"lose_reply\", \"accept\"]\n",
    )
    .unwrap();
    assert_eq!(scenario.rules[0].phase, Phase::DataEnd);
    assert!(matches!(
        scenario.rules[0].action,
        Action::Always(Outcome::LoseReply)
    ));
    assert_eq!(scenario.rules[1].phase, Phase::DataEnd);
    assert!(matches!(
        &scenario.rules[1].action,
        Action::Sequence(steps) if matches!(steps[..], [Outcome::LoseReply, Outcome::Accept])
    ));
    let at_rcpt = error("[[rule]]\nrcpt = \"dup@*\"\nat = \"rcpt\"\nthen = \"lose_reply\"\n");
    assert_eq!((at_rcpt.line, at_rcpt.column), (4, 8), "{at_rcpt}");
    assert!(at_rcpt
        .message
        .contains("lose_reply acts at data_end, not rcpt"));
    let at_data = error("[[rule]]\nat = \"data\"\nsequence = [\"accept\", \"lose_reply\"]\n");
    assert_eq!((at_data.line, at_data.column), (3, 23), "{at_data}");
    assert!(at_data
        .message
        .contains("lose_reply acts at data_end, not data"));
    assert!(error(
        "[[rule]]\nat = \"data_end\"\nreply = \"user_unknown\"\nthen = \"lose_reply\"\n"
    )
    .message
    .contains("does not go with reply"));
}
