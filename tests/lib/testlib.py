"""Helpers for the end-to-end and test-bed tests (python3 stdlib only).

Tests print one line per check and exit 0 (pass), 1 (fail) or 77 (skip, with
the reason). Every QEMU a test starts lives in a private temporary directory
and is stopped by its pid when the test ends, pass or fail."""
import contextlib
import glob
import json
import lzma
import gzip
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(TESTS)
GUEST = os.path.join(TESTS, "guest")
SHARED = os.environ.get("SHARED_DIR") or os.path.join(os.path.dirname(ROOT), "shared")
SYMBOLS = os.path.join(SHARED, "symbols")


def isfs():
    files = sorted(glob.glob(os.path.join(SYMBOLS, "windows", "*.pdb", "*.json*")))
    if not files:
        skip(f"no ISF files under {SYMBOLS}")
    return files


def isf_by_key(key):
    """An ISF chosen by a test argument: a path, or a GUID prefix."""
    if os.path.exists(key):
        return key
    for f in isfs():
        if os.path.basename(f).startswith(key):
            return f
    fail(f"no ISF matches {key}")


def load_isf(path):
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:6] == b"\xfd7zXZ\x00":
        raw = lzma.decompress(raw)
    elif raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return json.loads(raw)


_failures = 0


def check(cond, what):
    global _failures
    print(f"{'ok' if cond else 'FAIL'} - {what}", flush=True)
    if not cond:
        _failures += 1
    return cond


def fail(msg):
    print(f"FAIL - {msg}", flush=True)
    sys.exit(1)


def skip(msg):
    print(f"SKIP - {msg}", flush=True)
    sys.exit(77)


def done():
    sys.exit(1 if _failures else 0)


class QMP:
    """A minimal QMP client for tests, separate from bsodmon's own."""

    def __init__(self, path, timeout=10):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        self.s.connect(path)
        self.buf = b""
        self.events = []
        # QEMU 7.2 may write an event to a new client before its greeting
        # (a session reset racing an event): keep it, as bsodmon does.
        greeting = self._read()
        for _ in range(64):
            if "QMP" in greeting or "event" not in greeting:
                break
            self.events.append(greeting)
            greeting = self._read()
        assert "QMP" in greeting, greeting
        self.cmd("qmp_capabilities")

    def _read(self):
        while b"\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError("QMP socket closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def cmd(self, name, **args):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.s.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            r = self._read()
            if "event" in r:
                self.events.append(r)
                continue
            if "error" in r:
                raise RuntimeError(f"{name}: {r['error']}")
            return r["return"]

    def hmp(self, line):
        return self.cmd("human-monitor-command", **{"command-line": line})

    def status(self):
        return self.cmd("query-status")["status"]

    def close(self):
        self.s.close()


class Guest:
    """A synthetic guest booted with tests/guest/boot in a private directory."""

    def __init__(self, isf, *args, **kw):
        self.dir = tempfile.mkdtemp(prefix="bsodmon-test-")
        self.isf = isf
        cmd = [os.path.join(GUEST, "boot"), "--isf", isf, "--dir", self.dir] + list(args)
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=kw.get("timeout", 300))
        if r.returncode != 0:
            self.stop()
            raise RuntimeError(f"boot failed: {r.stderr.strip()}")
        self.truth = json.loads(r.stdout)
        self.qmp_path = os.path.join(self.dir, "qmp.sock")
        with open(os.path.join(self.dir, "qemu.pid")) as f:
            self.pid = int(f.read())

    def serial(self):
        with open(os.path.join(self.dir, "serial.log"), "rb") as f:
            return f.read().decode("latin-1")

    def wait_serial(self, text, timeout=30, count=1):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.serial().count(text) >= count:
                return True
            time.sleep(0.01)
        return False

    def trigger(self, n=1):
        subprocess.run([os.path.join(GUEST, "trigger"), self.dir, str(n)], check=True)

    def alive(self):
        try:
            with open(f"/proc/{self.pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    def stop(self):
        subprocess.run([os.path.join(GUEST, "stop"), self.dir])
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


@contextlib.contextmanager
def qmp(guest):
    q = QMP(guest.qmp_path)
    try:
        yield q
    finally:
        q.close()
