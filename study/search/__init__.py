"""The search inside each hypothesis and the trial-level rules: the one "better" rule, the record
of a trial's outcome, the choice of final runs. Only `optuna_search` imports Optuna."""
