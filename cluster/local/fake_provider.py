"""Ray's fake multi-node provider (`fake_multinode`), with two changes that make its nodes behave
like cloud instances. Runs inside the head's autoscaler (`provider: type: external`).

1. Every node it launches keeps its runtime environments (a job's working_dir, py_modules) in a
   directory of its own. The fake nodes live in the head's temp directory. The first time a node
   needs a job's working_dir, its runtime-env agent deletes whatever is at the package's path and
   unpacks it again; with one directory for all nodes, a worker node that the autoscaler added
   mid-job deleted the files that the job's driver and the other nodes' trials were running from.
   Real nodes have disks of their own.
2. A node whose raylet has died (`autoscalecluster.py preempt`) leaves the provider's list of
   running nodes, as a reclaimed spot instance leaves the cloud's, so the autoscaler launches a
   replacement. Ray's own provider kept listing it: the autoscaler never saw it go, it still
   counted against `max_workers`, and a study whose every worker was preempted waited forever.
"""
from __future__ import annotations

import ray._private.node
from ray._private import ray_constants
from ray.autoscaler._private.fake_multi_node.node_provider import FakeMultiNodeProvider


class CloudLikeFakeProvider(FakeMultiNodeProvider):
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

    def non_terminated_nodes(self, tag_filters):
        with self.lock:
            for node_id in [node_id for node_id, record in self._nodes.items() if _raylet_gone(record)]:
                self._terminate_node(self._nodes.pop(node_id))  # whatever of it still runs goes too
        return super().non_terminated_nodes(tag_filters)


def _raylet_gone(record: dict) -> bool:
    node = record.get("node")  # the head's record has none: this provider did not start it
    raylets = node.all_processes.get(ray_constants.PROCESS_TYPE_RAYLET, []) if node is not None else []
    return bool(raylets) and all(info.process.poll() is not None for info in raylets)
