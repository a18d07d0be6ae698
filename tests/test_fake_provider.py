"""The local autoscaling cluster's provider reports a node whose raylet died as terminated, as a
cloud reports a reclaimed instance (`cluster/local/fake_provider.py`)."""
from __future__ import annotations

import subprocess
import sys
import threading
from types import SimpleNamespace

from tests.helpers.scripts import load_script


def _provider_module():
    return load_script("cluster/local/fake_provider.py")


def _node(process) -> SimpleNamespace:
    killed = []
    node = SimpleNamespace(all_processes={"raylet": [SimpleNamespace(process=process)]},
                           kill_all_processes=lambda **kwargs: killed.append(kwargs), killed=killed)
    return node


def test_a_node_whose_raylet_died_leaves_the_list_and_the_rest_of_it_is_stopped():
    module = _provider_module()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        provider = module.CloudLikeFakeProvider.__new__(module.CloudLikeFakeProvider)
        provider.lock = threading.RLock()
        provider._nodes = {"head": {"tags": {"kind": "head"}},  # the head's record: tags only
                           "up": {"tags": {"kind": "worker"}, "node": _node(alive)},
                           "reclaimed": {"tags": {"kind": "worker"}, "node": _node(dead)}}
        reclaimed = provider._nodes["reclaimed"]["node"]
        assert provider.non_terminated_nodes({}) == ["head", "up"]
        assert provider.is_terminated("reclaimed") and reclaimed.killed, "what is left of the node is stopped"
        assert provider.non_terminated_nodes({"kind": "worker"}) == ["up"]
    finally:
        alive.kill()
        alive.wait()
