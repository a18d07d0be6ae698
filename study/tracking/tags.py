"""The MLflow tag names maskvae writes: one home, so queries and writers never drift apart."""
from __future__ import annotations

ROLE_TAG = "maskvae.role"
STUDY_TAG = "maskvae.study_id"
HYPOTHESIS_TAG = "maskvae.hypothesis"
TRIAL_TAG = "maskvae.trial_key"
PHASE_TAG = "maskvae.phase"
TRIAL_ID_TAG = "maskvae.trial_id"
ATTEMPT_TAG = "maskvae.attempt"
ERROR_TAG = "maskvae.error"
NODE_TAG = "maskvae.node_id"
CHECKPOINT_NOTE_TAG = "maskvae.checkpoint_note"
CHAMPION_TAG = "maskvae.champion"
WINNER_TAG = "maskvae.winner"
STUDY_NAME_TAG = "maskvae.study"
PARENT_TAG = "mlflow.parentRunId"
# MLflow 3's UI opens an experiment as a GenAI (traces) view unless told it holds model training runs.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
TERMINAL_STATUSES = ("FINISHED", "FAILED", "KILLED")
