"""A pack of large base models hosted on the loopback hub, queried in place by URL (issue 26).

    python benchmarks/bench_pack.py                      # 7B, 70B, 110B and DeepSeek-V3 families
    python benchmarks/bench_pack.py --layouts llama-7b   # one family

The hub (zoo/hub_emulator.py, in its own process) serves procedural bases and models derived from them (layers
inserted and FFNs widened, continued-training drift, frozen copies), and the pack as a dataset file. The bases
are indexed through range requests, exported as one pack and uploaded; each derived model is then identified
against `hf://datasets/acme/bases/bases.pack` in a fresh process: its answer, wall time, and the bytes the hub
served for the pack (the query's own reads apart). A second query of the same pack shows the cached scan block.
Nothing here is asserted; the figures go to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from parentage.zoo import procedural as P
from parentage.zoo.hub_emulator import DiskFile, HubEmulator

from hubproc import HubProcess


def families(layouts: list[str]) -> dict[str, tuple[P.Model, dict[str, P.Model]]]:
    """layout -> (the base, {derived repo: model})."""
    out = {}
    for k, layout in enumerate(layouts):
        # a seed of its own per base: values are drawn from (seed, tensor name), so two layouts sharing a seed would
        # share every tensor of a shape both have (Llama-3-70B's and Qwen1.5-110B's attention): kin, not strangers
        seed = 100 + k
        if layout == "deepseek-v3":
            a = P.deepseek_v3(seed)
            out[layout] = (a, {"acme/v3-frozen": P.frozen_copy(a, 2, lambda n: "self_attn" in n or "shared_experts" in n)})
            continue
        a = P.LAYOUTS[layout](seed)
        d = {f"acme/{layout}-drift": P.drifted(a, 2)}
        if layout == "llama-7b":
            d[f"acme/{layout}-grown"] = P.inserted_and_widened(a, 3, [10, 20], a.config["intermediate_size"], noise=0.01)
        out[layout] = (a, d)
    return out


def serve(layouts: list[str], pack: str) -> None:
    hub = HubEmulator().start()
    for layout, (base, derived) in families(layouts).items():
        hub.add_files(f"bases/{layout}", base.files())
        for repo, m in derived.items():
            hub.add_files(repo, m.files())
    hub.add_files("other/llama-7b", P.LAYOUTS["llama-7b"](7).files())  # an unrelated base of the 7B shape
    if pack:
        hub.add_files("datasets/acme/bases", {"bases.pack": DiskFile(Path(pack))})
    print(hub.url, flush=True)
    while True:
        time.sleep(3600)


def Hub(layouts: list[str], pack: str = "") -> HubProcess:
    return HubProcess([__file__, "serve", ",".join(layouts), pack])


CLI = str(Path(sys.executable).parent / "parentage")
QUERY = """
import json, sys, time
from parentage.index.identify import identify
t = time.perf_counter()
doc = identify(sys.argv[1], sys.argv[2])
status = open('/proc/self/status').read()
print(json.dumps({"best": doc["best"], "answer": doc["answer"], "k": doc["shortlist"]["k"], "n": doc["n_candidates"],
                  "query_transferred": doc["cost"]["bytes_transferred"], "seconds": time.perf_counter() - t,
                  "peak_rss": int(status.split('VmHWM:')[1].split()[0]) * 1024,
                  "top": doc["candidates"][0]["log10_p"]}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cmd", nargs="?", default="run")
    ap.add_argument("layouts_arg", nargs="?", default="")
    ap.add_argument("pack_arg", nargs="?", default="")
    ap.add_argument("--layouts", default="llama-7b,llama-3-70b,qwen1.5-110b,deepseek-v3")
    a = ap.parse_args()
    if a.cmd == "serve":
        return serve(a.layouts_arg.split(","), a.pack_arg)
    layouts = a.layouts.split(",")
    work = Path(tempfile.mkdtemp(prefix="bench-pack-"))
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env |= {"PARENTAGE_CACHE": str(work / "cache-index"), "HF_HUB_CACHE": str(work / "hf-index")}
    print(f"# a pack of large bases on the loopback hub ({platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()})\n")
    hub = Hub(layouts)
    env["HF_ENDPOINT"] = hub.url
    db, pack = work / "bases.sqlite", work / "bases.pack"
    refs = [f"bases/{x}" for x in layouts] + ["other/llama-7b"]
    t0 = time.perf_counter()
    r = subprocess.run([CLI, "index", "add", *refs, "--db", str(db), "--workers", "1"],
                       capture_output=True, text=True, env=env)
    if r.returncode:
        raise SystemExit(r.stderr[-2000:])
    t_add = time.perf_counter() - t0
    served_add = hub.counters()["cdn_bytes"]
    r = subprocess.run([CLI, "index", "export", str(pack), "--db", str(db), "--format",
                        "json"], capture_output=True, text=True, env=env)
    if r.returncode:
        raise SystemExit(r.stderr[-2000:])
    exported = json.loads(r.stdout)
    hub.stop()
    print(f"- indexed {len(refs)} bases through range requests in {t_add:.0f} s ({served_add / 1e9:.2f} GB served); "
          f"pack {exported['n_bytes'] / 1e6:.0f} MB: scan block {exported['scan_bytes'] / 1e3:.1f} kB, sketches "
          f"{exported['sketch_bytes'] / 1e6:.2f} MB, fingerprints {exported['fingerprint_bytes'] / 1e6:.0f} MB\n")
    hub = Hub(layouts, str(pack))
    print("| query (truth) | answer | K of n | wall | peak RSS | pack bytes served | query bytes transferred |")
    print("|---|---|---|---|---|---|---|")
    qenv = {**env, "HF_ENDPOINT": hub.url, "PARENTAGE_CACHE": str(work / "cache-query"),
            "HF_HUB_CACHE": str(work / "hf-query")}
    queries = [(repo, f"bases/{layout}") for layout, (_, derived) in families(layouts).items() for repo in derived]
    queries.append(queries[0])  # again: the scan block and the shortlist's parts come from the range cache
    for i, (repo, truth) in enumerate(queries):
        before = hub.counters()["cdn_bytes"]
        r = subprocess.run([sys.executable, "-c", QUERY, repo, "hf://datasets/acme/bases/bases.pack"],
                           capture_output=True, text=True, env=qenv)
        if r.returncode:
            print(f"| {repo} | failed: {r.stderr.strip().splitlines()[-1][:300]} |")
            continue
        d = json.loads(r.stdout.strip().splitlines()[-1])
        served = hub.counters()["cdn_bytes"] - before
        label = f"{repo} ({truth})" + (" again" if i == len(queries) - 1 else "")
        ok = "" if d["best"] == truth else " **wrong**"
        print(f"| {label} | {d['answer'][:120]}{ok} | {d['k']} of {d['n']} | {d['seconds']:.0f} s | "
              f"{d['peak_rss'] / 2**30:.2f} GiB | {(served - d['query_transferred']) / 1e6:.1f} MB | "
              f"{d['query_transferred'] / 1e6:.0f} MB |")
    hub.stop()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
