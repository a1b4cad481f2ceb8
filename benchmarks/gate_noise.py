"""How often the gate cries wolf on a real engine here, and how often it catches a 30% regression.

    .venv/bin/python benchmarks/gate_noise.py [--engine llama|vllm] [--cycles 80] [--requests 80]
        [--load concurrency:4] [--stretch 1.45]

Starts the engine (tests/engines: llama-server on the tiny GGUF model, or vLLM on CPU) and two copies of the
test gateway in front of it: one passing responses through (release A) and one writing every chunk at
``--stretch`` times its time (release B, a regression of known size on a real engine). Then runs cycles of
three benches, A, A, B (the same seed every run, as a team's CI would), stores them, and gates:

- one run a side: each cycle's first A against its second (A/A) and its second A against its B (A/B);
- four runs a side, interleaved (what ``servewise gate --repeats 3`` does): the first As of four consecutive
  cycles against their second As (A/A), and the second As against the Bs (A/B), disjoint groups of cycles;
- the same with make-up pairs (what ``--repeats 3`` does on a host other work shares): a group takes one more
  cycle for each run that shared the host (``analysis/host_load.py``), up to three more, and the gate sets
  those runs aside.

Prints the false FAIL rate (A/A verdicts that are FAIL), the catch rate (A/B verdicts that are FAIL) and the
other verdicts, with the default gate policy. Nothing is tuned here: the policy's prior is the module's.

Closed loop by default: a slower delivery also unloads the engine (a request the gateway still holds has
left its slot), so the client sees less than the stretch: 1.45 gives +32% E2E p50 on llama-server here (the
"30% regression" of benchmarks/RESULTS.md), 1.3 gives +17%. An open loop at 20 req/s made the load
generator itself client-limited on two cores. At ``--load concurrency:1`` a stretch does not unload the engine,
so its size is known (1.3 gave +34% E2E p50 on vLLM CPU).
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from fixtures.gateway import running_gateway  # noqa: E402
from servewise.analysis.gate import GatePolicy, RunSamples, evaluate_gate  # noqa: E402
from servewise.analysis.host_load import busy_per_side, busy_reasons  # noqa: E402
from servewise.flows.gate import stored_samples  # noqa: E402
from servewise.store import RunStore  # noqa: E402

from engines.servers import LlamaServer, VllmServer  # noqa: E402

SERVEWISE = [sys.executable, "-c", "from servewise.cli.app import main; main()"]
STRETCH = 1.45


def bench(url: str, model: str, store: Path, requests: int, load: str, labels: dict[str, str]) -> float:
    started = time.monotonic()
    args = [*SERVEWISE, "bench", "--target", url, "--model", model, "--load", load,
            "--requests", str(requests), "--input-tokens", "64", "--output-tokens", "64", "--seed", "7",
            "--quiet", "--store", str(store), *(f"--label={k}={v}" for k, v in labels.items())]  # fmt: skip
    done = subprocess.run(args, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"bench failed: {done.stdout}{done.stderr}")
    return time.monotonic() - started


def verdicts(pairs: Sequence[tuple[Sequence[RunSamples], Sequence[RunSamples]]]) -> Counter[str]:
    policy = GatePolicy()
    return Counter(evaluate_gate(a, b, policy).verdict.value for a, b in pairs)


def made_up_groups(runs: dict[tuple[int, str], RunSamples], cycles: list[int], sides: tuple[str, str],
                   repeats: int = 3) -> list[tuple[list[RunSamples], list[RunSamples]]]:
    """Disjoint groups of 1 + ``repeats`` cycles, each taking one more cycle per run that shared the host, up
    to ``repeats`` more: the sides ``servewise gate --repeats`` would gate."""
    groups, i = [], 0
    while i + repeats < len(cycles):
        size = repeats + 1
        while True:
            group = cycles[i:i + size]
            a, b = [runs[c, sides[0]] for c in group], [runs[c, sides[1]] for c in group]
            busy = max(busy_per_side([r.host for r in a], [r.host for r in b]))
            if busy <= size - repeats - 1 or size == 2 * repeats + 1 or i + size >= len(cycles):
                break
            size += 1
        groups.append((a, b))
        i += size
    return groups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", choices=("llama", "vllm"), default="llama")
    parser.add_argument("--cycles", type=int, default=80)
    parser.add_argument("--requests", type=int, default=80)
    parser.add_argument("--load", default="concurrency:4")
    parser.add_argument("--stretch", type=float, default=STRETCH, help="release B's slowdown of every chunk")
    parser.add_argument("--store", type=Path, default=Path("/tmp/servewise-gate-noise.db"))
    parser.add_argument("--reuse", action="store_true", help="gate the runs already in --store, run nothing")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # unwind: the engine and gateways stop by PID
    if not args.reuse:
        args.store.unlink(missing_ok=True)
        server = LlamaServer(slots=4, threads=2) if args.engine == "llama" else VllmServer()
        if reason := server.missing_reason():
            raise SystemExit(reason)
        with ExitStack() as stack:
            stack.enter_context(server)
            a = stack.enter_context(running_gateway(server.base_url, args.store.with_suffix(".a.log")))
            b = stack.enter_context(running_gateway(server.base_url, args.store.with_suffix(".b.log"), args.stretch))
            for cycle in range(args.cycles):
                took = [bench(url, server.model, args.store, args.requests, args.load,
                              {"cycle": str(cycle), "side": side})
                        for url, side in ((a, "a1"), (a, "a2"), (b, "b"))]
                print(f"cycle {cycle + 1}/{args.cycles}: " + ", ".join(f"{t:.1f} s" for t in took), flush=True)
    runs: dict[tuple[int, str], RunSamples] = {}
    with RunStore(args.store) as store:
        for run in store.list_runs(limit=10_000):
            if run.measured is not None:
                runs[int(run.labels["cycle"]), run.labels["side"]] = stored_samples(store, run)
    cycles = sorted({c for c, _ in runs if all((c, side) in runs for side in ("a1", "a2", "b"))})
    single_aa = verdicts([([runs[c, "a1"]], [runs[c, "a2"]]) for c in cycles])
    single_ab = verdicts([([runs[c, "a2"]], [runs[c, "b"]]) for c in cycles])
    groups = [cycles[i:i + 4] for i in range(0, len(cycles) - 3, 4)]
    four_aa = verdicts([([runs[c, "a1"] for c in g], [runs[c, "a2"] for c in g]) for g in groups])
    four_ab = verdicts([([runs[c, "a2"] for c in g], [runs[c, "b"] for c in g]) for g in groups])
    made_aa = verdicts(made_up_groups(runs, cycles, ("a1", "a2")))
    made_ab = verdicts(made_up_groups(runs, cycles, ("a2", "b")))
    busy = sum(map(bool, busy_reasons([runs[k].host for k in sorted(runs)])))
    report = {"engine": args.engine, "cycles": len(cycles), "requests": args.requests, "load": args.load,
              "stretch": args.stretch, "runs sharing the host": busy,
              "one run a side": {"A/A": dict(single_aa), "A/B": dict(single_ab)},
              "four runs a side": {"A/A": dict(four_aa), "A/B": dict(four_ab)},
              "four a side, make-up pairs": {"A/A": dict(made_aa), "A/B": dict(made_ab)}}  # fmt: skip
    print(json.dumps(report, indent=2))
    for name, aa, ab in (("one run a side", single_aa, single_ab), ("four runs a side", four_aa, four_ab),
                         ("four a side, make-up pairs", made_aa, made_ab)):
        n_aa, n_ab = sum(aa.values()), sum(ab.values())
        print(f"{name}: false FAIL {aa['fail']}/{n_aa} ({aa['fail'] / max(n_aa, 1):.0%}), "
              f"30% regression caught {ab['fail']}/{n_ab} ({ab['fail'] / max(n_ab, 1):.0%})")


if __name__ == "__main__":
    main()
