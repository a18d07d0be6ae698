"""One MLflow experiment and one registered model per study, so studies never mix.

A study claims its name once: the study name when no other study holds it, else the name with the
study's start time (`maskvae-smoke-20250101-120000`), else that with the study id. Claiming creates
the experiment tagged with the study id, which makes it atomic against a second study starting
beside it (the loser of the race moves to the next name). The registered model takes the same
name, so `models:/<name>@champion` only ever points into its own study: an alias belongs to one
registered model, and versions of one name would claim the studies are comparable when their data
and settings may differ.
"""
from __future__ import annotations

from study.tracking.store import client_for
from study.tracking.tags import EXPERIMENT_KIND, STUDY_TAG


def _owner(experiment) -> str | None:
    return (experiment.tags or {}).get(STUDY_TAG) if experiment is not None else None


def _model_taken(client, name: str, study_id: str) -> bool:
    found = client.search_registered_models(filter_string=f"name = '{name}'", max_results=1)
    return bool(found) and (found[0].tags or {}).get(STUDY_TAG) != study_id


def claim_names(tracking_uri: str, study_name: str, study_id: str, stamp: str,
                explicit_experiment: str | None = None, artifact_location: str | None = None) -> tuple[str, str]:
    """(experiment, registered-model name) for a study, the experiment created and tagged with it.

    `explicit_experiment` (the `mlflow.experiment` setting) is used as given, shared with other
    studies if they chose it too; the study's runs still carry its id, which the printed link filters
    on, and the model name is claimed as without it. A created experiment keeps its artifacts at
    `artifact_location` (the `mlflow.artifact_location` setting; MLflow fixes it at creation)."""
    from mlflow.exceptions import MlflowException

    client = client_for(tracking_uri)
    candidates = [study_name, f"{study_name}-{stamp}", f"{study_name}-{stamp}-{study_id}"]
    chosen = None
    for name in candidates:
        existing = client.get_experiment_by_name(name)
        if existing is not None and _owner(existing) != study_id:
            continue
        if _model_taken(client, name, study_id):
            continue
        if existing is None and explicit_experiment is None:
            try:
                client.create_experiment(name, artifact_location=artifact_location,
                                         tags={STUDY_TAG: study_id, **EXPERIMENT_KIND})
            except MlflowException:
                # Another study created it between the lookup and here: it is theirs unless tagged ours.
                if _owner(client.get_experiment_by_name(name)) != study_id:
                    continue
        chosen = name
        break
    if chosen is None:  # the last candidate holds this study's own id: only a crafted store gets here
        raise RuntimeError(f"no free MLflow experiment name for study {study_name} ({study_id})")
    if explicit_experiment is None:
        return chosen, chosen
    if client.get_experiment_by_name(explicit_experiment) is None:
        try:
            client.create_experiment(explicit_experiment, artifact_location=artifact_location,
                                     tags=dict(EXPERIMENT_KIND))
        except MlflowException:
            pass  # created by a study beside this one: shared, as asked
    return explicit_experiment, chosen
