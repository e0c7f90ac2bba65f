#!/usr/bin/env python3
"""Writes the hand-made seed inputs of the fuzz corpora (fuzz/corpus/<target>/seed-*): bid
requests from the bidder fixtures and benchmarks, sealed tokens, configs, /ad bodies. What the
fuzzers found beyond them is merged in by libFuzzer (see FUZZING.md)."""

import base64
import glob
import gzip
import hashlib
import hmac
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def write(target, name, data):
    folder = os.path.join(HERE, "corpus", target)
    os.makedirs(folder, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(folder, "seed-" + name), "wb") as f:
        f.write(data)


def openrtb_requests():
    seen = set()
    found = []
    fixtures = os.path.join(ROOT, "bidders/tests/fixtures/**/*.json")
    for path in sorted(glob.glob(fixtures, recursive=True)):
        fixture = json.load(open(path))
        bodies = [fixture.get("mockBidRequest")]
        bodies += [c.get("expectedRequest", {}).get("body") for c in fixture.get("httpCalls", [])]
        for body in bodies:
            if isinstance(body, dict):
                text = json.dumps(body, separators=(",", ":"))
                if text not in seen:
                    seen.add(text)
                    found.append((os.path.basename(path)[:-5], text))
    others = ["benches/data/banner-site.json", "benches/data/app-video.json",
              "examples/banner-request.json"]
    for path in others:
        text = open(os.path.join(ROOT, path)).read()
        if text not in seen:
            seen.add(text)
            found.append((os.path.basename(path)[:-5], text))
    for n, (name, text) in enumerate(found):
        write("openrtb_request", f"{n:02}-{name}.json", text)
    # Refusals: no id, no imp, a bad flag, a bad currency, not JSON.
    write("openrtb_request", "bad-no-id.json", '{"imp":[{"id":"1","banner":{"w":300,"h":250}}]}')
    write("openrtb_request", "bad-no-imp.json", '{"id":"a","imp":[]}')
    write("openrtb_request", "bad-flag.json", '{"id":"a","test":2,"imp":[{"id":"1","banner":{}}]}')
    write("openrtb_request", "bad-cur.json",
          '{"id":"a","cur":["usd"],"imp":[{"id":"1","native":{"request":"{}"}}]}')
    write("openrtb_request", "bad-json.json", '{"id": nope')


# postcard: varint lengths and enum indexes, f64 little-endian, Option as 0 or 1 then the value.
def varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def text(s):
    s = s.encode()
    return varint(len(s)) + s


def option(value):
    return b"\x00" if value is None else b"\x01" + value


def f64(v):
    return struct.pack("<d", v)


def win_token(kind, partner_url):
    # kind, auction, reference, bid, imp, seat, ad, bidder, price, bid_price, cur, gross_up,
    # partner_url, exp
    return (varint(kind) + text("auction-1") + text("ref-7f3a") + text("bid-1") + text("imp-1")
            + text("seat")
            + text("ad-1") + text("adv") + f64(1.5) + f64(2.0) + text("USD") + f64(1.1)
            + option(partner_url and text(partner_url)) + varint(1_900_000_000))


def beacon_token(kind, bill, target):
    # kind, auction, imp, publisher, placement, bidder, deal, cpm, currency, bill, uid, target, exp
    return (varint(kind) + text("auction-1") + text("imp-1") + text("news") + text("news-top")
            + text("adv") + option(text("deal-9")) + f64(2.0) + text("USD")
            + option(bill) + option(text("0123456789abcdef")) + option(target and text(target))
            + varint(1_900_000_000))


def sealed(key, domain, payload):
    mac = hmac.new(key, domain + payload, hashlib.sha256).digest()[:16]
    b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=")
    return b64(payload) + b"." + b64(mac)


