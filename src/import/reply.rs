//! Finding the SMTP reply a bounce quotes: `550 5.1.1 <x>... User unknown`, Gmail's multi-line
//! `550-5.1.1 … 550 5.1.1 …` whether it kept its lines or was folded into one, Sendmail's `<<< `
//! transcript lines, Zoho's `ERROR_CODE :550, ERROR_CODE :…`, a reply with no enhanced status.
//!
//! The search is ours (no crate reads these): a reply starts at a three-digit failure code (4xx
//! or 5xx) that stands alone (not inside an address, a date or a number) and is followed by a
//! space, a `-` or the end of the line; it ends where the bounce's own words start again (`(in
//! reply to … command)`, qmail's `Giving up on`, the closing quote of Exchange's `returned '…'`).

use crate::smtp::reply::EnhancedStatus;

/// A reply as a bounce quotes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundReply {
    /// The reply code.
    pub code: u16,
    /// The enhanced status code, when the reply carries one.
    pub status: Option<EnhancedStatus>,
    /// Each line's text, without code and status.
    pub lines: Vec<String>,
}

impl FoundReply {
    /// Every line's text joined by single spaces, runs of whitespace folded: how replies are
    /// compared, whitespace and line folding aside.
    pub fn folded_text(&self) -> String {
        fold(&self.lines.join(" "))
    }
}

