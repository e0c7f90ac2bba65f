#!/usr/bin/env python3
"""Instructions per auction of two bourse builds, counted by valgrind's callgrind: repeatable to
a fraction of a percent whatever else the machine does, where the wall-clock A/B/A moves by
10-20% on a shared 2-core machine.

    OLD_BIN=/path/to/old/bourse NEW_BIN=/path/to/new/bourse benches/aba/instructions.py [4|1|nobid]

Each build serves the forwarder-ab harness's config (its nginx bidders, loss notices off) under
callgrind twice, for 200 and then 1,200 sequential auctions on one keep-alive connection; the
difference of the two totals over 1,000 is the cost of one auction, start-up and shutdown
cancelled out. Env: FORWARDER_AB (the harness directory, default ../shared/bench/forwarder-ab).
Needs valgrind and nginx. Prints each build's instructions per auction and the ratio new / old.
"""
import glob, http.client, importlib.machinery, importlib.util, json, os, signal, subprocess, sys, tempfile

harness_dir = os.environ.get("FORWARDER_AB", os.path.join(os.getcwd(), "../shared/bench/forwarder-ab"))
loader = importlib.machinery.SourceFileLoader("forwarder_ab", os.path.join(harness_dir, "run"))
spec = importlib.util.spec_from_loader("forwarder_ab", loader)
harness = importlib.util.module_from_spec(spec)
loader.exec_module(harness)

scenario = sys.argv[1] if len(sys.argv) > 1 else "4"
nobid = scenario == "nobid"
bidders = 4 if nobid else int(scenario)
body = open(os.path.join(harness_dir, "bidreq-audio.json" if nobid else "bidreq.json")).read()
work = tempfile.mkdtemp(prefix="bourse-instructions-")


def total_instructions(binary, auctions, tag):
    config = f"{work}/{tag}.toml"
    harness.bourse_config(bidders, config, ["banner"] if nobid else None)
    out = f"{work}/{tag}.callgrind"
    server = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", binary, "serve", "--config", config],
        stdout=subprocess.DEVNULL, stderr=open(f"{work}/{tag}.log", "w"))
    if not harness.wait_http(f"http://127.0.0.1:{harness.PORT}/healthz", 120):
        server.kill()
        raise SystemExit(f"{binary} did not come up under valgrind")
    connection = http.client.HTTPConnection("127.0.0.1", harness.PORT, timeout=30)
    statuses = {}
    for _ in range(auctions):
        connection.request("POST", "/openrtb2/auction", body, {"content-type": "application/json"})
        answer = connection.getresponse()
        answer.read()
        statuses[answer.status] = statuses.get(answer.status, 0) + 1
    server.send_signal(signal.SIGTERM)
    server.wait(120)
    total = 0
    for part in glob.glob(out + "*"):
        for line in open(part, errors="replace"):
            if line.startswith(("summary:", "totals:")):
                total += int(line.split()[1])
                break
    return total, statuses


def main():
    pre, master = harness.start_nginx()
    result = {"scenario": scenario}
    try:
        for name in ("old", "new"):
            binary = os.environ[f"{name.upper()}_BIN"]
            short, _ = total_instructions(binary, 200, f"{name}-short")
            long, statuses = total_instructions(binary, 1200, f"{name}-long")
            result[name] = {"instructions_per_auction": round((long - short) / 1000), "statuses": statuses}
            print(name, result[name], flush=True)
    finally:
        subprocess.run(["kill", str(master)])
    result["new_over_old"] = round(result["new"]["instructions_per_auction"] / result["old"]["instructions_per_auction"], 4)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
