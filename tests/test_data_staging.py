"""Object-store datasets are staged once per node into a verified cache and memory-mapped from there
(real S3 API on loopback; real processes for the concurrency and memory checks)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from data import storage
from data.errors import ShardError
from tests.helpers.datasets import write_dataset
from data.staging import CACHE_ENV, staged

ROOT = Path(__file__).resolve().parents[1]


def _random_dataset(uri: str, rows: int, size: int, seed: int = 0, shard_rows: int = 4096) -> None:
    """Incompressible faces (random bytes) of `rows` x size^2 x 4 bytes, written straight to `uri`."""
    rng = np.random.default_rng(seed)

    def batches(n: int, prefix: str):
        for start in range(0, n, 512):
            k = min(512, n - start)
            yield ([f"{prefix}{start + i}" for i in range(k)], rng.integers(0, 256, (k, size, size, 3), np.uint8),
                   rng.integers(0, 2, (k, size, size), np.uint8))

    counts = {"train": rows - 2 * (rows // 10), "val": rows // 10, "test": rows // 10}
    write_dataset(uri, source="synthetic", image_size=size, mask_classes=[1],
                  splits={split: batches(n, split) for split, n in counts.items()}, shard_rows=shard_rows)


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(root))
    return root


def test_local_paths_are_used_in_place(tmp_path, cache):
    assert staged(tmp_path / "faces") == tmp_path / "faces"
    assert not cache.exists()


def test_staged_once_verified_and_loaded_like_local_data(s3, cache):
    from data.loader import FaceData

    uri = s3.uri("faces")
    _random_dataset(uri, 200, 16, shard_rows=64)
    first = staged(uri)
    assert first.parent == cache and len(list(cache.iterdir())) == 2  # the entry and its lock
    inode = first.stat().st_ino
    shard = next(first.glob("train-*.arrow"))
    before = shard.stat().st_mtime_ns
    assert staged(s3.query_uri("faces")) == first, "same content, another spelling of the URI: same entry"
    assert first.stat().st_ino == inode and shard.stat().st_mtime_ns == before, "not downloaded again"
    remote, local = FaceData.load(uri), FaceData.load(first)
    assert remote.ids("train") == local.ids("train")
    a, _ = next(remote.batches("train", 50))
    b, _ = next(local.batches("train", 50))
    assert np.array_equal(a.numpy(), b.numpy())


def test_a_changed_remote_shard_is_refused_by_name_and_never_cached(s3, cache):
    uri = s3.uri("faces")
    _random_dataset(uri, 100, 16)
    location = storage.Location.of(uri)
    data = bytearray(location.read_bytes("train-00000.arrow"))
    data[-100] ^= 0xFF
    location.write_bytes("train-00000.arrow", bytes(data))
    with pytest.raises(ShardError, match="train-00000.arrow: sha256"):
        staged(uri)
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == []


def test_a_damaged_cache_entry_is_staged_again(s3, cache):
    uri = s3.uri("faces")
    _random_dataset(uri, 100, 16)
    entry = staged(uri)
    shard = next(entry.glob("train-*.arrow"))
    with open(shard, "r+b") as handle:
        handle.truncate(1000)
    (cache / f".{entry.name}.tmp-leftover").mkdir()  # from a process killed while staging
    again = staged(uri)
    assert again == entry and storage.Location(None, str(entry)).sha256(shard.name) == _manifest(entry)[shard.name]
    assert sorted(p.name for p in cache.iterdir()) == sorted([entry.name, f".{entry.name}.lock"])


def _manifest(entry: Path) -> dict[str, str]:
    return {s["file"]: s["sha256"] for s in json.loads((entry / "manifest.json").read_text())["shards"]}


def _python(code: str, env: dict | None = None, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
                            **kwargs)


def test_trials_starting_at_once_stage_one_copy(s3, cache):
    uri = s3.uri("faces")
    _random_dataset(uri, 600, 32, shard_rows=128)
    code = f"""
        import os
        from data.staging import staged
        path = staged({uri!r})
        print(path, os.stat(path).st_ino)
    """
    processes = [_python(code) for _ in range(4)]
    outputs = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        outputs.append(out.strip())
    assert len(set(outputs)) == 1, outputs
    assert sorted(p.name for p in cache.iterdir() if not p.name.endswith(".lock")) == [Path(outputs[0].split()[0]).name]


_LOADER = """
    import sys, psutil
    from data.loader import FaceData
    def held():
        info = psutil.Process().memory_full_info()
        return info.rss - info.shared, info.uss  # anonymous (private heap) memory, unique set size
    before = held()
    data = FaceData.load({uri!r}, copy={copy})
    touched = 0
    for split in ("train", "val", "test"):
        for part in data._split(split).images + data._split(split).masks:
            touched += int(part.numpy().sum(dtype="uint64") >= 0)  # every page read
    after = held()
    print((after[0] - before[0]) / 2**20, (after[1] - before[1]) / 2**20, touched, flush=True)
    sys.stdin.readline()  # hold the data until told to exit
"""


def _load_in_process(uri: str, copy: bool) -> tuple[subprocess.Popen, tuple[float, float]]:
    process = _python(_LOADER.format(uri=uri, copy=copy), stdin=subprocess.PIPE)
    line = process.stdout.readline()
    if not line:
        raise AssertionError(process.communicate(timeout=30)[1])
    anon, uss, touched = line.split()
    assert int(touched) > 0
    return process, (float(anon), float(uss))


def test_a_second_trial_process_on_the_node_adds_no_dataset_sized_memory(s3, cache):
    uri = s3.uri("faces-40mb")
    _random_dataset(uri, 2500, 64)  # 2,500 x 16 KiB = 39 MiB of shards
    dataset_mib = sum(p.stat().st_size for p in staged(uri).glob("*.arrow")) / 2**20
    assert dataset_mib > 38
    processes = []
    try:
        first, _ = _load_in_process(uri, copy=False)
        processes.append(first)
        second, (anon, uss) = _load_in_process(uri, copy=False)
        processes.append(second)
        copied, (copy_anon, copy_uss) = _load_in_process(uri, copy=True)
        processes.append(copied)
    finally:
        for process in processes:
            process.communicate("\n", timeout=30)
    # Mapped: the pages are the page cache's, shared with the first process (neither private nor anonymous).
    assert anon < 0.1 * dataset_mib and uss < 0.1 * dataset_mib, (anon, uss, dataset_mib)
    # The comparison: a copy-into-memory load holds the whole dataset privately.
    assert copy_anon > 0.9 * dataset_mib and copy_uss > 0.9 * dataset_mib, (copy_anon, copy_uss, dataset_mib)
    print(f"dataset {dataset_mib:.1f} MiB; second mapped process +{anon:.1f} MiB anonymous, +{uss:.1f} MiB USS; "
          f"copied +{copy_anon:.1f} MiB anonymous, +{copy_uss:.1f} MiB USS")
