#!/usr/bin/env python3
"""Instructions per auction of two bourse builds, counted by valgrind's callgrind: repeatable to
a fraction of a percent whatever else the machine does, where the wall-clock A/B/A moves by
10-20% on a shared 2-core machine.

    OLD_BIN=/path/to/old/bourse NEW_BIN=/path/to/new/bourse benches/aba/instructions.py [4|1|nobid]

Each build serves the forwarder-ab harness's config (its nginx bidders, loss notices off) under
callgrind twice, for 200 and then 1,200 sequential auctions on one keep-alive connection; the
difference of the two totals over 1,000 is the cost of one auction, start-up and shutdown
cancelled out. Env: FORWARDER_AB (the harness directory, default ../shared/bench/forwarder-ab);
WITH_FORWARDER=1 counts the harness's bare forwarder the same way (4 bidders, or for `nobid` none:
it reads the body and answers 204) and adds the ratio new / forwarder. OLD_EXTRA and NEW_EXTRA
are TOML appended to that build's config (the same binary with and without a plugin beside the
exchange, say; `{run}` in it becomes a directory of each run's own); OLD_ENV and NEW_ENV are a
JSON object of environment variables. Needs valgrind and nginx.
Prints each build's instructions per auction and the ratio new / old.
"""
import glob, http.client, json, os, signal, socket, subprocess, sys, tempfile, time

from forwarder_ab import build_forwarder, harness, harness_dir

scenario = sys.argv[1] if len(sys.argv) > 1 else "4"
nobid = scenario == "nobid"
bidders = 4 if nobid else int(scenario)
body = open(os.path.join(harness_dir, "bidreq-audio.json" if nobid else "bidreq.json")).read()
work = tempfile.mkdtemp(prefix="bourse-instructions-")


def send_auctions(auctions):
    """Posts the scenario's request `auctions` times, one after another on one keep-alive
    connection; returns how many answers had each status."""
    connection = http.client.HTTPConnection("127.0.0.1", harness.PORT, timeout=30)
    statuses = {}
    for _ in range(auctions):
        connection.request("POST", "/openrtb2/auction", body, {"content-type": "application/json"})
        answer = connection.getresponse()
        answer.read()
        statuses[answer.status] = statuses.get(answer.status, 0) + 1
    return statuses


def callgrind_total(out):
    """Instructions counted in a callgrind run's output files (one per process part)."""
    total = 0
    for part in glob.glob(out + "*"):
        for line in open(part, errors="replace"):
            if line.startswith(("summary:", "totals:")):
                total += int(line.split()[1])
                break
    return total


def total_instructions(binary, auctions, tag, extra="", env=None):
    config = f"{work}/{tag}.toml"
    harness.bourse_config(bidders, config, ["banner"] if nobid else None)
    with open(config, "a") as f:
        # `{run}` in the extra TOML names a directory of this run's own, so that the short and
        # the long run start from the same state (a site's store created and seeded in each).
        f.write(extra.replace("{run}", f"{work}/{tag}"))
    out = f"{work}/{tag}.callgrind"
    server = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", binary, "serve", "--config", config],
        env=dict(os.environ, **(env or {})),
        stdout=subprocess.DEVNULL, stderr=open(f"{work}/{tag}.log", "w"))
    # Ready, not just alive: under valgrind a plugin's start (a site's migrations) takes seconds,
    # and until every plugin is up the auction route is not mounted yet.
    if not harness.wait_http(f"http://127.0.0.1:{harness.PORT}/readyz", 120):
        server.kill()
        raise SystemExit(f"{binary} did not come up under valgrind")
    statuses = send_auctions(auctions)
    server.send_signal(signal.SIGTERM)
    server.wait(120)
    return callgrind_total(out), statuses


def forwarder_instructions(auctions, tag):
    """The bare forwarder's total under callgrind, as `total_instructions` counts a build."""
    out = f"{work}/{tag}.callgrind"
    env = dict(os.environ, N=str(0 if nobid else bidders), PORT=str(harness.PORT))
    server = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", harness.FWD],
        env=env, stdout=subprocess.DEVNULL, stderr=open(f"{work}/{tag}.log", "w"))
    # The forwarder has no health route: wait until it takes a connection.
    deadline = time.time() + 120
    while True:
        try:
            socket.create_connection(("127.0.0.1", harness.PORT), timeout=1).close()
            break
        except OSError:
            if time.time() > deadline:
                server.kill()
                raise SystemExit("the forwarder did not come up under valgrind")
            time.sleep(0.2)
    statuses = send_auctions(auctions)
    server.send_signal(signal.SIGINT)
    try:
        server.wait(60)
    except subprocess.TimeoutExpired:
        # SIGTERM still lets valgrind write its counts; a kill would lose them.
        server.send_signal(signal.SIGTERM)
        server.wait(60)
    return callgrind_total(out), statuses


def main():
    pre, master = harness.start_nginx()
    result = {"scenario": scenario}
    try:
        for name in ("old", "new"):
            binary = os.environ[f"{name.upper()}_BIN"]
            extra = os.environ.get(f"{name.upper()}_EXTRA", "")
            env = json.loads(os.environ.get(f"{name.upper()}_ENV", "{}"))
            short, _ = total_instructions(binary, 200, f"{name}-short", extra, env)
            long, statuses = total_instructions(binary, 1200, f"{name}-long", extra, env)
            result[name] = {"instructions_per_auction": round((long - short) / 1000), "statuses": statuses}
            print(name, result[name], flush=True)
        if os.environ.get("WITH_FORWARDER") == "1":
            build_forwarder()
            short, _ = forwarder_instructions(200, "forwarder-short")
            long, statuses = forwarder_instructions(1200, "forwarder-long")
            result["forwarder"] = {"instructions_per_auction": round((long - short) / 1000), "statuses": statuses}
            print("forwarder", result["forwarder"], flush=True)
    finally:
        subprocess.run(["kill", str(master)])
    if "forwarder" in result:
        result["new_over_forwarder"] = round(
            result["new"]["instructions_per_auction"] / result["forwarder"]["instructions_per_auction"], 3)
    result["new_over_old"] = round(result["new"]["instructions_per_auction"] / result["old"]["instructions_per_auction"], 4)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
