"""doctor and demo as use cases: sweep to the SLO knee, diagnose the saturating step, project GPU tiers
from the measured knee, probe readiness and place the stage, then write one HTML report. Each step's
result is kept with the sweep run, so `servewise report RUN` redraws it all later."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from servewise.capacity import CapacityError
from servewise.capacity.projection import project, slo_limits
from servewise.engine.loop import run as run_loop
from servewise.errors import UnreachableError
from servewise.flows.bench import ProgressView, run_bench
from servewise.flows.diagnose import diagnose_stored_run
from servewise.flows.stage import StageOutcome, assess, attach, probe_config
from servewise.report.html import bundle_from_store, write_report
from servewise.results import PlanNote, PlanRecord, StepDiagnosis, SweepResult, SweepStep
from servewise.spec import RunSpec
from servewise.store import Store

DEMO_MODEL = "llama-3.1-8b"
DEMO_GPU = "rtx4090"


@dataclass(frozen=True)
class DoctorOutcome:
    report: Path
    sweep: SweepResult
    stage: StageOutcome


def _step_to_diagnose(sweep: list[SweepStep], knee: float | None) -> SweepStep | None:
    """The first step past the knee is where the bottleneck shows; without one, the busiest step."""
    if not sweep:
        return None
    above = [s for s in sweep if knee is None or s.rate > knee]
    return min(above, key=lambda s: s.rate) if above else max(sweep, key=lambda s: s.rate)


def _knee_step(sweep: list[SweepStep], knee: float | None) -> SweepStep | None:
    passing = [s for s in sweep if s.rate == knee]
    return passing[0] if passing else (sweep[0] if sweep else None)


def _plan(
    store: Store, spec: RunSpec, sweep: SweepResult, model_arch: str | None, current_gpu: str | None
) -> PlanNote:
    best = _knee_step(sweep.sweep, sweep.max_rate_meeting_slo)
    if best is None or not model_arch or not current_gpu:
        return PlanNote(note="no plan: give --model-arch and --current-gpu to project tiers from this run")
    best_run = store.get_run(best.run_id)
    metrics = best_run.measured.metrics if best_run.measured else None
    mean_in = metrics.mean_input_tokens if metrics else None
    mean_out = metrics.mean_output_tokens if metrics else None
    try:
        result = project(
            model=model_arch,
            input_tokens=round(mean_in or spec.workload.input_tokens.value or 512),
            output_tokens=round(mean_out or spec.workload.output_tokens.value or 128),
            demand=sweep.max_rate_meeting_slo,
            slo=slo_limits(spec.slo),
            measured=(best_run.measured, best_run.spec, best_run.id),
            current_gpu=current_gpu,
        )
    except CapacityError as exc:
        return PlanNote(note=f"no plan: {exc}")
    return PlanNote(plan=PlanRecord.model_validate(result.to_json()))


def doctor(
    url: str,
    *,
    store: Store,
    spec: RunSpec,
    model_arch: str | None,
    current_gpu: str | None,
    answers: Path | None,
    output: Path,
    progress: ProgressView,
    prometheus_url: str | None = None,
    replicas: int = 1,
) -> DoctorOutcome:
    """Run every step; each one's result is kept with the sweep run. With the team's Prometheus the stage
    reads production traffic and forecasts when the sweep's knee is outgrown."""
    progress.step("1/4 sweeping to the SLO knee")
    sweep = run_loop(run_bench(spec, store, progress=progress))
    assert isinstance(sweep, SweepResult), "doctor's spec is a sweep"

    progress.step("2/4 diagnosing the saturating step")
    step = _step_to_diagnose(sweep.sweep, sweep.max_rate_meeting_slo)
    if step is not None:
        found = diagnose_stored_run(store, step.run_id)
        # kept before the stage is placed: its reasons read this same diagnosis, and never contradict it
        store.annotate(sweep.run_id, StepDiagnosis.model_validate(found.to_json() | {"run_id": step.run_id}))

    progress.step("3/4 projecting GPU tiers from the measured run")
    plan = _plan(store, spec, sweep, model_arch, current_gpu)

    progress.step("4/4 probing readiness and placing the stage")
    stage = assess(
        store,
        url=url,
        answers_path=answers,
        config=probe_config(spec.target.api_key_env, spec.target.api_key_file, 32, 10.0, spec.target.model),
        prometheus_url=prometheus_url,
        replicas=replicas,
        warn=progress.notice,
    )
    attach(store, sweep.run_id, stage)
    store.annotate(sweep.run_id, plan)
    bundle = bundle_from_store(store, sweep.run_id)
    bundle.title = f"servewise doctor: {url}"
    return DoctorOutcome(write_report(output, bundle), sweep, stage)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_twin(port: int) -> subprocess.Popen[bytes]:
    """The twin in its own process (its own core, its own event loop); the caller stops it by PID."""
    cmd = [sys.executable, "-m", "servewise", "twin", "--model", DEMO_MODEL, "--gpu", DEMO_GPU, "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).read()
            return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    _, err = proc.communicate(timeout=10)
    tail = [f"  {line}" for line in (err or b"").decode(errors="replace").strip().splitlines()[-5:]]
    raise UnreachableError("\n".join([f"the twin did not start on port {port}", *tail]))