/// Runs of whitespace as one space, trimmed.
pub fn fold(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The longest text a reply may take from a bounce (a reply line is at most 512 octets; Gmail's
/// longest replies have six lines).
const MAX_REPLY: usize = 4096;

/// The first SMTP reply quoted in `text`, if any.
pub fn find_reply(text: &str) -> Option<FoundReply> {
    if let Some(reply) = zoho(text) {
        return Some(reply);
    }
    if let Some(reply) = transcript_lines(text) {
        return Some(reply);
    }
    let start = reply_start(text)?;
    let rest = &text[start..];
    let opened_by_quote = text[..start].ends_with('\'');
    let opened_by_reason = text[..start].trim_end().ends_with("(reason:");
    structured(rest).or_else(|| folded(rest, opened_by_quote, opened_by_reason))
}

/// Where the first reply code of `text` starts.
pub fn reply_start(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    (0..bytes.len().saturating_sub(2)).find(|&i| is_code_at(text, i))
}

/// Whether a reply code stands at byte `i`.
fn is_code_at(text: &str, i: usize) -> bool {
    let bytes = text.as_bytes();
    let digits = &bytes[i..(i + 3).min(bytes.len())];
    if digits.len() < 3
        || !(b'4'..=b'5').contains(&digits[0])
        || !digits[1].is_ascii_digit()
        || !digits[2].is_ascii_digit()
    {
        return false;
    }
    let before = i.checked_sub(1).map(|b| bytes[b]);
    let after = bytes.get(i + 3).copied();
    if !matches!(
        after,
        None | Some(b' ' | b'-' | b'\n' | b'\r' | b'\t' | b':')
    ) {
        return false;
    }
    match before {
        None => true,
        Some(b'#') => status_after(&text[i + 3..]).is_some(),
        Some(b) => !(b.is_ascii_alphanumeric() || b".-/=[+_#@%,".contains(&b)),
    }
}

/// The enhanced status code at the start of `text` (after one separator), if any.
fn status_after(text: &str) -> Option<EnhancedStatus> {
    let text = text.strip_prefix([' ', '-', ':']).unwrap_or(text);
    let text = text.trim_start_matches(' ');
    let token = text.split([' ', '\n', '\r', ',', ';', ')']).next()?;
    EnhancedStatus::parse(token.trim_end_matches(':'))
}

/// Splits one quoted line `CODE[- ]STATUS text` into (code, status, text).
fn split_line(line: &str) -> Option<(u16, Option<EnhancedStatus>, String)> {
    let code: u16 = line.get(..3)?.parse().ok()?;
    let rest = &line[3..];
    let rest = rest.strip_prefix(':').unwrap_or(rest);
    let rest = rest.strip_prefix([' ', '-']).unwrap_or(rest);
    // The code said twice (Gmail's old bounces: `was: 550 550 5.1.1 user unknown`): once.
    let rest = match rest.strip_prefix(&line[..3]) {
        Some(again) if again.starts_with([' ', '-']) => &again[1..],
        _ => rest,
    };
    let lead = rest.len() - rest.trim_start_matches(' ').len();
    let trimmed = &rest[lead..];
    let token = trimmed.split(' ').next().unwrap_or("");
    match EnhancedStatus::parse(token) {
        Some(status) => {
            let after = &trimmed[token.len()..];
            let after = after.strip_prefix(' ').unwrap_or(after);
            Some((code, Some(status), after.trim_end().to_owned()))
        }
        None => Some((code, None, trimmed.trim_end().to_owned())),
    }
}

/// Sendmail's transcript: the `<<< ` lines after the command that failed.
fn transcript_lines(text: &str) -> Option<FoundReply> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .skip_while(|l| !l.starts_with("<<< "))
        .take_while(|l| l.starts_with("<<< "))
        .map(|l| &l[4..])
        .collect();
    let first = split_line(lines.first()?)?;
    if !(400..600).contains(&first.0) {
        return None;
    }
    from_lines(&lines)
}

/// Zoho's `ERROR_CODE :550, ERROR_CODE :5.1.1 <x>... User Unknown` (code and reply apart).
fn zoho(text: &str) -> Option<FoundReply> {
    let flat = fold(text);
    let at = flat.find("ERROR_CODE :")?;
    let rest = &flat[at + "ERROR_CODE :".len()..];
    let (code, reply) = rest.split_once(", ERROR_CODE :")?;
    let code: u16 = code
        .trim()
        .parse()
        .ok()
        .filter(|c| (200..600).contains(c))?;
    let (_, status, line) = split_line(&format!("{code} {}", reply.trim()))?;
    Some(FoundReply {
        code,
        status,
        lines: vec![line],
    })
}

/// A reply that kept its lines: the first line, then the lines that start with the same code.
fn structured(rest: &str) -> Option<FoundReply> {
    let mut lines = rest.lines();
    let first = lines.next()?.trim_end();
    let code = &first[..3];
    let mut kept = vec![first];
    if first.as_bytes().get(3) == Some(&b'-') {
        for line in lines {
            let line = line.trim();
            if !line.starts_with(code) {
                break;
            }
            kept.push(line);
            if line.as_bytes().get(3) != Some(&b'-') {
                break;
            }
        }
    }
    let last = kept.last()?;
    let ends_well = kept.len() > 1 && last.as_bytes().get(3) != Some(&b'-');
    if !ends_well {
        return None;
    }
    from_lines(&kept)
}

/// A reply folded into running text: cut where the bounce's own words resume, then split at
/// every repeated `CODE-STATUS` marker.
fn folded(rest: &str, opened_by_quote: bool, opened_by_reason: bool) -> Option<FoundReply> {
    let rest = &rest[..floor_char_boundary(rest, MAX_REPLY * 2)];
    let mut flat = if rest.as_bytes().get(3) == Some(&b'-') {
        fold(rest)
    } else {
        fold(&one_wrapped_line(rest))
    };
    for stop in [" (in reply to ", " Giving up on ", " (expanded from:"] {
        if let Some(at) = flat.find(stop) {
            flat.truncate(at);
        }
    }
    if opened_by_quote {
        if let Some(at) = flat.find('\'') {
            flat.truncate(at);
        }
    }
    if opened_by_reason && flat.ends_with(')') {
        flat.pop();
    }
    flat.truncate(floor_char_boundary(&flat, MAX_REPLY));
    let (code, status, _) = split_line(&flat)?;
    let mut markers = vec![0];
    if flat.as_bytes().get(3) == Some(&b'-') {
        let prefix = match status {
            Some(status) => format!("{code}-{status} "),
            None => format!("{code}-"),
        };
        let last = match status {
            Some(status) => format!(" {code} {status}"),
            None => format!(" {code} "),
        };
        let mut from = 1;
        while let Some(at) = flat[from..].find(&format!(" {prefix}")) {
            markers.push(from + at + 1);
            from += at + 1;
        }
        if let Some(at) = flat[from..].find(&last) {
            markers.push(from + at + 1);
        }
    }
    markers.push(flat.len());
    let lines: Vec<&str> = markers
        .windows(2)
        .map(|w| flat[w[0]..w[1]].trim_end())
        .collect();
    from_lines(&lines)
}

/// A one-line reply as a bounce wraps it: its first line and the indented lines that continue
/// it (Postfix and folded header fields indent them), or a `<recipient>` wrapped onto a line of
/// its own; a line that starts flush, or with a reply code of its own, is something else.
fn one_wrapped_line(rest: &str) -> String {
    let mut lines = rest.lines();
    let mut out = lines.next().unwrap_or("").to_owned();
    for line in lines {
        let trimmed = line.trim();
        let indented = line.starts_with([' ', '\t']) && reply_start(trimmed) != Some(0);
        let an_address = trimmed.starts_with('<')
            && trimmed.ends_with('>')
            && trimmed.contains('@')
            && !trimmed.contains(' ');
        let continues = indented || an_address;
        if !continues {
            break;
        }
        out.push(' ');
        out.push_str(line.trim());
    }
    out
}

/// The largest char boundary at or below `at`.
fn floor_char_boundary(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// Builds a reply from quoted lines that all carry the same code; the first line's status counts.
fn from_lines(lines: &[&str]) -> Option<FoundReply> {
    let (code, status, first) = split_line(lines.first()?)?;
    let mut texts = vec![first];
    for line in &lines[1..] {
        let (line_code, _, text) = split_line(line)?;
        if line_code != code {
            break;
        }
        texts.push(text);
    }
    Some(FoundReply {
        code,
        status,
        lines: texts,
    })
}

#[cfg(test)]
#[path = "reply_tests.rs"]
mod tests;
