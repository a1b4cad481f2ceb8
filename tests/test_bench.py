"""`servewise bench` end to end against the exact-timing server: accuracy, faults, exit codes, storage."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from servewise.store import RunStore

from cli_runner import servewise, wait_for_records
from servers.process import assert_default_timing, free_port, timing_server

KEYS = {"run_id", "status", "metrics", "client"}
METRIC_KEYS = {"ttft_ms", "tpot_ms", "itl_ms", "e2e_ms", "requests_ok", "requests_failed", "errors_by_class",
               "requests_per_s", "output_tokens_per_s", "goodput_rps", "output_tokens_source"}  # fmt: skip


def bench(url, store, *extra, timeout=120, env=None):
    return servewise("bench", "--target", url, "--quiet", "--json", "-", *extra, store=store, timeout=timeout, env=env)


def test_measures_exact_ttft_and_tpot(timing_url, store_path):
    result = bench(timing_url, store_path, "--load", "poisson:10", "--duration", "6", "--output-tokens", "20")
    assert result.code == 0, result.stderr
    summary = result.json()
    assert summary.keys() >= KEYS and summary["metrics"].keys() >= METRIC_KEYS
    m = summary["metrics"]
    assert m["requests_failed"] == 0 and m["requests_ok"] >= 30
    assert_default_timing(m)
    assert m["output_tokens_source"] == "usage" and m["mean_output_tokens"] == 20
    assert summary["client"]["limited"] is False
    assert summary["client"]["schedule_lag_ms"]["p50"] < 5
    for key in ("p50", "p90", "p95", "p99", "mean"):
        assert key in m["ttft_ms"]


def test_closed_loop_concurrency_and_request_count(timing_url, store_path):
    result = bench(
        timing_url, store_path, "--load", "concurrency:4", "--requests", "40", "--output-tokens", "5"
    )
    assert result.code == 0, result.stderr
    m = result.json()["metrics"]
    assert m["requests_ok"] == 40
    # 4 users, each request takes 100 + 4*10 ms: about 4 / 0.14 = 28 req/s
    assert 20 < m["requests_per_s"] < 30
    assert 3.0 < m["concurrency_mean"] <= 4.2


def test_slo_exit_codes(timing_url, store_path):
    met = bench(
        timing_url,
        store_path,
        "--load",
        "constant:5",
        "--duration",
        "2",
        "--output-tokens",
        "5",
        "--slo",
        "ttft_p95=300ms,errors=1%",
    )
    assert met.code == 0 and met.json()["slo"]["met"] is True
    missed = bench(
        timing_url,
        store_path,
        "--load",
        "constant:5",
        "--duration",
        "2",
        "--output-tokens",
        "5",
        "--slo",
        "ttft_p95=50ms",
    )
    assert missed.code == 1 and missed.json()["status"] == "slo_failed"
    assert missed.json()["slo"]["targets"][0]["value"] > 50


def test_goodput_counts_only_requests_meeting_every_slo(store_path):
    with timing_server(ttft_ms=100, itl_ms=10, capacity=2) as server:
        result = bench(
            server.url,
            store_path,
            "--load",
            "constant:20",
            "--duration",
            "3",
            "--output-tokens",
            "5",
            "--slo",
            "ttft_p95=200ms",
        )
    m = result.json()["metrics"]
    assert 0 < m["goodput_rps"] < m["requests_per_s"]


def test_unreachable_target_exits_3(store_path):
    result = servewise(
        "bench", "--target", f"http://127.0.0.1:{free_port()}", "--duration", "1", "-q", store=store_path
    )
    assert result.code == 3 and "nothing answers" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--load", "poisson"], "load"),
        (["--input-tokens", "normal:5"], "--input-tokens"),
        (["--slo", "latency<3"], "slo"),
        (["--duration", "ten"], "duration"),
        (["--workers", "0"], "workers"),
        (["--label", "novalue"], "--label"),
    ],
)
def test_bad_flags_exit_2_with_one_clear_line(timing_url, store_path, args, needle):
    result = servewise("bench", "--target", timing_url, *args, store=store_path)
    assert result.code == 2
    assert needle in result.stderr and "Traceback" not in result.stderr


def test_bad_spec_file_names_the_field(tmp_path, store_path):
    spec = tmp_path / "run.yaml"
    spec.write_text("target:\n  url: http://127.0.0.1:1\nload:\n  kind: poisson\nworkload:\n  seed: abc\n")
    result = servewise("bench", "--spec", str(spec), store=store_path)
    assert (
        result.code == 2
        and "load" in result.stderr
        and "seed" in result.stderr
        and "Traceback" not in result.stderr
    )
    spec.write_text("target: [unclosed\n")
    result = servewise("bench", "--spec", str(spec), store=store_path)
    assert result.code == 2 and "not valid YAML" in result.stderr


def test_spec_file_with_flag_override(timing_url, tmp_path, store_path):
    spec = tmp_path / "run.yaml"
    spec.write_text(
        f"target:\n  url: {timing_url}\nload:\n  kind: constant\n  rate: 5\nduration_s: 30\nworkload:\n  output_tokens: {{kind: fixed, value: 4}}\nlabels: {{team: a}}\n"
    )
    result = servewise(
        "bench",
        "--spec",
        str(spec),
        "--duration",
        "2",
        "--label",
        "release=v2",
        "-q",
        "--json",
        "-",
        store=store_path,
    )
    assert result.code == 0, result.stderr
    summary = result.json()
    assert summary["metrics"]["mean_output_tokens"] == 4
    with RunStore(store_path) as store:
        run = store.get_run(summary["run_id"])
    assert run.labels == {"team": "a", "release": "v2"} and run.spec["duration_s"] == 2


@pytest.mark.parametrize(
    ("fault", "error_class"),
    [
        ("reset", "protocol"),
        ("close-early", "protocol"),
        ("malformed", "protocol"),
        ("error-event", "protocol"),
        ("http429", "http_status"),
        ("http500", "http_status"),
        ("http503", "http_status"),
    ],
)
def test_faults_are_classified_and_every_request_stored(timing_url, store_path, fault, error_class):
    result = bench(
        timing_url,
        store_path,
        "--model",
        f"fault:{fault}",
        "--load",
        "constant:20",
        "--duration",
        "1",
        "--output-tokens",
        "6",
    )
    assert result.code == 3, result.stderr  # every request failed
    summary = result.json()
    m = summary["metrics"]
    assert m["errors_by_class"] == {error_class: m["requests_failed"]} and m["requests_failed"] >= 15
    with RunStore(store_path) as store:
        records = list(store.iter_records(summary["run_id"]))
    assert len(records) == m["requests_failed"] and all(r.error is not None for r in records)


def test_timeouts_are_classified(timing_url, store_path):
    result = bench(
        timing_url,
        store_path,
        "--model",
        "fault:hang",
        "--load",
        "constant:10",
        "--duration",
        "1",
        "--timeout",
        "1s",
    )
    m = result.json()["metrics"]
    assert m["errors_by_class"] == {"timeout": m["requests_failed"]} and m["requests_failed"] >= 8


def test_connection_refused_mid_run_is_a_connect_error(store_path):
    """The server dies while the run goes on: requests after that fail to connect, none are lost."""
    with timing_server() as server:
        proc = subprocess.Popen(
            [sys.executable, "-m", "servewise", "bench", "--target", server.url, "--load", "constant:20", "--duration", "4", "--output-tokens", "3", "-q", "--json", "-"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ | {"SERVEWISE_STORE": str(store_path)},
        )  # fmt: skip
        wait_for_records(store_path, 20)
        os.killpg(server.pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=60)
    m = json.loads(out)["metrics"]
    assert m["requests_ok"] >= 20 and m["errors_by_class"].get("connect", 0) >= 5
    assert m["requests_ok"] + m["requests_failed"] >= 75


def test_odd_but_valid_streams_are_not_errors(timing_url, store_path):
    for fault, source in (
        ("no-done", "usage"),
        ("usage-on-finish", "usage"),
        ("no-usage", "chunks"),
        ("crlf", "usage"),
        ("bigline", "usage"),
    ):
        result = bench(
            timing_url,
            store_path,
            "--model",
            f"fault:{fault}",
            "--load",
            "constant:5",
            "--duration",
            "1",
            "--output-tokens",
            "8",
        )
        assert result.code == 0, (fault, result.stdout, result.stderr)
        m = result.json()["metrics"]
        assert m["requests_failed"] == 0 and m["output_tokens_source"] == source, fault
    result = bench(
        timing_url,
        store_path,
        "--model",
        "fault:multi-token",
        "--load",
        "constant:5",
        "--duration",
        "1",
        "--output-tokens",
        "8",
    )
    m = result.json()["metrics"]
    assert m["mean_output_tokens"] == 8 and m["itl_ms"]["count"] == 5  # 2 chunks of 4 tokens per request


def test_a_stream_that_arrives_whole_is_named(timing_url, store_path):
    """A buffering proxy hands over the stream at its end: TTFT then reads as E2E, and the summary says so."""
    result = bench(timing_url, store_path, "--model", "fault:buffered", "--load", "concurrency:2", "--requests", "6",
                   "--output-tokens", "8")  # fmt: skip
    assert result.code == 0, result.stderr
    summary = result.json()
    m = summary["metrics"]
    assert m["arrived_whole"] == 6 and m["ttft_ms"]["p50"] == m["e2e_ms"]["p50"]
    shown = servewise("runs", "show", summary["run_id"], store=store_path)
    assert "6 of 6 streamed answers arrived whole" in " ".join(shown.stdout.split())
    plain = bench(timing_url, store_path, "--load", "concurrency:2", "--requests", "6", "--output-tokens", "8")
    assert "arrived_whole" not in plain.json()["metrics"]  # 10 ms apart, every chunk is read on its own


def test_non_streaming_and_completions_and_embeddings(timing_url, store_path):
    result = bench(
        timing_url,
        store_path,
        "--no-stream",
        "--load",
        "constant:5",
        "--duration",
        "1",
        "--output-tokens",
        "10",
    )
    m = result.json()["metrics"]
    assert result.code == 0 and m["mean_output_tokens"] == 10 and m["e2e_ms"]["p50"] >= 190
    result = bench(
        timing_url,
        store_path,
        "--api",
        "completions",
        "--load",
        "constant:5",
        "--duration",
        "1",
        "--output-tokens",
        "10",
    )
    assert result.code == 0 and result.json()["metrics"]["mean_output_tokens"] == 10
    result = bench(timing_url, store_path, "--api", "embeddings", "--load", "constant:5", "--duration", "1")
    assert result.code == 0 and result.json()["metrics"]["requests_ok"] >= 4


def test_ctrl_c_keeps_finished_requests_and_marks_interrupted(timing_url, store_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "servewise", "bench", "--target", timing_url, "--load", "constant:20", "--duration", "60", "--output-tokens", "50", "-q", "--json", "-"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ | {"SERVEWISE_STORE": str(store_path)},
    )  # fmt: skip
    wait_for_records(store_path, 20)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    summary = json.loads(out)
    assert summary["status"] == "interrupted" and summary["metrics"]["requests_ok"] >= 20
    with RunStore(store_path) as store:
        run = store.get_run(summary["run_id"])
        records = list(store.iter_records(run.id))
    assert run.status == "interrupted"
    assert sum(r.ok for r in records) == summary["metrics"]["requests_ok"]
    assert any(r.error and r.error.value == "cancelled" for r in records)  # in flight at Ctrl-C


def test_api_key_never_reaches_store_or_exports(timing_url, store_path, tmp_path):
    secret = "sk-test-DO-NOT-STORE-4242"
    key_file = tmp_path / "key"
    key_file.write_text(secret + "\n")
    result = bench(
        timing_url,
        store_path,
        "--api-key-file",
        str(key_file),
        "--load",
        "constant:5",
        "--duration",
        "1",
        "--output-tokens",
        "3",
    )
    assert result.code == 0 and secret not in result.stdout + result.stderr
    run_id = result.json()["run_id"]
    exported = servewise("runs", "export", run_id, store=store_path).stdout
    assert secret not in exported and secret.encode() not in store_path.read_bytes()
    result = bench(
        timing_url,
        store_path,
        "--api-key-env",
        "MY_KEY",
        "--load",
        "constant:5",
        "--duration",
        "1",
        env={"MY_KEY": secret},
    )
    assert result.code == 0 and secret.encode() not in store_path.read_bytes()


def test_runs_list_show_export(timing_url, store_path):
    first = bench(
        timing_url,
        store_path,
        "--load",
        "constant:5",
        "--duration",
        "1",
        "--output-tokens",
        "3",
        "--label",
        "release=v1",
    ).json()
    bench(
        timing_url,
        store_path,
        "--load",
        "constant:5",
        "--duration",
        "1",
        "--output-tokens",
        "3",
        "--label",
        "release=v2",
    )
    listed = servewise("runs", "list", "--label", "release=v1", "--json", store=store_path).json()
    assert [r["run_id"] for r in listed] == [first["run_id"]]
    shown = servewise("runs", "show", first["run_id"], store=store_path)
    assert shown.code == 0 and "TTFT" in shown.stdout
    exported = servewise("runs", "export", first["run_id"], "--format", "csv", store=store_path)
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert len(rows) == first["metrics"]["requests_ok"] and float(rows[0]["ttft_ms"]) >= 100
    as_json = json.loads(servewise("runs", "export", first["run_id"], store=store_path).stdout)
    assert as_json["run"]["summary"]["run_id"] == first["run_id"] and len(as_json["records"]) == len(rows)
    missing = servewise("runs", "show", "no-such-run", store=store_path)
    assert missing.code == 2 and "no run" in missing.stderr


def test_warmup_is_kept_out_of_steady_state(timing_url, store_path):
    summary = bench(
        timing_url,
        store_path,
        "--load",
        "constant:10",
        "--duration",
        "4",
        "--warmup",
        "1s",
        "--cooldown",
        "1s",
        "--output-tokens",
        "3",
    ).json()
    with RunStore(store_path) as store:
        phases = [r.phase.value for r in store.iter_records(summary["run_id"])]
    assert phases.count("warmup") >= 8 and phases.count("cooldown") >= 8
    assert summary["metrics"]["requests_ok"] == phases.count("steady")


def test_sweep_finds_the_knee(store_path):
    """A server with 4 slots and 150 ms per request saturates near 26 req/s; the SLO knee sits below it."""
    with timing_server(ttft_ms=100, itl_ms=10, capacity=4) as server:
        result = servewise(
            "bench", "--target", server.url, "--load", "sweep", "--output-tokens", "6", "--slo", "ttft_p95=250ms",
            "--sweep-step", "3s", "--quiet", "--json", "-", store=store_path, timeout=300,
        )  # fmt: skip
    summary = result.json()
    rates = [s["rate"] for s in summary["sweep"]]
    assert len(rates) >= 4
    knee = summary["max_rate_meeting_slo"]
    assert knee is not None and 8 <= knee <= 32, summary["sweep"]  # capacity 26.7 req/s, short noisy steps
    failing = [s["rate"] for s in summary["sweep"] if not s["slo_met"]]
    assert failing and min(failing) > knee
    # every step drew its own requests: with one seed, later steps would meet earlier prompts in a prefix cache
    with RunStore(store_path) as store:
        seeds = [step.spec["workload"]["seed"] for step in store.list_runs(kind="sweep-step", include_children=True)]
    assert len(set(seeds)) == len(seeds) == len(rates)


def test_runs_repeat_records_the_spread(timing_url, store_path):
    first = bench(timing_url, store_path, "--load", "constant:10", "--duration", "2", "--output-tokens", "5").json()
    result = servewise("runs", "repeat", first["run_id"], "--times", "2", "-q", "--json", store=store_path, timeout=300)
    assert result.code == 0, result.stderr
    data = result.json()
    assert len(data["runs"]) == 3 and data["runs"][0] == first["run_id"]
    ttft = data["spread"]["ttft_ms_p50"]
    assert 100 <= ttft["min"] <= ttft["median"] <= ttft["max"] and 0 <= ttft["relative"] < 0.2
    with RunStore(store_path) as store:
        again = store.get_run(data["runs"][2])
        assert again.labels["repeat_of"] == first["run_id"]
        assert store.get_run(first["run_id"]).export_json()["repeat_spread"]["ttft_ms_p50"] == ttft["relative"]


def test_live_prometheus_metrics_during_a_run(timing_url, store_path):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "servewise", "bench", "--target", timing_url, "--load", "constant:10", "--duration", "30",
         "--output-tokens", "5", "-q", "--prometheus-port", str(port), "--json", "-"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ | {"SERVEWISE_STORE": str(store_path)},
    )  # fmt: skip
    try:
        wait_for_records(store_path, 10)
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    ok = [s.value for s in families["servewise_requests"].samples if s.labels.get("outcome") == "ok" and s.name.endswith("_total")]
    assert ok and ok[0] >= 10
    run_id = json.loads(out)["run_id"]
    assert any(s.labels.get("run_id") == run_id for s in families["servewise_ttft_seconds"].samples)


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory):
    """A certificate for 127.0.0.1 that no system trust store knows: a private CA's endpoint."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


