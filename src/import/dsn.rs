//! RFC 3464 delivery status fields (`message/delivery-status`): the per-message group
//! (`Reporting-MTA`, `Arrival-Date`) and one group per recipient (`Final-Recipient`, `Action`,
//! `Status`, `Remote-MTA`, `Diagnostic-Code`, `Will-Retry-Until`), with folded lines unfolded.

/// One recipient's delivery status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecipientStatus {
    /// `Final-Recipient` (else `Original-Recipient`), without its address type.
    pub recipient: String,
    /// `Action`: failed, delayed, delivered, relayed, expanded.
    pub action: String,
    /// `Status`: the enhanced status code the reporting MTA gives.
    pub status: String,
    /// The whole `Status` field (some MTAs put a reply there: `553 Exceeded …`).
    pub status_text: String,
    /// `Remote-MTA`, without its type.
    pub remote_mta: Option<String>,
    /// `Diagnostic-Code`, without its type (`smtp;`), unfolded.
    pub diagnostic: Option<String>,
    /// `Will-Retry-Until` (a delay notice's), as written.
    pub will_retry_until: Option<String>,
}

/// A whole delivery status report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryStatus {
    /// `Reporting-MTA`, without its type.
    pub reporting_mta: Option<String>,
    /// `Arrival-Date`: when the reporting MTA accepted the message, as written.
    pub arrival_date: Option<String>,
    /// The recipients, in report order.
    pub recipients: Vec<RecipientStatus>,
}

/// Reads the fields of a `message/delivery-status` body. Unknown fields are ignored; a group
/// with no recipient is the per-message group.
pub fn parse(text: &str) -> DeliveryStatus {
    let mut report = DeliveryStatus::default();
    for group in groups(text) {
        let mut recipient = RecipientStatus::default();
        let mut original = None;
        for (name, value) in &group {
            match name.as_str() {
                "reporting-mta" => report.reporting_mta = Some(typed(value)),
                "arrival-date" => report.arrival_date = Some(value.clone()),
                "will-retry-until" => recipient.will_retry_until = Some(value.clone()),
                "final-recipient" => recipient.recipient = address(value),
                "original-recipient" => original = Some(address(value)),
                "action" => recipient.action = value.trim().to_ascii_lowercase(),
                "status" => {
                    recipient.status = value.split_whitespace().next().unwrap_or("").to_owned();
                    recipient.status_text = value.clone();
                }
                "remote-mta" => recipient.remote_mta = Some(typed(value)),
                "diagnostic-code" => recipient.diagnostic = Some(typed(value)),
                _ => {}
            }
        }
        if recipient.recipient.is_empty() {
            if let Some(original) = original {
                recipient.recipient = original;
            }
        }
        // One group per recipient: a repeated one (a local alias loop lists it again) adds
        // nothing.
        let repeated = report
            .recipients
            .iter()
            .any(|r| r.recipient.eq_ignore_ascii_case(&recipient.recipient));
        if !recipient.recipient.is_empty() && !repeated {
            report.recipients.push(recipient);
        }
    }
    report
}

/// The field groups (separated by blank lines), each as (lower-case name, unfolded value).
fn groups(text: &str) -> Vec<Vec<(String, String)>> {
    let mut groups = Vec::new();
    let mut group: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            if !group.is_empty() {
                groups.push(std::mem::take(&mut group));
            }
        } else if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = group.last_mut() {
                value.push('\n');
                value.push_str(line);
            }
        } else if let Some((name, value)) = line.split_once(':') {
            group.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    if !group.is_empty() {
        groups.push(group);
    }
    groups
}

/// `rfc822; a@b` → `a@b` (angle brackets dropped too).
fn address(value: &str) -> String {
    typed(value)
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim()
        .to_owned()
}

/// `dns; mx.example` → `mx.example`: the value after its type, if it has one.
fn typed(value: &str) -> String {
    match value.split_once(';') {
        Some((kind, rest)) if !kind.contains(' ') && kind.len() < 16 => rest.trim().to_owned(),
        _ => value.trim().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_per_recipient_with_folding() {
        let report = parse(
            "Reporting-MTA: dns; mx.example.jp\r\nArrival-Date: x\r\n\r\nFinal-Recipient: RFC822; <a@x.example>\r\nAction: failed\r\nStatus: 5.1.1 (unknown)\r\nRemote-MTA: DNS; mx.x.example\r\nDiagnostic-Code: smtp; 550 5.1.1 Address rejected\r\n    a@x.example\r\n\r\nOriginal-Recipient: rfc822;b@x.example\r\nAction: delayed\r\nStatus: 4.4.1\r\n",
        );
        assert_eq!(report.reporting_mta.as_deref(), Some("mx.example.jp"));
        assert_eq!(report.recipients.len(), 2);
        let a = &report.recipients[0];
        assert_eq!(
            (a.recipient.as_str(), a.action.as_str(), a.status.as_str()),
            ("a@x.example", "failed", "5.1.1")
        );
        assert_eq!(a.remote_mta.as_deref(), Some("mx.x.example"));
        assert_eq!(
            a.diagnostic.as_deref(),
            Some("550 5.1.1 Address rejected\n    a@x.example")
        );
        assert_eq!(report.recipients[1].recipient, "b@x.example");
    }
}
