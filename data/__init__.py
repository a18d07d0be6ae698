"""Face data: sources -> prepared Arrow shards -> tensors.

Import from the submodules (``data.prepare``, ``data.shards``, ``data.loader`` ...): this package
imports nothing itself, so reading shards never loads PIL, tqdm or the synthetic renderer, and
only ``data.loader`` loads torch.
"""
