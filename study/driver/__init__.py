"""What `maskvae study run` does: preflight, the phases, the study directory (layout, state, live
trial ledger), publishing results, status and sync."""
