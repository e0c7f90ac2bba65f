#!/usr/bin/env python3
"""A/B/A of the floor rule as a signed wasm plugin against the same rule compiled in, on the
forwarder-ab harness: the same nginx bidders and wrk load, windows alternated (A, B, A, B, A).

    cargo build --release -p bourse -p bourse-benches
    benches/aba/hooks.py

A is `target/release/bourse` with a `wasm` instance whose folder holds the floor-rule example
(`plugins/dist`, signed here with a fresh key); B is `target/release/bourse-native-floor`, the
same table compiled in as the exchange's hook (`benches/src/native_floor.rs`). Every request of
the harness comes from the USA, so both set the table's floor on every impression.

Env: BIN_DIR (default target/release), FORWARDER_AB (the harness directory, default
../shared/bench/forwarder-ab), NS (scenarios, default "4,1"), DUR (s per window, default 10),
ROUNDS (A/B pairs, default 2). Prints one JSON line per window and a summary JSON last: per
scenario, the medians of req/s and server CPU µs per request, and wasm / native.
"""
import importlib.machinery, importlib.util, json, os, statistics, subprocess, sys, tempfile

harness_dir = os.environ.get("FORWARDER_AB", os.path.join(os.getcwd(), "../shared/bench/forwarder-ab"))
loader = importlib.machinery.SourceFileLoader("forwarder_ab", os.path.join(harness_dir, "run"))
spec = importlib.util.spec_from_loader("forwarder_ab", loader)
harness = importlib.util.module_from_spec(spec)
loader.exec_module(harness)

BIN_DIR = os.environ.get("BIN_DIR", os.path.join(os.getcwd(), "target/release"))
WASM_BIN = os.path.join(BIN_DIR, "bourse")
NATIVE_BIN = os.path.join(BIN_DIR, "bourse-native-floor")
NS = os.environ.get("NS", "4,1").split(",")
ROUNDS = int(os.environ.get("ROUNDS", "2"))


def signed_plugin_dir():
    """A folder holding the floor rule signed with a fresh key, and that key's public half."""
    work = tempfile.mkdtemp(prefix="hooks-aba-")
    subprocess.run(["bash", "plugins/build.sh"], check=True)
    out = subprocess.run([WASM_BIN, "plugin", "keygen", f"{work}/bench.pem"], check=True,
                         capture_output=True, text=True).stdout
    public = out.strip().removeprefix("public key: ")
    os.makedirs(f"{work}/plugins")
    subprocess.run([WASM_BIN, "plugin", "sign", f"{work}/bench.pem", "plugins/dist/floor-rule.wasm",
                    "plugins/dist/floor-rule.toml", f"{work}/plugins/floor-rule.plugin"],
                   check=True, capture_output=True)
    return f"{work}/plugins", public


def main():
    subprocess.run(["cargo", "build", "--release", "-q", "--manifest-path",
                    f"{harness.D}/forwarder/Cargo.toml", "--target-dir", harness.FWD_TARGET], check=True)
    plugins, public = signed_plugin_dir()
    plain_config = harness.bourse_config

    def window(variant, n):
        if variant == "wasm":
            harness.BOURSE = WASM_BIN

            def with_plugin(n, path, media=None):
                plain_config(n, path, media)
                with open(path, "a") as f:
                    f.write(f'\n[plugins.wasm]\ndir = "{plugins}"\n'
                            f'[plugins.wasm.trusted_keys]\nbench = "{public}"\n')
            harness.bourse_config = with_plugin
        else:
            harness.BOURSE = NATIVE_BIN
            harness.bourse_config = plain_config
        r = harness.window("bourse", n)
        r["variant"] = variant
        print(json.dumps(r), flush=True)
        return r

    pre, master = harness.start_nginx()
    summary = {}
    try:
        for n in NS:
            n = int(n)
            forwarder = [harness.window("forwarder", n)]
            runs = []
            for _ in range(ROUNDS):
                runs.append(window("native", n))
                runs.append(window("wasm", n))
            runs.append(window("native", n))
            forwarder.append(harness.window("forwarder", n))
            med = lambda rs, k: statistics.median(r[k] for r in rs)
            native = [r for r in runs if r["variant"] == "native"]
            wasm = [r for r in runs if r["variant"] == "wasm"]
            summary[f"{n}_bidders"] = dict(
                native_rps=med(native, "rps"), wasm_rps=med(wasm, "rps"),
                native_cpu_us=med(native, "cpu_us"), wasm_cpu_us=med(wasm, "cpu_us"),
                forwarder_rps=med(forwarder, "rps"), forwarder_cpu_us=med(forwarder, "cpu_us"),
                cpu_wasm_over_native=round(med(wasm, "cpu_us") / med(native, "cpu_us"), 3),
                rps_wasm_over_native=round(med(wasm, "rps") / med(native, "rps"), 3),
                non2xx=sum(r["non2xx"] for r in runs))
    finally:
        subprocess.run(["kill", str(master)])
    print(json.dumps(summary))


if __name__ == "__main__":
    sys.exit(main())
