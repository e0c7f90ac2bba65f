#!/usr/bin/env python3
"""A/B/A of two variants of bourse on the forwarder-ab harness: the same nginx bidders and wrk
load, the variants' windows alternated (A, B, A, B, A) so the machine's drift cancels out, the
bare forwarder before and after as the yardstick. A variant is a binary, TOML appended to the
harness's config, and environment variables:

    VARIANTS='[{"name": "native", "bin": "target/release/bourse-native-floor"},
               {"name": "wasm", "bin": "target/release/bourse", "extra": "{wasm}"}]' \\
        benches/aba/variants.py

`{wasm}` in `extra` becomes a `[plugins.wasm]` table whose folder holds the floor-rule example
(`plugins/dist`, built by `plugins/build.sh`), signed here with a fresh key. BENCHMARKS.md names
the variants of each recorded run.

Env: VARIANTS (two variants: A first), FORWARDER_AB (the harness directory, default
../shared/bench/forwarder-ab), NS (scenarios, default "4,1"; "nobid" is the request no bidder is
eligible for), DUR (s per window, default 10), ROUNDS (A/B pairs, default 2). Prints one JSON line
per window and a summary JSON last: per scenario, the medians of req/s and server CPU µs per
request of each variant, and B / A.
"""
import json, os, statistics, subprocess, sys, tempfile

from forwarder_ab import build_forwarder, harness

A, B = json.loads(os.environ["VARIANTS"])
NS = os.environ.get("NS", "4,1").split(",")
ROUNDS = int(os.environ.get("ROUNDS", "2"))


def wasm_table(bourse):
    """A folder holding the floor rule signed with a fresh key, as a `[plugins.wasm]` table."""
    work = tempfile.mkdtemp(prefix="aba-wasm-")
    subprocess.run(["bash", "plugins/build.sh"], check=True)
    out = subprocess.run([bourse, "plugin", "keygen", f"{work}/bench.pem"], check=True,
                         capture_output=True, text=True).stdout
    public = out.strip().removeprefix("public key: ")
    os.makedirs(f"{work}/plugins")
    subprocess.run([bourse, "plugin", "sign", f"{work}/bench.pem", "plugins/dist/floor-rule.wasm",
                    "plugins/dist/floor-rule.toml", f"{work}/plugins/floor-rule.plugin"],
                   check=True, capture_output=True)
    return (f'\n[plugins.wasm]\ndir = "{work}/plugins"\n'
            f'[plugins.wasm.trusted_keys]\nbench = "{public}"\n')


def main():
    build_forwarder()
    for variant in (A, B):
        extra = variant.get("extra", "")
        if "{wasm}" in extra:
            extra = extra.replace("{wasm}", wasm_table(variant["bin"]))
        variant["extra_text"] = extra
    plain_config = harness.bourse_config

    def window(variant, n, nobid):
        harness.BOURSE = variant["bin"]

        def config(n, path, media=None):
            plain_config(n, path, media)
            with open(path, "a") as f:
                f.write(variant["extra_text"])
        harness.bourse_config = config
        saved = dict(os.environ)
        os.environ.update(variant.get("env", {}))
        try:
            r = harness.window("bourse", n, nobid)
        finally:
            os.environ.clear()
            os.environ.update(saved)
        r["variant"] = variant["name"]
        print(json.dumps(r), flush=True)
        return r

    pre, master = harness.start_nginx()
    summary = {}
    try:
        for n in NS:
            nobid = n == "nobid"
            bn, fn = (4, 0) if nobid else (int(n), int(n))
            forwarder = [harness.window("forwarder", fn, nobid)]
            runs = []
            for _ in range(ROUNDS):
                runs.append(window(A, bn, nobid))
                runs.append(window(B, bn, nobid))
            runs.append(window(A, bn, nobid))
            forwarder.append(harness.window("forwarder", fn, nobid))
            med = lambda rs, k: statistics.median(r[k] for r in rs)
            a = [r for r in runs if r["variant"] == A["name"]]
            b = [r for r in runs if r["variant"] == B["name"]]
            summary["no_bid" if nobid else f"{n}_bidders"] = {
                f"{A['name']}_rps": med(a, "rps"), f"{B['name']}_rps": med(b, "rps"),
                f"{A['name']}_cpu_us": med(a, "cpu_us"), f"{B['name']}_cpu_us": med(b, "cpu_us"),
                "forwarder_rps": med(forwarder, "rps"), "forwarder_cpu_us": med(forwarder, "cpu_us"),
                "cpu_b_over_a": round(med(b, "cpu_us") / med(a, "cpu_us"), 3),
                "rps_b_over_a": round(med(b, "rps") / med(a, "rps"), 3),
                f"{A['name']}_cpu_us_all": [r["cpu_us"] for r in a],
                f"{B['name']}_cpu_us_all": [r["cpu_us"] for r in b],
                "non2xx": sum(r["non2xx"] for r in runs)}
    finally:
        subprocess.run(["kill", str(master)])
    print(json.dumps(summary))


if __name__ == "__main__":
    sys.exit(main())
