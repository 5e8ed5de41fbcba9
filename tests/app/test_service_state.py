"""ServiceState on the tiny artifact, without HTTP: the loader's phases, the not-ready error, what
fails for good, and the retries of a store that does not answer yet."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from app.retriever import Upload
from app.retriever_errors import ExecutorClosedError, NotReadyError
from app.service_state import ServiceState
from app.settings import Settings
from store.records import ModelIdentity
from store.sqlite_store import SqliteStore
from tests.live_server import free_port
from tests.redis_server import start_redis_server
from tests.tiny_artifact import TINY_SPEC

LOAD_TIMEOUT_S = 30

StateFactory = Callable[..., ServiceState]


@pytest.fixture
def make_state(tiny_model_path: Path, tmp_path: Path) -> Iterator[StateFactory]:
    """``make_state(**settings)``: a ServiceState, closed after the test, not yet started."""
    states: list[ServiceState] = []

    def make(**overrides: Any) -> ServiceState:
        values: dict[str, Any] = {
            "model_path": tiny_model_path,
            "data_dir": tmp_path / "data",
            "allow_gpu": False,
            **overrides,
        }
        states.append(ServiceState(settings=Settings(**values)))
        return states[-1]

    yield make
    for state in states:
        state.close()


def loaded(state: ServiceState) -> ServiceState:
    state.start_loading()
    state.wait_loaded(LOAD_TIMEOUT_S)
    return state


def wait_for_phase(state: ServiceState, needle: str, timeout: float = 10) -> str:
    """The loader's phase once it contains ``needle`` (or is ``needle``)."""
    deadline = time.monotonic() + timeout
    while needle not in (phase := state.phase):
        assert time.monotonic() < deadline, f"phase is still {phase!r}, waited for {needle!r}"
        time.sleep(0.01)
    return phase


def test_not_ready_until_loaded(make_state: StateFactory) -> None:
    state = make_state()
    assert state.phase == "starting"
    with pytest.raises(NotReadyError, match="service not ready: still starting"):
        state.require_retriever()
    loaded(state)
    assert (state.phase, state.failure) == ("ready", None)
    retriever = state.require_retriever()
    assert retriever is state.retriever
    assert retriever.identity == ModelIdentity(
        TINY_SPEC.model_name, TINY_SPEC.model_version, TINY_SPEC.embedding_dim
    )
    assert retriever.embedder.spec == TINY_SPEC and retriever.store.backend == "sqlite"


@pytest.mark.parametrize("batching", [True, False], ids=["batching", "unbatched"])
def test_batching_gives_the_model_one_executor_whose_session_does_not_spin(
    make_state: StateFactory, batching: bool
) -> None:
    state = loaded(make_state(batching=batching))
    retriever = state.require_retriever()
    options = retriever.embedder._session.get_session_options()
    spinning = "session.intra_op.allow_spinning"
    if not batching:
        assert retriever.executor is None
        with pytest.raises(RuntimeError, match="does not have configuration"):
            options.get_session_config_entry(spinning)  # ORT's default, as released
        return
    executor = retriever.executor
    assert executor is not None and executor.embedder is retriever.embedder
    assert options.get_session_config_entry(spinning) == "0"
    state.close()  # stops the executor with the retriever
    batch = np.zeros((1, 3, TINY_SPEC.height, TINY_SPEC.width), dtype=np.uint8)
    with pytest.raises(ExecutorClosedError):
        executor.submit(batch).result(timeout=5)


def test_loading_rebuilds_the_index_from_the_store(
    make_state: StateFactory, photo_views: dict[str, list[bytes]]
) -> None:
    first = loaded(make_state()).require_retriever()
    for item in ("coins", "flower"):
        first.enroll(item, [Upload("a.jpg", b) for b in photo_views[item][:2]])
    centroids = {item: first.index.get(item) for item in ("coins", "flower")}
    first.store.close()

    second = loaded(make_state()).require_retriever()
    assert sorted(second.index.item_ids()) == ["coins", "flower"]
    for item, expected in centroids.items():
        got = second.index.get(item)
        assert got is not None and expected is not None
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-7)
    assert second.metrics.registry.get_sample_value("retrieval_index_items") == 2


def no_file(path: Path, tiny_model_path: Path) -> None:
    pass


def garbage(path: Path, tiny_model_path: Path) -> None:
    path.write_bytes(b"not a model")


def no_contract(path: Path, tiny_model_path: Path) -> None:
    model = onnx.load(str(tiny_model_path))
    del model.metadata_props[:]
    onnx.save(model, str(path))


@pytest.mark.parametrize(
    ("write_model", "reason"),
    [
        (no_file, "FileNotFoundError: model file not found"),
        (garbage, r"ContractError: .* not a loadable ONNX model"),
        (no_contract, r"ContractError: .* carries no preprocessing contract"),
    ],
)
def test_a_model_that_cannot_load_fails_for_good(
    make_state: StateFactory,
    tmp_path: Path,
    tiny_model_path: Path,
    write_model: Callable[[Path, Path], None],
    reason: str,
) -> None:
    model_path = tmp_path / "model.onnx"
    write_model(model_path, tiny_model_path)
    state = loaded(make_state(model_path=model_path))
    assert state.phase == "failed" and state.retriever is None and state.failure is not None
    with pytest.raises(NotReadyError, match=f"service not ready: {reason}"):
        state.require_retriever()


