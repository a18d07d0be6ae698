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
# A hypothesis parent run's description of itself.
LOSS_TAG = "maskvae.loss"
MASK_TAG = "maskvae.mask"
DATASET_HASH_TAG = "maskvae.dataset_hash"
CODE_VERSION_TAG = "maskvae.code_version"
VERSION_TAG_PREFIX = "maskvae.version."  # + library name
CI_TAG_PREFIX = "maskvae.ci."  # + a parent metric's name: its bootstrap interval
# A registered champion version: what it won on.
VIEW_TAG = "maskvae.view"
REGION_TAG = "maskvae.region"
CRITERION_TAG = "maskvae.criterion"
PARENT_TAG = "mlflow.parentRunId"
# MLflow 3's UI opens an experiment as a GenAI (traces) view unless told it holds model training runs.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
TERMINAL_STATUSES = ("FINISHED", "FAILED", "KILLED")
