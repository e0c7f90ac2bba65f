"""The forwarder-ab harness (`../shared/bench/forwarder-ab/run`, or FORWARDER_AB) loaded as a
module for the A/B/A scripts beside this file, which reuse its nginx bidders, configs, windows
and bare forwarder."""
import importlib.machinery, importlib.util, os, subprocess

harness_dir = os.environ.get("FORWARDER_AB", os.path.join(os.getcwd(), "../shared/bench/forwarder-ab"))
_loader = importlib.machinery.SourceFileLoader("forwarder_ab_run", os.path.join(harness_dir, "run"))
harness = importlib.util.module_from_spec(importlib.util.spec_from_loader("forwarder_ab_run", _loader))
_loader.exec_module(harness)


def build_forwarder():
    """Builds the harness's bare forwarder (quiet and cheap when it is built)."""
    subprocess.run(["cargo", "build", "--release", "-q", "--manifest-path",
                    os.path.join(harness_dir, "forwarder", "Cargo.toml"),
                    "--target-dir", harness.FWD_TARGET], check=True)
