"""One trial without Ray, MLflow or Optuna: the trainer, the device plan, checkpoints, test-split
evaluation, the final run (retrain + score + export), reconstruction grids and prediction."""
