"""Every MLflow import in maskvae: the store connection, the study's tracker, the trial listener,
the tag names, and replaying Ray's record into MLflow."""