def test_a_store_of_another_model_fails_for_good(make_state: StateFactory, tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "data" / "store.sqlite3")
    store.claim_model_identity(ModelIdentity("someone-elses-model", "7", 512))
    store.close()
    state = loaded(make_state())
    assert state.phase == "failed" and state.retriever is None
    with pytest.raises(NotReadyError, match=r"ModelMismatchError: .*someone-elses-model v7"):
        state.require_retriever()


@pytest.fixture
def silent_redis_port(tmp_path: Path) -> Iterator[tuple[int, list[subprocess.Popen[bytes]]]]:
    """A loopback port nothing listens on (yet); a server a test starts there is killed after."""
    started: list[subprocess.Popen[bytes]] = []
    yield free_port(), started
    for proc in started:
        proc.kill()
        proc.wait()


def test_an_unreachable_store_is_retried_until_it_answers(
    make_state: StateFactory,
    tmp_path: Path,
    silent_redis_port: tuple[int, list[subprocess.Popen[bytes]]],
) -> None:
    port, started = silent_redis_port
    state = make_state(redis_url=f"redis://127.0.0.1:{port}/0")
    state.start_loading()
    phase = wait_for_phase(state, "attempt 2")
    # Backing off (0.5 s, then 1 s...) and saying why, but not given up.
    assert "StoreUnavailableError" in phase and "next attempt in 1 s" in phase, phase
    assert state.failure is None
    with pytest.raises(NotReadyError, match="still waiting for the store"):
        state.require_retriever()

    started.append(start_redis_server(port, tmp_path, durable=False))
    # The next attempt is at most 2 s away.
    assert wait_for_phase(state, "ready", timeout=5) == "ready"
    assert state.require_retriever().store.backend == "redis"


def test_close_wakes_a_loader_waiting_for_the_store(
    make_state: StateFactory, silent_redis_port: tuple[int, list[subprocess.Popen[bytes]]]
) -> None:
    port, _ = silent_redis_port
    state = make_state(redis_url=f"redis://127.0.0.1:{port}/0")
    state.start_loading()
    wait_for_phase(state, "next attempt in 2 s")
    start = time.monotonic()
    state.close()
    # Without the wake-up, close() would sit out the 2 s wait.
    assert time.monotonic() - start < 1.0
    assert state._thread is not None and not state._thread.is_alive()
    assert state.retriever is None and state.failure is None


def test_the_loader_sweeps_old_orphan_blobs_once_ready(
    make_state: StateFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blob_dir = tmp_path / "data" / "blobs"
    orphan = b"bytes whose enrollment never committed"
    digest = hashlib.sha256(orphan).hexdigest()
    path = blob_dir / digest[:2] / digest[2:4] / digest
    path.parent.mkdir(parents=True)
    path.write_bytes(orphan)
    young = path.with_name(".tmp-in-flight")
    young.write_bytes(b"partial")
    os.utime(path, (1e9, 1e9))
    with caplog.at_level("INFO", logger="store.blob_sweep"):
        state = loaded(make_state())
    assert state.phase == "ready"
    assert not path.exists() and young.exists()  # the young temporary file is kept
    # (In parts: the sweep may name further kinds of orphans between them.)
    for part in ("1 orphan blobs", "0 temporary files removed", "1 younger than the grace"):
        assert part in caplog.text, caplog.text


def _open_store_files(data_dir: Path) -> int:
    """File descriptors of this process open on the SQLite store (database, WAL, shared memory)."""
    fds = Path("/proc/self/fd")
    count = 0
    for fd in fds.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed meanwhile
        count += target.startswith(str(data_dir / "store.sqlite3"))
    return count


def test_an_unreachable_milvus_is_retried_and_each_attempt_closes_its_store(
    make_state: StateFactory, tmp_path: Path
) -> None:
    pytest.importorskip("pymilvus")
    # Nothing listens there: every connection is refused at once.
    state = make_state(index="milvus", milvus_uri=f"http://127.0.0.1:{free_port()}")
    state.start_loading()
    phase = wait_for_phase(state, "attempt 2")
    assert phase.startswith("waiting for Milvus") and "IndexUnavailableError" in phase, phase
    assert "next attempt in 1 s" in phase and "127.0.0.1" not in phase, phase
    assert state.failure is None
    with pytest.raises(NotReadyError, match="still waiting for Milvus"):
        state.require_retriever()
    # Each attempt opens the store again: the failed ones' files must not stay open.
    open_after_two = _open_store_files(tmp_path / "data")
    wait_for_phase(state, "attempt 3")
    assert _open_store_files(tmp_path / "data") <= open_after_two
