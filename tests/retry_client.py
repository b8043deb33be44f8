"""Mailers with different retry logic, built on Python's smtplib; run by tests/attempts.rs and
tests/readme.rs (as the app's mailer of the README's CI job).

usage: retry_client.py MODE PORT MESSAGE_ID TO[,TO...] [N]

PORT "env" reads the server's address from SMTP_HOST and SMTP_PORT, as an app configured by its
environment would; otherwise the server is 127.0.0.1:PORT.

MODE:
  once        send once and never retry (the naive sender)
  loop        on a temporary failure, retry at once, up to N attempts in all
  lost-reply  when the connection drops without a reply to the message, send it again, once
  split       recipients refused with 452 4.5.3 go in a second transaction on the connection
  reconnect   when the server says 421 and closes, connect again and send again, once
  backoff     what a mailer should do: after a temporary failure (4xx, or the connection dropped
              without a reply) wait, 1.2 s then twice as long each time, and send again to the
              recipients not accepted yet; give up on a recipient at its permanent failure (5xx);
              up to N attempts in all

Every attempt opens a new connection (split keeps its connection) and sends the same message,
with the given Message-ID, from app@client.example. Prints one line per attempt:
"attempt N: accepted K", "attempt N: refused RCPT CODE TEXT" (one per refused recipient) or
"attempt N: disconnected without a reply". Exits 0 unless smtplib fails in an unexpected way.
"""

import os
import smtplib
import sys
import time

SENDER = "app@client.example"
HOST = "127.0.0.1"


def message(message_id, recipients):
    return (
        f"From: {SENDER}\r\nTo: {', '.join(recipients)}\r\nSubject: retry test\r\n"
        f"Message-ID: {message_id}\r\n\r\nhello\r\n"
    )


def connect(port):
    return smtplib.SMTP(HOST, port, local_hostname="client.example", timeout=10)


def report(n, refused, sent):
    for rcpt, (code, text) in sorted(refused.items()):
        print(f"attempt {n}: refused {rcpt} {code} {text.decode(errors='replace')}")
    accepted = sent - len(refused)
    if accepted:
        print(f"attempt {n}: accepted {accepted}")


def attempt(n, port, recipients, body):
    """One transaction on a new connection: the refused recipients, or None if it dropped."""
    try:
        with connect(port) as client:
            refused = client.sendmail(SENDER, recipients, body)
    except smtplib.SMTPRecipientsRefused as error:
        refused = error.recipients
    except smtplib.SMTPServerDisconnected:
        print(f"attempt {n}: disconnected without a reply")
        return None
    report(n, refused, len(recipients))
    return refused


def backoff(port, recipients, body, attempts):
    """Retries the recipients not accepted yet after each temporary failure, waiting longer each
    time; stops for a recipient at its permanent failure."""
    waiting, wait = list(recipients), 1.2
    for n in range(1, attempts + 1):
        refused = attempt(n, port, waiting, body)
        if refused is None:  # no reply: as a 451 for every recipient (RFC 5321 section 3.8)
            refused = {rcpt: (451, b"") for rcpt in waiting}
        waiting = [r for r in waiting if r in refused and 400 <= refused[r][0] < 500]
        if not waiting:
            return
        time.sleep(wait)
        wait *= 2
    print(f"gave up on {','.join(waiting)} after {attempts} attempts")


def main():
    global HOST
    mode, port, message_id, recipients = sys.argv[1:5]
    if port == "env":
        HOST, port = os.environ["SMTP_HOST"], os.environ["SMTP_PORT"]
    port, recipients = int(port), recipients.split(",")
    body = message(message_id, recipients)
    if mode == "once":
        attempt(1, port, recipients, body)
    elif mode == "loop":
        for n in range(1, int(sys.argv[5]) + 1):
            refused = attempt(n, port, recipients, body)
            if refused is not None and not any(400 <= c < 500 for c, _ in refused.values()):
                break
    elif mode == "lost-reply":
        if attempt(1, port, recipients, body) is None:
            attempt(2, port, recipients, body)
    elif mode == "split":
        with connect(port) as client:
            refused = client.sendmail(SENDER, recipients, body)
            report(1, refused, len(recipients))
            rest = [r for r, (c, t) in refused.items() if c == 452 and t.startswith(b"4.5.3")]
            if rest:
                report(2, client.sendmail(SENDER, rest, body), len(rest))
    elif mode == "reconnect":
        refused = attempt(1, port, recipients, body)
        if refused and any(code == 421 for code, _ in refused.values()):
            attempt(2, port, recipients, body)
    elif mode == "backoff":
        backoff(port, recipients, body, int(sys.argv[5]))
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
