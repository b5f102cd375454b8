"""Helpers shared by the figures of bench/run (python3 stdlib only).

Every QEMU, bsodmon and gdb started here lives in a private temporary
directory and is ended by its pid (never by name) when its run is over,
whether the run worked or not. Nothing listens on TCP: QMP, serial and the
GDB stubs are unix sockets inside those directories.
"""
import json
import os
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
import testlib as T  # noqa: E402  (QMP client, ISF paths)

GUEST = os.path.join(ROOT, "tests", "guest")
SYMBOLS = T.SYMBOLS


class BenchError(Exception):
    """A run that could not be measured (not a wrong event: see Errors)."""


class Errors:
    """Wrong or missing events: each makes bench/run exit non-zero."""

    def __init__(self):
        self.items = []

    def add(self, what):
        self.items.append(what)
        print(f"  WRONG: {what}", flush=True)


def log(msg):
    print(msg, flush=True)


# ---- statistics ----------------------------------------------------------------

def med(xs):
    return statistics.median(xs) if xs else None


def spread(xs):
    return [min(xs), max(xs)] if xs else None


# ---- processes -------------------------------------------------------------------

def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def status_kib(pid, key):
    """A field of /proc/PID/status in KiB (VmRSS, VmHWM, RssAnon, ...), or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def pss_kib(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def cpu_ns(pid):
    """CPU time of all threads of PID in ns (schedstat), or None when gone."""
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
    except OSError:
        return None
    return total


def cpu_ticks_ns(pid):
    """utime+stime from /proc/PID/stat, in ns (clock-tick resolution)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    hz = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) * 1_000_000_000 // hz


def children(pid):
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def end_process(p, sig=signal.SIGTERM, timeout=10):
    """End a Popen we started, by its pid: sig, then SIGKILL."""
    if p.poll() is None:
        try:
            p.send_signal(sig)
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        except ProcessLookupError:
            pass
    return p.returncode


def wait_gone(pid, timeout=15):
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return not alive(pid)


# ---- the synthetic guest ------------------------------------------------------------

