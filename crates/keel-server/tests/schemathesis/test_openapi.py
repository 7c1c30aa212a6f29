"""The HTTP API held to its own OpenAPI document by schemathesis: requests generated from
/openapi.json (valid ones, and ones breaking each parameter's and body's rules) against a live
`keel serve` with an operator key; no response may be a 5xx and every documented response must
match its schema. Run by .ci/run (KEEL_BIN: the keel binary; KEEL_SCHEMATHESIS_EXAMPLES:
examples per operation, default 60)."""

import json
import os
import pathlib
import subprocess
import sys
import tempfile
import urllib.request

import pytest

OPERATOR = "schemathesis-operator-key"
ROOT = pathlib.Path(__file__).resolve().parents[4]


def _post(base, path, body):
    req = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {OPERATOR}"},
    )
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())


@pytest.fixture(scope="session")
def server():
    keel = os.environ.get("KEEL_BIN") or str(ROOT / "target" / "debug" / "keel")
    with tempfile.TemporaryDirectory() as d:
        p = subprocess.Popen(
            [keel, "serve", "--db", f"sqlite://{d}/keel.db", "--init", "--listen", "127.0.0.1:0", "--prices", "push"],
            env={**os.environ, "KEEL_OPERATOR_KEY": OPERATOR, "KEEL_LOG": "warn"},
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            line = p.stdout.readline().strip()
            assert line.startswith("listening on "), line
            base = line.removeprefix("listening on ")
            # a product of each shape, so product routes have something real to act on
            for pid, file in [("eth2x", "eth2x-fli.toml"), ("eth3l", "eth-3x-threshold.toml")]:
                _post(base, "/products", {"id": pid, "toml": (ROOT / "products" / file).read_text()})
            yield base
        finally:
            p.kill()
            p.wait()


def test_the_api_keeps_to_its_document(server, tmp_path):
    # schemathesis' own runner (its pytest plugin does not load under this pytest): every
    # operation but the endless event stream, its examples, coverage and fuzzing phases, and a
    # stateful run that chains responses into requests
    cmd = [
        os.path.join(os.path.dirname(sys.executable), "schemathesis"),
        "run",
        f"{server}/openapi.json",
        "--checks",
        "not_a_server_error,response_schema_conformance",
        "--header",
        f"Authorization: Bearer {OPERATOR}",
        "--exclude-path",
        "/events/stream",
        "--max-examples",
        os.environ.get("KEEL_SCHEMATHESIS_EXAMPLES", "60"),
        "--seed",
        "1",
        "--generation-database",
        "none",
        "--workers",
        "2",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path),
    ]
    # run in the test's own directory: schemathesis keeps a cache where it runs
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, cwd=tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode == 0, f"exit {r.returncode}\n" + out[-20000:]
    # the report lists every operation tested, none failed
    import xml.etree.ElementTree as ET

    (report,) = list(tmp_path.glob("junit-*.xml"))
    cases = ET.parse(report).getroot().iter("testcase")
    tested = {c.get("name") for c in cases if c.find("failure") is None and c.find("error") is None}
    for op in ["POST /products/{id}/mint", "GET /products/{id}/history", "GET /events", "POST /keys"]:
        assert any(op in t for t in tested), (op, sorted(tested))
    assert "Test cases:" in out and " passed" in out, out[-3000:]
