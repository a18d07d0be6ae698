"""Preflight for multi-node studies: the dataset and Ray's experiment storage must be shared.

Trials read `data.path` and write checkpoints under `ray.storage_path` on whichever node runs
them. On a cluster whose trials can land on more than one host, a plain local path silently
splits the study across disks (or fails on the first node that lacks the dataset), so it is
refused here, before any training. This module makes no Ray calls: the caller passes in what
Ray knows about the nodes.

Nodes on the driver's host usually share its disk, but not always (containers, private mounts):
there the check asks each trial node for a witness file under every local path and compares its
bytes with the driver's (`witnesses`, `unseen_problems`).
"""
from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from data import storage

from study.errors import UserInputError

# Filesystems that present the same files on every node that mounts them.
NETWORK_FILESYSTEMS = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "gpfs", "beegfs", "ceph", "cephfs", "glusterfs",
    "fuse.glusterfs", "fuse.gcsfuse", "fuse.s3fs", "fuse.juicefs", "fuse.mountpoint-s3", "fuse.goofys",
    "fuse.sshfs", "fuse.cephfs", "fuse.blobfuse", "fuse.blobfuse2", "weka", "wekafs", "9p",
})


@dataclass(frozen=True)
class NodeFacts:
    """One alive Ray node, as far as the storage check cares."""

    node_id: str
    host: str  # the node's IP (NodeManagerAddress): nodes on one host share its disks
    cpus: float
    gpus: float

    @classmethod
    def from_ray_nodes(cls, nodes: Iterable[dict]) -> list["NodeFacts"]:
        """From the dicts `ray.nodes()` returns; dead nodes are left out."""
        facts = []
        for node in nodes:
            if not node.get("Alive", False):
                continue
            resources = node.get("Resources") or {}
            facts.append(cls(node_id=str(node.get("NodeID", "")), host=str(node.get("NodeManagerAddress", "")),
                             cpus=float(resources.get("CPU", 0.0)), gpus=float(resources.get("GPU", 0.0))))
        return facts


@dataclass(frozen=True)
class Mount:
    point: str
    fstype: str


def read_mounts(path: str = "/proc/mounts") -> list[Mount]:
    """The mount table of this host (empty where there is none, e.g. macOS)."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return []
    mounts = []
    for line in lines:
        fields = line.split()
        if len(fields) >= 3:
            # /proc/mounts escapes spaces and friends as octal (\040).
            point = fields[1].encode("latin-1").decode("unicode_escape")
            mounts.append(Mount(point, fields[2]))
    return mounts


def _fits_a_trial(nodes: Sequence[NodeFacts], cpus_per_trial: float, gpus_per_trial: float) -> list[NodeFacts]:
    return [n for n in nodes if n.cpus >= cpus_per_trial and n.gpus >= gpus_per_trial]


def trial_hosts(nodes: Sequence[NodeFacts], cpus_per_trial: float, gpus_per_trial: float) -> set[str]:
    """Hosts with at least one node big enough for one trial."""
    return {n.host for n in _fits_a_trial(nodes, cpus_per_trial, gpus_per_trial)}


def spans_hosts(nodes: Sequence[NodeFacts], driver_host: str, cpus_per_trial: float, gpus_per_trial: float) -> bool:
    """Whether trials may run on a host other than the driver's.

    True when a node on another host fits a trial, and also when no node fits one yet: on an
    autoscaling cluster that means the trials will run on nodes still to be launched elsewhere.
    """
    hosts = trial_hosts(nodes, cpus_per_trial, gpus_per_trial)
    return not hosts or hosts != {driver_host}


def _filesystem_type(path: str, mounts: Sequence[Mount]) -> str | None:
    resolved = str(Path(path).expanduser().resolve())
    best: Mount | None = None
    for mount in mounts:
        point = mount.point.rstrip("/") or "/"
        inside = resolved == point or resolved.startswith(point + "/") or point == "/"
        if inside and (best is None or len(point) > len(best.point.rstrip("/") or "/")):
            best = mount
    return best.fstype if best else None


def is_shared(path: str, mounts: Sequence[Mount]) -> bool:
    """An object-store/remote URI, or a local path on a network filesystem."""
    local = storage.local_path(path)
    if local is None:
        return True
    fstype = _filesystem_type(local, mounts)
    return fstype is not None and (fstype in NETWORK_FILESYSTEMS or fstype.startswith("fuse."))


def shared_storage_problems(paths: dict[str, str], nodes: Sequence[NodeFacts], *, driver_host: str,
                            cpus_per_trial: float, gpus_per_trial: float, existing_cluster: bool = True,
                            mounts: Sequence[Mount] | None = None) -> list[str]:
    """One problem per field in `paths` ({"data.path": ..., "ray.storage_path": ...}) that trials on
    other hosts could not see. Empty when every trial runs on the driver's host, and for a Ray
    instance the study started itself (`existing_cluster=False`: one node by construction)."""
    if not existing_cluster or not spans_hosts(nodes, driver_host, cpus_per_trial, gpus_per_trial):
        return []
    mounts = read_mounts() if mounts is None else mounts
    hosts = sorted(trial_hosts(nodes, cpus_per_trial, gpus_per_trial) | {driver_host})
    where = (f"trials run on {len(hosts)} hosts ({', '.join(hosts)})" if len(hosts) > 1 else
             "no node fits a trial yet, so trials will run on nodes the autoscaler adds")
    problems = []
    for field, path in paths.items():
        if is_shared(path, mounts):
            continue
        problems.append(
            f"{field}: {path} is a local path, but {where}: every node must see the same files. "
            f"Use an object-store URI (e.g. s3://bucket/..., gs://bucket/...) or a path on a network "
            f"filesystem mounted at the same place on every node (NFS, EFS, Filestore, a FUSE bucket mount)"
        )
    return problems


def require_shared_storage(paths: dict[str, str], nodes: Sequence[NodeFacts], *, driver_host: str,
                           cpus_per_trial: float, gpus_per_trial: float, existing_cluster: bool = True,
                           mounts: Sequence[Mount] | None = None) -> None:
    problems = shared_storage_problems(paths, nodes, driver_host=driver_host, cpus_per_trial=cpus_per_trial,
                                       gpus_per_trial=gpus_per_trial, existing_cluster=existing_cluster,
                                       mounts=mounts)
    if problems:
        raise UserInputError(problems, title="preflight failed: storage is not shared across the cluster")


def trial_nodes(nodes: Sequence[NodeFacts], cpus_per_trial: float, gpus_per_trial: float) -> list[str]:
    """Ids of the nodes big enough for one trial."""
    return [n.node_id for n in _fits_a_trial(nodes, cpus_per_trial, gpus_per_trial)]


def local_paths(paths: dict[str, str]) -> dict[str, str]:
    """The fields whose value names this machine's filesystem (a plain path or a file:// URI), as paths."""
    return {field: local for field, path in paths.items() if (local := storage.local_path(path)) is not None}


