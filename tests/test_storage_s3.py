"""The storage module, the data commands and preflight against a real S3 API (moto's server on
loopback): both ways of naming the endpoint, writes that land in the bucket, refusals that name the
field before Ray or MLflow is touched."""
from __future__ import annotations

import os

import pytest

from data import storage
from data.manifest import load_manifest
from data.shard_reader import verify
from study.cli import main


def test_endpoint_from_the_environment(s3):
    location = storage.Location.of(s3.uri("plain"))
    location.write_bytes("a/b.txt", b"hello")
    assert s3.keys("plain") == ["plain/a/b.txt"]
    assert location.read_bytes("a/b.txt") == b"hello"
    assert location.child("a").names() == ["b.txt"]


def test_endpoint_in_the_uri_query_alone(s3, monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")  # only credentials remain in the environment
    base = s3.query_uri("queried")
    # Joined parts go before the query string: the endpoint survives every join (defect 3 was
    # "s3://b/p?endpoint_override=...&scheme=http/tune").
    nested = storage.join(base, "tune", "trial-1")
    assert nested == f"s3://{s3.name}/queried/tune/trial-1?endpoint_override={s3.server.host}&scheme=http"
    location = storage.Location.of(nested)
    location.write_bytes("result.json", b"{}")
    assert s3.keys("queried") == ["queried/tune/trial-1/result.json"]
    assert storage.Location.of(location.uri).read_bytes("result.json") == b"{}"
    # A path on the same store (as Ray reports them: no scheme, no endpoint) reopens with both.
    assert storage.Location.of(location.sibling_uri(f"{s3.name}/queried/tune")).names() == ["trial-1"]


def test_experiment_path_keeps_the_endpoint_last(s3):
    pytest.importorskip("ray")
    from study.orchestration.experiments import experiment_path

    path = experiment_path(s3.query_uri("studies/a"), "tune")
    assert path.endswith(f"/studies/a/tune?endpoint_override={s3.server.host}&scheme=http")


def test_writable_probe_leaves_nothing_and_names_the_field(s3):
    assert storage.writable_problem("ray.storage_path", s3.uri("studies/x")) is None
    # pyarrow keeps a deleted object's folder as an empty marker object; no probe data stays.
    assert [key for key in s3.keys() if not key.endswith("/")] == []
    problem = storage.writable_problem("ray.storage_path", "s3://no-such-bucket-maskvae/studies")
    assert problem.startswith("ray.storage_path: s3://no-such-bucket-maskvae/studies: not writable (")
    assert "\n" not in problem


def test_data_synth_writes_to_the_bucket(s3, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    target = s3.uri("datasets/faces")
    assert main(["data", "synth", target, "--count", "40", "--size", "32", "--no-progress"]) == 0
    assert target in capsys.readouterr().out
    assert "datasets/faces/manifest.json" in s3.keys("datasets/faces")
    assert os.listdir(tmp_path) == [], "nothing was written to a local folder named s3:"
    assert verify(target).counts == {"train": 32, "val": 4, "test": 4}
    # An existing dataset is refused by name; nothing is replaced.
    assert main(["data", "synth", target, "--count", "8", "--no-progress"]) == 2
    assert "already holds a dataset" in capsys.readouterr().err
    assert load_manifest(target).counts["train"] == 32


def test_data_prepare_writes_to_the_bucket(s3, tmp_path, monkeypatch):
    from tests.helpers.fake_layouts import write_celeba_layout

    source = write_celeba_layout(tmp_path / "celeba", 12, (40, 48), seed=3)
    monkeypatch.chdir(tmp_path)
    target = s3.uri("datasets/celeba-32")
    code = main(["data", "prepare", target, "--source", "celeba", "--images", str(source / "img_align_celeba"),
                 "--masks", str(source / "labels"), "--partition", str(source / "list_eval_partition.txt"),
                 "--size", "32", "--no-progress"])
    assert code == 0
    assert sorted(os.listdir(tmp_path)) == ["celeba"]
    assert sum(verify(target).counts.values()) == 12


def test_synthesize_if_missing_writes_to_the_bucket(s3, tmp_path, monkeypatch):
    from study.config.loading import load_study_config
    from study.driver.preflight import ensure_dataset

    monkeypatch.chdir(tmp_path)
    # A probe (or anything else) may have touched the prefix: only a manifest means "present".
    storage.Location.of(s3.uri("smoke")).write_bytes("unrelated.txt", b"x")
    config = load_study_config("smoke", overrides=[f"data.path={s3.uri('smoke/faces')}",
                                                   "data.synthesize_if_missing.count=40"])
    assert ensure_dataset(config, progress=False) == s3.uri("smoke/faces")
    assert "smoke/faces/manifest.json" in s3.keys("smoke")
    assert os.listdir(tmp_path) == []


def _study_args(tmp_path, *values):
    sets = ["data.path=" + str(tmp_path / "unused"), "data.synthesize_if_missing=null",
            f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}", "ray.dashboard=false", "final.grid_faces=2", "name=preflight-s3"]
    args = ["study", "run", "--out", str(tmp_path / "study")]
    for value in [*sets, *values]:
        args += ["--set", value]
    return args


@pytest.mark.parametrize("field", ["data.path", "ray.storage_path", "mlflow.artifact_location"])
def test_preflight_refuses_a_missing_bucket_naming_the_field(s3, tmp_path, capsys, field):
    import ray

    missing = f"s3://no-such-bucket-{field.replace('.', '-').replace('_', '-')}/prefix"
    good_data = s3.uri("faces")
    if field != "data.path":
        from data.prepare import synthesize

        synthesize(good_data, count=20, size=32, seed=0, progress=False)
    values = {"data.path": good_data, field: missing}
    assert main(_study_args(tmp_path, *(f"{k}={v}" for k, v in values.items()))) == 2
    err = capsys.readouterr().err
    # One problem, one line naming the field: "maskvae study: error: <what>: <field>: ... <uri> ...".
    errors = [line for line in err.splitlines() if "maskvae study: error:" in line]
    assert len(errors) == 1 and f": {field}: " in errors[0] and missing in errors[0], err
    assert not ray.is_initialized()
    assert not (tmp_path / "study").exists()
    if (tmp_path / "mlflow.db").exists():
        from mlflow import MlflowClient

        client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
        experiments = client.search_experiments()
        assert not client.search_runs([e.experiment_id for e in experiments]), "no MLflow run was started"


def test_preflight_refuses_an_artifact_root_other_than_the_experiments(s3, tmp_path, capsys):
    from mlflow import MlflowClient

    MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").create_experiment(
        "preflight-s3", artifact_location=s3.uri("elsewhere"))
    from data.prepare import synthesize

    synthesize(s3.uri("faces"), count=20, size=32, seed=0, progress=False)
    args = _study_args(tmp_path, f"data.path={s3.uri('faces')}", f"mlflow.artifact_location={s3.uri('mlflow')}")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"mlflow.artifact_location: {s3.uri('mlflow')}: experiment 'preflight-s3' already keeps" in err