class Guest:
    """tests/guest/boot in a private directory; stop() ends QEMU by its pid."""

    def __init__(self, isf, *args, timeout=120):
        self.dir = tempfile.mkdtemp(prefix="bsodmon-bench-")
        self.isf = isf
        self.pid = None
        r = subprocess.run([os.path.join(GUEST, "boot"), "--isf", isf, "--dir", self.dir,
                            *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=timeout)
        try:
            with open(os.path.join(self.dir, "qemu.pid")) as f:
                self.pid = int(f.read())
        except (OSError, ValueError):
            pass
        if r.returncode != 0:
            self.stop()
            raise BenchError(f"guest boot failed: {r.stderr.strip()[-500:]}")
        self.truth = json.loads(r.stdout)
        self.qmp_path = os.path.join(self.dir, "qmp.sock")
        self.serial_path = os.path.join(self.dir, "serial.sock")
        self.serial_log = os.path.join(self.dir, "serial.log")

    def qmp(self, timeout=30):
        return T.QMP(self.qmp_path, timeout=timeout)

    def serial(self):
        with open(self.serial_log, "rb") as f:
            return f.read().decode("latin-1")

    def wait_serial(self, text, timeout=30, count=1):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.serial().count(text) >= count:
                return True
            time.sleep(0.01)
        return False

    def shm_path(self):
        with open(os.path.join(self.dir, "shm.path")) as f:
            return f.read().strip()

    def stop(self):
        subprocess.run([os.path.join(GUEST, "stop"), self.dir])
        if self.pid:
            wait_gone(self.pid, 10)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def boot_many(isf, argss, timeout=180):
    """Boot several guests at once (threads around tests/guest/boot)."""
    out = [None] * len(argss)
    errs = []

    def one(i):
        try:
            out[i] = Guest(isf, *argss[i], timeout=timeout)
        except Exception as e:  # noqa: BLE001 - reported below
            errs.append(str(e))
    ts = [threading.Thread(target=one, args=(i,)) for i in range(len(argss))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errs:
        for g in out:
            if g:
                g.stop()
        raise BenchError("; ".join(errs))
    return out


# ---- bsodmon ---------------------------------------------------------------------------

class Monitor:
    """bsodmon in the background. stderr is read by a thread (timestamped);
    stdout is left for the caller (the latency probe reads it directly)."""

    def __init__(self, exe, *args, stdout=subprocess.PIPE):
        self.t_start = time.monotonic()
        self.p = subprocess.Popen([exe, *args], stdout=stdout, stderr=subprocess.PIPE)
        self.err = []
        self.t_err = threading.Thread(target=self._pump, daemon=True)
        self.t_err.start()

    def _pump(self):
        for line in iter(self.p.stderr.readline, b""):
            self.err.append((time.monotonic(), line.decode("latin-1")))

    def stderr(self):
        return "".join(l for _, l in self.err)

    def wait_stderr(self, text, timeout=60):
        """Monotonic time the line containing text arrived, or None."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, l in list(self.err):
                if text in l:
                    return t
            if self.p.poll() is not None:
                time.sleep(0.05)
                for t, l in list(self.err):
                    if text in l:
                        return t
                return None
            time.sleep(0.001)
        return None

    def guardian(self):
        kids = children(self.p.pid)
        return kids[0] if kids else None

    def read_stdout(self, timeout=30):
        """The rest of stdout once bsodmon has ended (or timeout)."""
        try:
            self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        data = b""
        fd = self.p.stdout.fileno()
        os.set_blocking(fd, False)
        try:
            while True:
                c = os.read(fd, 65536)
                if not c:
                    break
                data += c
        except BlockingIOError:
            pass
        return data.decode("latin-1")

    def end(self, sig=signal.SIGTERM):
        rc = end_process(self.p, sig)
        self.t_err.join(5)
        return rc


# ---- gdb, the by-hand peer ---------------------------------------------------------------

class Gdb:
    """gdb -batch with a hardware breakpoint on ADDR through a GDB stub that
    QEMU opens on a unix socket in the guest's directory (HMP gdbserver)."""

    HBREAK_SET = b"Hardware assisted breakpoint 1 at"

    def __init__(self, guest, addr, tag="gdb"):
        self.stub = os.path.join(guest.dir, f"{tag}.sock")
        q = guest.qmp()
        try:
            out = q.hmp(f"gdbserver unix:{self.stub},server=on,wait=off")
        finally:
            q.close()
        if "Waiting for gdb connection" not in out:
            raise BenchError(f"gdbserver: {out.strip()}")
        self.guest = guest
        self.addr = addr
        self.t_start = time.monotonic()
        self.p = subprocess.Popen(
            ["gdb", "-nx", "-batch", "-ex", "set pagination off",
             "-ex", f"target remote {self.stub}", "-ex", f"hbreak *{addr}",
             "-ex", "continue", "-ex", "detach"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.out = b""

    def wait_armed(self, timeout=30):
        """Monotonic time gdb printed the breakpoint line, or None. `continue`
        follows at once; its Z1 packet arms the breakpoint."""
        fd = self.p.stdout.fileno()
        deadline = time.monotonic() + timeout
        while self.HBREAK_SET not in self.out:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([fd], [], [], left)
            if r:
                c = os.read(fd, 4096)
                if not c:
                    return None
                self.out += c
        return time.monotonic()

    def end(self):
        rc = end_process(self.p, signal.SIGTERM)
        try:
            self.out += self.p.stdout.read() or b""
        except (OSError, ValueError):
            pass
        return rc

    def close_stub(self):
        try:
            q = self.guest.qmp()
            try:
                q.hmp("gdbserver none")
            finally:
                q.close()
        except (OSError, RuntimeError, EOFError):
            pass


# ---- the latency probe ------------------------------------------------------------------------


def probe(exe, guest, fd, pattern, timeout_ms=30000):
    """Trigger the guest's bug check through its serial socket and time the
    'bugcheck now' line and the first line on fd containing pattern.
    Returns (latency_ns or None, event line, ran SCHED_FIFO)."""
    r = subprocess.run([exe, guest.serial_path, str(fd), pattern, str(timeout_ms)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=(fd,),
                       timeout=timeout_ms / 1000 + 30)
    lines = r.stdout.decode("latin-1").split("\n", 1)
    try:
        ts, te, rt = (int(x) for x in lines[0].split())
    except ValueError:
        return None, r.stderr.decode("latin-1").strip(), False
    event = lines[1].rstrip("\n") if len(lines) > 1 else ""
    if ts == 0 or te == 0:
        return None, event, rt == 1
    return te - ts, event, rt == 1


# ---- checking events against the guest's truth line ------------------------------------------

def check_bsodmon_event(line, truth):
    """None when the JSON event matches the truth, else what differs."""
    try:
        ev = json.loads(line)
    except ValueError:
        return f"not a JSON event: {line[:200]!r}"
    t = truth
    exp = {"Plugin": "bsodmon", "Method": "KeBugCheck2", "VCPU": t["OnVcpu"],
           "CR3": int(t["VCPUs"][t["OnVcpu"]]["CR3"], 16), "BugCheckCode": t["BugCheckCode"],
           "PID": t["PID"], "PPID": t["PPID"], "TID": t["TID"], "UserId": t["SessionId"],
           "ProcessName": t["ProcessName"]}
    for i, p in enumerate(t["BugCheckParameters"]):
        exp[f"BugCheckParameter{i + 1}"] = p
    bad = [f"{k}={ev.get(k)!r} (want {v!r})" for k, v in exp.items() if ev.get(k) != v]
    return "; ".join(bad) if bad else None


def check_gdb_hit(line, addr):
    want = int(addr, 16)
    try:
        got = int(line.split("Breakpoint 1,", 1)[1].split()[0], 16)
    except (IndexError, ValueError):
        return f"no address in gdb's line {line!r}"
    return None if got == want else f"gdb stopped at {got:#x}, not KeBugCheck2 {want:#x}"


def calibrate_probe(exe, n=30, gap_us=500):
    """How far the probe's two timestamps are from the truth: a fake guest
    (this process) writes 'bugcheck now' on a unix socket and, gap_us later
    (busy-waiting), a line on a pipe. Returns the errors in us (measured
    minus true gap), or [] when it could not run."""
    import socket as so
    errs = []
    d = tempfile.mkdtemp(prefix="bsodmon-bench-cal-")
    try:
        for i in range(n):
            path = os.path.join(d, f"s{i}.sock")
            srv = so.socket(so.AF_UNIX, so.SOCK_STREAM)
            srv.bind(path)
            srv.listen(1)
            r, w = os.pipe()
            res = {}

            def fake():
                try:
                    c, _ = srv.accept()
                    c.settimeout(10)
                    c.recv(1)
                    t1 = time.monotonic_ns()
                    c.sendall(b"bugcheck now\n")
                    end = t1 + gap_us * 1000
                    while time.monotonic_ns() < end:
                        pass
                    t2 = time.monotonic_ns()
                    os.write(w, b"{\"BugCheckCode\": \"0x0\"}\n")
                    res["gap"] = t2 - t1
                    time.sleep(0.02)
                    c.close()
                except OSError:
                    pass
            th = threading.Thread(target=fake)
            th.start()

            class FakeGuest:
                serial_path = path
            try:
                ns, _, _ = probe(exe, FakeGuest, r, "BugCheckCode", 5000)
            finally:
                th.join(10)
                os.close(r)
                os.close(w)
                srv.close()
            if ns is not None and "gap" in res:
                errs.append((ns - res["gap"]) / 1000)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return errs
