#!/usr/bin/env python3
"""A/B/A of two bourse builds on the forwarder-ab harness: `variants.py` with two variants, the
old build (A) and the new one (B), each with the harness's config as it is.

    OLD_BIN=/path/to/old/bourse NEW_BIN=/path/to/new/bourse benches/aba/compare-builds.py

Env: OLD_BIN, NEW_BIN, NS (scenarios, default "4,nobid") and every other setting of
`variants.py` (DUR, ROUNDS, FORWARDER_AB). The summary's `cpu_b_over_a` and `rps_b_over_a` are
new / old.
"""
import json, os, sys

here = os.path.dirname(os.path.abspath(__file__))
os.environ["VARIANTS"] = json.dumps([{"name": "old", "bin": os.environ["OLD_BIN"]},
                                     {"name": "new", "bin": os.environ["NEW_BIN"]}])
os.environ.setdefault("NS", "4,nobid")
os.execv(sys.executable, [sys.executable, os.path.join(here, "variants.py")])
