#!/usr/bin/python3
"""Browser checks of failmail's web page, in a real headless Chromium; run by tests/web.rs.

usage: driver.py CHECK --http ADDR --smtp ADDR [--token TOKEN] [--shots DIR] [--arg VALUE]...

Each CHECK (a function below) opens the page of a failmail the Rust test started, drives it
like a person (clicks, typing), sends mail with real clients (swaks, smtplib, smtp-source), and
asserts what the page shows. Every wait is bounded (WAIT seconds) and polls a condition: no sleep
is an assertion. Screenshots go to --shots. Exits 0 when the check passes; otherwise prints why
and exits 1. Chromium is Debian's (chromium, chromium-driver), driven by Selenium
(python3-selenium), started with the flags the project's CI uses.
"""

import argparse
import re
import http.server
import json
import os
import smtplib
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SWAKS = "/usr/bin/swaks"
WAIT = 30
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-dev-shm-usage",
    # A name of another site that reaches loopback, for the cross-site check.
    "--host-resolver-rules=MAP evil.test 127.0.0.1",
]

# Installed before any page script: records CSP violations and messages posted to the page, the
# traces a script of a client's (an inline handler, a frame's script) would leave.
PROBES = """
window.__violations = [];
window.__posted = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__violations.push(e.violatedDirective + ' ' + e.blockedURI + ' ' + (e.sample || ''));
});
window.addEventListener('message', (e) => { window.__posted.push(String(e.data)); });
"""


class Failed(Exception):
    pass


class Page:
    """One Chromium with failmail's page."""

    def __init__(self, args, width=1280, height=800):
        self.args = args
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--window-size={width},{height}")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        self.resize(width, height)
        self.driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": PROBES})
        self.base = f"http://{args.http}/"

    def resize(self, width, height, mobile=False):
        self.driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
        )

    def open(self, fragment="", ready=True):
        self.driver.get(self.base + fragment)
        if ready:
            self.wait(lambda d: self.js("return document.getElementById('live').dataset.state") == "live",
                      "the event stream to be live")

    def js(self, script, *args):
        return self.driver.execute_script(script, *args)

    def wait(self, condition, what, timeout=WAIT):
        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.05,
                                 ignored_exceptions=(StaleElementReferenceException,)).until(
                lambda d: condition(d), message=what)
        except TimeoutException:
            raise Failed(f"timed out after {timeout} s waiting for {what}\npage text:\n"
                         f"{self.text()[:3000]}") from None

    def text(self, selector="body"):
        # Read in one script run: the page redraws its tables on every event, so elements found
        # first and read one by one afterwards may be gone by then (a stale element reference).
        return self.js(
            "return Array.from(document.querySelectorAll(arguments[0]))"
            ".map(e => e.innerText).join('\\n')", selector)

    def wait_text(self, selector, needle, what=None):
        return self.wait(lambda d: needle in self.text(selector), what or f"{needle!r} in {selector}")

    def click(self, selector):
        self.wait(lambda d: d.find_elements(By.CSS_SELECTOR, selector), f"{selector} to exist")
        self.driver.find_element(By.CSS_SELECTOR, selector).click()

    def shot(self, name):
        if self.args.shots:
            self.driver.save_screenshot(f"{self.args.shots}/{name}.png")

    def close(self):
        self.driver.quit()


def swaks(args, *extra):
    command = [SWAKS, "--server", args.smtp, "--from", "app@example.com", "--helo", "app.example",
               "--timeout", "10", *extra]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    return done.stdout + done.stderr


def smtp_client(args):
    host, port = args.smtp.rsplit(":", 1)
    return smtplib.SMTP(host, int(port), local_hostname="app.example", timeout=10)


def check(condition, message):
    if not condition:
        raise Failed(message)