def test_https_endpoint_verified_against_the_teams_own_ca(self_signed, store_path):
    """Production endpoints sit behind TLS, often with a private CA: an untrusted certificate is one clear
    line naming it; trusted the standard OpenSSL way (SSL_CERT_FILE), the run measures as over HTTP."""
    cert, _ = self_signed
    with timing_server(ttft_ms=50, itl_ms=5, tls=self_signed) as server:
        assert server.url.startswith("https://")
        args = ("bench", "--target", server.url, "--load", "concurrency:2", "--requests", "6", "--output-tokens", "8",
                "--quiet", "--json", "-")
        refused = servewise(*args, store=store_path)
        assert refused.code != 0
        message = " ".join(refused.stderr.split())
        assert "TLS certificate is not trusted (self-signed certificate)" in message and "SSL_CERT_FILE" in message
        assert "Traceback" not in refused.stdout + refused.stderr
        trusted = servewise(*args, store=store_path, env={"SSL_CERT_FILE": str(cert)})
    assert trusted.code == 0, trusted.stderr[-2000:]
    metrics = trusted.json()["metrics"]
    assert metrics["requests_ok"] == 6 and metrics["requests_failed"] == 0
    assert 50 <= metrics["ttft_ms"]["p50"] < 90 and metrics["mean_output_tokens"] == 8


def test_the_stored_diagnosis_reads_the_load_window_bench_read(timing_url, store_path):
    """bench keeps the span its load was on (first to last send) with the run; `diagnose RUN` reads the same
    ticks, so it prints what bench printed, and the window lies inside the run's own records."""
    result = bench(timing_url, store_path, "--load", "poisson:10", "--duration", "4", "--sample-interval", "0.25s")
    assert result.code == 0, result.stderr
    summary = result.json()
    first, last = summary["load_window"]
    with RunStore(store_path) as store:
        sends = [r.t_send for r in store.iter_records(summary["run_id"])]
        ticks = {s.t for s in store.samples(summary["run_id"])}
    assert (first, last) == (min(sends), max(sends)) and last - first >= 3.0
    assert min(ticks) < first  # the session sampled before the load began: those ticks are not read
    again = servewise("diagnose", summary["run_id"], "--json", store=store_path)
    assert again.code in (0, 3), again.stderr
    assert again.json() == summary["diagnosis"]
