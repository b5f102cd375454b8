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
        args = list(args)
        # The e2e tests' bound for the follow (tests/meson.build): theirs
        # when a test names one; bsodmon's default (5 ms) otherwise.
        follow = (env or os.environ).get("BSODMON_TEST_FOLLOW_MS")
        if follow and "--bsodmon-follow-ms" not in args and "--info" not in args:
            args += ["--bsodmon-follow-ms", follow]
        self.p = subprocess.Popen([BSODMON] + args, stdout=subprocess.PIPE,
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


# The analysis fields (issue 15), in the order bsodmon writes them after
# BugCheckParameter4.
ANALYSIS = ["ReportedBugCheckCode", "ReportedBugCheckName", "ReportedBugCheckParameter1",
            "ReportedBugCheckParameter2", "ReportedBugCheckParameter3",
            "ReportedBugCheckParameter4", "FailingDriver", "BugCheckSubcode",
            "BugCheckSubcodeName", "FaultingIP", "FaultingModule", "FaultingModuleSize",
            "FaultingModuleTimeDateStamp", "ExceptionCode", "ExceptionName", "CriticalProcess",
            "Bucket"]
KERNEL_MIN = 0xffff800000000000

# What the analysis gives for the codes these tests raise (stated here, not
# derived from bsodmon's tables); an IP inside one of the truth's Modules adds
# that module's fields:
# code -> (name, sub-code parameter index or None, {sub-code: name},
#          IP parameter index or None, pointer parameters read for an IP,
#          whether the code names a faulting IP at all, reported code known).
CODES = {
    0xd1: ("DRIVER_IRQL_NOT_LESS_OR_EQUAL", None, {}, 3, [], True, True),
    0x50: ("PAGE_FAULT_IN_NONPAGED_AREA", 3, {2: "NONPAGED_BUGCHECK_NOT_PRESENT_PAGE_TABLE"},
           None, [2], True, False),
    0xe2: ("MANUALLY_INITIATED_CRASH", None, {}, None, [], False, True),
    0x139: ("KERNEL_SECURITY_CHECK_FAILURE", 0, {3: "CORRUPT_LIST_ENTRY"}, None, [1, 2], True, True),
    0x7f: ("UNEXPECTED_KERNEL_MODE_TRAP", 0, {8: "double fault"}, None, [], False, True),
    0xef: ("CRITICAL_PROCESS_DIED", 1, {0: "process terminated"}, None, [], False, True),
    0x9f: ("DRIVER_POWER_STATE_FAILURE", 0, {3: "power IRP blocked too long"}, None, [], False, True),
    0x3b: ("SYSTEM_SERVICE_EXCEPTION", None, {}, 1, [2], True, True),
}
NAMES = {0xdead0bad: "UNKNOWN_CODE", 0xd3: "DRIVER_PORTION_MUST_BE_NONPAGED",
         **{c: v[0] for c, v in CODES.items()}}


def final_of(t, with_profile):
    """What the guest's KeBugCheck2 stored (its truth's Final), which bsodmon
    reads after following the bug check: only with a profile, and only when
    the table has a follow point."""
    f = t.get("Final")
    if not with_profile or not f or not f.get("FollowPoints"):
        return None
    return f


def expected_analysis(t, with_profile):
    """(fields that must be there with these values, fields that may be
    there): a pointer parameter inside the guest's kernel image could be
    read, so what it would give is allowed, not required."""
    code = int(t["BugCheckCode"], 16)
    p = [int(x, 16) for x in t["BugCheckParameters"]]
    final = final_of(t, with_profile)
    if code not in CODES and not final:
        return {}, set()
    name, sub, subnames, ip, ptrs, wants_ip, known = CODES.get(
        code, (None, None, {}, None, [], False, False))
    exp, maybe = {}, set()
    rcode = code
    if final:
        known, rcode = True, int(final["BugCheckCode"], 16)
    if known:
        exp["ReportedBugCheckCode"] = hex(rcode)
        exp["ReportedBugCheckName"] = NAMES[rcode]
    if final:
        fp = final["BugCheckParameters"]
        if [int(x, 16) for x in fp] != p:
            for i in range(4):
                exp[f"ReportedBugCheckParameter{i + 1}"] = fp[i]
        if final.get("Driver"):
            exp["FailingDriver"] = final["Driver"]
    if sub is not None:
        exp["BugCheckSubcode"] = hex(p[sub])
        if p[sub] in subnames:
            exp["BugCheckSubcodeName"] = subnames[p[sub]]
    mod = None
    if ip is not None:
        exp["FaultingIP"] = hex(p[ip])
        for m in t.get("Modules", []) if with_profile else []:
            if int(m["Base"], 16) <= p[ip] < int(m["Base"], 16) + m["Size"]:
                mod = f"{m['Name']}+{hex(p[ip] - int(m['Base'], 16))}"
                exp.update(FaultingModule=mod, FaultingModuleSize=hex(m["Size"]),
                           FaultingModuleTimeDateStamp=hex(m["TimeDateStamp"]))
    elif with_profile:
        base = int(t["KernelBase"], 16)
        if any(p[i] >= KERNEL_MIN and base <= p[i] < base + (64 << 20) for i in ptrs):
            maybe.update(("FaultingIP", "ExceptionCode", "ExceptionName"))
    if code == 0x3b:
        exp["ExceptionCode"] = hex(p[0])
        exp["ExceptionName"] = {0xc0000005: "STATUS_ACCESS_VIOLATION"}[p[0]]
    if known and (not wants_ip or mod):
        exp["Bucket"] = (hex(rcode) + ("_" + hex(p[sub]) if sub is not None else "")
                         + ("_" + mod if mod else ""))
    return exp, maybe


def check_analysis(fmt, ev_or_line, t, with_profile, analysis, what):
    exp, maybe = expected_analysis(t, with_profile) if analysis else ({}, set())
    if fmt in ("json", "kv"):
        got = {k: v for k, v in ev_or_line.items() if k in ANALYSIS}
        for k, v in exp.items():
            T.check(str(got.get(k)) == v, f"{what}: analysis {k} = {v!r} (got {got.get(k)!r})")
        extra = set(got) - set(exp) - maybe
        T.check(not extra, f"{what}: no analysis fields beyond the expected ({sorted(extra)})")
        return
    # default and csv: each expected value, in order, after BugCheckParameter4.
    line, pos = ev_or_line
    for k in ANALYSIS:
        if k in exp:
            i = line.find(exp[k], pos)
            T.check(i >= 0, f"{what}: {fmt} analysis {k} {exp[k]} in order")
            if i >= 0:
                pos = i + len(exp[k])
    if not analysis:
        T.check(line.rstrip("\n").endswith(hex(int(t["BugCheckParameters"][3], 16))),
                f"{what}: {fmt} ends with BugCheckParameter4 (DRAKVUF's field set)")
    elif not maybe:
        last = [exp[k] for k in ANALYSIS if k in exp]
        tail = last[-1] if last else hex(int(t["BugCheckParameters"][3], 16))
        T.check(line.rstrip("\n").rstrip('"').endswith(tail.rstrip('"')),
                f"{what}: {fmt} ends with the last expected field {tail}")


def check_event(fmt, line, t, with_profile, name, what, analysis=True):
    exp = expected_fields(t, with_profile)
    T.check(line.endswith("\n") and line.count("\n") == 1, f"{what}: one line")
    if fmt == "json":
        ev = json.loads(line)
        keys = list(ev)
        order = ["Plugin", "TimeStamp", "PID", "PPID", "TID", "UserId", "ProcessName", "Method",
                 "EventUID", "VCPU", "CR3", "BugCheckCode", "BugCheckName", "BugCheckParameter1",
                 "BugCheckParameter2", "BugCheckParameter3", "BugCheckParameter4"] + ANALYSIS
        T.check(keys == [k for k in order if k in keys], f"{what}: key order {keys}")
        if not analysis:
            T.check(not any(k in ANALYSIS for k in keys), f"{what}: DRAKVUF's field set {keys}")
        check_analysis(fmt, ev, t, with_profile, analysis, what)
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
        check_analysis(fmt, ev, t, with_profile, analysis, what)
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
    check_analysis(fmt, (line, pos), t, with_profile, analysis, what)
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