def tokens():
    other_key = b"test-secret"
    partner = "http://partner.example/win?p=${AUCTION_PRICE}"
    wins = [win_token(k, partner if k != 1 else None) for k in range(3)]
    beacons = [
        beacon_token(0, wins[1], None),
        beacon_token(1, None, None),
        beacon_token(2, None, "https://advertiser.example/landing?c=1"),
    ]
    # Mode 0 (even first byte): tokens from outside, sealed with another key, and broken ones.
    win_domain, beacon_domain = b"bourse/notice-token/2\0", b"bourse/beacon-token/2\0"
    outside = [(win_domain, w) for w in wins] + [(beacon_domain, b) for b in beacons]
    for n, (domain, payload) in enumerate(outside):
        write("tokens", f"outside-{n}", b"\x00" + sealed(other_key, domain, payload))
    write("tokens", "outside-no-dot", b"\x00abcdef")
    unsigned = base64.urlsafe_b64encode(wins[0]).rstrip(b"=")
    write("tokens", "outside-short-mac", b"\x00" + unsigned + b".AAAA")
    # Mode 1 (odd first byte): a payload (length, little-endian u16, then bytes) sealed with the
    # fuzz key, then edits of three bytes each (what, where, with).
    for n, payload in enumerate(wins + beacons):
        edits = bytes([0, n * 7, ord("A"), 1, 3, 0, 2, 200, ord(".")])
        length = struct.pack("<H", len(payload))
        write("tokens", f"sealed-{n}", b"\x01" + length + payload + edits[: 3 * (n % 4)])


def configs():
    write("config", "example.toml", open(os.path.join(ROOT, "bourse.example.toml")).read())
    demo = """[server]
listen = "127.0.0.1:8080"

[log]
format = "text"
level = "info"

[plugins.exchange]
currency = "USD"
fee = 0.1
public_url = "http://127.0.0.1:8080"
schain_asi = "bourse.example"

[plugins.exchange.rates]
EUR = 1.08
GBP = 1.27

[plugins.exchange.floors]
enabled = true
min_observations = 200

[[plugins.exchange.publishers]]
id = "demo-news"
name = "Demo News"

[[plugins.exchange.placements]]
id = "demo-top"
publisher = "demo-news"
sizes = [[728, 90], [970, 250]]
floor = 0.2

[[plugins.exchange.bidders]]
name = "sim-a"
endpoint = "http://127.0.0.1:9001/bid"
timeout_ms = 150
media = ["banner", "video"]
notice_allowed_hosts = ["127.0.0.1"]

[plugins.admin]
users_file = "users.json"
"""
    write("config", "demo.toml", demo)
    write("config", "two-exchanges.toml", """[plugins.a]
kind = "exchange"
notice_secret = "s"
mount = { paths = ["/a"] }

[plugins.b]
kind = "exchange"
notice_secret = "s"
mount = { hosts = ["b.example", "*.example"], paths = ["/b"] }
""")
    write("config", "unknown-kind.toml", '[plugins.x]\nkind = "nope"\n')
    write("config", "bad-syntax.toml", "[server\nlisten = 1\n")


def ad_bodies():
    page = {
        "page": "https://www.news.example/story?id=7",
        "ref": "https://search.example/",
        "uid": "0123456789abcdef0123456789abcdef",
        "consent": {"denied": False},
    }
    bodies = {
        "two-slots": dict(page, slots=[{"id": "a", "placement": "news-top", "sizes": [[300, 250]]},
                                       {"id": "b", "placement": "news-side"}]),
        "denied": dict(page, consent={"denied": True},
                       slots=[{"id": "a", "placement": "news-top"}]),
        "two-publishers": dict(page, slots=[{"id": "a", "placement": "news-top"},
                                            {"id": "b", "placement": "blog-top"}]),
        "unknown-placement": dict(page, slots=[{"id": "a", "placement": "nope"}]),
        "bad-page": {"page": "ftp://x", "slots": [{"id": "a", "placement": "news-top"}]},
        "no-slots": {"page": "https://news.example/", "slots": []},
        "no-slots-key": {"page": "https://news.example/"},
    }
    for name, body in bodies.items():
        write("ad_request", name + ".json", json.dumps(body, separators=(",", ":")))
    gzipped = gzip.compress(json.dumps(bodies["two-slots"]).encode(), mtime=0)
    write("ad_request", "gzipped.json.gz", gzipped)


if __name__ == "__main__":
    openrtb_requests()
    tokens()
    configs()
    ad_bodies()
