"""Preflight refuses plain local paths for a study whose trials run on more than one host, or on
nodes of this host that do not see its files."""
from __future__ import annotations

from pathlib import Path

import pytest

from study.errors import UserInputError
from study.driver.shared_storage import (Mount, NodeFacts, Witness, is_shared, local_paths, read_mounts,
                                         require_shared_storage, shared_storage_problems, unseen_problems, witnesses)

LOCAL_DISK = [Mount("/", "ext4"), Mount("/mnt/shared", "nfs4"), Mount("/mnt/bucket", "fuse.gcsfuse")]
PATHS = {"data.path": "/data/celeba-144", "ray.storage_path": "/home/me/studies/ray"}


def node(host: str, cpus: float = 8, gpus: float = 1, node_id: str | None = None) -> NodeFacts:
    return NodeFacts(node_id=node_id or f"{host}-node", host=host, cpus=cpus, gpus=gpus)


def problems(paths=PATHS, nodes=None, driver="10.0.0.1", cpus=2.0, gpus=0.25, **kwargs):
    nodes = nodes if nodes is not None else [node("10.0.0.1", 0, 0), node("10.0.0.2"), node("10.0.0.3")]
    return shared_storage_problems(paths, nodes, driver_host=driver, cpus_per_trial=cpus, gpus_per_trial=gpus,
                                   mounts=LOCAL_DISK, **kwargs)


def test_local_paths_on_a_multi_host_cluster_are_refused_by_field_name():
    found = problems()
    assert [p.split(":")[0] for p in found] == ["data.path", "ray.storage_path"]
    assert "/data/celeba-144 is a local path" in found[0] and "10.0.0.2" in found[0]
    assert "s3://" in found[0], "the message says what to use instead"


def test_object_store_uris_and_network_mounts_are_shared():
    shared = {"data.path": "s3://bucket/celeba-144", "ray.storage_path": "gs://bucket/studies"}
    assert problems(shared) == []
    mounted = {"data.path": "/mnt/shared/celeba-144", "ray.storage_path": "file:///mnt/bucket/studies"}
    assert problems(mounted) == []
    assert not is_shared("file:///home/me/studies", LOCAL_DISK)
    assert not is_shared("/mnt/sharedness/x", LOCAL_DISK), "a prefix of a mount point's name is not inside it"


def test_nodes_that_share_one_host_may_use_local_paths():
    one_host = [node("127.0.0.1", 0, 0, "head"), node("127.0.0.1", 1, 0, "w1"), node("127.0.0.1", 1, 0, "w2")]
    assert problems(nodes=one_host, driver="127.0.0.1", cpus=1, gpus=0) == []


def test_a_cluster_with_no_node_that_fits_a_trial_yet_needs_shared_storage():
    # An autoscaling cluster at start: only the CPU-less head exists; trials land on nodes to come.
    found = problems(nodes=[node("10.0.0.1", 0, 0)])
    assert len(found) == 2 and "autoscaler" in found[0]


def test_a_ray_instance_the_study_started_itself_is_never_checked():
    assert problems(nodes=[node("10.0.0.1", 0, 0)], existing_cluster=False) == []


def test_require_shared_storage_raises_one_error_naming_every_field():
    with pytest.raises(UserInputError) as caught:
        require_shared_storage(PATHS, [node("10.0.0.1", 0, 0), node("10.0.0.2")], driver_host="10.0.0.1",
                               cpus_per_trial=2, gpus_per_trial=0.25, mounts=LOCAL_DISK)
    assert "data.path" in str(caught.value) and "ray.storage_path" in str(caught.value)


def test_node_facts_from_ray_nodes_keep_alive_nodes_only():
    raw = [
        {"NodeID": "a", "Alive": True, "NodeManagerAddress": "10.0.0.1", "Resources": {"CPU": 0.0}},
        {"NodeID": "b", "Alive": False, "NodeManagerAddress": "10.0.0.2", "Resources": {"CPU": 8.0, "GPU": 1.0}},
        {"NodeID": "c", "Alive": True, "NodeManagerAddress": "10.0.0.3", "Resources": {"CPU": 8.0, "GPU": 4.0}},
    ]
    assert NodeFacts.from_ray_nodes(raw) == [NodeFacts("a", "10.0.0.1", 0.0, 0.0), NodeFacts("c", "10.0.0.3", 8.0, 4.0)]


