import importlib.util
import os

import pytest

# No test touches the network: the hub client must only ever look at a cache the test builds.
os.environ["HF_HUB_OFFLINE"] = "1"

has_torch = importlib.util.find_spec("torch") is not None
requires_torch = pytest.mark.skipif(not has_torch, reason="torch not installed (the optional zoo extra)")


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path_factory.mktemp("hf-cache")))
    monkeypatch.setenv("PARENTAGE_CACHE", str(tmp_path_factory.mktemp("parentage-cache")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def zoo(tmp_path_factory, pytestconfig):
    """The tiny zoo (every derivation kind once; about 15 s on 2 cores), built once per session and shared by
    the zoo, compare, index, bench and report tests. What it builds is said on the terminal as it goes, past
    pytest's output capture. The ci zoo (minutes) is for the demo and the benchmarks."""
    pytest.importorskip("torch")
    pytest.importorskip("tokenizers")
    from parentage.zoo.build import build_zoo

    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    say = (lambda msg: reporter.write_line(msg)) if reporter else (lambda msg: None)
    folder = tmp_path_factory.mktemp("zoo") / "tiny"
    say("")
    manifest = build_zoo(folder, size="tiny", seed=0, log=say, status=lambda text: None)
    return folder, manifest


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server (tests/pg.py); skipped with the reason when it cannot start."""
    pytest.importorskip("psycopg", reason="psycopg not installed (pip install 'parentage[postgres]')")
    from tests.pg import PostgresServer

    try:
        server = PostgresServer()
    except (RuntimeError, OSError) as e:
        pytest.skip(f"PostgreSQL server could not start: {e}")
    yield server
    server.stop()
