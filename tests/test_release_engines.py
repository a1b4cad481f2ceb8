"""`servewise release` on real llama-servers, deployed by a small script of the test's own (start the version
on the release's port, stop the one before by its PID file): the first release is the baseline, a clearly
worse one is rolled back and the good one verified back, and one that never becomes ready is rolled back
within its ready timeout.

Needs `bash tests/engines/install.sh`; skips with the reason when llama-server is missing.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from engines.servers import TINY_MODEL_NAME, LlamaServer, free_port, llama_server_bin, tiny_model_dir

pytestmark = [pytest.mark.engines, pytest.mark.slow]

#: good: four slots, one thread (the other core is the load generator's); bad: the same server behind the test gateway writing every chunk at 3x its
#: time (a gross regression of known size: fewer slots or threads are not reliably slower on two busy cores);
#: never: holds no port at all
DEPLOY_SCRIPT = """#!/bin/sh
# deploy.sh VERSION: stop the release the PID file names, start VERSION on PORT
dir=$(cd "$(dirname "$0")" && pwd)
if [ -f "$dir/server.pid" ]; then
  pid=$(cat "$dir/server.pid")
  kill -TERM "-$pid" 2>/dev/null
  i=0
  while kill -0 "$pid" 2>/dev/null && [ "$(ps -o stat= -p "$pid" | cut -c1)" != Z ] && [ $i -lt 150 ]; do
    sleep 0.1; i=$((i+1))
  done
  kill -KILL "-$pid" 2>/dev/null
  rm -f "$dir/server.pid"
  echo "stopped $pid"
fi
case "$1" in
  good) slots=4; threads=1; stretch= ;;
  bad) slots=4; threads=1; stretch=3 ;;
  never) setsid sleep 600 >/dev/null 2>&1 </dev/null &
         echo $! > "$dir/server.pid"; echo $! >> "$dir/started.pids"; echo "started never as $!"; exit 0 ;;
  *) echo "no release $1"; exit 2 ;;
esac
serve="@BIN@ -m @MODEL@ --host 127.0.0.1 -c 4096 -np $slots -t $threads --metrics --offline --alias @ALIAS@"
if [ -n "$stretch" ]; then  # one process group: the gateway on the release's port, the engine behind it
  setsid sh -c "$serve --port @INNER@ & exec @PY@ @GATEWAY@ --upstream http://127.0.0.1:@INNER@ --port @PORT@ \\
    --stretch $stretch" >"$dir/$1.log" 2>&1 </dev/null &
else
  setsid $serve --port @PORT@ >"$dir/$1.log" 2>&1 </dev/null &
