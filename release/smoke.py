"""Checks that a failmail started from the container image serves: run by release/check-image.sh.

usage: smoke.py SMTP_ADDR HTTP_ADDR TOKEN

Waits (at most 30 s) for /healthz, sends one message with smtplib, and finds it through the API
with the token; exits non-zero with the reason otherwise.
"""

import json
import smtplib
import sys
import time
import urllib.request


def get(url, token=None):
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status, response.read().decode()


def main() -> int:
    smtp_addr, http_addr, token = sys.argv[1:4]
    api = f"http://{http_addr}"
    deadline = time.monotonic() + 30
    while True:
        try:
            status, body = get(f"{api}/healthz")
            break
        except OSError as error:
            if time.monotonic() > deadline:
                print(f"no /healthz within 30 s: {error}")
                return 1
            time.sleep(0.2)
    assert status == 200 and body == "ok tls=off\n", (status, body)
    host, port = smtp_addr.rsplit(":", 1)
    with smtplib.SMTP(host, int(port), timeout=10) as smtp:
        refused = smtp.sendmail(
            "ci@example.org", ["bob@example.com"], "Subject: from the image\r\n\r\nhello\r\n"
        )
    assert refused == {}, refused
    try:
        get(f"{api}/api/messages")
        print("the API answered without the token")
        return 1
    except urllib.error.HTTPError as error:
        assert error.code == 401, error.code
    status, body = get(f"{api}/api/messages", token)
    messages = json.loads(body)["messages"]
    assert len(messages) == 1, messages
    assert messages[0]["mail_from"] == "ci@example.org", messages[0]
    assert messages[0]["recipients"] == ["bob@example.com"], messages[0]
    print(f"served 1 message from {messages[0]['mail_from']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
