#!/usr/bin/env python3
"""End-to-end A/B/A benchmark: bourse against the bare hyper forwarder (the baseline), with the
same simulated bidders, the same closed-loop driver and the same machine, alternating
bourse, baseline, bourse. Reports throughput, server CPU per request and peak memory, and the
ratios. Everything runs on loopback and stops by itself.

    scripts/bench-e2e.py [--duration 8] [--scenario sim/scenarios/four-bidders.toml]
"""
import argparse, json, os, re, signal, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
BOURSE = os.path.join(TARGET, "release", "bourse")
FORWARDER = os.path.join(TARGET, "release", "forwarder")
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def peak_rss_mib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_line(proc, prefix, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = proc.stdout.readline()
        if line.startswith(prefix):
            return line[len(prefix):].strip()
    raise RuntimeError(f"no line starting with {prefix!r}")


def drive(url, traffic, duration, server_pid):
    before = cpu_seconds(server_pid)
    out = subprocess.run(
        [BOURSE, "sim", "run", traffic, "--target", url, "--duration", str(duration), "--print-json"],
        check=True, capture_output=True, text=True,
    ).stdout
    cpu = cpu_seconds(server_pid) - before
    report = json.loads(out)
    counts = report["counts"]
    total = counts["sent"] + counts.get("warmup", 0)
    return {
        "rate": report["achieved_rate"],
        "p99_ms": report["latency"]["p99_ms"],
        "errors": sum(counts["errors"].values()) if isinstance(counts["errors"], dict) else counts["errors"],
        "cpu_us": cpu / max(total, 1) * 1e6,
        "rss_mib": peak_rss_mib(server_pid),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default=os.path.join(ROOT, "sim/scenarios/four-bidders.toml"),
                        help="scenario whose bidders are simulated")
    parser.add_argument("--traffic", default=os.path.join(ROOT, "sim/scenarios/ceiling.toml"),
                        help="scenario whose traffic drives the servers (closed loop for the ceiling)")
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--no-losses", action="store_true",
                        help="do not fire losing bidders' lurl (the baseline fires no notices)")
    args = parser.parse_args()
    subprocess.run(["cargo", "build", "--release", "-p", "bourse", "-p", "bourse-benches", "--bin", "bourse",
                    "--bin", "forwarder"], check=True, cwd=ROOT)
    children = []
    try:
        path = "/tmp/bourse-e2e.toml"
        if os.path.exists(path):
            os.remove(path)
        bidders = subprocess.Popen([BOURSE, "sim", "bidders", args.scenario, "--write-config", path],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        children.append(bidders)
        for _ in range(200):
            if os.path.exists(path) and os.path.getsize(path) > 0:
                break
            time.sleep(0.05)
        text = open(path).read().replace('listen = "127.0.0.1:0"', 'listen = "127.0.0.1:18080"')
        if args.no_losses:
            text += "\n[plugins.exchange.notices]\nlosses = false\n"
        open(path, "w").write(text)
        endpoints = re.findall(r'endpoint = "([^"]+)"', text)

        bourse = subprocess.Popen([BOURSE, "serve", "--config", path], stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, text=True)
        children.append(bourse)
        wait_line(bourse, "bourse is serving on ")
        forwarder = subprocess.Popen([FORWARDER, "--listen", "127.0.0.1:18081"] +
                                     sum((["--bidder", e] for e in endpoints), []),
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        children.append(forwarder)
        wait_line(forwarder, "forwarder is serving on ")

        runs = []
        for name, url, pid in [("bourse", "http://127.0.0.1:18080/openrtb2/auction", bourse.pid),
                               ("baseline", "http://127.0.0.1:18081/", forwarder.pid),
                               ("bourse", "http://127.0.0.1:18080/openrtb2/auction", bourse.pid)]:
            result = drive(url, args.traffic, args.duration, pid)
            result["server"] = name
            runs.append(result)
            print(f"{name:9} {result['rate']:9.0f}/s  p99 {result['p99_ms']:7.2f} ms  "
                  f"cpu {result['cpu_us']:6.1f} us/req  peak {result['rss_mib']:6.1f} MiB  errors {result['errors']}",
                  file=sys.stderr)
        b = [r for r in runs if r["server"] == "bourse"]
        base = runs[1]
        rate = sum(r["rate"] for r in b) / len(b)
        cpu = sum(r["cpu_us"] for r in b) / len(b)
        print("| server | ceiling (req/s) | p99 (ms) | CPU per request (µs) | peak RSS (MiB) |")
        print("| --- | --- | --- | --- | --- |")
        for r in runs:
            print(f"| {r['server']} | {r['rate']:.0f} | {r['p99_ms']:.2f} | {r['cpu_us']:.1f} | {r['rss_mib']:.1f} |")
        print(f"\nbourse/baseline throughput: {rate / base['rate']:.2f}   CPU per request: {cpu / base['cpu_us']:.2f}x")
        json.dump(runs, open("/tmp/bourse-e2e.json", "w"), indent=2)
    finally:
        for child in children:
            child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()


if __name__ == "__main__":
    main()