def test_read_mounts_decodes_escaped_mount_points(tmp_path):
    table = tmp_path / "mounts"
    table.write_text("/dev/vda / ext4 rw 0 0\nserver:/export /mnt/my\\040data nfs4 rw 0 0\n")
    assert read_mounts(str(table)) == [Mount("/", "ext4"), Mount("/mnt/my data", "nfs4")]
    assert read_mounts(str(tmp_path / "missing")) == []


# --- Same-host nodes that do not share the driver's disk: the witness check ------------------------

def test_local_paths_keep_plain_paths_and_file_uris_only():
    paths = {"data.path": "/data/faces", "ray.storage_path": "file:///runs/x/ray", "other": "s3://bucket/p"}
    assert local_paths(paths) == {"data.path": "/data/faces", "ray.storage_path": "/runs/x/ray"}


def test_witnesses_use_the_manifest_and_a_marker_that_leaves_nothing_behind(tmp_path):
    data = tmp_path / "faces"
    data.mkdir()
    (data / "manifest.json").write_text('{"x": 1}')
    storage = tmp_path / "study" / "ray"
    with witnesses({"data.path": str(data), "ray.storage_path": str(storage)}, {"data.path": "manifest.json"}) as found:
        by_field = {witness.field: witness for witness in found}
        assert by_field["data.path"].file == str(data / "manifest.json")
        marker = Path(by_field["ray.storage_path"].file)
        assert marker.parent == storage and marker.is_file()
        assert by_field["data.path"].digest != by_field["ray.storage_path"].digest
    assert not marker.exists() and not (tmp_path / "study").exists(), "folders made for the check are removed"
    assert (data / "manifest.json").exists()


def test_a_node_that_sees_other_bytes_or_nothing_is_named_per_field():
    nodes = [NodeFacts("aaaaaaaa11", "127.0.0.1", 1, 0), NodeFacts("bbbbbbbb22", "127.0.0.1", 1, 0)]
    found = [Witness("data.path", "/tmp/faces", "/tmp/faces/manifest.json", "d1"),
             Witness("ray.storage_path", "/tmp/s/ray", "/tmp/s/ray/.m", "d2")]
    problems = unseen_problems(found, {"aaaaaaaa11": ["d1", "d2"], "bbbbbbbb22": [None, "other"]}, nodes)
    assert len(problems) == 2
    assert problems[0].startswith("data.path: /tmp/faces is a local path that 1 of the 2 trial nodes")
    assert "bbbbbbbb on 127.0.0.1" in problems[0] and "aaaaaaaa" not in problems[0]
    assert problems[1].startswith("ray.storage_path: ")
    assert unseen_problems(found, {"aaaaaaaa11": ["d1", "d2"], "bbbbbbbb22": ["d1", "d2"]}, nodes) == []


def test_a_node_that_never_answers_is_not_taken_as_sharing():
    nodes = [NodeFacts("aaaaaaaa11", "127.0.0.1", 1, 0)]
    found = [Witness("data.path", "/tmp/faces", "/tmp/faces/manifest.json", "d1")]
    problems = unseen_problems(found, {"aaaaaaaa11": None}, nodes)
    assert len(problems) == 1 and "did not answer" in problems[0] and "ray.shared_filesystem" in problems[0]


def test_the_storage_module_names_the_local_path_of_a_location():
    from data import storage

    assert storage.local_path("/data/faces") == "/data/faces"
    assert storage.local_path("file:///runs/x/ray") == "/runs/x/ray"
    assert storage.local_path("s3://bucket/p?endpoint_override=h:1&scheme=http") is None
    assert storage.local_path("gs://bucket/p") is None
