"""Every Ray import in maskvae (Ray's API moves between releases; one adapter keeps the blast radius
small): the cluster connection, the worker-side trainables, the searcher and scheduler adapters,
the driver's callback, and the experiments (tuners, restore, records)."""
