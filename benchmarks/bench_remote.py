"""Remote checkpoints at full scale, through the loopback hub emulator (issue 12).

    python benchmarks/bench_remote.py all  WORKDIR     # every case below, a markdown report on stdout
    python benchmarks/bench_remote.py 7b | 110b | dsv3 | faults | errors  WORKDIR

The emulator runs in its own process (`serve`), generating tensor bytes on the fly (zoo/procedural.py); each
compare runs in a fresh process with empty caches, so its peak RSS (VmHWM) is the compare's alone, and the
bytes the emulator served are read from its counters before and after.

Cases:
  7b      a 7B Llama-shaped pair (B = A + 1% noise, 2 fresh layers inserted), compared from local folders (the
          procedural bytes written to disk) and remotely: same verdict, bytes transferred vs held; then the
          remote compare again, which must transfer 0 bytes; and an independent 7B model.
  110b    the seed's first case: Qwen1.5-110B-shaped A; B with 2 fresh layers inserted (80 -> 82) and the FFN
          widened 49152 -> 59392 (135B-shaped), 2% noise on the rest; C independent of A.
  dsv3    the seed's third case: DeepSeek-V3-shaped A (61 layers, MLA, 256 + 1 experts, FP8 block scales); B with
          every attention tensor and the shared experts frozen, the rest moved by 2% noise.
  faults  the 7B remote pair with 10% of CDN responses cut mid-body and 503 bursts: same verdict.
  latency the 110B derived pair behind a link of 0, 20 and 50 ms round trips (100 MB/s shared by all
          responses at 20 and 50 ms; handshakes cost 2 more round trips per connection): wall time, requests.
  errors  a missing repo, a gated repo without a token, an unreachable host: one line each, exit 1.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from parentage.zoo import procedural as P
from parentage.zoo.hub_emulator import Faults, HubEmulator, Link

from hubproc import HubProcess

def _7b(seed):
    return P.LAYOUTS["llama-7b"](seed)


def models(case: str) -> dict:
    if case in ("7b", "faults"):
        a = _7b(1)
        b = P.inserted_and_widened(a, 2, [10, 20], a.config["intermediate_size"], noise=0.01)
        return {"acme/llama-7b": a, "acme/llama-7b-cpt": b, "other/llama-7b": _7b(3)}
    if case in ("110b", "latency"):
        a = P.LAYOUTS["qwen1.5-110b"](1)
        return {"qwen/qwen1.5-110b": a, "acme/135b": P.inserted_and_widened(a, 2, [26, 53], 59392),
                "other/110b": P.LAYOUTS["qwen1.5-110b"](3)}
    if case == "dsv3":
        a = P.deepseek_v3(1)
        return {"deepseek/v3": a, "acme/v3-frozen": P.frozen_copy(a, 2, lambda n: "self_attn" in n or "shared_experts" in n)}
    if case == "errors":
        return {"acme/llama-7b": _7b(1), "gated/llama-7b": _7b(2)}
    raise SystemExit(f"unknown case {case!r}")


def serve(case: str, faults: str, link: str) -> None:
    """Build the case's repositories and serve them until killed; the first stdout line is the hub's URL.
    faults: "drop,burst" shares; link: "rtt_seconds,bytes_per_second" (0 for no cap)."""
    drop, burst = (float(x) for x in faults.split(",")) if faults else (0.0, 0.0)
    rtt, bandwidth = (float(x) for x in link.split(",")) if link else (0.0, 0.0)
    hub = HubEmulator(Faults(drop=drop, burst=burst, burst_len=3, retry_after="1", seed=1),
                      link=Link(rtt=rtt, bandwidth=bandwidth or None)).start()
    for repo, m in models(case).items():
        hub.add_files(repo, m.files(), gated=repo.startswith("gated/"))
    print(hub.url, flush=True)
    while True:
        time.sleep(3600)


def Emulator(case: str, faults: str = "", link: str = "") -> HubProcess:
    return HubProcess([__file__, "serve", case, faults, link])


RUNNER = """
import json, sys
from parentage.pair import compare
doc = compare(sys.argv[1], sys.argv[2])
status = open('/proc/self/status').read()
doc['peak_rss'] = int(status.split('VmHWM:')[1].split()[0]) * 1024
print(json.dumps(doc))
"""


def run_compare(a: str, b: str, env: dict) -> dict:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", RUNNER, a, b], capture_output=True, text=True, env=env)
    if r.returncode:
        raise SystemExit(f"compare {a} {b} failed:\n{r.stderr[-3000:]}")
    doc = json.loads(r.stdout)
    doc["wall"] = time.perf_counter() - t0
    return doc


def env_for(workdir: Path, name: str, url: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env |= {"PARENTAGE_CACHE": str(workdir / f"cache-{name}"), "HF_HUB_CACHE": str(workdir / f"hf-{name}")}
    if url:
        env["HF_ENDPOINT"] = url
    return env


def row(label: str, doc: dict, served: int | None) -> str:
    c = doc["cost"]
    held = c["bytes_total"]
    notes = [n for n in doc["alignment"]["notes"] if not n.startswith("no readable tokenizer")]
    moved = served if served is not None else c.get("bytes_transferred", 0)
    requests = sum(p.get("n_requests", 0) for p in c["per_input"])
    return (f"| {label} | {doc['verdict']['label']} ({doc['verdict']['log10_p']}) | {held / 1e9:,.1f} GB | "
            f"{c['bytes_read'] / 1e6:,.0f} MB | {moved / 1e6:,.0f} MB ({100 * moved / held:.3f}%) | {requests:,} | "
            f"{doc['wall']:.0f} s | {doc['peak_rss'] / 2**30:.2f} GiB | {'; '.join(notes)[:400]} |")


HEADER = ("| pair | verdict (log10 p) | held (both) | read | transferred (served by the hub) | requests | wall | "
          "peak RSS | alignment notes |\n|---|---|---|---|---|---|---|---|---|")


def materialise(m: P.Model, folder: Path) -> Path:
    """The procedural model written to disk as a normal model folder (for the local side of the 7B case)."""
    if (folder / "done").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for name, f in m.files().items():
        with open(folder / name, "wb") as out:
            for off in range(0, f.size, 64 << 20):
                out.write(f.read(off, min(64 << 20, f.size - off)))
    (folder / "done").write_text("")
    return folder


def case_7b(workdir: Path, faults: str = "") -> list[str]:
    emu = Emulator("7b", faults)
    lines = []
    try:
        if not faults:
            ms = models("7b")
            la = materialise(ms["acme/llama-7b"], workdir / "local-7b-a")
            lb = materialise(ms["acme/llama-7b-cpt"], workdir / "local-7b-b")
            local = run_compare(str(la), str(lb), env_for(workdir, "7b-local", None))
            lines.append(row("7B derived, local folders", local, 0))
        env = env_for(workdir, "7b-remote" + ("-faults" if faults else ""), emu.url)
        before = emu.counters()
        remote = run_compare("acme/llama-7b", "acme/llama-7b-cpt", env)
        after = emu.counters()
        served = after["cdn_bytes"] + after["hub_bytes"] - before["cdn_bytes"] - before["hub_bytes"]
        label = "7B derived, remote" + (f" with faults (dropped {after['dropped']}, 503s {after['errors_503']})" if faults else "")
        lines.append(row(label, remote, served))
        if faults:
            return lines
        same = (local["verdict"] == remote["verdict"] and local["evidence"] == remote["evidence"]
                and local["alignment"] == remote["alignment"])
        again = run_compare("acme/llama-7b", "acme/llama-7b-cpt", env)
        third = emu.counters()
        served2 = third["cdn_bytes"] - after["cdn_bytes"]
        lines.append(row("7B derived, remote again (warm range cache)", again, served2))
        other = run_compare("acme/llama-7b", "other/llama-7b", env_for(workdir, "7b-other", emu.url))
        fourth = emu.counters()
        lines.append(row("7B independent, remote", other, fourth["cdn_bytes"] + fourth["hub_bytes"]
                         - third["cdn_bytes"] - third["hub_bytes"]))
        lines.append(f"\nlocal and remote documents agree on verdict, evidence and alignment: {same}; "
                     f"weight bytes served on the second run: {served2}")
    finally:
        emu.stop()
    return lines


def case_remote(case: str, workdir: Path, pairs: list[tuple[str, str, str]]) -> list[str]:
    emu = Emulator(case)
    lines = []
    try:
        for label, a, b in pairs:
            before = emu.counters()
            doc = run_compare(a, b, env_for(workdir, f"{case}-{b.replace('/', '-')}", emu.url))
            after = emu.counters()
            served = after["cdn_bytes"] + after["hub_bytes"] - before["cdn_bytes"] - before["hub_bytes"]
            lines.append(row(label, doc, served))
            frozen = doc["alignment"].get("components", {}) or {}
            for run in frozen.get("frozen_tensors", [])[:6]:
                lines.append(f"| | frozen: layers {run['layers'][0]}–{run['layers'][-1]}: {', '.join(run['tensors'])} ||||||||")
    finally:
        emu.stop()
    return lines


LINKS = [(0.0, 0.0), (0.02, 100e6), (0.05, 100e6)]  # (round trip s, bytes/s; 0: loopback speed)


def case_latency(workdir: Path) -> list[str]:
    """The 110B derived pair behind a link with a round-trip delay and a bandwidth cap, each from cold caches."""
    lines = ["| link | verdict (log10 p) | transferred | requests | connections | wall | peak RSS |",
             "|---|---|---|---|---|---|---|"]
    for rtt, bw in LINKS:
        emu = Emulator("latency", "", f"{rtt},{bw}")
        try:
            doc = run_compare("qwen/qwen1.5-110b", "acme/135b", env_for(workdir, f"latency-{rtt}", emu.url))
            c = emu.counters()
        finally:
            emu.stop()
        requests = sum(p.get("n_requests", 0) for p in doc["cost"]["per_input"])
        link = f"{rtt * 1000:.0f} ms round trip, " + (f"{bw / 1e6:.0f} MB/s" if bw else "loopback speed")
        lines.append(f"| {link} | {doc['verdict']['label']} ({doc['verdict']['log10_p']}) | "
                     f"{(c['cdn_bytes'] + c['hub_bytes']) / 1e6:,.0f} MB | {requests:,} | {c['connections']:,} | "
                     f"{doc['wall']:.0f} s | {doc['peak_rss'] / 2**30:.2f} GiB |")
        print(lines[-1], file=sys.stderr, flush=True)
    return lines


def case_errors(workdir: Path) -> list[str]:
    emu = Emulator("errors")
    cli = [sys.executable, "-c", "from parentage.cli import main; main()", "compare"]
    cases = [("missing repo", ["acme/llama-7b", "acme/nope"], emu.url),
             ("gated repo, no token", ["acme/llama-7b", "gated/llama-7b"], emu.url),
             ("unreachable host", ["acme/llama-7b", "acme/llama-7b"], "http://127.0.0.1:9")]
    lines = ["| case | exit status | stderr |", "|---|---|---|"]
    try:
        for label, args, url in cases:
            env = env_for(workdir, "errors", url)
            env.pop("HF_TOKEN", None)
            r = subprocess.run(cli + args, capture_output=True, text=True, env=env)
            lines.append(f"| {label} | {r.returncode} | `{r.stderr.strip()}` ({len(r.stderr.strip().splitlines())} line) |")
    finally:
        emu.stop()
    return lines


def machine() -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{platform.machine()}, {os.cpu_count()} cores, {mem:.0f} GiB, Python {platform.python_version()}, "
            f"{time.strftime('%Y-%m-%d')}")


def main() -> None:
    if sys.argv[1] == "serve":
        return serve(sys.argv[2], *(sys.argv[3:5] + ["", ""])[:2])
    case, workdir = sys.argv[1], Path(sys.argv[2])
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"## remote compare, `python benchmarks/bench_remote.py {case} {workdir}`; {machine()}\n")
    todo = ["7b", "110b", "dsv3", "faults", "errors"] if case == "all" else [case]
    for c in todo:
        if c in ("errors", "latency"):
            print("\n".join(case_errors(workdir) if c == "errors" else case_latency(workdir)), "\n", flush=True)
            continue
        print(HEADER)
        if c == "7b":
            lines = case_7b(workdir)
        elif c == "faults":
            lines = case_7b(workdir, faults="0.1,0.02")
        elif c == "110b":
            lines = case_remote(c, workdir, [("Qwen1.5-110B vs 135B-shaped child (2 layers inserted, FFN widened)",
                                              "qwen/qwen1.5-110b", "acme/135b"),
                                             ("Qwen1.5-110B vs an independent 110B", "qwen/qwen1.5-110b", "other/110b")])
        else:
            lines = case_remote(c, workdir, [("DeepSeek-V3 vs child with frozen attention and shared experts",
                                              "deepseek/v3", "acme/v3-frozen")])
        print("\n".join(lines), "\n", flush=True)


if __name__ == "__main__":
    main()
