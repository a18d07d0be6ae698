"""Two studies on one machine: side by side, each with its own Ray dashboard port and its own MLflow
experiment and champion; a dashboard port that is taken is refused by name before anything exists."""
from __future__ import annotations

import re
import socket

import pytest

from tests.studyproc import StudyProcess, set_args, study_overrides

pytestmark = pytest.mark.slow

NAME = "side-by-side"


def _tiny(data, tracking, extra=()):
    return study_overrides(data, tracking, losses="[l2]", masks="[true, false]", trials=1, epochs=1, seeds=1,
                           extra=[f"name={NAME}", *extra])


def test_a_taken_dashboard_port_is_refused_by_name_and_nothing_is_made(tmp_path, synthetic_dataset):
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = ["study", "run", "--out", str(tmp_path / "study")]
        args += set_args(_tiny(synthetic_dataset, tracking, ["ray.dashboard=true", f"ray.dashboard_port={port}"]))
        study = StudyProcess(args, cwd=tmp_path)
        code = study.wait(120)
    assert code == 2, study.output[-3000:]
    assert f"ray.dashboard_port: 127.0.0.1:{port} is in use" in study.output
    assert "Traceback" not in study.output
    assert not (tmp_path / "study").exists() and not (tmp_path / "mlflow.db").exists()


def test_two_studies_run_side_by_side_into_their_own_experiments(tmp_path, synthetic_dataset):
    from mlflow import MlflowClient

    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    studies = []
    for label in ("first", "second"):
        args = ["study", "run", "--out", str(tmp_path / label)]
        # Each study starts its own local Ray with its dashboard on an automatically chosen port.
        args += set_args(_tiny(synthetic_dataset, tracking, ["ray.dashboard=true", "ray.num_cpus=1"]))
        studies.append(StudyProcess(args, cwd=tmp_path))
    codes = [study.wait(900) for study in studies]
    assert codes == [0, 0], "\n\n".join(study.output[-3000:] for study in studies)

    ports = [re.search(r"Ray dashboard: http://127\.0\.0\.1:(\d+)", study.output) for study in studies]
    assert all(ports), [study.output[:2000] for study in studies]
    assert ports[0].group(1) != ports[1].group(1)

    client = MlflowClient(tracking_uri=tracking)
    experiments = [e for e in client.search_experiments() if e.name.startswith(NAME)]
    assert len(experiments) == 2 and any(e.name == NAME for e in experiments)
    study_ids = set()
    for experiment in experiments:
        runs = client.search_runs([experiment.experiment_id], max_results=100)
        owners = {run.data.tags["maskvae.study_id"] for run in runs}
        assert owners == {experiment.tags["maskvae.study_id"]}, experiment.name  # no run of the other study
        assert sorted(r.data.tags["maskvae.hypothesis"] for r in runs if r.data.tags.get("maskvae.role") == "hypothesis") \
            == ["l2/mask", "l2/nomask"]
        # The registered model takes the experiment's name: each study's @champion stays its own.
        champion = client.get_model_version_by_alias(experiment.name, "champion")
        assert champion.tags["maskvae.study_id"] in owners
        assert client.get_run(champion.run_id).info.experiment_id == experiment.experiment_id
        study_ids |= owners
    assert len(study_ids) == 2
    for study in studies:
        assert "compare the hypotheses" in study.output and "workflowType=machine_learning" in study.output
