"""release as a use case: deploy a version with the team's command, time it to ready, probe it, bench it,
gate it against the last good release, and keep it or roll back to the previous one and confirm that one
is back within its own gate. ``release.decide`` picks each next step; this runs them and stores the release
(a run of kind ``release``) after every step, so Ctrl-C or a crash keeps what happened."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import servewise
from servewise.analysis.run_fingerprint import diff_fingerprints, workload_shape
from servewise.coldstart.probe import Endpoint
from servewise.coldstart.runner import signals_as_interrupt
from servewise.engine.environment import environment_fingerprint
from servewise.engine.loop import run as run_loop
from servewise.errors import ServewiseError, UsageError
from servewise.flows.bench import ProgressView, SilentProgress, run_bench
from servewise.flows.gate import GateRequest, run_gate
from servewise.probes import ProbeConfig, ProbeStatus, run_probes_sync
from servewise.release.config import ReleaseFile, fill
from servewise.release.decide import Conclusion, Plan, conclude, next_step
from servewise.release.ready import wait_ready
from servewise.release.shell import run_command
from servewise.results import GateMark, ProbeRecord
from servewise.results.gate import GateVerdict
from servewise.results.release import ReleaseOutcome, ReleaseResult, ReleaseStep, StepName, StepStatus
from servewise.secrets import load_api_key
from servewise.signals import held_signals
from servewise.spec import RunSpec
from servewise.store import Store

T = TypeVar("T")
#: held: once the previous release is being brought back, a Ctrl-C waits (at most these steps' timeouts)
HELD_STEPS = frozenset({StepName.ROLLBACK, StepName.ROLLBACK_READY})
_BENCH_STATUS: dict[str, StepStatus] = {"ok": "ok", "interrupted": "interrupted"}


@dataclass(frozen=True)
class ReleaseRequest:
    release: ReleaseFile
    version: str
    previous: str | None = None  # default: the last good release's version
    log_dir: Path | None = None  # where each command's output goes (default: beside the store)


def release_history(store: Store) -> list[ReleaseResult]:
    """Every stored release, newest first."""
    return [run.result for run in store.list_runs(kind="release") if isinstance(run.result, ReleaseResult)]


def last_good_release(store: Store, version: str | None = None) -> ReleaseResult | None:
    """The newest release kept as good (gated pass, kept when inconclusive, or the first one), of
    ``version`` when given: what a new release is gated against and rolled back to."""
    return next((r for r in release_history(store) if r.good and version in (None, r.version)), None)


def _same_workload(store: Store, spec: RunSpec, good: ReleaseResult | None) -> None:
    """Refused before anything is deployed: a bench the gate would refuse to compare."""
    if good is None or good.bench_run is None:
        return
    diff = diff_fingerprints(workload_shape(store.get_run(good.bench_run).spec),
                             workload_shape(spec.model_dump(mode="json")))  # fmt: skip
    if diff:
        named = "; ".join(f"{d.field} {d.baseline} vs {d.candidate}" for d in diff[:3])
        raise UsageError(f"bench: its workload differs from the bench of {good.version} (release "
                         f"{good.run_id}): {named}; keep the bench as it was so the gate compares like with like")  # fmt: skip


async def _bounded(coro: Coroutine[Any, Any, T], timeout_s: float) -> T:
    async with asyncio.timeout(timeout_s):
        return await coro


class _Release:
    """One release under way: its plan, its steps so far, and how to run each next one."""

    def __init__(self, store: Store, request: ReleaseRequest, progress: ProgressView) -> None:
        release = request.release
        self.store, self.release, self.version, self.progress = store, release, request.version, progress
        baseline = last_good_release(store)
        self.previous = request.previous or (baseline.version if baseline else None)
        back_to = last_good_release(store, self.previous) if self.previous else None
        _same_workload(store, release.bench, baseline)
        _same_workload(store, release.bench, back_to)
        self.baseline, self.back_to = baseline, back_to
        self.plan = Plan(version=self.version, previous=self.previous, gated=bool(baseline and baseline.bench_run),
                         check_gated=bool(back_to and back_to.bench_run), probes=release.probes,
                         on_inconclusive=release.gate.on_inconclusive)  # fmt: skip
        target = release.bench.target
        self.api_key = load_api_key(target.api_key_env, target.api_key_file)
        self.endpoint = Endpoint(base_url=release.target, ready_url=release.ready, model=target.model,
                                 api="completions" if target.api.value == "completions" else "chat",
                                 api_key=self.api_key)  # fmt: skip
        self.started_at = time.time()
        self.run_id = store.create_run(
            kind="release", spec=release.model_dump(mode="json") | {"version": self.version, "previous": self.previous},
            labels={"release": self.version}, tool_version=servewise.__version__,
            target={"url": release.target, "ready_url": release.ready}, environment=environment_fingerprint(),
        )  # fmt: skip
        self.log_dir = (request.log_dir or store.local_dir / "release-logs") / self.run_id
        self.steps: list[ReleaseStep] = []
        self.t0 = time.perf_counter()  # the start of the newest deploy or rollback command
        self.interrupted = False

    # -- the steps -----------------------------------------------------------------------------

    def _command(self, name: StepName, template: str, timeout_s: float) -> ReleaseStep:
        command = fill(template, self.version, self.previous)
        log_path = self.log_dir / f"{name}.log"
        done = run_command(command, timeout_s, log_path)
        self.t0 = done.t0
        detail = {"ok": "exited 0", "failed": f"exited {done.exit_code}", "interrupted": "stopped (Ctrl-C)",
                  "timeout": f"stopped after its {timeout_s:g} s timeout"}[done.status]  # fmt: skip
        return ReleaseStep(name=name, status=done.status, started_at=done.started_at, finished_at=done.finished_at,
                           detail=detail, command=command, exit_code=done.exit_code, output_tail=done.output_tail,
                           log_path=str(log_path))  # fmt: skip

    def deploy(self) -> ReleaseStep:
        return self._command(StepName.DEPLOY, self.release.deploy, self.release.timeouts.deploy)

    def rollback(self) -> ReleaseStep:
        return self._command(StepName.ROLLBACK, self.release.rollback, self.release.timeouts.rollback)

    def ready(self, name: StepName = StepName.READY) -> ReleaseStep:
        started = time.time()
        found = asyncio.run(wait_ready(self.endpoint, self.t0, self.release.timeouts.ready))
        return ReleaseStep(name=name, status="ok" if found.ok else "timeout", started_at=started,
                           finished_at=time.time(), detail=found.detail, time_to_ready_s=found.time_to_ready_s,
                           first_token_ms=found.first_token_ms)  # fmt: skip

    def rollback_ready(self) -> ReleaseStep:
        return self.ready(StepName.ROLLBACK_READY)

    def probes(self) -> ReleaseStep:
        started = time.time()
        config = ProbeConfig(api=self.endpoint.api, model=self.endpoint.model, api_key=self.api_key,
                             include_overload=False)  # fmt: skip
        found = run_probes_sync(self.release.target, config)
        failed = [p.name for p in found if p.status is ProbeStatus.FAIL]
        passed = sum(p.status is ProbeStatus.PASS for p in found)
        detail = f"{passed} of {len(found)} pass" + (f"; failed: {', '.join(failed)} (probes inform; the gate decides)"
                                                     if failed else "")  # fmt: skip
        return ReleaseStep(name=StepName.PROBES, status="failed" if failed else "ok", started_at=started,
                           finished_at=time.time(), detail=detail,
                           probes=[ProbeRecord.model_validate(p.to_dict()) for p in found])  # fmt: skip

    def _bench(self, name: StepName, version: str | None, requests: int | None) -> ReleaseStep:
        spec = self.release.bench
        labels = spec.labels | {"release": version or "", "release_run": self.run_id, "release_step": str(name)}
        spec = spec.model_copy(update={"labels": labels} | ({"requests": requests} if requests else {}))
        started, timeout_s = time.time(), self.release.timeouts.bench
        status: StepStatus = "failed"
        try:
            result = run_loop(_bounded(run_bench(spec, self.store, progress=self.progress), timeout_s))
            status = _BENCH_STATUS.get(result.status, "failed")
            metrics = result.metrics
            detail = (f"{result.status}: {metrics.requests_ok}/{metrics.requests_total} ok, "
                      f"{metrics.requests_per_s:.2f} req/s, TTFT p95 {metrics.ttft_ms.p95 or 0:.0f} ms")  # fmt: skip
        except TimeoutError:
            status, detail = "timeout", f"stopped after its {timeout_s:g} s timeout"
        except ServewiseError as exc:
            detail = str(exc)
        found = self.store.list_runs(labels={"release_run": self.run_id, "release_step": str(name)}, limit=1)
        return ReleaseStep(name=name, status=status, started_at=started, finished_at=time.time(),
                           detail=detail, run_id=found[0].id if found else None)  # fmt: skip

    def bench(self) -> ReleaseStep:
        return self._bench(StepName.BENCH, self.version, None)

    def check(self) -> ReleaseStep:
        return self._bench(StepName.CHECK, self.previous, self.release.check_requests)

    def _gate(self, name: StepName, baseline: ReleaseResult | None, measured: StepName) -> ReleaseStep:
        started = time.time()
        candidate = next(s.run_id for s in reversed(self.steps) if s.name is measured)
        assert baseline is not None and baseline.bench_run is not None and candidate is not None, "planned"
        request = GateRequest(baseline=baseline.bench_run, candidate=candidate, policy=self.release.policy(),
                              slo=self.release.slo(), repeats=0)  # fmt: skip
        try:
            report = run_gate(self.store, request, SilentProgress())
        except ServewiseError as exc:
            return ReleaseStep(name=name, status="failed", started_at=started, finished_at=time.time(),
                               detail=str(exc))  # fmt: skip
        return ReleaseStep(name=name, status="ok", started_at=started, finished_at=time.time(),
                           detail=f"{report.reason} (against {baseline.version}'s bench {baseline.bench_run})",
                           run_id=candidate, verdict=report.verdict, gate=report)  # fmt: skip

    def gate(self) -> ReleaseStep:
        return self._gate(StepName.GATE, self.baseline, StepName.BENCH)

    def check_gate(self) -> ReleaseStep:
        return self._gate(StepName.CHECK_GATE, self.back_to, StepName.CHECK)

    # -- running and storing -------------------------------------------------------------------

    def result(self, ending: Conclusion | None = None) -> ReleaseResult:
        def step(name: StepName) -> ReleaseStep | None:
            return next((s for s in reversed(self.steps) if s.name is name), None)

        bench, check, gate, check_gate, ready = (step(n) for n in (StepName.BENCH, StepName.CHECK, StepName.GATE,
                                                                    StepName.CHECK_GATE, StepName.READY))  # fmt: skip
        return ReleaseResult(
            run_id=self.run_id, version=self.version, previous=self.previous,
            target={"url": self.release.target, "ready_url": self.release.ready},
            status=ending.outcome if ending else ReleaseOutcome.RUNNING, reason=ending.reason if ending else "",
            running=ending.running if ending else None,
            baseline_release=self.baseline.run_id if self.baseline else None,
            baseline_run=self.baseline.bench_run if self.baseline else None,
            bench_run=bench.run_id if bench else None, check_run=check.run_id if check else None,
            gate_verdict=gate.verdict if gate else None, check_verdict=check_gate.verdict if check_gate else None,
            rolled_back=step(StepName.ROLLBACK) is not None,
            interrupted=self.interrupted,
            time_to_ready_s=ready.time_to_ready_s if ready else None, started_at=self.started_at,
            finished_at=time.time() if ending else None, steps=self.steps,
        )  # fmt: skip

    def run(self) -> ReleaseResult:
        runners: dict[StepName, Callable[[], ReleaseStep]] = {
            StepName.DEPLOY: self.deploy, StepName.READY: self.ready, StepName.PROBES: self.probes,
            StepName.BENCH: self.bench, StepName.GATE: self.gate, StepName.ROLLBACK: self.rollback,
            StepName.ROLLBACK_READY: self.rollback_ready, StepName.CHECK: self.check,
            StepName.CHECK_GATE: self.check_gate,
        }  # fmt: skip
        with held_signals() as pending:  # a Ctrl-C between steps stops the next one before it starts
            while (name := next_step(self.plan, self.steps)) is not None:
                if name is StepName.DEPLOY and pending:
                    break  # nothing was changed: the release running before still runs
                self.progress.step(_announce(name, self.version, self.previous))
                started = time.time()
                if name in HELD_STEPS:
                    done = runners[name]()
                elif pending:
                    pending.clear()
                    done = ReleaseStep(name=name, status="interrupted", started_at=started, finished_at=started,
                                       detail="not run: stopped (Ctrl-C) before it began")  # fmt: skip
                else:
                    try:
                        with signals_as_interrupt():
                            done = runners[name]()
                    except KeyboardInterrupt:
                        done = ReleaseStep(name=name, status="interrupted", started_at=started,
                                           finished_at=time.time(), detail="stopped (Ctrl-C)")  # fmt: skip
                self.interrupted = self.interrupted or bool(pending) or done.status == "interrupted"
                self.steps.append(done)
                self.progress.notice(f"{name}: {done.status}: {done.detail}")
                self.store.finish_run(self.run_id, self.result())
        final = self.result(conclude(self.plan, self.steps))
        if final.status is ReleaseOutcome.GOOD and final.gate_verdict is None and final.bench_run:
            # the first release's bench is the baseline, as `gate --first-run-is-baseline` marks one: so
            # `gate --baseline latest-pass` and the gate's own rollback target find it too
            self.store.annotate(final.bench_run, GateMark(verdict=GateVerdict.PASS, baseline=None, at=time.time()))
        self.store.finish_run(self.run_id, final)
        return final


def _announce(name: StepName, version: str, previous: str | None) -> str:
    return {
        StepName.DEPLOY: f"deploying {version}", StepName.READY: f"waiting for {version} to be ready",
        StepName.PROBES: f"probing {version}", StepName.BENCH: f"benching {version}",
        StepName.GATE: f"gating {version} against the last good release",
        StepName.ROLLBACK: f"rolling back to {previous} (Ctrl-C is held until it answers ready)",
        StepName.ROLLBACK_READY: f"waiting for {previous} to be ready",
        StepName.CHECK: f"a short check bench of {previous}", StepName.CHECK_GATE: f"gating {previous} against its own bench",
    }[name]  # fmt: skip


def run_release(store: Store, request: ReleaseRequest, progress: ProgressView | None = None) -> ReleaseResult:
    """Run the release to its end (kept, rolled back, or unknown) and return it, stored."""
    return _Release(store, request, progress or SilentProgress()).run()
