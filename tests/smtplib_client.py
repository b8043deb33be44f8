"""Sends one message with Python's smtplib; run by tests/clients.rs.

usage: smtplib_client.py MODE AUTH PORT CAFILE MESSAGE_FILE

MODE: plain | starttls | smtps. AUTH: none | plain (login()) | login (AUTH LOGIN without an
initial response). The message file holds the exact message bytes; smtplib dot-stuffs them and
adds the final CRLF and "." line. Prints "DATA <code> <text>" with the server's reply to the end
of data, and exits non-zero on any SMTP or TLS error.
"""

import smtplib
import ssl
import sys

FROM = "alice@client.example"
TO = ["bob@failmail.test", "carol@failmail.test"]


def main() -> int:
    mode, auth, port, cafile, message_file = sys.argv[1:6]
    port = int(port)
    with open(message_file, "rb") as f:
        message = f.read()
    context = ssl.create_default_context(cafile=cafile)
    if mode == "smtps":
        client = smtplib.SMTP_SSL(
            "127.0.0.1", port, local_hostname="client.example", context=context, timeout=10
        )
    else:
        client = smtplib.SMTP("127.0.0.1", port, local_hostname="client.example", timeout=10)
    code, _ = client.ehlo()
    assert code == 250, f"EHLO: {code}"
    if mode == "starttls":
        assert client.has_extn("starttls"), "STARTTLS is announced"
        code, text = client.starttls(context=context)
        assert code == 220, f"STARTTLS: {code} {text!r}"
        assert isinstance(client.sock, ssl.SSLSocket), "the socket is TLS after STARTTLS"
        code, _ = client.ehlo()
        assert code == 250, f"EHLO after STARTTLS: {code}"
        assert not client.has_extn("starttls"), "STARTTLS is not announced under TLS"
    if mode in ("starttls", "smtps"):
        assert client.sock.version() in ("TLSv1.2", "TLSv1.3"), client.sock.version()
    if auth == "plain":
        # login() picks PLAIN among the announced "PLAIN LOGIN" (its preference order).
        code, text = client.login("alice", "s3cret")
        assert code == 235, f"AUTH: {code} {text!r}"
    elif auth == "login":
        client.user, client.password = "alice", "s3cret"
        code, text = client.auth("LOGIN", client.auth_login, initial_response_ok=False)
        assert code == 235, f"AUTH LOGIN: {code} {text!r}"
    elif auth != "none":
        raise SystemExit(f"unknown AUTH choice {auth!r}")
    code, text = client.mail(FROM)
    assert code == 250, f"MAIL: {code} {text!r}"
    for rcpt in TO:
        code, text = client.rcpt(rcpt)
        assert code == 250, f"RCPT: {code} {text!r}"
    code, text = client.data(message)
    print(f"DATA {code} {text.decode()}", flush=True)
    client.quit()
    return 0 if code == 250 else 1


if __name__ == "__main__":
    sys.exit(main())
