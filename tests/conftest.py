import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Index tables go to a per-session cache unless the caller set RL2BENCH_CACHE (CI shares one)."""
    if "RL2BENCH_CACHE" not in os.environ:
        monkeypatch.setenv("RL2BENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture
def vizdoom_required():
    """Skip a test without vizdoom, except where RL2BENCH_REQUIRE_MAZE=1 (CI): there it must run."""
    try:
        import vizdoom  # noqa: F401
    except ImportError:
        if os.environ.get("RL2BENCH_REQUIRE_MAZE") == "1":
            raise
        pytest.skip("vizdoom not installed")
