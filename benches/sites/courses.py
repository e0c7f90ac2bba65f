#!/usr/bin/env python3
"""Throughput of the courses site's pages and the cost of its Stripe webhook, on a release build.

Starts `bourse serve` with the courses site on SQLite (its two sample courses, the TEST MODE
checkout, mails printed on stdout), signs a student up through the site (the verification link
read from the printed mail), buys a seat, then:
  - wrk on the catalog (anonymous) and on a paid lesson (as the enrolled student);
  - the webhook: 100 checkouts started over HTTP, then their `checkout.session.completed` events
    signed like Stripe (HMAC-SHA256 over "t.payload") and delivered one at a time (each applied:
    inbox, order, seat, enrolment, receipt in one transaction), delivered again (duplicates),
    and delivered with a wrong signature (refused); latency percentiles per kind.

Usage: benches/sites/courses.py target/release/bourse [--duration 10]
"""

import argparse
import hashlib
import hmac
import http.client
import json
import os
import re
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.parse

SECRET = "whsec_bench_courses_0123456789"


class Site:
    def __init__(self, port):
        self.port = port
        self.cookies = {}

    def request(self, method, path, form=None, body=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = dict(headers or {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if form is not None:
            body = urllib.parse.urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        text = response.read().decode("utf-8", "replace")
        for name, value in response.getheaders():
            if name.lower() == "set-cookie":
                key, _, rest = value.partition("=")
                self.cookies[key] = rest.split(";")[0]
        conn.close()
        return response.status, response.getheader("Location"), text


def csrf(page):
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def wrk(url, duration, cookie=None):
    args = ["wrk", "-t2", "-c32", f"-d{duration}s", "--latency", url]
    if cookie:
        args[1:1] = ["-H", f"Cookie: {cookie}"]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, p50, p99, int(non2xx.group(1)) if non2xx else 0


def signature(payload, secret):
    t = int(time.time())
    mac = hmac.new(secret.encode(), f"{t}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def deliver(port, payload, secret):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    started = time.perf_counter()
    conn.request("POST", "/courses/webhooks/stripe", body=payload,
                 headers={"Stripe-Signature": signature(payload, secret),
                          "Content-Type": "application/json"})
    response = conn.getresponse()
    response.read()
    elapsed = time.perf_counter() - started
    conn.close()
    return response.status, elapsed


def percentiles(samples):
    samples = sorted(samples)
    pick = lambda q: samples[min(len(samples) - 1, int(q * len(samples)))] * 1000
    return f"p50 {pick(0.5):.2f} ms, p99 {pick(0.99):.2f} ms, mean {statistics.mean(samples) * 1000:.2f} ms"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("binary")
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--port", type=int, default=18181)
    args = parser.parse_args()
    port = args.port
    work = tempfile.mkdtemp(prefix="bourse-bench-courses-")
    config = os.path.join(work, "bourse.toml")
    with open(config, "w") as f:
        f.write(f"""[server]
listen = "127.0.0.1:{port}"

[log]
format = "text"
level = "warn"

[sites.store]
path = "{work}/sites.db"

[plugins.courses]
public_url = "http://127.0.0.1:{port}/courses"
sample_courses = true
files_dir = "{work}/files"

[plugins.courses.stripe]
secret_key = "sk_test_bench"
webhook_secret = "{SECRET}"
test_mode = true
""")
    bourse = subprocess.Popen([args.binary, "serve", "--config", config],
                              stdout=subprocess.PIPE, text=True)
    mails = []
    ready = threading.Event()

    def read_stdout():
        for line in bourse.stdout:
            if "bourse is serving" in line:
                ready.set()
            mails.append(line)

    threading.Thread(target=read_stdout, daemon=True).start()
    ready.wait(30)
    try:
        student = Site(port)
        _, _, page = student.request("GET", "/courses/account/signup")
        student.request("POST", "/courses/account/signup",
                        form={"csrf": csrf(page), "email": "bench@example.com",
                              "password": "a long enough password"})
        link = None
        for _ in range(100):
            found = re.search(r"(http://\S+/account/verify\?token=\S+)", "".join(mails))
            if found:
                link = found.group(1)
                break
            time.sleep(0.05)
        student.request("GET", urllib.parse.urlparse(link).path + "?" + urllib.parse.urlparse(link).query)
        _, _, page = student.request("GET", "/courses/account/signin")
        status, _, _ = student.request("POST", "/courses/account/signin",
                                       form={"csrf": csrf(page), "email": "bench@example.com",
                                             "password": "a long enough password", "next": ""})
        assert status == 303, status
        _, _, page = student.request("GET", "/courses/c/rust-in-depth")
        cohort = re.search(r'name="cohort" value="([^"]+)"', page).group(1)
        status, pay, _ = student.request("POST", "/courses/checkout",
                                         form={"csrf": csrf(page), "cohort": cohort})
        assert status == 303, status
        student.request("POST", urllib.parse.urlparse(pay).path)
        status, _, page = student.request("GET", "/courses/c/rust-in-depth/lessons/2")
        assert status == 200 and "Ownership" in page, status
        session_cookie = f"courses_session={student.cookies['courses_session']}"

        base = f"http://127.0.0.1:{port}"
        results = {}
        results["catalog"] = wrk(f"{base}/courses/", args.duration)
        results["lesson"] = wrk(f"{base}/courses/c/rust-in-depth/lessons/2", args.duration,
                                session_cookie)

        # 99 more checkouts (the sample cohort has 100 seats) as guests.
        guest = Site(port)
        _, _, page = guest.request("GET", "/courses/c/rust-in-depth")
        token = csrf(page)
        events = []
        for i in range(99):
            status, pay, _ = guest.request("POST", "/courses/checkout",
                                           form={"csrf": token, "cohort": cohort,
                                                 "email": f"guest{i}@example.com"})
            assert status == 303, status
            session = pay.rsplit("/", 1)[1]
            events.append(json.dumps({
                "id": f"evt_bench_{i}", "object": "event", "type": "checkout.session.completed",
                "created": int(time.time()), "livemode": False,
                "data": {"object": {"id": session, "object": "checkout.session",
                                    "status": "complete", "payment_status": "paid",
                                    "amount_total": 4900, "currency": "usd",
                                    "payment_intent": f"pi_bench_{i}"}}}))
        webhook = {}
        for kind, secret, expected in [("applied", SECRET, 200), ("duplicate", SECRET, 200),
                                       ("refused", "whsec_wrong", 400)]:
            samples = []
            for payload in events:
                status, elapsed = deliver(port, payload, secret)
                assert status == expected, (kind, status)
                samples.append(elapsed)
            webhook[kind] = percentiles(samples)
        paid = sum(1 for m in mails if m.startswith("Subject: Your receipt"))
    finally:
        bourse.terminate()
        bourse.wait(10)

    print(f"bourse {args.binary}, wrk -t2 -c32 -d{args.duration}s, SQLite store")
    for page, (rps, p50, p99, non2xx) in results.items():
        print(f"  {page:8} {rps:>9.0f} requests/s  p50 {p50}  p99 {p99}  non-2xx {non2xx}")
    print("  webhook, one delivery at a time over a new connection (99 events each):")
    for kind, line in webhook.items():
        print(f"    {kind:9} {line}")
    print(f"  receipts printed: {paid}")


if __name__ == "__main__":
    main()
