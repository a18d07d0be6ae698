"""Everything that can fail fast fails here, before any training: storage writable (local or object
store), tracking reachable, LPIPS weights present, the dataset readable (or made on first use)."""
from __future__ import annotations

import datetime as dt
import importlib.metadata
import subprocess
from dataclasses import dataclass
from pathlib import Path

from data import storage
from data.manifest import MANIFEST
from study.config.study import StudyConfig
from study.errors import UserInputError

_VERSIONED = ("maskvae", "torch", "ray", "mlflow", "optuna", "lpips", "pytorch-msssim", "pyarrow")


def package_versions() -> dict[str, str]:
    versions = {}
    for name in _VERSIONED:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    try:
        versions["code"] = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                                          cwd=Path(__file__).parent, timeout=5).stdout.strip() or versions["maskvae"]
    except (OSError, subprocess.SubprocessError):
        versions["code"] = versions["maskvae"]
    return versions


def default_out_dir(config: StudyConfig) -> Path:
    return Path("runs") / f"{config.name}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"


def ensure_dataset(config: StudyConfig, progress: bool = True) -> str:
    """The dataset's location as every trial must see it (local paths made absolute)."""
    from data.shard_reader import verify

    path = config.data.path
    synth = config.data.synthesize_if_missing
    # The manifest, not the folder: a folder (or an object-store prefix) can exist without a dataset.
    if synth is not None and not storage.Location.of(path).exists(MANIFEST):
        from data.prepare import synthesize

        print(f"making {synth.count} synthetic {synth.size}px faces in {path} (first use)")
        synthesize(path, count=synth.count, size=synth.size, seed=synth.seed, progress=progress)
    verify(path)  # content hashes: a shard changed after preparation stops the study here, by name
    return storage.absolute(path)


@dataclass(frozen=True)
class PreflightResult:
    """What the checks found that the study goes on with."""

    tracking_uri: str  # resolved: MLflow's default store made explicit
    lpips_available: bool  # this study scores LPIPS (`lpips_in_study`)


def preflight(config: StudyConfig, out_dir: Path) -> PreflightResult:
    """Checks that leave nothing behind: storage reachable and writable (local or object store, the
    MLflow artifact root included), tracking reachable, LPIPS weights present. All before Ray starts
    and before any MLflow run exists."""
    from models.perceptual import lpips_available, unavailable_message

    from study.tracking.store import preflight as tracking_preflight

    checks = [("--out", out_dir)]
    if config.ray.storage_path:
        checks.append(("ray.storage_path", config.ray.storage_path))
    if storage.is_uri(config.data.path) and config.data.synthesize_if_missing is not None:
        checks.append(("data.path", config.data.path))
    problems = [storage.writable_problem(field, where) for field, where in checks]
    if config.data.synthesize_if_missing is None:
        problems.append(storage.readable_problem("data.path", config.data.path, MANIFEST))
    problems = [p for p in problems if p]
    if problems:
        raise UserInputError(problems, title="preflight failed")
    uri = tracking_preflight(config.mlflow.tracking_uri, config.mlflow.preflight_timeout_s)
    problem = _artifact_root_problem(config, uri)
    if problem:
        raise UserInputError([problem], title="preflight failed")
    lpips_ok = lpips_available()
    if not lpips_ok:
        if config.final.lpips == "require":
            raise UserInputError([f"final.lpips: require: {unavailable_message()}"], title="preflight failed")
        if config.final.lpips == "auto":
            from models.perceptual import lpips_weights_path

            print(f"note: LPIPS left out: no AlexNet weights at {lpips_weights_path()} "
                  "(README: LPIPS needs AlexNet weights)")
    return PreflightResult(tracking_uri=uri, lpips_available=lpips_in_study(config, lpips_ok))


def lpips_in_study(config: StudyConfig, available: bool | None = None) -> bool:
    """Whether this study scores LPIPS: its weights are here (`available`, looked up when None) and
    `final.lpips` is not "off"."""
    if available is None:
        from models.perceptual import lpips_available

        available = lpips_available()
    return available and config.final.lpips != "off"


def _artifact_root_problem(config: StudyConfig, tracking_uri: str) -> str | None:
    """MLflow's artifact root, when it is an object store this process writes to: probed like the
    other storage. An existing experiment's root is fixed, so a different configured one is refused.
    (A root the server proxies, `mlflow-artifacts:`, is written by the server, not from here.)"""
    from study.tracking.store import artifact_probe_uri, experiment_artifact_location

    name = config.mlflow.experiment or config.name
    configured = config.mlflow.artifact_location
    existing = experiment_artifact_location(tracking_uri, name)
    if configured and existing and configured.rstrip("/") != existing.rstrip("/"):
        return (f"mlflow.artifact_location: {configured}: experiment {name!r} already keeps its artifacts at "
                f"{existing} (MLflow fixes it at creation); name a new mlflow.experiment or drop the setting")
    root, field = (configured, "mlflow.artifact_location") if configured else (existing, "mlflow artifact root")
    if not root or not storage.is_object_store(root):
        return None
    return storage.writable_problem(field, artifact_probe_uri(root))