def api(args, path, body=None):
    """Calls failmail's API as a program would (GET, or POST with a JSON body)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://{args.http}{path}", data=data)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if args.token:
        request.add_header("Authorization", f"Bearer {args.token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def show(page, fragment):
    """Goes to another view in the same document (the address's fragment only)."""
    page.js("location.hash = arguments[0];", fragment)


def fits_a_small_screen(page, fragment, selector):
    """On a 390 px wide phone, the view shows `selector` and nothing is wider than the screen."""
    page.resize(390, 844, mobile=True)
    show(page, fragment)
    page.wait(lambda d: d.find_elements(By.CSS_SELECTOR, selector), f"{selector} on a small screen")
    width = page.js("return document.documentElement.scrollWidth")
    check(width <= 390, f"{fragment} is {width} px wide on a 390 px screen")
    page.resize(1280, 800)


def rows(page, selector):
    return page.driver.find_elements(By.CSS_SELECTOR, selector)


# ----------------------------------------------------------------------------------------------
# The checks.

def live_session(page, args):
    """A user_unknown+gmail@ message sent with swaks appears without a reload; its transcript
    shows the gmail wording of 550 5.1.1 with its catalog name and flavor."""
    page.open()
    page.js("window.__sameDocument = true;")
    page.wait_text("#main", "No session yet")
    swaks(args, "--to", "user_unknown+gmail@example.test")
    row = "a.session-row[data-session]"
    page.wait(lambda d: "user_unknown+gmail@example.test" in page.text(row), "the session in the list")
    check(page.js("return window.__sameDocument === true"), "the page was reloaded")
    badge = page.text(f"{row} .cell.outcome")
    check("550 5.1.1" in badge, f"the outcome badge says {badge!r}")
    check("user_unknown · gmail" in page.text(f"{row} .cell.why"), page.text(row))
    for i in range(3):
        swaks(args, "--to", f"someone{i}@example.test")
    swaks(args, "--to", "mailbox_full+outlook@example.test")
    swaks(args, "--to", "greylisted@example.test")
    page.wait(lambda d: len(d.find_elements(By.CSS_SELECTOR, row)) >= 6, "six sessions")
    page.shot("sessions")
    page.driver.find_element(By.XPATH, "//a[contains(@class,'session-row')][contains(., 'user_unknown+gmail')]").click()
    page.wait_text(".transcript", "550-5.1.1")
    transcript = page.text(".transcript")
    for needle in ("550-5.1.1", "550 5.1.1", "RCPT TO:<user_unknown+gmail@example.test>",
                   "CATALOG\nuser_unknown", "FLAVOR\ngmail", "PHASE\nrcpt"):
        check(needle in transcript, f"{needle!r} not in the transcript:\n{transcript}")
    page.shot("transcript")
    # On a small screen, the list and the transcript each take the whole width.
    page.resize(390, 844, mobile=True)
    page.open("#/sessions")
    page.wait(lambda d: len(d.find_elements(By.CSS_SELECTOR, row)) >= 6, "the list on a small screen")
    width = page.js("return document.documentElement.scrollWidth")
    check(width <= 390, f"the page is {width} px wide on a 390 px screen")
    page.shot("sessions-mobile")


def rule_refusal(page, args):
    """A refusal decided by a scenario rule shows the rule's name and file:line."""
    page.open()
    swaks(args, "--to", "gone@dest.example")
    page.wait(lambda d: "gone@dest.example" in page.text("a.session-row"), "the session in the list")
    page.click("a.session-row[data-session]")
    page.wait_text(".transcript", "RULE")
    transcript = page.text(".transcript")
    for needle in (f"RULE\n{args.arg[0]}", f"AT\n{args.arg[1]}", "CATALOG\nuser_unknown"):
        check(needle in transcript, f"{needle!r} not in the transcript:\n{transcript}")
    # The rule filter finds the session by the rule's name.
    page.driver.find_element(By.CSS_SELECTOR, "input[data-filter=rule]").send_keys(args.arg[0])
    page.wait(lambda d: page.text(".summary").startswith("1 of"), "the rule filter")


def limits_chart(page, args):
    """Under a burst against a limit the chart's accepted and refused rates rise above zero and
    the use of the account shows max/max with the time its window frees its next use."""
    page.open("#/limits")
    page.wait(lambda d: d.find_elements(By.CSS_SELECTOR, ".chart-peaks[data-peak-accepted]"), "the chart")
    peaks = lambda: (float(page.js("return document.querySelector('.chart-peaks').dataset.peakAccepted")),
                     float(page.js("return document.querySelector('.chart-peaks').dataset.peakRefused")))
    check(peaks() == (0.0, 0.0), f"the chart moved before any mail: {peaks()}")
    # Four bursts, a second apart (each waits for the next point of the chart), from four
    # accounts: each sends 15 messages, of which the limit lets 10 through.
    with smtp_client(args) as client:
        for burst in range(4):
            seen = page.js("return document.querySelector('.chart-peaks').textContent")
            for i in range(15):
                try:
                    client.sendmail(f"burst{burst}@example.com", [f"r{i}@example.net"], f"Subject: {i}\r\n\r\nx\r\n")
                except smtplib.SMTPException:
                    pass
            page.wait(lambda d: page.js("return document.querySelector('.chart-peaks').textContent") != seen,
                      "the chart's next point")
    page.wait(lambda d: peaks()[0] > 0 and peaks()[1] > 0, "accepted and refused rates above zero")
    page.wait(lambda d: page.text("table.usage").count("10 / 10") == 4, "four accounts at 10 of 10")
    # One hour after the first use, less the time the bursts took (under a minute on a calm
    # machine, more on a busy one).
    page.wait(lambda d: re.search(r"in (5\d min|1 h)", page.text("table.usage")),
              "when the window frees its next use")
    page.shot("limits")


BROKEN = '[[rule]]\nname = "gone"\nrcpt = "blocked@*"\nreply = "no_such_reply"\n'
GOOD = '[[rule]]\nname = "blocked"\nrcpt = "blocked@*"\nreply = "mailbox_full"\n'


def type_into(page, selector, text):
    box = page.driver.find_element(By.CSS_SELECTOR, selector)
    box.click()
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.DELETE)
    box.send_keys(text)


