"""The runs of one study in MLflow: a parent run per hypothesis, nested child runs per trial and
final seed, the report run and the champion's registration.

Written from the driver only, so MLflow's default SQLite store is safe. A tracking failure in the
middle of a study never stops training: the tracker warns once, keeps going, and
`maskvae study sync-mlflow DIR` backfills from the Ray experiment directory later.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from study.errors import first_line
from study.search.objective import finite_or_none
from study.tracking.store import client_for, resolved_tracking_uri
from study.tracking.tags import (CRITERION_TAG, EXPERIMENT_KIND, HYPOTHESIS_TAG, PARENT_TAG, REGION_TAG, ROLE_TAG,
                                 STUDY_TAG, TERMINAL_STATUSES, TRIAL_TAG, VIEW_TAG)

T = TypeVar("T")


def _finite_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The finite numbers among `metrics` (flags and text are not metrics, even when they parse)."""
    return {key: number for key, value in metrics.items()
            if not isinstance(value, (bool, str)) and (number := finite_or_none(value)) is not None}


class MlflowTracker:
    """Runs of one study: a parent run per hypothesis, nested child runs per trial and final seed."""

    def __init__(self, tracking_uri: str | None, experiment: str, study_id: str, *, warn: Callable[[str], None] = print,
                 artifact_location: str | None = None):
        self.uri = resolved_tracking_uri(tracking_uri)
        self.experiment_name = experiment
        self.artifact_location = artifact_location
        self.study_id = study_id
        self.warn = warn
        self.degraded = False
        self._client_obj = None
        self._experiment_id: str | None = None
        self._logged_steps: dict[str, set[int]] = {}
        self._trial_run_ids: dict[str, str] | None = None

    # -- plumbing ---------------------------------------------------------------------------
    @property
    def client(self):
        if self._client_obj is None:
            self._client_obj = client_for(self.uri)
        return self._client_obj

    def _safe(self, what: str, fn: Callable[[], T], default: T | None = None) -> T | None:
        try:
            return fn()
        except Exception as error:
            if not self.degraded:
                self.warn(f"MLflow: {what} failed ({error.__class__.__name__}: {first_line(error)[:200]}); "
                          "training continues; run `maskvae study sync-mlflow DIR` later to backfill")
            self.degraded = True
            return default

    @property
    def experiment_id(self) -> str:
        if self._experiment_id is None:
            found = self.client.get_experiment_by_name(self.experiment_name)
            if found is None:
                self._experiment_id = self.client.create_experiment(self.experiment_name,
                                                                    artifact_location=self.artifact_location,
                                                                    tags={STUDY_TAG: self.study_id, **EXPERIMENT_KIND})
            else:
                self._experiment_id = found.experiment_id
        return self._experiment_id

    def experiment_id_or_none(self) -> str | None:
        """The experiment's id, or None when the store cannot be reached (for printing links)."""
        return self._safe("finding the experiment", lambda: self.experiment_id)

    def share_view(self, key: str, state: str) -> bool:
        """Store a runs view under `key` (see `links.hypotheses_view`); True when stored."""
        from study.tracking.links import SHARED_VIEW_TAG

        return bool(self._safe("saving the hypotheses view", lambda: self.client.set_experiment_tag(
            self.experiment_id, f"{SHARED_VIEW_TAG}{key}", state) or True, False))

    def _find_run(self, tags: dict[str, str]):
        clauses = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
        runs = self.client.search_runs([self.experiment_id], filter_string=clauses, max_results=2)
        return runs[0] if runs else None

    # -- runs -------------------------------------------------------------------------------
    def hypothesis_run(self, hypothesis: str, tags: dict[str, str]) -> str | None:
        """The hypothesis's parent run, created once and re-attached afterwards."""
        def work() -> str:
            key = {STUDY_TAG: self.study_id, ROLE_TAG: "hypothesis", HYPOTHESIS_TAG: hypothesis}
            found = self._find_run(key)
            if found is not None:
                return found.info.run_id
            run = self.client.create_run(self.experiment_id, run_name=hypothesis, tags={**tags, **key})
            return run.info.run_id

        return self._safe(f"creating the run of {hypothesis}", work)

    def child_run(self, parent_id: str | None, hypothesis: str, trial_key: str, run_name: str,
                  params: dict[str, Any], tags: dict[str, str]) -> str | None:
        """A nested run for one trial or final seed; re-attached (not duplicated) on retry or resume."""
        def work() -> str:
            key = {STUDY_TAG: self.study_id, TRIAL_TAG: trial_key}
            known = self._trial_runs()
            if trial_key in known:
                run_id = known[trial_key]
                if self.client.get_run(run_id).info.status != "RUNNING":
                    self.client.update_run(run_id, status="RUNNING")
                history = self.client.get_metric_history(run_id, "epoch")
                self._logged_steps[run_id] = {int(m.step) for m in history}
                return run_id
            all_tags = {**tags, **key, HYPOTHESIS_TAG: hypothesis}
            if parent_id:
                all_tags[PARENT_TAG] = parent_id
            run = self.client.create_run(self.experiment_id, run_name=run_name, tags=all_tags)
            self._log_params(run.info.run_id, params)
            self._logged_steps[run.info.run_id] = set()
            known[trial_key] = run.info.run_id
            return run.info.run_id

        return self._safe(f"creating run {run_name}", work)

    def _trial_runs(self) -> dict[str, str]:
        """Trial key -> run id of this study's trial runs, searched once per tracker. Only runs from
        before this tracker (a resumed driver, a sync) can be re-attached, and the ones it creates are
        added here, so a new trial costs no search (one per trial grew with the study's size)."""
        if self._trial_run_ids is None:
            found: dict[str, str] = {}
            token = None
            while True:
                page = self.client.search_runs([self.experiment_id], filter_string=f"tags.`{STUDY_TAG}` = '{self.study_id}'",
                                               max_results=5000, page_token=token)
                for run in page:
                    if TRIAL_TAG in run.data.tags:
                        found.setdefault(run.data.tags[TRIAL_TAG], run.info.run_id)
                token = page.token
                if not token:
                    break
            self._trial_run_ids = found
        return self._trial_run_ids

    def _log_params(self, run_id: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        self.client.log_batch(run_id, params=[Param(k, str(v)) for k, v in sorted(params.items())])

    def log_epoch(self, run_id: str | None, metrics: dict[str, Any], step: int) -> bool:
        """One batched write per trial-epoch. A step already logged (an epoch repeated by a retried
        attempt) is skipped; a step missed while MLflow was away is written when it comes again (sync)."""
        logged = self._logged_steps.setdefault(run_id, set()) if run_id is not None else set()
        if run_id is None or step in logged:
            return False
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, v, now, step) for k, v in _finite_metrics(metrics).items()]
        done = self._safe("logging metrics", lambda: self.client.log_batch(run_id, metrics=batch) or True, False)
        if done:
            logged.add(step)
        return bool(done)

    def log_values(self, run_id: str | None, metrics: dict[str, Any] | None = None, tags: dict[str, Any] | None = None,
                   params: dict[str, Any] | None = None) -> None:
        if run_id is None:
            return
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        self._safe("logging results", lambda: self.client.log_batch(
            run_id,
            metrics=[Metric(k, v, now, 0) for k, v in _finite_metrics(metrics or {}).items()],
            params=[Param(k, str(v)) for k, v in (params or {}).items()],
            tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()],
        ))

    def log_artifacts(self, run_id: str | None, local_dir: Path, artifact_path: str | None = None) -> bool:
        """Upload a file or directory; True when it reached the run."""
        if run_id is None or not Path(local_dir).exists():
            return False
        if Path(local_dir).is_file():
            upload = lambda: self.client.log_artifact(run_id, str(local_dir), artifact_path)  # noqa: E731
        else:
            upload = lambda: self.client.log_artifacts(run_id, str(local_dir), artifact_path)  # noqa: E731
        return bool(self._safe("uploading artifacts", lambda: upload() or True, False))

    def end_run(self, run_id: str | None, status: str) -> None:
        if run_id is None:
            return
        assert status in TERMINAL_STATUSES, status
        self._safe("closing a run", lambda: self.client.set_terminated(run_id, status=status))

    def report_run(self, tags: dict[str, str]) -> str | None:
        def work() -> str:
            key = {STUDY_TAG: self.study_id, ROLE_TAG: "report"}
            found = self._find_run(key)
            if found is not None:
                return found.info.run_id
            return self.client.create_run(self.experiment_id, run_name="report", tags={**tags, **key}).info.run_id

        return self._safe("creating the report run", work)

    def close_open_runs(self, status: str = "KILLED") -> int:
        """Mark every RUNNING run of this study `status` (Ctrl-C, crash): nothing is left RUNNING."""
        def work() -> int:
            runs = self.client.search_runs(
                [self.experiment_id], filter_string=f"tags.`{STUDY_TAG}` = '{self.study_id}' and attributes.status = 'RUNNING'",
                max_results=5000,
            )
            for run in runs:
                self.client.set_terminated(run.info.run_id, status=status)
            return len(runs)

        return self._safe("closing open runs", work, 0) or 0

    def register_champion(self, name: str, run_id: str, artifact_path: str, *, hypothesis: str, study: str,
                          view: str, region: str, criterion: str,
                          detail: str = "", alias: str = "champion") -> str | None:
        """Register the winning hypothesis's model as `name@alias`, its version saying what won, on
        which view, region and criterion (`detail`: the ranking's own sentence), and for which study."""
        description = (f"Champion of maskvae study {study} (id {self.study_id}, MLflow experiment "
                       f"{self.experiment_name}): {hypothesis} ranks first on the {view} view, {region} region, "
                       f"by {criterion}." + (f" {detail.rstrip('.')}." if detail else "")
                       + " The study's REPORT.md is on its `report` run.")
        tags = {STUDY_TAG: self.study_id, HYPOTHESIS_TAG: hypothesis, VIEW_TAG: view, REGION_TAG: region,
                CRITERION_TAG: criterion}
        return self.register_model(name, run_id, artifact_path, alias, description=description, tags=tags)

    def register_model(self, name: str, run_id: str, artifact_path: str, alias: str = "champion", *,
                       description: str | None = None, tags: dict[str, str] | None = None) -> str | None:
        def work() -> str:
            from mlflow.exceptions import MlflowException

            try:
                self.client.create_registered_model(
                    name, tags={STUDY_TAG: self.study_id},
                    description=f"Models of maskvae study {name}; `@{alias}` is the study's winning hypothesis.")
            except MlflowException as error:
                if "already exists" not in str(error).lower() and "RESOURCE_ALREADY_EXISTS" not in str(error):
                    raise
            version_tags = {STUDY_TAG: self.study_id, **(tags or {})}
            for existing in self.client.search_model_versions(f"name = '{name}'"):
                if existing.run_id == run_id:  # re-publishing (sync, resume) must not add versions
                    if description:
                        self.client.update_model_version(name, existing.version, description=description)
                    for key, value in version_tags.items():
                        self.client.set_model_version_tag(name, existing.version, key, value)
                    self.client.set_registered_model_alias(name, alias, existing.version)
                    return str(existing.version)
            source = f"{self.client.get_run(run_id).info.artifact_uri}/{artifact_path}"
            version = self.client.create_model_version(name, source=source, run_id=run_id, tags=version_tags,
                                                       description=description)
            self.client.set_registered_model_alias(name, alias, version.version)
            return str(version.version)

        return self._safe(f"registering model {name}", work)
