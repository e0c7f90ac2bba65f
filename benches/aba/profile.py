#!/usr/bin/env python3
"""Where one server's CPU goes under the forwarder-ab harness's load: user and system µs per
request, context switches and syscalls per request, and the top symbols of a `perf record`.

    BIN=target/release/bourse benches/aba/profile.py [4|1|nobid]
    FORWARDER=1 benches/aba/profile.py 1          # the harness's bare forwarder instead

It starts the harness's nginx bidders and the server (bourse with the harness's config, or the
forwarder), warms it up for 2 s, then loads it with the harness's `wrk -t1 -c32` in three
windows: DUR seconds (default 10) with nothing watching for the CPU figures, then DUR - 2 under
`perf stat`, then DUR - 2 under `perf record` (sampling slows the server it samples, so the CPU
figures never come from a watched window). Env: TOP (symbols shown, default 40), FREQ (samples per second, default 2999),
CALLERS=1 keeps call graphs (`perf report -g caller`), CALL_GRAPH (how they are taken, default
frame pointers; `dwarf,32768` unwinds our frames too, for `phases.py`), PERF_DATA (where the
recording goes),
EVENTS (what `perf stat` counts, default `context-switches,raw_syscalls:sys_enter`).
Needs nginx, wrk and perf.
"""
import os, signal, subprocess, sys, tempfile, threading, time

from forwarder_ab import build_forwarder, harness

scenario = sys.argv[1] if len(sys.argv) > 1 else "1"
nobid = scenario == "nobid"
forwarder = os.environ.get("FORWARDER") == "1"
bidders = (0 if forwarder else 4) if nobid else int(scenario)
dur = int(os.environ.get("DUR", "10"))
top = int(os.environ.get("TOP", "40"))
callers = os.environ.get("CALLERS") == "1"
data = os.environ.get("PERF_DATA", tempfile.mktemp(prefix="bourse-profile-", suffix=".data"))
url = f"http://127.0.0.1:{harness.PORT}/openrtb2/auction"
body = "bidreq-audio.json" if nobid else "bidreq.json"


def user_system_s(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(fields[11]) / harness.TCK, int(fields[12]) / harness.TCK


def start_server():
    if forwarder:
        build_forwarder()
        server = subprocess.Popen([harness.FWD], env=dict(os.environ, N=str(bidders), PORT=str(harness.PORT)),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        return server
    config = tempfile.mktemp(suffix=".toml")
    harness.bourse_config(bidders, config, ["banner"] if nobid else None)
    binary = os.environ.get("BIN", "target/release/bourse")
    server = subprocess.Popen([binary, "serve", "--config", config], stdout=subprocess.DEVNULL,
                              stderr=open(config + ".log", "w"))
    if not harness.wait_http(f"http://127.0.0.1:{harness.PORT}/readyz"):
        server.kill()
        raise SystemExit("bourse did not come up")
    return server


def main():
    _, nginx = harness.start_nginx()
    server = start_server()
    try:
        harness.wrk(url, 2, body)
        # Three windows on one server: the figures first with nothing watching, then the
        # counters, then the recording (perf's sampling slows the server it samples).
        user0, system0 = user_system_s(server.pid)
        requests, rps, non2xx, p99us, _ = harness.wrk(url, dur, body)
        user1, system1 = user_system_s(server.pid)
        print(f"{'forwarder' if forwarder else 'bourse'} {scenario}: {rps:.0f} req/s, {non2xx} non-2xx, "
              f"p99 {p99us:.0f} µs")
        print(f"user {(user1 - user0) / requests * 1e6:.1f} µs, system {(system1 - system0) / requests * 1e6:.1f} µs"
              " per request")
        watch = max(dur - 2, 1)
        for command in (["perf", "stat", "-x,", "-e", os.environ.get("EVENTS", "context-switches,raw_syscalls:sys_enter")],
                        ["perf", "record", "-F", os.environ.get("FREQ", "2999"),
                         *(["--call-graph", os.environ.get("CALL_GRAPH", "fp")] if callers else []),
                         "-o", data]):
            loaded = {}
            load = threading.Thread(target=lambda: loaded.update(out=harness.wrk(url, watch + 1, body)))
            load.start()
            time.sleep(0.5)
            watcher = subprocess.run([*command, "-p", str(server.pid), "--", "sleep", str(watch)],
                                     capture_output=True, text=True)
            load.join()
            if command[1] == "stat":
                watched = loaded["out"][1] * watch
                for line in watcher.stderr.splitlines():
                    parts = line.split(",")
                    if len(parts) > 2 and parts[0].strip().isdigit():
                        print(f"{parts[2]}: {int(parts[0]) / watched:.2f} per request")
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
        subprocess.run(["kill", str(nginx)])
    graph = ["-g", "caller,0.5,callee"] if callers else []
    report = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "dso,symbol",
                             "--percent-limit", "0.3", *graph, "--stdio"],
                            capture_output=True, text=True).stdout
    shown = [line for line in report.splitlines() if line.strip() and not line.startswith("#")]
    print("\n".join(shown[:top]))
    print(f"recording: {data}")


if __name__ == "__main__":
    main()
