"""A real S3 API on loopback for the object-storage tests: moto's server in its own process.

The tests talk to it the way a user talks to an S3-compatible store: an endpoint and credentials in
the environment (`AWS_ENDPOINT_URL_S3`, which pyarrow, Ray and boto3/MLflow all read), or the
endpoint in the URI's query string (`s3://bucket/prefix?endpoint_override=HOST:PORT&scheme=http`).
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class S3Server:
    """`moto_server` on 127.0.0.1 and a free port, stopped by PID."""

    def __init__(self, log_path: str | os.PathLike[str] | None = None):
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.endpoint = f"http://{self.host}"
        self._log = open(log_path, "ab") if log_path else subprocess.DEVNULL
        self.process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                        stdout=self._log, stderr=subprocess.STDOUT)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto_server exited with {self.process.returncode}")
            try:
                with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"moto_server did not answer on {self.endpoint} within {timeout:.0f} s")

    def env(self) -> dict[str, str]:
        """What a user of an S3-compatible store sets: endpoint, credentials, region."""
        return {
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "AWS_ACCESS_KEY_ID": "maskvae-test",
            "AWS_SECRET_ACCESS_KEY": "maskvae-test-secret",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            # No instance-metadata lookups for credentials or region (seconds of timeouts off EC2).
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def client(self):
        import boto3

        env = self.env()
        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"], region_name=env["AWS_REGION"])

    def make_bucket(self, name: str | None = None) -> str:
        name = name or f"maskvae-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        paginator = self.client().get_paginator("list_objects_v2")
        return [item["Key"] for page in paginator.paginate(Bucket=bucket, Prefix=prefix)
                for item in page.get("Contents", [])]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self._log is not subprocess.DEVNULL:
            self._log.close()


@dataclass(frozen=True)
class Bucket:
    """One test's bucket on the shared server."""

    server: S3Server
    name: str

    def uri(self, prefix: str = "") -> str:
        """Endpoint taken from the environment."""
        return f"s3://{self.name}/{prefix.strip('/')}".rstrip("/")

    def query_uri(self, prefix: str = "") -> str:
        """Endpoint carried in the URI itself (no environment needed besides credentials)."""
        return f"{self.uri(prefix)}?endpoint_override={self.server.host}&scheme=http"

    def keys(self, prefix: str = "") -> list[str]:
        return self.server.keys(self.name, prefix)
