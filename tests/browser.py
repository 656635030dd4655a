"""Headless Chromium driven over the DevTools protocol on a pipe: no browser download, no websocket package.

Debian's ``chromium`` started with ``--remote-debugging-pipe`` reads protocol
messages (JSON, each ended by a NUL byte) on its fd 3 and writes its own on fd 4.
``Browser(path)`` opens one page with the network off (``Network.emulateNetworkConditions``
offline, every host name unresolvable, a dead proxy), records every request and
every console error or uncaught exception, and evaluates JavaScript in it.

``python tests/browser.py REPORT.html OUT.png [HEIGHT]`` writes a 1400-px-wide screenshot
(``docs/img/`` holds the committed ones).
"""

from __future__ import annotations

import base64
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

WIDTH = 1400


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return shutil.which(name)
    return None


class Browser:
    def __init__(self, exe=None, timeout=30.0):
        exe = exe or find_chromium()
        if exe is None:
            raise FileNotFoundError("chromium is not installed (apt-get install chromium)")
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="mlpbench-chromium-")
        to_child_r, self._w = os.pipe()
        self._r, from_child_w = os.pipe()
        args = [exe, "--headless", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--metrics-recording-only", "--mute-audio",
                "--proxy-server=127.0.0.1:9", '--host-resolver-rules=MAP * ~NOTFOUND',
                f"--user-data-dir={self.profile}", f"--window-size={WIDTH},900", "about:blank"]
        def fds():  # in the child: its fd 3 reads our writes, its fd 4 takes its replies (dup2: inheritable)
            r, w = os.dup(to_child_r), os.dup(from_child_w)  # neither is 3 or 4 (taken), so dup2 makes them new
            os.dup2(r, 3)
            os.dup2(w, 4)

        # close_fds=False: the pipes' own fds are close-on-exec (Python's default); 3 and 4 are not
        self.proc = subprocess.Popen(args, close_fds=False, preexec_fn=fds,  # noqa: PLW1509
                                     stdout=subprocess.DEVNULL, stderr=None if os.environ.get("MLPBENCH_BROWSER_LOG") else subprocess.DEVNULL)
        os.close(to_child_r)
        os.close(from_child_w)
        self._buf, self._id, self.events = b"", 0, []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable", session=True)
        self.call("Network.emulateNetworkConditions", session=True, offline=True, latency=0, downloadThroughput=-1,
                  uploadThroughput=-1)
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=WIDTH, height=900, deviceScaleFactor=1,
                  mobile=False)

    # ------------------------------------------------------------ the protocol
    def _read(self) -> dict:
        deadline = time.monotonic() + self.timeout
        while b"\0" not in self._buf:
            if time.monotonic() > deadline:
                raise TimeoutError("chromium did not answer")
            chunk = os.read(self._r, 1 << 20)
            if not chunk:
                raise RuntimeError(f"chromium exited (rc {self.proc.poll()})")
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method, session=False, **params):
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params}
        if session:
            msg["sessionId"] = self.session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method):
        seen = [m for m in self.events if m.get("method") == method]
        while not seen:
            msg = self._read()
            self.events.append(msg)
            seen = [msg] if msg.get("method") == method else []
        return seen[0]

    # ------------------------------------------------------------ what a test asks
    def open(self, path):
        url = pathlib.Path(os.path.abspath(path)).as_uri()
        self.events.clear()
        self.call("Page.navigate", session=True, url=url)
        self.wait_for("Page.loadEventFired")
        return url

    def evaluate(self, expression):
        result = self.call("Runtime.evaluate", session=True, expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:60]}...: {result['exceptionDetails']}")
        return result["result"].get("value")

    def requests(self) -> list[str]:
        return [m["params"]["request"]["url"] for m in self.events if m.get("method") == "Network.requestWillBeSent"]

    def errors(self) -> list[str]:
        out = []
        for m in self.events:
            method, params = m.get("method"), m.get("params", {})
            if method == "Runtime.exceptionThrown":
                out.append(json.dumps(params.get("exceptionDetails"))[:300])
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                out.append(json.dumps(params.get("args"))[:300])
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                out.append(params["entry"].get("text", "")[:300])
            elif method == "Network.loadingFailed":
                out.append(f"load failed: {params.get('errorText')}")
        return out

    def screenshot(self, out, height=None):
        """A PNG of the page, ``WIDTH`` wide and ``height`` tall (the whole page when ``None``)."""
        full = self.evaluate("document.documentElement.scrollHeight")
        height = min(full, height) if height else full
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=WIDTH, height=height, deviceScaleFactor=1,
                  mobile=False)
        data = self.call("Page.captureScreenshot", session=True, format="png")["data"]
        with open(out, "wb") as f:
            f.write(base64.b64decode(data))

    def close(self):
        try:
            self.call("Browser.close")
        except (RuntimeError, OSError, TimeoutError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._r, self._w):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


if __name__ == "__main__":
    with Browser() as b:
        b.open(sys.argv[1])
        b.screenshot(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else None)
        print(f"wrote {sys.argv[2]}; errors {b.errors()}; requests {b.requests()}")
