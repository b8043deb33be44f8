#!/usr/bin/env python3
"""Helpers for benches/load.sh (standard library only).

    python3 benches/load_report.py table RESULTS.tsv
        Prints the throughput table: one row per (server, mode), the median of its repetitions,
        and for failmail's rows the ratio to smtp-sink and to aiosmtpd in the same mode; then
        what the attempt history costs (failmail-scenario against failmail-scenario-no-attempts),
        and the web page's (failmail-streamed against failmail-scenario): exit status 3 when the
        page's goal (at least 0.95 of the messages/s, median of the rounds) is missed in a mode.

    python3 benches/load_report.py scenario > benches/scenario_1000.toml
        Writes the 1,000-rule scenario used by the "failmail scenario" server. None of its rules
        matches the load's HELO (load.example), sender (load-sender@load.example), recipient
        (load-rcpt@sink.example, with or without a number in front) or client IP (127.0.0.1),
        so every message is accepted after every rule has been tried.

    python3 benches/load_report.py scenario 100000 > /tmp/scenario_100000.toml
        The same mix scaled to N rules (a multiple of 1,000): what benches/reload.rs and the
        load-time figures in the README load.

RESULTS.tsv has one line per run:
    server <TAB> mode <TAB> messages <TAB> seconds <TAB> errors <TAB> peak_rss_kib
        <TAB> server_cpu_seconds <TAB> smtp_source_cpu_seconds
where peak_rss_kib is the server's VmHWM after the last run of that (server, mode), or "-".
"""

import math
import statistics
import sys

PEERS = ("smtp-sink", "aiosmtpd")


def table(path):
    runs = {}
    order = []
    with open(path, encoding="utf-8") as results:
        for line in results:
            line = line.rstrip("\n")
            if not line:
                continue
            server, mode, messages, seconds, errors, rss, server_cpu, source_cpu = line.split("\t")
            key = (server, mode)
            if key not in runs:
                runs[key] = {"rates": [], "errors": 0, "rss": None, "messages": int(messages),
                             "server_cpu": [], "source_cpu": [], "per_cpu": []}
                order.append(key)
            seconds = float(seconds)
            if seconds > 0:
                runs[key]["server_cpu"].append(100 * float(server_cpu) / seconds)
                runs[key]["source_cpu"].append(100 * float(source_cpu) / seconds)
            if float(server_cpu) > 0:
                runs[key]["per_cpu"].append(int(messages) / float(server_cpu))
            runs[key]["rates"].append(int(messages) / seconds if seconds > 0 else 0.0)
            runs[key]["errors"] += int(errors)
            if rss != "-":
                runs[key]["rss"] = int(rss)

    median = {key: statistics.median(value["rates"]) for key, value in runs.items()}
    header = ["server", "mode", "msgs/run", "messages/s (median)", "min..max", "errors",
              "peak RSS", "server CPU", "msgs/server CPU-s", "smtp-source CPU", "÷ smtp-sink", "÷ aiosmtpd"]
    rows = []
    for key in order:
        server, mode = key
        value = runs[key]
        ratios = []
        for peer in PEERS:
            if server.startswith("failmail") and (peer, mode) in median and median[(peer, mode)] > 0:
                ratios.append(f"{median[key] / median[(peer, mode)]:.2f}x")
            else:
                ratios.append("")
        rss = f"{value['rss'] / 1024:.1f} MiB" if value["rss"] is not None else "?"
        rows.append([
            server,
            mode,
            str(value["messages"]),
            f"{median[key]:.0f}",
            f"{min(value['rates']):.0f}..{max(value['rates']):.0f} ({len(value['rates'])} runs)",
            str(value["errors"]),
            rss,
            f"{statistics.median(value['server_cpu']):.0f}%" if value["server_cpu"] else "?",
            f"{statistics.median(value['per_cpu']):.0f}" if value["per_cpu"] else "?",
            f"{statistics.median(value['source_cpu']):.0f}%" if value["source_cpu"] else "?",
            *ratios,
        ])
    widths = [max(len(row[i]) for row in rows + [header]) for i in range(len(header))]
    right = {2, 3, 5, 6, 7, 8, 9, 10, 11}

    def fmt(row):
        cells = []
        for i, cell in enumerate(row):
            cells.append(cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]))
        return "| " + " | ".join(cells) + " |"

    print(fmt(header))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print(fmt(row))
    missed = page_cost(runs, order)
    attempts_cost(runs, median)
    return 3 if missed else 0


def median_interval(values):
    """The median of `values` and a distribution-free interval around it: the k-th smallest and
    k-th largest values, k as large as keeps the chance that the true median lies outside at
    most 5% (the binomial count of values below the median); None when there are too few."""
    values = sorted(values)
    n = len(values)
    below = 0.0
    k = 0
    for i in range(n):
        below += math.comb(n, i) / 2 ** n
        if 2 * below > 0.05:
            break
        k = i + 1
    if k == 0:
        return statistics.median(values), None
    return statistics.median(values), (values[k - 1], values[n - k])