@dataclass(frozen=True)
class Witness:
    """A file under a configured local path that every trial node must see with the driver's bytes."""

    field: str
    path: str
    file: str
    digest: str


@contextlib.contextmanager
def witnesses(paths: dict[str, str], existing_files: dict[str, str]) -> Iterator[list[Witness]]:
    """One witness per field of `paths`: the file `existing_files[field]` names under it (a
    dataset's manifest), or else a marker of fresh random bytes written there for the check and
    removed after it, with any folder made for it (Ray's storage, which may not exist yet)."""
    found, markers, made = [], [], []
    try:
        for field, path in paths.items():
            folder = Path(path).expanduser().resolve()
            if field in existing_files:
                file = folder / existing_files[field]
            else:
                missing = [parent for parent in [folder, *folder.parents] if not parent.exists()]
                folder.mkdir(parents=True, exist_ok=True)
                made.extend(missing)
                file = folder / f".maskvae-shared-check-{secrets.token_hex(8)}"
                file.write_bytes(secrets.token_bytes(32))
                markers.append(file)
            found.append(Witness(field, path, str(file), storage.Location.of(folder).sha256(file.name)))
        yield found
    finally:
        for marker in markers:
            marker.unlink(missing_ok=True)
        for folder in made:  # innermost first
            with contextlib.suppress(OSError):
                folder.rmdir()


def unseen_problems(found: Sequence[Witness], answers: dict[str, list[str | None] | None],
                    nodes: Sequence[NodeFacts]) -> list[str]:
    """One problem per witnessed field that some trial node does not see as the driver does.
    `answers` maps a node id to the digests it found (in `found`'s order), or None if it never answered."""
    hosts = {node.node_id: node.host for node in nodes}

    def named(ids: list[str]) -> str:
        return ", ".join(f"{node[:8]} on {hosts.get(node, '?')}" for node in sorted(ids))

    problems = []
    for index, witness in enumerate(found):
        blind = [node for node, digests in answers.items() if digests is not None and digests[index] != witness.digest]
        silent = [node for node, digests in answers.items() if digests is None]
        if blind:
            problems.append(
                f"{witness.field}: {witness.path} is a local path that {len(blind)} of the {len(answers)} trial "
                f"nodes cannot see as this machine does ({named(blind)}): the nodes do not share this disk. Use an "
                f"object-store URI (e.g. s3://bucket/...) or a path every node mounts")
        elif silent:
            problems.append(f"{witness.field}: could not check that every trial node sees {witness.path}: node(s) "
                            f"{named(silent)} did not answer; use an object-store URI, or set "
                            f"ray.shared_filesystem=true if every node shares this disk")
    return problems