def scenario_editor(page, args):
    """A broken scenario typed in the editor shows its line:column error in place, nothing
    applied; a good one is applied with one click (the Rust test then checks it on the wire)."""
    page.open("#/scenario")
    page.wait(lambda d: page.js("return document.querySelector('.editor').value.length") > 0, "the live source")
    type_into(page, ".editor", BROKEN)
    page.wait(lambda d: page.js("return document.querySelector('.check').dataset.valid") == "false",
              "the check to find the error")
    status = page.text(".check")
    check("line 4, column" in status and "no_such_reply" in status, f"the error shown: {status!r}")
    bad = page.js("return document.querySelector('.gutter .bad')?.textContent")
    check(bad == "4", f"the gutter marks line {bad!r}")
    check(not page.driver.find_element(By.XPATH, "//button[text()='Apply']").is_enabled(),
          "Apply is enabled for a broken scenario")
    check(api(args, "/api/scenario")["rules"] == 0, "a broken scenario went live")
    page.shot("scenario-error")
    type_into(page, ".editor", GOOD)
    page.wait(lambda d: page.js("return document.querySelector('.check').dataset.valid") == "true",
              "the check to pass")
    page.click(".editor-card button.primary")
    page.wait_text(".check", "Applied: 1 rule")
    page.wait_text("table.history", "api: <api>")
    page.shot("scenario")


def clock_buttons(page, args):
    """The clock buttons move /api/clock: +1 min, +1 h, +1 day and a custom 2h."""
    page.open("#/clock")
    page.wait_text(".clock-offset", "not moved")
    expected = 0
    for label, seconds in (("+1 min", 60), ("+1 h", 3600), ("+1 day", 86400)):
        page.driver.find_element(By.XPATH, f"//button[text()='{label}']").click()
        expected += seconds
        page.wait(lambda d: page.js("return document.querySelector('.clock-offset').dataset.offset") == str(expected),
                  f"the offset {expected} after {label}")
        check(api(args, "/api/clock")["offset_seconds"] == expected, f"/api/clock after {label}")
    page.driver.find_element(By.CSS_SELECTOR, ".custom input").send_keys("2h")
    page.click(".custom button")
    expected += 7200
    page.wait(lambda d: page.js("return document.querySelector('.clock-offset').dataset.offset") == str(expected),
              "the offset after a custom 2h")
    page.shot("clock")