def page_cost(runs, order):
    """The cost of an open web page: failmail-streamed (the scenario server with the page's
    streams read) against failmail-scenario, mode by mode. Runs are interleaved round by round,
    so the i-th runs of the two servers ran next to each other: the ratio is taken per round
    (a slow stretch of the machine falls on both), and its median is the figure, with the
    interval that holds the true median with 95% confidence. The goal is at least 0.95."""
    plain, streamed = "failmail-scenario", "failmail-streamed"
    modes = [mode for (server, mode) in order if server == streamed and (plain, mode) in runs]
    missed = []
    if not modes:
        return missed
    print()
    print(f"the web page's cost ({streamed} ÷ {plain}, ratio per round of interleaved runs; "
          "goal: at least 0.95):")
    for mode in modes:
        a, b = runs[(plain, mode)], runs[(streamed, mode)]
        line = [f"  {mode:<16}"]
        for what in ("rates", "per_cpu"):
            pairs = [y / x for x, y in zip(a[what], b[what]) if x > 0]
            if not pairs:
                continue
            middle, interval = median_interval(pairs)
            if what == "rates" and middle < 0.95:
                missed.append(mode)
            label = "messages/s" if what == "rates" else "msgs/server CPU-s"
            span = f" (95%: {interval[0]:.3f}..{interval[1]:.3f})" if interval else ""
            line.append(f"{label} {middle:.3f}{span}")
        rates = [statistics.median(r["rates"]) for r in (a, b)]
        line.append(f"medians {rates[1]:.0f} ÷ {rates[0]:.0f} msgs/s, {len(a['rates'])} rounds")
        line.append("NOT MET" if mode in missed else "met")
        print("   ".join(line))
    return missed


def attempts_cost(runs, median):
    """What the attempt history costs: failmail-scenario (history on) against the same server
    with --no-attempts, mode by mode; the goal is a ratio of at least 0.90."""
    on, off = "failmail-scenario", "failmail-scenario-no-attempts"
    modes = [mode for (server, mode) in runs if server == on and (off, mode) in runs]
    if not modes:
        return
    print()
    print(f"attempt history cost ({on} ÷ {off}, same mode; goal: at least 0.90x):")
    for mode in modes:
        rate = median[(on, mode)] / median[(off, mode)] if median[(off, mode)] > 0 else 0.0
        per_cpu = [statistics.median(runs[(server, mode)]["per_cpu"] or [0.0]) for server in (on, off)]
        efficiency = per_cpu[0] / per_cpu[1] if per_cpu[1] > 0 else 0.0
        print(f"  {mode:<16} messages/s {rate:.2f}x   msgs/server CPU-s {efficiency:.2f}x")


RCPT_REPLIES = ["user_unknown", "mailbox_full", "mailbox_disabled", "mailbox_busy",
                "relay_denied", "mailbox_full_permanent", "domain_not_found"]


def scenario(total=1000):
    if total % 1000 != 0 or total <= 0:
        raise SystemExit("the rule count is a multiple of 1000")
    k = total // 1000
    out = []
    emit = out.append
    if k > 1:
        emit(f"# {total:,} rules: the mix below, each kind {k} times as many.")
    emit("# 1,000 rules for benches/load.sh (\"failmail scenario\" server): a large, realistic rule")
    emit("# set that the load never matches, so every message is accepted after all rules are tried.")
    emit("# Generated by `python3 benches/load_report.py scenario > benches/scenario_1000.toml`;")
    emit("# checked by `failmail check benches/scenario_1000.toml`.")
    emit("#")
    emit("# The load uses HELO load.example, MAIL FROM load-sender@load.example,")
    emit("# RCPT TO load-rcpt@sink.example and client IP 127.0.0.1.")
    emit("#")
    emit("# Mix: 50 client_ip CIDR, 50 helo globs, 50 auth_user globs, 100 mail_from (exact and")
    emit("# glob), 100 mail_from /regex/, 400 rcpt exact, 150 rcpt globs, 100 rcpt /regex/.")
    emit("")
    emit("[server]")
    emit('flavor = "ovh"')
    count = 0

    def rule(name, key, value, reply):
        nonlocal count
        count += 1
        emit("")
        emit("[[rule]]")
        emit(f'name = "{name}"')
        emit(f"{key} = {value}")
        emit(f'reply = "{reply}"')

    for i in range(50 * k):
        rule(f"blocked_ip_{i:03}", "client_ip", f'"198.51.{100 + i // 256}.{i % 256}/32"',
             "no_smtp_service")
    for i in range(50 * k):
        rule(f"bad_helo_{i:03}", "helo", f'"bot{i}-*.invalid"', "command_unrecognized")
    for i in range(50 * k):
        rule(f"blocked_account_{i:03}", "auth_user",
             f'["blocked{i}@*", "spammer{i}-*"]', "account_blocked_spam")
    for i in range(50 * k):
        rule(f"sender_exact_{i:03}", "mail_from", f'"noreply{i}@newsletter.example"',
             "sender_rejected")
    for i in range(50 * k):
        rule(f"sender_domain_{i:03}", "mail_from", f'"*@spam-domain-{i}.example"',
             "sender_domain_not_found")
    for i in range(100 * k):
        rule(f"sender_regex_{i:03}", "mail_from", f"'/^bounce\\+{i}-[0-9a-f]+@mailer[0-9]*\\.example$/'",
             "sender_rejected")
    for i in range(400 * k):
        rule(f"rcpt_exact_{i:03}", "rcpt", f'"user{i:04}@customer{i % 50}.example"',
             RCPT_REPLIES[i % len(RCPT_REPLIES)])
    for i in range(150 * k):
        if i % 2 == 0:
            value = f'"*@dead-domain-{i}.example"'
        else:
            value = f'["full{i}-*@*", "quota{i}?@*.example"]'
        rule(f"rcpt_glob_{i:03}", "rcpt", value, RCPT_REPLIES[i % len(RCPT_REPLIES)])
    for i in range(100 * k):
        rule(f"rcpt_regex_{i:03}", "rcpt", f"'/^list-[0-9]+-{i}@lists\\.example$/'",
             RCPT_REPLIES[i % len(RCPT_REPLIES)])
    assert count == total, count
    print("\n".join(out))


def main(argv):
    if len(argv) == 3 and argv[1] == "table":
        return table(argv[2])
    elif len(argv) == 2 and argv[1] == "scenario":
        scenario()
    elif len(argv) == 3 and argv[1] == "scenario":
        scenario(int(argv[2]))
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