fi
echo $! > "$dir/server.pid"
echo $! >> "$dir/started.pids"
echo "started $1 as $! (-np $slots -t $threads${stretch:+, every chunk at ${stretch}x its time})"
"""


@dataclass(frozen=True)
class Releases:
    root: Path
    store: Path
    file: Path
    port: int

    def run(self, version: str, *, ready: str | None = None) -> tuple[int, dict]:
        """``servewise release run`` as a user runs it; its JSON result."""
        file = self.file
        if ready is not None:
            data = yaml.safe_load(file.read_text())
            data["timeouts"]["ready"] = ready
            file = self.root / f"release-{version}.yaml"
            file.write_text(yaml.safe_dump(data))
        try:
            done = subprocess.run(
                [sys.executable, "-m", "servewise", "release", "run", "--file", str(file), "--version", version,
                 "--store", str(self.store), "--json"],
                capture_output=True, text=True, timeout=400,
            )  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            pytest.fail(f"release {version} did not end in 400 s: {exc.stdout!r} {exc.stderr!r}")
        assert done.stdout.strip(), done.stderr
        return done.returncode, json.loads(done.stdout)

    def history(self) -> list[dict]:
        done = subprocess.run([sys.executable, "-m", "servewise", "release", "history", "--store", str(self.store),
                               "--json"], capture_output=True, text=True, timeout=60)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


def _summary(result: dict) -> str:
    lines = [f"{result['status']}: {result['reason']}"]
    lines += [f"  {s['name']}: {s['status']}: {s['detail']}" for s in result["steps"]]
    for step in result["steps"]:
        for check in (step.get("gate") or {}).get("metrics", []):
            lines.append(f"    {step['name']} {check['name']}: {check['change_pct']} {check['verdict']} ({check['reason']})")
    return "\n".join(lines)


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Releases]:
    """A store, the deploy script and a release file for llama-server on one port; every server the script
    started is stopped by its PID afterwards, whatever the tests did."""
    reason = LlamaServer.missing_reason()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("release-engines")
    port = free_port()
    script = root / "deploy.sh"
    script.write_text(DEPLOY_SCRIPT.replace("@BIN@", str(llama_server_bin())).replace("@PORT@", str(port))
                      .replace("@INNER@", str(free_port())).replace("@PY@", sys.executable)
                      .replace("@GATEWAY@", str(Path(__file__).parent / "fixtures" / "gateway.py"))
                      .replace("@MODEL@", str(tiny_model_dir() / f"{TINY_MODEL_NAME}.gguf"))
                      .replace("@ALIAS@", TINY_MODEL_NAME))  # fmt: skip
    script.chmod(0o755)
    release = {
        "target": f"http://127.0.0.1:{port}",
        "deploy": f"{script} {{version}}",
        "rollback": f"{script} {{previous}}",
        "bench": {
            "target": {"model": TINY_MODEL_NAME},
            "load": {"kind": "concurrency", "concurrency": 4}, "duration_s": 10,
            "workload": {"input_tokens": {"kind": "fixed", "value": 64}, "output_tokens": {"kind": "fixed", "value": 64},
                         "seed": 7},
        },
        "check_requests": 200,
        "timeouts": {"deploy": "60s", "ready": "90s", "bench": "240s", "rollback": "60s"},
    }  # fmt: skip
    file = root / "release.yaml"
    file.write_text(yaml.safe_dump(release, sort_keys=False))
    try:
        yield Releases(root=root, store=root / "runs.db", file=file, port=port)
    finally:
        started = root / "started.pids"
        for pid in (started.read_text().split() if started.exists() else []):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(int(pid), signal.SIGKILL)


def test_the_first_release_is_recorded_as_the_baseline(releases):
    code, result = releases.run("good")
    assert (code, result["status"], result["running"]) == (0, "good", "good"), _summary(result)
    assert result["reason"] == "first release: recorded as the baseline"
    assert [s["name"] for s in result["steps"]] == ["deploy", "ready", "probes", "bench"], _summary(result)
    ready = result["steps"][1]
    assert 0 < ready["time_to_ready_s"] < 90 and ready["first_token_ms"] > 0, _summary(result)
    assert result["steps"][0]["command"].endswith("deploy.sh good") and "started good" in result["steps"][0]["output_tail"]
    assert result["bench_run"] and result["previous"] is None


def test_a_clearly_worse_release_is_rolled_back_and_the_good_one_verified(releases):
    code, result = releases.run("bad")
    assert result["gate_verdict"] == "fail", _summary(result)
    assert (code, result["status"], result["running"], result["previous"]) == (1, "rolled_back", "good", "good"), (
        _summary(result))
    names = [s["name"] for s in result["steps"]]
    assert names == ["deploy", "ready", "probes", "bench", "gate", "rollback", "rollback_ready", "check",
                     "check_gate"], _summary(result)  # fmt: skip
    assert result["check_verdict"] != "fail" and result["rolled_back"], _summary(result)
    history = releases.history()
    assert [(r["version"], r["status"], r["running"]) for r in history[:2]] == [
        ("bad", "rolled_back", "good"), ("good", "good", "good")]
    assert history[0]["baseline_run"] == history[1]["bench_run"]


def test_a_release_that_never_becomes_ready_is_rolled_back_within_its_timeout(releases):
    code, result = releases.run("never", ready="15s")
    assert (code, result["status"], result["running"]) == (1, "rolled_back", "good"), _summary(result)
    ready = next(s for s in result["steps"] if s["name"] == "ready")
    assert ready["status"] == "timeout" and ready["finished_at"] - ready["started_at"] < 20, _summary(result)
    assert [s["name"] for s in result["steps"]][2:] == ["rollback", "rollback_ready", "check", "check_gate"]
    assert releases.history()[0]["version"] == "never"
