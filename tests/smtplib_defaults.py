"""Sends two messages with Python's smtplib as most code calls it; run by tests/default_clients.rs.

usage: smtplib_defaults.py PORT

smtplib.SMTP(host, port).sendmail(...): one message failmail accepts, one to a magic address that
it refuses. Prints "DELIVERED <code> <text>" (the reply to the end of data) and
"REFUSED <code> <text>"; exits non-zero on anything else.
"""

import smtplib
import sys

MESSAGE = "From: app@example.org\r\nSubject: from smtplib\r\n\r\nhello from smtplib\r\n"


def main() -> int:
    port = int(sys.argv[1])
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.ehlo()
        smtp.mail("app@example.org")
        smtp.rcpt("bob@dest.example")
        code, text = smtp.data(MESSAGE)
    print(f"DELIVERED {code} {text.decode()}")
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
            smtp.sendmail("app@example.org", ["user_unknown@example.com"], MESSAGE)
    except smtplib.SMTPRecipientsRefused as refused:
        code, text = refused.recipients["user_unknown@example.com"]
        print(f"REFUSED {code} {text.decode()}")
        return 0
    print("ACCEPTED the magic address")
    return 1


if __name__ == "__main__":
    sys.exit(main())
