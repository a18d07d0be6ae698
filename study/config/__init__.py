"""Typed configuration, one schema per concern, plus loading (presets, YAML, --set).

Importable without torch, Ray, MLflow or Optuna: `maskvae --help` and `study status` stay fast.
"""
