"""Ray's fake multi-node provider (`fake_multinode`) with one change: every node it launches keeps
its runtime environments (a job's working_dir, py_modules) in a directory of its own.

The fake nodes live in the head's temp directory. The first time a node needs a job's working_dir,
its runtime-env agent deletes whatever is at the package's path and unpacks it again; with one
directory for all nodes, a worker node that the autoscaler added mid-job deleted the files that the
job's driver and the other nodes' trials were running from. Real nodes have disks of their own,
which is what this restores. Runs inside the head's autoscaler (`provider: type: external`).
"""
from __future__ import annotations

import ray._private.node
from ray.autoscaler._private.fake_multi_node.node_provider import FakeMultiNodeProvider


class FakeMultiNodeProviderOwnDirs(FakeMultiNodeProvider):
    def _create_node_with_resources_and_labels(self, node_config, tags, count, resources, labels):
        with self.lock:  # the parent takes the same (re-entrant) lock; nothing else builds nodes here
            build = ray._private.node.Node
            number = self._next_node_id + 1  # the parent hands out this id next

            def node(ray_params, *args, **kwargs):
                ray_params.runtime_env_dir_name = f"runtime_resources_node{number}"
                return build(ray_params, *args, **kwargs)

            ray._private.node.Node = node
            try:
                super()._create_node_with_resources_and_labels(node_config, tags, count, resources, labels)
            finally:
                ray._private.node.Node = build