class RemoteHits(http.server.BaseHTTPRequestHandler):
    """A 'remote' server: counts every request a message's HTML would make."""
    hits = []

    def do_GET(self):
        RemoteHits.hits.append(self.path)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def xss(page, args):
    """A HELO, a recipient, a subject and an HTML body carrying script payloads are shown as text
    or inside the sandbox, and no script of theirs runs: nothing is posted to the page, no CSP
    violation is reported (none of them was even parsed as markup in the page), and the remote
    image of the HTML body is never fetched."""
    remote = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RemoteHits)
    threading.Thread(target=remote.serve_forever, daemon=True).start()
    origin = f"http://127.0.0.1:{remote.server_address[1]}"
    helo = "<img src=x onerror=top.postMessage('helo','*')>"
    rcpt = "<svg/onload=top.postMessage('rcpt','*')>@example.test"
    subject = "<script>top.postMessage('subject','*')</script><img src=x onerror=top.postMessage('subject2','*')>"
    html = (f"<p id=shown>The HTML part</p><script>top.postMessage('html','*')</script>"
            f"<img src=\"{origin}/remote.png\" onerror=\"top.postMessage('html2','*')\">"
            f"<link rel=stylesheet href=\"{origin}/remote.css\">")
    page.open()
    with smtp_client(args) as client:
        client.ehlo(helo)
        client.mail("app@example.com")
        client.rcpt(f'"{rcpt.split("@")[0]}"@example.test')
        client.rcpt("reader@example.test")
        client.data(
            f"From: app@example.com\r\nTo: reader@example.test\r\nSubject: {subject}\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + html + "\r\n")
    page.wait(lambda d: helo in page.text("a.session-row .cell.helo"), "the HELO shown as text")
    page.click("a.session-row[data-session]")
    page.wait_text(".transcript", "TO:<\"<svg/onload=")
    check(helo in page.text(".transcript"), "the HELO in the transcript")
    page.shot("xss-session")
    page.open("#/messages")
    page.wait(lambda d: subject in page.text("a.message-row .cell.subject"), "the subject shown as text")
    page.click("a.message-row[data-message]")
    page.wait(lambda d: page.js("return document.querySelector('iframe.html-frame')?.dataset.loaded") == "true",
              "the HTML part loaded in its frame")
    frame = page.driver.find_element(By.CSS_SELECTOR, "iframe.html-frame")
    check(frame.get_attribute("sandbox") == "", f"sandbox={frame.get_attribute('sandbox')!r}")
    page.driver.switch_to.frame(frame)
    shown = page.driver.find_element(By.ID, "shown").text
    page.driver.switch_to.default_content()
    check(shown == "The HTML part", f"the frame shows {shown!r}")
    page.shot("xss-message")
    # Everything is on screen; a script of theirs would have run by now. A last round trip to
    # the server makes sure any request the frame made has arrived.
    api(args, "/api/info")
    posted = page.js("return window.__posted")
    violations = page.js("return window.__violations")
    markup = page.js("return document.querySelectorAll('img[src=x], svg, main script').length")
    remote.shutdown()
    check(posted == [], f"scripts of the client ran: {posted}")
    check(markup == 0, f"{markup} elements of the payloads were inserted as markup")
    check(violations == [], f"CSP violations (markup from a client reached the page): {violations}")
    check(RemoteHits.hits == [], f"the HTML part loaded remote content: {RemoteHits.hits}")


def token(page, args):
    """With --http-token, the page asks for the token and reads nothing without it; its stream
    refuses requests without it; with it, the page works and keeps it for the tab only."""
    swaks(args, "--to", "secret-session@example.test")
    page.open(ready=False)
    page.wait(lambda d: page.js("return !document.getElementById('token').hidden"), "the token screen")
    check("secret-session" not in page.text(), "session data shown without the token")
    refused = page.driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        (async () => {
          const out = {};
          for (const path of ['/api/events/stream', '/api/events', '/api/messages', '/api/counters/stream']) {
            const response = await fetch(path);
            out[path] = response.status;
          }
          done(out);
        })();
    """)
    check(all(status == 401 for status in refused.values()), f"answers without the token: {refused}")
    page.shot("token")
    page.driver.find_element(By.ID, "token-input").send_keys("wrong-token", Keys.ENTER)
    page.wait_text("#token-error", "That token is wrong.")
    page.driver.find_element(By.ID, "token-input").send_keys(args.token, Keys.ENTER)
    page.wait(lambda d: page.js("return document.getElementById('live').dataset.state") == "live",
              "the stream to be live with the token")
    page.wait(lambda d: "secret-session@example.test" in page.text("a.session-row"), "the session with the token")
    check(page.js("return sessionStorage.getItem('failmail-token')") == args.token, "the token kept for the tab")
    check(page.js("return localStorage.length") == 0, "the token left in localStorage")
    urls = page.js("return performance.getEntriesByType('resource').map((e) => e.name)")
    check(not any(args.token in url for url in urls), f"the token in a URL: {urls}")
    page.click("#forget-token")
    page.wait(lambda d: page.js("return !document.getElementById('token').hidden"), "the token screen again")


# No fields and a plain-text type: the body is empty, which the API takes as "reset everything"
# when the request is allowed at all.
EVIL_FORM = """<!doctype html><form id=f method=post action="http://{target}/api/reset"
 enctype="text/plain"></form>"""


def cross_site_post(page, args):
    """A plain form on another site posts to /api/reset (what any page a developer visits could
    do): the browser shows failmail's 403 answer, its JSON error saying the request came from
    another site, so the post reached failmail and was refused. (Allowed, the reset would answer
    204, and the browser would stay on the form.) The Rust test then checks that nothing was
    reset."""
    class Evil(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = EVIL_FORM.format(target=args.http).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    evil = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Evil)
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    # A host name that is not the API's (localhost would be its own site): a cross-site page.
    page.driver.get(f"http://evil.test:{evil.server_address[1]}/")
    page.wait(lambda d: d.find_elements(By.ID, "f"), "the other site's form")
    page.js("document.getElementById('f').submit();")
    target = f"http://{args.http}/api/reset"
    page.wait(lambda d: d.current_url == target and "another site" in page.text(),
              "failmail's refusal of the cross-site post shown in the browser")
    answer = json.loads(page.text())
    check(answer["error"] == "a request from another site may not change state", f"the answer: {answer}")
    evil.shutdown()


def bounces(page, args):
    """Later bounces, with --http-token: pending ones appear live with their due time; moving
    the server's clock sends them, and the list shows them sent without a reload; one opened
    shows its recipient, status, catalog entry and its raw DSN. The stored DSN and complaint are
    marked in Messages."""
    page.open(ready=False)
    page.wait(lambda d: page.js("return !document.getElementById('token').hidden"), "the token screen")
    page.driver.find_element(By.ID, "token-input").send_keys(args.token, Keys.ENTER)
    page.wait(lambda d: page.js("return document.getElementById('live').dataset.state") == "live",
              "the stream to be live with the token")
    show(page, "#/bounces")
    page.wait_text("#main", "No later bounce yet")
    page.js("window.__sameDocument = true;")
    for sender, rcpt in (("bounces+42@app.example", "user_unknown+async@example.test"),
                         ("bounces+43@app.example", "complaint+async@example.test"),
                         ("bounces+44@app.example", "mailbox_full+async@example.test")):
        swaks(args, "--from", sender, "--to", rcpt)
    row = "a.bounce-row[data-bounce]"
    page.wait(lambda d: len(rows(page, f"{row}[data-state=pending]")) >= 3, "three pending bounces, live")
    failure = "//a[contains(@class,'bounce-row')][contains(., 'user_unknown+async')]"
    text = page.driver.find_element(By.XPATH, failure).text
    check("5.1.1" in text and "due in" in text and "failure DSN" in text, f"the pending failure: {text!r}")
    api(args, "/api/clock/advance", {"seconds": 120})
    page.wait(lambda d: len(rows(page, f"{row}[data-state=sent]")) == 2, "the two due bounces shown sent")
    check(page.js("return window.__sameDocument === true"), "the page was reloaded")
    delayed = page.text(f"{row}[data-state=pending]")
    check("mailbox_full+async@example.test" in delayed and "delay DSN" in delayed, f"still pending: {delayed!r}")
    page.driver.find_element(By.XPATH, failure).click()
    page.wait_text(".detail-pane table.recipients", "user_unknown+async@example.test")
    recipients = page.text(".detail-pane table.recipients")
    check("5.1.1" in recipients and "user_unknown" in recipients and "550" in recipients, recipients)
    check("bounces+42@app.example" in page.text(".detail-pane .facts"), page.text(".detail-pane .facts"))
    page.click("button[data-action=raw]")
    page.wait_text("pre.raw", "Final-Recipient: rfc822; user_unknown+async@example.test")
    raw = page.text("pre.raw")
    check("Action: failed" in raw and "Status: 5.1.1" in raw, raw[:2000])
    page.shot("bounces")
    # The notifications, stored as messages to the senders, are marked as such.
    show(page, "#/messages")
    page.wait(lambda d: rows(page, "a.message-row[data-notification=DSN]")
              and rows(page, "a.message-row[data-notification=complaint]"), "the DSN and the complaint marked")
    check(page.js("return document.querySelector(\"a.message-row[data-message='1']\").dataset.notification") == "",
          "the original message marked as a notification")
    page.click("a.message-row[data-notification=DSN]")
    page.wait_text(".facts .notification", "DSN (multipart/report; delivery-status) made by failmail: bounce #")
    page.shot("messages-dsn")
    fits_a_small_screen(page, "#/bounces", f"{row}[data-state=sent]")


def retry_report(page, args):
    """The retry report, live: a first attempt greylisted, refused with a 4xx by a sequence and
    with a 5xx; after the clock moved, a retry delivered to the first two (and the 5xx recipient
    tried again). Each recipient's timeline, status and verdicts are shown as they change,
    without a reload."""
    page.open("#/report")
    page.wait_text("#main", "No attempt yet")
    page.js("window.__sameDocument = true;")
    recipients = ("grey@example.test", "flaky@example.test", "gone@example.test")
    with smtp_client(args) as client:
        client.ehlo("app.example")
        client.mail("app@example.com")
        codes = [client.rcpt(r)[0] for r in recipients]
        check(codes[0] // 100 == 4 and codes[1] == 452 and codes[2] == 550, f"first attempt: {codes}")
    block = lambda rcpt: f".report-rcpt[data-rcpt='{rcpt}']"
    status = lambda rcpt: page.js("return document.querySelector(arguments[0])?.dataset.status", block(rcpt))
    page.wait(lambda d: (status(recipients[0]), status(recipients[1]), status(recipients[2]))
              == ("still_pending", "still_pending", "bounced"), "the first attempt judged, live")
    verdict = lambda rcpt, name: page.js(
        "return document.querySelector(arguments[0] + ` .verdict[data-verdict='${arguments[1]}']`)?.dataset.result",
        block(rcpt), name)
    check(verdict(recipients[1], "retried_after_temporary") == "pending", "a retry still awaited is pending")
    api(args, "/api/clock/advance", {"seconds": 360})
    with smtp_client(args) as client:
        client.ehlo("app.example")
        client.mail("app@example.com")
        codes = [client.rcpt(r)[0] for r in recipients]
        check(codes == [250, 250, 550], f"the retry: {codes}")
        code, _ = client.data("Message-ID: <retry-1@app.example>\r\nSubject: retried\r\n\r\nHello.\r\n")
        check(code == 250, f"DATA: {code}")
    page.wait(lambda d: (status(recipients[0]), status(recipients[1])) == ("delivered", "delivered"),
              "the retry delivered, live")
    page.wait(lambda d: verdict(recipients[2], "stopped_after_permanent") == "fail", "the 5xx retried: a failed verdict")
    check(verdict(recipients[0], "respected_greylist_delay") == "pass", "greylist verdict")
    check(verdict(recipients[1], "retried_after_temporary") == "pass", "retry verdict")
    check(page.js("return window.__sameDocument === true"), "the page was reloaded")
    flaky = page.text(block(recipients[1]))
    for needle in ("452 4.2.2", "temporary at rcpt", "accepted", "waited 6 min", f"RULE\n{args.arg[0]}",
                   f"AT\n{args.arg[1]}", "CATALOG\nmailbox_full", "session #1", "session #2"):
        check(needle in flaky, f"{needle!r} not in the timeline:\n{flaky}")
    check("<retry-1@app.example>" in page.text(".report-message h3"), page.text(".report-message h3"))
    check(page.js("return document.querySelector('.report-summary').dataset.ok") == "false", "the report is not ok")
    page.shot("report")
    fits_a_small_screen(page, "#/report", ".report-rcpt")


def greylist_and_sequences(page, args):
    """Greylisting and sequences in progress on the Limits view, live: a greylisted triplet
    with the time its retry passes, a sequence with its rule and next step."""
    page.open("#/limits")
    page.wait_text(".greylist-card", "No triplet is waiting")
    page.wait_text(".sequences-card", "No sequence has counted an attempt")
    page.js("window.__sameDocument = true;")
    with smtp_client(args) as client:
        client.ehlo("app.example")
        client.mail("app@example.com")
        codes = [client.rcpt(r)[0] for r in ("grey@example.test", "flaky@example.test")]
        check(codes[0] // 100 == 4 and codes[1] == 452, f"the attempt: {codes}")
    triplet = "table.greylist tr[data-recipient='grey@example.test']"
    page.wait(lambda d: rows(page, triplet), "the greylisted triplet, live")
    text = page.text(triplet)
    check("127.0.0.0" in text and "app@example.com" in text and re.search(r"in (4 min|5 min)", text),
          f"the triplet: {text!r}")
    sequence = f"table.sequences tr[data-rule='{args.arg[0]}']"
    page.wait(lambda d: rows(page, sequence), "the sequence, live")
    check(page.text(f"{sequence} .step.next") == "accept", f"the next step: {page.text(sequence)!r}")
    check(page.text(f"{sequence} .step.done") == "mailbox_full", page.text(sequence))
    check(args.arg[1] in page.text(sequence), page.text(sequence))
    check(page.js("return window.__sameDocument === true"), "the page was reloaded")
    page.js("document.querySelector('.state-grid').scrollIntoView({block: 'start'})")
    page.shot("limits-state")
    fits_a_small_screen(page, "#/limits", triplet)


def open_transcript(page, args):
    """An open session's transcript is read on its own (the list's stream is brief: no DATA, no
    354) and follows the session live: every command and reply, up to its end. An accepted
    message shows 250 in the list."""
    page.open()
    client = smtp_client(args)
    client.ehlo()
    row = "a.session-row[data-session]"
    page.wait(lambda d: "app.example" in page.text(row), "the open session in the list")
    page.click(row)
    page.wait_text(".transcript", "ehlo app.example")
    client.mail("live@example.com")
    client.rcpt("someone@example.test")
    client.data(b"Subject: live\r\n\r\nbody\r\n")
    page.wait_text(".transcript", "message accepted")
    page.wait_text(".transcript", "354")
    transcript = page.text(".transcript")
    for needle in ("mail FROM:<live@example.com>", "rcpt TO:<someone@example.test>", "data", "354"):
        check(needle in transcript, f"{needle!r} not in the transcript:\n{transcript}")
    page.wait(lambda d: page.text(f"{row} .cell.outcome").startswith("250"), "250 in the list")
    check("live@example.com" in page.text(f"{row} .cell.from"), page.text(row))
    # Two more at once: the brief stream may write them as one `merged` event; the list counts
    # three messages and names both recipients.
    client.sendmail("live@example.com", ["other@example.test"], b"Subject: 2\r\n\r\nb\r\n")
    client.sendmail("live@example.com", ["someone@example.test"], b"Subject: 3\r\n\r\nb\r\n")
    page.wait(lambda d: page.text(f"{row} .cell.msgs") == "3", "three messages in the list")
    recipients = page.js("return document.querySelector(arguments[0]).title", f"{row} .cell.to")
    check("other@example.test" in recipients and "someone@example.test" in recipients, recipients)
    client.quit()
    page.wait_text(".transcript", "closed")
    # The transcript was read from the journal, by session.
    reads = page.js("return performance.getEntriesByType('resource').map((e) => e.name)")
    check(any("/api/events?session=" in name for name in reads), f"no transcript read in {reads}")


def restart(page, args):
    """The server restarts while the page is open: the page reads the new run's events from its
    start (its ids started over) and shows its sessions only, without a reload."""
    signals = args.arg[0]
    page.open()
    page.js("window.__sameDocument = true;")
    row = "a.session-row[data-session]"
    swaks(args, "--to", "before-restart@example.test")
    page.wait(lambda d: "before-restart@example.test" in page.text(row), "the first run's session")
    open(os.path.join(signals, "restart"), "w").close()
    deadline = time.time() + 60
    while not os.path.exists(os.path.join(signals, "restarted")):
        check(time.time() < deadline, "the server was not restarted within 60 s")
        time.sleep(0.05)
    swaks(args, "--to", "after-restart@example.test")
    page.wait(lambda d: "after-restart@example.test" in page.text(row)
              and "before-restart@example.test" not in page.text(row),
              "the second run's session, and only it")
    check(len(rows(page, row)) == 1, f"{len(rows(page, row))} sessions listed: {page.text(row)}")
    check(page.js("return window.__sameDocument === true"), "the page was reloaded")


def many_sessions(page, args):
    """10,000 sessions: the list renders only the rows in view, and scrolling to the oldest
    works."""
    count = int(args.arg[0])
    done = subprocess.run(["/usr/sbin/smtp-source", "-s", "20", "-m", str(count), "-c",
                           "-f", "load@example.com", "-t", "rcpt@example.net", args.smtp],
                          capture_output=True, text=True, timeout=300)
    check(done.returncode == 0, f"smtp-source failed: {done.stderr}")
    page.open()
    page.wait(lambda d: page.text(".summary").startswith(f"{count:,} of {count:,}"),
              f"{count} sessions in the list", timeout=120)
    rows = page.js("return document.querySelectorAll('.vlist .session-row').length")
    check(rows < 100, f"{rows} rows in the DOM for {count} sessions")
    page.js("const l = document.querySelector('.vlist'); l.scrollTop = l.scrollHeight;")
    page.wait(lambda d: page.js(
        "return [...document.querySelectorAll('.vlist .session-row')].some((r) => r.dataset.session === '1')"),
        "the oldest session after scrolling")
    rows = page.js("return document.querySelectorAll('.vlist .session-row').length")
    check(rows < 100, f"{rows} rows in the DOM after scrolling")


def views(page, args):
    """Screenshots of the remaining views for the README: messages, catalog."""
    swaks(args, "--to", "reader@example.test", "--header", "Subject: Your invoice #1042",
          "--attach-type", "text/plain", "--attach-body", "Invoice #1042. Thank you for your order.",
          "--attach-type", "text/html", "--attach-body",
          "<h2 style='font-family:sans-serif;color:#2f4fd6'>Invoice #1042</h2>"
          "<p style='font-family:sans-serif'>Thank you for your order. <b>Total: 42.00 EUR</b></p>",
          "--attach-type", "application/pdf", "--attach-name", "invoice-1042.pdf", "--attach", "%PDF-1.4")
    page.open("#/messages")
    page.click("a.message-row[data-message]")
    page.wait(lambda d: page.js("return document.querySelector('iframe.html-frame')?.dataset.loaded") == "true",
              "the HTML part")
    check("invoice-1042.pdf" in page.text(".attachments"), "the attachment listed")
    page.shot("message")
    page.open("#/catalog")
    page.wait_text(".catalog", "user_unknown")
    page.driver.find_element(By.CSS_SELECTOR, ".toolbar input[type=search]").send_keys("mailbox_full")
    page.wait(lambda d: not d.find_elements(By.CSS_SELECTOR, "[data-entry=user_unknown]")
              and d.find_elements(By.CSS_SELECTOR, "[data-entry=mailbox_full]"), "the filter")
    check(f"swaks --server {args.smtp} --to mailbox_full+generic@example.test" in page.text(".catalog"),
          "the swaks line")
    page.shot("catalog")


CHECKS = {f.__name__: f for f in (live_session, open_transcript, rule_refusal, limits_chart,
                                  scenario_editor, clock_buttons, xss, token, cross_site_post, many_sessions, views,
                                  bounces, retry_report, greylist_and_sequences, restart)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("check", choices=sorted(CHECKS))
    parser.add_argument("--http", required=True)
    parser.add_argument("--smtp", required=True)
    parser.add_argument("--token")
    parser.add_argument("--shots")
    parser.add_argument("--arg", action="append", default=[])
    args = parser.parse_args()
    page = Page(args)
    try:
        CHECKS[args.check](page, args)
    except Failed as failure:
        print(f"FAILED {args.check}: {failure}", file=sys.stderr)
        for entry in page.driver.get_log("browser"):
            print(f"browser: {entry}", file=sys.stderr)
        return 1
    finally:
        page.close()
    print(f"ok {args.check}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
