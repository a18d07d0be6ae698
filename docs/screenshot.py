"""Headless-Chromium screenshots for docs/ (how the committed MLflow and Ray dashboard images were made).

    python docs/screenshot.py URL OUT.png [--cookie NAME=VALUE] [--wait 8] [--js "..."] [--size 1600x1000]

Chromium's own `--screenshot` cannot sign in; this drives it over the DevTools protocol instead, so a
cookie (the Ray dashboard's `ray-authentication-token`) can be set before the page loads and a
script can run (close a side panel, scroll) before the picture is taken. Needs Debian's `chromium`.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def _shoot(args: argparse.Namespace, debug_port: int) -> None:
    width, height = (int(v) for v in args.size.split("x"))
    async with aiohttp.ClientSession() as http:
        for _ in range(100):
            try:
                async with http.put(f"http://127.0.0.1:{debug_port}/json/new?about:blank") as response:
                    target = await response.json()
                break
            except aiohttp.ClientError:
                await asyncio.sleep(0.2)
        else:
            raise SystemExit("chromium did not open its DevTools port")
        ids = itertools.count(1)
        async with http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            async def call(method: str, **params):
                number = next(ids)
                await ws.send_str(json.dumps({"id": number, "method": method, "params": params}))
                async for message in ws:
                    data = json.loads(message.data)
                    if data.get("id") == number:
                        if "error" in data:
                            raise SystemExit(f"{method}: {data['error']}")
                        return data.get("result", {})

            await call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                       mobile=False)
            for cookie in args.cookie:
                name, _, value = cookie.partition("=")
                parts = urlsplit(args.url)
                await call("Network.setCookie", name=name, value=value, url=f"{parts.scheme}://{parts.netloc}/")
            await call("Page.enable")
            await call("Page.navigate", url=args.url)
            await asyncio.sleep(args.wait)
            for script in args.js:
                await call("Runtime.evaluate", expression=script, awaitPromise=True)
                await asyncio.sleep(args.after_js)
            shot = await call("Page.captureScreenshot", format="png")
    Path(args.out).write_bytes(base64.b64decode(shot["data"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url")
    parser.add_argument("out")
    parser.add_argument("--cookie", action="append", default=[], help="NAME=VALUE, set for the URL's host")
    parser.add_argument("--wait", type=float, default=8.0, help="seconds the page gets to render")
    parser.add_argument("--js", action="append", default=[], help="script run after the wait (repeatable)")
    parser.add_argument("--after-js", type=float, default=2.0, help="seconds to wait after each script")
    parser.add_argument("--size", default="1600x1000")
    args = parser.parse_args()
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise SystemExit("chromium not found: apt-get install -y chromium")
    debug_port = _free_port()
    with tempfile.TemporaryDirectory(prefix="maskvae-shot-") as profile:
        process = subprocess.Popen([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                                    f"--remote-debugging-port={debug_port}", "--remote-debugging-address=127.0.0.1",
                                    f"--user-data-dir={profile}", f"--window-size={args.size.replace('x', ',')}"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            asyncio.run(_shoot(args, debug_port))
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
            time.sleep(0.2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
