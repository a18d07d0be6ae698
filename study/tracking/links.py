"""Links into the MLflow UI (MLflow 3's URL state: the runs tab reads `searchFilter`, `orderByKey`,
`orderByAsc` and `compareRunsMode` from the query string of its hash route).

MLflow 3.17 decides what an experiment opens on from its sidebar's GenAI / Model training switch
(kept in the browser, GenAI at first) rather than from the experiment's `mlflow.experimentKind` tag;
`workflowType=machine_learning` in a link turns the switch to Model training, so the link opens the
runs, and the sidebar shows Models and the Model registry."""
from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote, urlencode

from study.tracking.tags import ROLE_TAG, STUDY_TAG
from study.tracking.uris import SQLITE_PREFIX, sqlite_path

LOCAL_UI = "http://127.0.0.1:5000"
MODEL_TRAINING = "machine_learning"
SHARED_VIEW_TAG = "mlflow.sharedViewState."


def hypotheses_filter(study_id: str) -> str:
    """The runs-search filter for one study's hypothesis (parent) runs."""
    return f"tags.`{ROLE_TAG}` = 'hypothesis' and tags.`{STUDY_TAG}` = '{study_id}'"


def column(kind: str, key: str) -> str:
    """A runs-table column as MLflow's UI names it: `params.`lr``, `metrics.`full/rank``."""
    return f"{kind}.`{key}`"


def hypotheses_view(study_id: str, order_metric: str, columns: list[str]) -> tuple[str, str]:
    """(share key, view state) of this study's hypothesis runs, best rank first, with `columns` in
    the runs table. Stored as the experiment tag `mlflow.sharedViewState.<key>` (what the UI's Share
    button writes; plain JSON is one of the forms it reads), it is opened by `?viewStateShareKey=`."""
    state = {"searchFilter": hypotheses_filter(study_id), "orderByKey": column("metrics", order_metric),
             "orderByAsc": True, "selectedColumns": columns, "runsHiddenMode": "SHOW_ALL"}
    return f"maskvae-{study_id}-hypotheses", json.dumps(state)


def hypotheses_link(ui_url: str, experiment_id: str, study_id: str, order_metric: str, mode: str = "CHART",
                    view_key: str | None = None) -> str:
    """This study's hypothesis runs, best rank first, in chart view (`mode="TABLE"` for the table).
    With `view_key` (a shared view from `hypotheses_view`) the table also shows its columns; the
    UI ignores a shared view when the link carries search settings of its own, so it carries none."""
    if view_key:
        query = {"viewStateShareKey": view_key}
    else:
        query = {"searchFilter": hypotheses_filter(study_id), "orderByKey": column("metrics", order_metric),
                 "orderByAsc": "true"}
    query.update({"compareRunsMode": mode, "workflowType": MODEL_TRAINING})
    return f"{ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs?{urlencode(query, quote_via=quote)}"


def model_version_link(ui_url: str, name: str, version: str) -> str:
    return f"{ui_url.rstrip('/')}/#/models/{quote(name)}/versions/{version}?workflowType={MODEL_TRAINING}"


def ui_base(tracking_uri: str) -> str:
    """Where the UI for `tracking_uri` answers: the server itself, or a local `mlflow ui`."""
    return tracking_uri.rstrip("/") if tracking_uri.startswith(("http://", "https://")) else LOCAL_UI


def absolute_store_uri(tracking_uri: str) -> str:
    """A SQLite URI that works from any directory (MLflow's default `sqlite:///mlflow.db` is relative)."""
    path = sqlite_path(tracking_uri)
    if path is not None and not path.startswith("/"):
        return SQLITE_PREFIX + str(Path(path).resolve()) + tracking_uri[len(SQLITE_PREFIX) + len(path):]
    return tracking_uri
