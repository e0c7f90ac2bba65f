#!/usr/bin/env python3
"""A/B/A of two bourse builds on the forwarder-ab harness: the same nginx bidders, the same wrk
load, the builds' windows alternated (A, B, A, B, A) so the machine's drift cancels out, with
the bare forwarder measured before and after as the yardstick.

    OLD_BIN=/path/to/old/bourse NEW_BIN=/path/to/new/bourse benches/aba/compare-builds.py

Env: FORWARDER_AB (the harness directory, default ../shared/bench/forwarder-ab), NS (scenarios,
default "4,nobid"), DUR (s per window, default 10), ROUNDS (A/B pairs, default 2), and the
harness's own (CONNS, PORT, FORWARDER_TARGET). Prints one JSON line per window and a summary
JSON last: per scenario, the medians of req/s and server CPU µs per request of each build and
their ratios (new / old).
"""
import importlib.machinery, importlib.util, json, os, statistics, subprocess, sys

harness_dir = os.environ.get("FORWARDER_AB", os.path.join(os.getcwd(), "../shared/bench/forwarder-ab"))
loader = importlib.machinery.SourceFileLoader("forwarder_ab", os.path.join(harness_dir, "run"))
spec = importlib.util.spec_from_loader("forwarder_ab", loader)
harness = importlib.util.module_from_spec(spec)
loader.exec_module(harness)

OLD, NEW = os.environ["OLD_BIN"], os.environ["NEW_BIN"]
NS = os.environ.get("NS", "4,nobid").split(",")
ROUNDS = int(os.environ.get("ROUNDS", "2"))


def build_window(binary, n, nobid):
    harness.BOURSE = binary
    r = harness.window("bourse", n, nobid)
    r["build"] = "old" if binary == OLD else "new"
    print(json.dumps(r), flush=True)
    return r


def main():
    subprocess.run(["cargo", "build", "--release", "-q", "--manifest-path",
                    f"{harness.D}/forwarder/Cargo.toml", "--target-dir", harness.FWD_TARGET], check=True)
    pre, master = harness.start_nginx()
    summary = {}
    try:
        for n in NS:
            nobid = n == "nobid"
            bn, fn = (4, 0) if nobid else (int(n), int(n))
            forwarder = [harness.window("forwarder", fn, nobid)]
            runs = []
            for _ in range(ROUNDS):
                runs.append(build_window(OLD, bn, nobid))
                runs.append(build_window(NEW, bn, nobid))
            runs.append(build_window(OLD, bn, nobid))
            forwarder.append(harness.window("forwarder", fn, nobid))
            med = lambda rs, k: statistics.median(r[k] for r in rs)
            old = [r for r in runs if r["build"] == "old"]
            new = [r for r in runs if r["build"] == "new"]
            summary["no_bid" if nobid else f"{n}_bidders"] = dict(
                old_rps=med(old, "rps"), new_rps=med(new, "rps"),
                old_cpu_us=med(old, "cpu_us"), new_cpu_us=med(new, "cpu_us"),
                forwarder_rps=med(forwarder, "rps"), forwarder_cpu_us=med(forwarder, "cpu_us"),
                cpu_new_over_old=round(med(new, "cpu_us") / med(old, "cpu_us"), 3),
                rps_new_over_old=round(med(new, "rps") / med(old, "rps"), 3),
                old_cpu_us_all=[r["cpu_us"] for r in old], new_cpu_us_all=[r["cpu_us"] for r in new],
                non2xx=sum(r["non2xx"] for r in runs))
    finally:
        subprocess.run(["kill", str(master)])
    print(json.dumps(summary))


if __name__ == "__main__":
    sys.exit(main())
