"""bsodmon as the end-to-end tests run it (python3 stdlib only): a Monitor in
the background, one-shot runs, and the check of an event line against the
guest's truth line, shared by tests/e2e/test-bsodmon and test-libvirt."""
import json
import os
import re
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testlib as T  # noqa: E402

BSODMON = os.environ.get("BSODMON") or os.path.join(T.ROOT, "build", "bsodmon")


class Monitor:
    """bsodmon running in the background, stdout and stderr collected."""

    def __init__(self, *args, env=None):
        self.p = subprocess.Popen([BSODMON] + list(args), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=env)
        self.out, self.err = [], []
        self.t_out = threading.Thread(target=self._pump, args=(self.p.stdout, self.out))
        self.t_err = threading.Thread(target=self._pump, args=(self.p.stderr, self.err))
        self.t_out.start()
        self.t_err.start()

    @staticmethod
    def _pump(f, lines):
        for line in iter(f.readline, b""):
            lines.append((time.monotonic(), line))

    def wait_stderr(self, text, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in l.decode("latin-1") for _, l in self.err):
                return True
            if self.p.poll() is not None:
                time.sleep(0.05)
                return any(text in l.decode("latin-1") for _, l in self.err)
            time.sleep(0.01)
        return False

    def wait_lines(self, n, timeout=30):
        deadline = time.monotonic() + timeout
        while len(self.out) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        return [l.decode("latin-1") for _, l in self.out]

    def wait(self, timeout=30):
        try:
            rc = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            rc = self.p.wait()
        self.t_out.join()
        self.t_err.join()
        return rc

    def stderr(self):
        return "".join(l.decode("latin-1") for _, l in self.err)

    def show(self, lines):
        """Print what bsodmon wrote, for a failed check to be read."""
        print(f"# stdout: {lines!r}\n# stderr: {self.stderr()!r}")

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
        self.wait()


def run(*args, timeout=60):
    r = subprocess.run([BSODMON] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=timeout)
    return r.returncode, r.stdout, r.stderr


def symbols_args(isf, how):
    if how == "dir":
        return ["--symbols-dir", T.SYMBOLS]
    if how == "r":
        return ["-r", isf]
    return []


def expected_fields(t, with_profile):
    exp = {"Plugin": "bsodmon", "VCPU": t["OnVcpu"], "CR3": int(t["VCPUs"][t["OnVcpu"]]["CR3"], 16),
           "Method": "KeBugCheck2", "BugCheckCode": t["BugCheckCode"]}
    for i, p in enumerate(t["BugCheckParameters"]):
        exp[f"BugCheckParameter{i + 1}"] = p
    if with_profile:
        exp.update(PID=t["PID"], PPID=t["PPID"], TID=t["TID"], UserId=t["SessionId"],
                   ProcessName=t["ProcessName"])
    return exp


def parse_kv(line):
    out = {}
    for m in re.finditer(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)', line):
        v = m.group(2)
        out[m.group(1)] = json.loads(v) if v.startswith('"') else v
    return out


def check_event(fmt, line, t, with_profile, name, what):
    exp = expected_fields(t, with_profile)
    T.check(line.endswith("\n") and line.count("\n") == 1, f"{what}: one line")
    if fmt == "json":
        ev = json.loads(line)
        keys = list(ev)
        order = ["Plugin", "TimeStamp", "PID", "PPID", "TID", "UserId", "ProcessName", "Method",
                 "EventUID", "VCPU", "CR3", "BugCheckCode", "BugCheckName", "BugCheckParameter1",
                 "BugCheckParameter2", "BugCheckParameter3", "BugCheckParameter4"]
        T.check(keys == [k for k in order if k in keys], f"{what}: key order {keys}")
        for k, v in exp.items():
            T.check(ev.get(k) == v, f"{what}: {k} = {v!r} (got {ev.get(k)!r})")
        if not with_profile:
            T.check(not any(k in ev for k in ("PID", "PPID", "TID", "UserId", "ProcessName")),
                    f"{what}: no process fields without a profile")
        T.check(ev.get("BugCheckName") == name, f"{what}: BugCheckName {ev.get('BugCheckName')}")
        T.check(re.fullmatch(r"\d+\.\d{6}", ev.get("TimeStamp", "")) is not None, f"{what}: TimeStamp format")
        return int(ev["EventUID"], 16)
    if fmt == "kv":
        ev = parse_kv(line)
        T.check(line.startswith("Plugin=bsodmon "), f"{what}: starts with Plugin=bsodmon")
        for k, v in exp.items():
            got = ev.get(k)
            if isinstance(v, int) and got is not None:
                got = int(got)
            T.check(got == v, f"{what}: {k} = {v!r} (got {got!r})")
        T.check(ev.get("BugCheckName") == name, f"{what}: BugCheckName")
        return int(ev["EventUID"], 16)
    # default and csv: every expected value appears, in the spec's order.
    T.check(line.startswith("[BSODMON] ") if fmt == "default" else line.startswith("bsodmon "),
            f"{what}: {fmt} prefix")
    pos = 0
    for k in ("VCPU", "CR3", "BugCheckCode", "BugCheckName", "BugCheckParameter1",
              "BugCheckParameter2", "BugCheckParameter3", "BugCheckParameter4"):
        v = name if k == "BugCheckName" else exp[k]
        s = str(v)
        i = line.find(s, pos)
        T.check(i >= 0, f"{what}: {k} {s} in order")
        if i >= 0:
            pos = i + len(s)
    if with_profile:
        for k in ("PID", "PPID", "TID"):
            T.check(str(exp[k]) in line, f"{what}: {k}")
        T.check(t["ProcessName"] in line, f"{what}: ProcessName")
    return None


def tcp_listeners(pids):
    """TCP sockets in LISTEN state held by any of `pids`."""
    inodes = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
        except OSError:
            pass
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.read().splitlines()[1:]:
                cols = line.split()
                if cols[3] == "0A" and cols[9] in inodes:  # 0A = LISTEN
                    found.append(cols[1])
    return found
