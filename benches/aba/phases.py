#!/usr/bin/env python3
"""Where bourse's user-space CPU goes, by phase of an auction, from a `perf record` with call
graphs unwound through our frames (`profile.py` with `CALLERS=1 CALL_GRAPH=dwarf,32768`):

    BIN=target/release/bourse CALLERS=1 CALL_GRAPH=dwarf,32768 FREQ=999 PERF_DATA=p.data \\
        benches/aba/profile.py 1
    benches/aba/phases.py p.data [N]

Each sample is charged to every phase named on its stack (a phase's share includes what it
calls); shares are of all samples, the kernel's included. The samples on no phase's stack are
listed by their innermost symbol, the N most frequent (default 25).
"""
import collections, re, subprocess, sys

PHASES = [
    ("reading the request", r"Object>::fill|from_json_text"),
    ("validation, upconversion, terms, eligibility",
     r"validate::validate|upconvert|imp_terms|NativeImps|Ask::of|BidderParams|eligible|drop_malformed"),
    ("partner bodies", r"build_calls|make_requests|write_spliced|Received::read|Arrival::members"),
    ("the partner call", r"BidderClient::call|Connection::exchange|Http1Pool"),
    ("reading the partner's answer", r"collect_bids|make_bids|openrtb_bids"),
    ("bid checks and clearing", r"check_bid|auction::clear"),
    ("the answer", r"Exchange>::respond|notice_url|sign_into|TokenSigner"),
    ("dropping the request", r"drop_in_place<.*BidRequest"),
    ("reading the body", r"read_body"),
    ("hyper reading the request head", r"Conn<I,B,T>::poll_read_head|role::Server as .*::parse"),
    ("hyper writing the response", r"Conn<I,B,T>::write_head|role::Server as .*::encode|poll_flush"),
]


def samples(data):
    """Each sample's stack as (address, symbol) pairs, innermost first."""
    script = subprocess.run(["perf", "script", "-i", data, "-F", "comm,ip,sym"],
                            capture_output=True, text=True).stdout
    stack = None
    for line in script.splitlines():
        if not line.strip():
            continue
        if not line.startswith("\t"):
            if stack is not None:
                yield stack
            stack = []
        else:
            address, _, symbol = line.strip().partition(" ")
            stack.append((address, symbol))
    if stack is not None:
        yield stack


def main():
    data = sys.argv[1]
    shown = int(sys.argv[2]) if len(sys.argv) > 2 else 25
    every = list(samples(data))
    total = len(every)
    user = [s for s in every if s and not s[0][0].startswith("ffffffff")]
    print(f"{total} samples, {100 * len(user) / total:.1f}% in user space")
    for name, pattern in PHASES:
        phase = re.compile(pattern)
        hits = sum(1 for s in user if any(phase.search(symbol) for _, symbol in s))
        print(f"{100 * hits / total:6.2f}%  {name}")
    anywhere = re.compile("|".join(pattern for _, pattern in PHASES))
    rest = [s for s in user if not any(anywhere.search(symbol) for _, symbol in s)]
    print(f"{100 * len(rest) / total:6.2f}%  on no phase's stack")
    innermost = collections.Counter(re.sub(r"\s*\(inlined\)", "", s[0][1])[:110] for s in rest)
    for symbol, count in innermost.most_common(shown):
        print(f"    {100 * count / total:5.2f}%  {symbol}")


if __name__ == "__main__":
    main()
