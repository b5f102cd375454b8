"""A real libvirtd for the tests, and the synthetic guest as a libvirt domain
(python3 stdlib; virsh subprocesses).

The daemon: when a libvirtd answers on qemu:///system the tests use it, with
domains of their own (bsodmon-t-PID-XXXX), removed afterwards. Otherwise the
first test (or scripts/check, through tests/lib/libvirtd-ctl start) starts
virtlogd and libvirtd with pid files of our own and records that in a state
file; whoever started them stops them by PID at the end (scripts/check after
the whole run; a test run alone when it is the last user), pass or fail. Only
a daemon the harness started may be restarted by a test (Daemon.restart);
every test holds a shared lock for its run and the restarting test an
exclusive one, so no other test sees libvirtd go away.

The domain: tests/guest/boot --libvirt NAME defines and starts it (direct
kernel boot of the guest, TCG, serial to DIR/serial.sock with DIR/serial.log)
and prints the guest's truth line, as for plain QEMU. Domain below wraps that
with the same methods as testlib.Guest (serial, wait_serial, trigger)."""
import fcntl
import json
import os
import pwd
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testlib as T  # noqa: E402

URI = "qemu:///system"
LIBVIRTD = "/usr/sbin/libvirtd"
VIRTLOGD = "/usr/sbin/virtlogd"
VIRTSH = shutil.which("virsh") or "/usr/bin/virsh"
RW_SOCK = "/run/libvirt/libvirt-sock"
RO_SOCK = "/run/libvirt/libvirt-sock-ro"
VIRTLOGD_SOCK = "/run/libvirt/virtlogd-sock"
QEMU_STATE = "/run/libvirt/qemu"
# State and locks of the test harness's daemon (root only, like libvirtd's).
STATE_DIR = os.environ.get("BSODMON_LIBVIRT_STATE_DIR", "/run/bsodmon-tests")
STATE = os.path.join(STATE_DIR, "libvirtd.json")
# Where domains' private directories go: a place QEMU's user reaches under
# DAC and that virt-aa-helper allows under AppArmor (the images pool).
DOMAIN_PARENT = os.environ.get("BSODMON_LIBVIRT_DIR", "/var/lib/libvirt/images")
PREFIX = "bsodmon-t-"


def log(msg):
    print(f"# libvirt: {msg}", flush=True)


def virsh(*args, uri=URI, check=True, timeout=120):
    """virsh -c URI ARGS; returns (rc, stdout, stderr). check: fail the test."""
    r = subprocess.run([VIRTSH, "-q", "-c", uri] + list(args), stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"virsh {' '.join(args)}: {r.stderr.strip()}")
    return r.returncode, r.stdout, r.stderr


def answers(uri=URI, timeout=90):
    """True when a libvirtd answers on URI (the first start probes QEMU ~8 s)."""
    if uri == URI and not os.path.exists(RW_SOCK):
        return False
    try:
        return virsh("version", uri=uri, check=False, timeout=timeout)[0] == 0
    except subprocess.TimeoutExpired:
        return False


def installed():
    return os.access(LIBVIRTD, os.X_OK) and os.access(VIRTLOGD, os.X_OK) and os.access(VIRTSH, os.X_OK)


# ---- processes, by pid -------------------------------------------------------------

def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def is_prog(pid, prog):
    """pid runs prog (guards against a recycled pid)."""
    try:
        return os.path.realpath(f"/proc/{pid}/exe") == os.path.realpath(prog)
    except OSError:
        return False


def read_pid(path):
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def stop_pid(pid, prog, what, seconds=20):
    """SIGTERM, then SIGKILL after `seconds`; only if pid still runs prog."""
    if not pid or not alive(pid) or not is_prog(pid, prog):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + seconds
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if alive(pid):
        log(f"{what} (pid {pid}) ignored SIGTERM for {seconds} s: SIGKILL")
        os.kill(pid, signal.SIGKILL)
        while alive(pid):
            time.sleep(0.05)


def sock_answers(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


# ---- the daemon --------------------------------------------------------------------

def _lockfile(name):
    os.makedirs(STATE_DIR, mode=0o700, exist_ok=True)
    return open(os.path.join(STATE_DIR, name), "a+")


def read_state():
    try:
        with open(STATE) as f:
            st = json.load(f)
    except (OSError, ValueError):
        return None
    # Valid only while the libvirtd it names runs.
    if not (isinstance(st, dict) and isinstance(st.get("libvirtd"), int)
            and alive(st["libvirtd"]) and is_prog(st["libvirtd"], LIBVIRTD)):
        return None
    return st


def write_state(st):
    tmp = STATE + ".tmp"
    with open(tmp, "w") as f:
        json.dump(st, f)
    os.replace(tmp, STATE)


def kvm_for_qemu_user():
    """Give /dev/kvm the owner and mode Debian's udev rules give it (group
    kvm, read-write for the group), when it exists and nothing did. Without
    udev (containers, CI) it stays root's alone: libvirt then finds KVM when
    it probes QEMU, finds it unusable for QEMU's user when it checks its
    cache, and probes every emulator again on each define or start (about
    8 s per emulator here, a define once took over 60 s)."""
    try:
        st = os.stat("/dev/kvm")
    except OSError:
        return
    try:
        import grp
        gid = grp.getgrnam("kvm").gr_gid
    except KeyError:
        return
    if st.st_gid == gid and st.st_mode & 0o060 == 0o060:
        return
    try:
        os.chown("/dev/kvm", -1, gid)
        os.chmod("/dev/kvm", (st.st_mode & 0o7777) | 0o060)
        log("gave /dev/kvm group kvm, mode g+rw, as udev does on Debian")
    except OSError as e:
        log(f"/dev/kvm is not usable by QEMU's user and could not be changed: {e}")


def start_daemons(persistent):
    """Start virtlogd (unless one answers) and libvirtd; returns the state."""
    kvm_for_qemu_user()
    st = {"libvirtd": None, "virtlogd": None, "persistent": persistent, "users": [],
          "libvirtd_pidfile": os.path.join(STATE_DIR, "libvirtd.pid"),
          "virtlogd_pidfile": os.path.join(STATE_DIR, "virtlogd.pid")}
    if not sock_answers(VIRTLOGD_SOCK):
        subprocess.run([VIRTLOGD, "-d", "-p", st["virtlogd_pidfile"]], check=True)
        deadline = time.monotonic() + 20
        while not sock_answers(VIRTLOGD_SOCK):
            if time.monotonic() > deadline:
                raise RuntimeError("virtlogd did not answer within 20 s")
            time.sleep(0.05)
        st["virtlogd"] = read_pid(st["virtlogd_pidfile"])
    t0 = time.monotonic()
    launch_libvirtd(st)
    log(f"started virtlogd (pid {st['virtlogd'] or 'already running'}) and libvirtd "
        f"(pid {st['libvirtd']}); it answered after {time.monotonic() - t0:.1f} s")
    return st


def launch_libvirtd(st):
    subprocess.run([LIBVIRTD, "-d", "-p", st["libvirtd_pidfile"]], check=True)
    deadline = time.monotonic() + 30
    pid = None
    while time.monotonic() < deadline:
        pid = read_pid(st["libvirtd_pidfile"])
        if pid and alive(pid):
            break
        time.sleep(0.05)
    if not pid or not alive(pid):
        raise RuntimeError("libvirtd did not start (no pid file)")
    st["libvirtd"] = pid
    write_state(st)     # before the wait: a failure must still stop it
    deadline = time.monotonic() + 120
    while not answers(timeout=60):
        if not alive(pid):
            raise RuntimeError("libvirtd exited during its start")
        if time.monotonic() > deadline:
            raise RuntimeError("libvirtd did not answer within 120 s")
        time.sleep(0.1)


def stop_daemons(st):
    sweep(everything=True)
    stop_pid(st.get("libvirtd"), LIBVIRTD, "libvirtd")
    stop_pid(st.get("virtlogd"), VIRTLOGD, "virtlogd")
    for k in ("libvirtd_pidfile", "virtlogd_pidfile"):
        try:
            os.unlink(st[k])
        except (OSError, KeyError, TypeError):
            pass
    try:
        os.unlink(STATE)
    except OSError:
        pass
    log(f"stopped libvirtd (pid {st.get('libvirtd')})"
        + (f" and virtlogd (pid {st['virtlogd']})" if st.get("virtlogd") else ""))


def sweep(everything=False):
    """Remove domains and directories of ours left by a test that died (the
    pid in the name no longer runs); with everything, also every domain of
    ours this daemon has (it is about to stop)."""
    rc, out, _ = virsh("list", "--all", "--name", check=False, timeout=30)
    doms = set(out.split()) if rc == 0 else set()
    try:
        dirs = {n for n in os.listdir(DOMAIN_PARENT) if n.startswith(PREFIX)}
    except OSError:
        dirs = set()
    for n in sorted(doms | dirs):
        m = re.fullmatch(PREFIX + r"(\d+)-[0-9a-f]+", n)
        if not m:
            continue
        dead = not alive(int(m.group(1)))
        if n in doms and (dead or everything):
            remove_domain(n)
        if dead or (everything and n in doms):
            shutil.rmtree(os.path.join(DOMAIN_PARENT, n), ignore_errors=True)


def remove_domain(name, uri=URI):
    virsh("destroy", name, uri=uri, check=False, timeout=60)
    virsh("undefine", name, "--snapshots-metadata", uri=uri, check=False, timeout=60)


class Daemon:
    """A libvirtd for this test: the one that answers, or one we start.

    Use as a context manager; restartable is True only when the test
    harness started it (then restart() is allowed)."""

    def __init__(self, exclusive=False):
        if not installed():
            T.skip(f"libvirt is not installed ({LIBVIRTD}, {VIRTLOGD}, virsh); "
                   "scripts/install-deps installs it")
        if os.geteuid() != 0:
            T.skip("the libvirt tests need root (qemu:///system, process_vm_readv on QEMU)")
        self.exclusive = exclusive
        # Restart gate, writer-preferring: a test that restarts libvirtd takes
        # the gate, then waits for the running tests; new ones wait on the gate.
        self._gate = _lockfile("restart.gate")
        self._use = _lockfile("restart.use")
        fcntl.flock(self._gate, fcntl.LOCK_EX)
        fcntl.flock(self._use, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        if not exclusive:
            fcntl.flock(self._gate, fcntl.LOCK_UN)
        self._mutex = _lockfile("libvirtd.lock")
        with self._locked():
            st = read_state()
            if st is None and answers():
                self.restartable = False
                log("using the libvirtd that answers on qemu:///system (not started by the "
                    "test harness)")
            else:
                if st is None:
                    st = start_daemons(persistent=False)
                self.restartable = True
                st["users"] = [p for p in st["users"] if alive(p)] + [os.getpid()]
                write_state(st)
            sweep()

    def _locked(self):
        mutex = self._mutex

        class L:
            def __enter__(s):
                fcntl.flock(mutex, fcntl.LOCK_EX)

            def __exit__(s, *exc):
                fcntl.flock(mutex, fcntl.LOCK_UN)
        return L()

    def pid(self):
        st = read_state()
        return st["libvirtd"] if st else read_pid("/run/libvirtd.pid")

    def restart(self):
        """Stop libvirtd by PID and start it again (harness-started only)."""
        assert self.exclusive and self.restartable
        with self._locked():
            st = read_state()
            if st is None:
                raise RuntimeError("the harness's libvirtd is gone")
            old = st["libvirtd"]
            stop_pid(old, LIBVIRTD, "libvirtd")
            t0 = time.monotonic()
            launch_libvirtd(st)
            log(f"restarted libvirtd: pid {old} -> {st['libvirtd']}, answered after "
                f"{time.monotonic() - t0:.2f} s")

    def release_use(self):
        """Let go of the shared hold between uses (tests/soak holds the
        daemon for half an hour: a restarting test must not wait all that
        time); take_use() takes it again, through the gate, as __init__."""
        assert not self.exclusive
        fcntl.flock(self._use, fcntl.LOCK_UN)

    def take_use(self):
        fcntl.flock(self._gate, fcntl.LOCK_EX)
        fcntl.flock(self._use, fcntl.LOCK_SH)
        fcntl.flock(self._gate, fcntl.LOCK_UN)

    def try_restart(self):
        """restart() for a test that holds the daemon shared for a long time
        (tests/soak): only when no other test uses it at this moment (the
        shared lock becomes exclusive without waiting, or not at all).
        True if libvirtd was restarted, False if someone else uses it."""
        assert self.restartable and not self.exclusive
        try:
            fcntl.flock(self._gate, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        try:
            try:
                fcntl.flock(self._use, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                # A failed conversion may have dropped the shared lock
                # (flock(2): not atomic); take it again (we hold the gate).
                fcntl.flock(self._use, fcntl.LOCK_SH)
                return False
            self.exclusive = True
            try:
                self.restart()
            finally:
                self.exclusive = False
                fcntl.flock(self._use, fcntl.LOCK_SH)
            return True
        finally:
            fcntl.flock(self._gate, fcntl.LOCK_UN)

    def close(self):
        if self.restartable:
            with self._locked():
                st = read_state()
                if st is not None:
                    st["users"] = [p for p in st["users"] if p != os.getpid() and alive(p)]
                    if st["users"] or st.get("persistent"):
                        write_state(st)
                    else:
                        stop_daemons(st)
        fcntl.flock(self._use, fcntl.LOCK_UN)
        fcntl.flock(self._gate, fcntl.LOCK_UN)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def cli_start():
    """scripts/check: start a daemon for the whole run unless one answers."""
    if not installed():
        print("libvirtd-ctl: libvirt not installed; the libvirt tests will skip")
        return 0
    with _lockfile("libvirtd.lock") as mutex:
        fcntl.flock(mutex, fcntl.LOCK_EX)
        st = read_state()
        if st is not None:
            st["persistent"] = True
            write_state(st)
            print(f"libvirtd-ctl: the harness's libvirtd (pid {st['libvirtd']}) runs already")
        elif answers():
            kvm_for_qemu_user()
            print("libvirtd-ctl: a libvirtd not started by the harness answers; the tests use it")
        else:
            start_daemons(persistent=True)
    return 0


def cli_stop():
    if not os.path.isdir(STATE_DIR):
        return 0
    with _lockfile("libvirtd.lock") as mutex:
        fcntl.flock(mutex, fcntl.LOCK_EX)
        st = read_state()
        if st is None:
            print("libvirtd-ctl: no libvirtd of the harness runs; nothing to stop")
            return 0
        st["users"] = [p for p in st["users"] if alive(p)]
        if st["users"]:     # tests still using it: the last one stops it
            st["persistent"] = False
            write_state(st)
            print(f"libvirtd-ctl: libvirtd (pid {st['libvirtd']}) is in use by test pid(s) "
                  f"{st['users']}; the last of them stops it")
        else:
            stop_daemons(st)
    return 0


def cli_status():
    st = read_state()
    up = answers(timeout=20) if installed() else False
    print(json.dumps({"answers": up, "harness": st}))
    return 0


# ---- domains -----------------------------------------------------------------------

def qemu_ids():
    """uid, gid QEMU runs as under libvirt's DAC driver (from capabilities)."""
    rc, out, _ = virsh("capabilities", check=False, timeout=60)
    if rc == 0:
        for sm in ET.fromstring(out).iter("secmodel"):
            if sm.findtext("model") == "dac":
                labels = {b.get("type"): b.text for b in sm.findall("baselabel")}
                lab = labels.get("qemu") or labels.get("kvm")
                m = re.fullmatch(r"\+?(\d+):\+?(\d+)", lab or "")
                if m:
                    return int(m.group(1)), int(m.group(2))
    pw = pwd.getpwnam("libvirt-qemu")
    return pw.pw_uid, pw.pw_gid


def new_name():
    return f"{PREFIX}{os.getpid()}-{random.SystemRandom().randrange(1 << 24):06x}"


def domain_xml(name, kernel, initrd, cmdline, serial_sock, serial_log, mem=256, vcpus=1,
               machine="pc", accel="tcg", disk=None, panic=False, hv_crash=False):
    """A TCG (or KVM) domain booting the guest kernel directly. panic: a
    pvpanic device; hv_crash: the Hyper-V crash MSRs (<panic model='hyperv'/>,
    which libvirt 9.0 turns into -cpu ...,hv-crash; KVM only)."""
    from xml.sax.saxutils import quoteattr as qa, escape as esc
    # -cpu qemu64, as boot gives plain QEMU (and QEMU's default under KVM).
    cpu = "<cpu mode='custom' match='exact' check='none'><model fallback='forbid'>qemu64</model></cpu>"
    dev = [f"<emulator>{esc(shutil.which('qemu-system-x86_64') or '/usr/bin/qemu-system-x86_64')}</emulator>"]
    if disk:
        dev.append(f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
                   f"<source file={qa(disk)}/><target dev='hda' bus='ide'/></disk>")
    dev += ["<controller type='usb' model='none'/>",
            f"<serial type='unix'><source mode='bind' path={qa(serial_sock)}/>"
            f"<log file={qa(serial_log)} append='off'/><target port='0'/></serial>",
            "<video><model type='vga'/></video>",
            "<memballoon model='none'/>"]
    if panic:
        dev.append("<panic model='isa'/>")
    if hv_crash:
        dev.append("<panic model='hyperv'/>")
    return (f"<domain type='{'kvm' if accel == 'kvm' else 'qemu'}'>"
            f"<name>{esc(name)}</name>"
            f"<memory unit='MiB'>{mem}</memory><vcpu>{vcpus}</vcpu>"
            f"<os><type arch='x86_64' machine={qa(machine)}>hvm</type>"
            f"<kernel>{esc(kernel)}</kernel><initrd>{esc(initrd)}</initrd>"
            f"<cmdline>{esc(cmdline)}</cmdline></os>"
            f"<features><acpi/></features>{cpu}"
            "<on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot>"
            f"<on_crash>{'preserve' if panic or hv_crash else 'destroy'}</on_crash>"
            f"<devices>{''.join(dev)}</devices></domain>\n")


def prepare_dir(d):
    """The domain's private directory: owned by QEMU's user, 0700, so that
    QEMU can bind the serial socket in it and nobody else can look in."""
    uid, gid = qemu_ids()
    os.chown(d, uid, gid)
    os.chmod(d, 0o700)


def define_and_start(name, xml, d, uri=URI):
    path = os.path.join(d, "domain.xml")
    with open(path, "w") as f:
        f.write(xml)
    with open(os.path.join(d, "libvirt.json"), "w") as f:
        json.dump({"name": name, "uri": uri}, f)
    virsh("define", path, uri=uri, timeout=120)
    virsh("start", name, uri=uri, timeout=120)


def domstate(name, uri=URI):
    """(state, reason), e.g. ('running', 'unpaused'), or (None, error)."""
    rc, out, err = virsh("domstate", name, "--reason", uri=uri, check=False, timeout=60)
    if rc != 0:
        return None, err.strip()
    m = re.fullmatch(r"(.+?) \((.+)\)", out.strip())
    return (m.group(1), m.group(2)) if m else (out.strip(), "")


def status_xml(name):
    """libvirt's live status file of a running domain (root only)."""
    try:
        return ET.parse(os.path.join(QEMU_STATE, f"{name}.xml")).getroot()
    except (OSError, ET.ParseError):
        return None


class Domain(T.Guest):
    """The synthetic guest as a libvirt domain, in a private directory
    (DIR/serial.sock, serial.log, layout.bin, a copy of the kernel), with
    testlib.Guest's serial(), wait_serial() and trigger()."""

    def __init__(self, isf, *args, uri=URI, disk=False, timeout=300):
        self.isf, self.uri = isf, uri
        self.name = new_name()
        self.dir = os.path.join(DOMAIN_PARENT, self.name)
        os.mkdir(self.dir, 0o700)
        cmd = [os.path.join(T.GUEST, "boot"), "--libvirt", self.name, "--uri", uri,
               "--isf", isf, "--dir", self.dir] + (["--disk"] if disk else []) + list(args)
        try:    # a SIGTERM (meson's timeout) during the boot must not leave the domain
            r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               timeout=timeout)
            if r.returncode != 0:
                raise RuntimeError(f"boot --libvirt failed: {r.stderr.strip()}")
            self.truth = json.loads(r.stdout)
            self.uuid = virsh("domuuid", self.name, uri=uri)[1].strip()
        except BaseException:
            self.stop()
            raise

    # identity, as the tests check bsodmon's "Route" against it
    @property
    def pid(self):
        return read_pid(os.path.join(QEMU_STATE, f"{self.name}.pid"))

    def lib_dir(self):
        """The domain's private directory of this run (domain-<id>-<name>)."""
        st = status_xml(self.name)
        node = st.find("./libDir") if st is not None else None
        if node is not None and node.get("path"):
            return node.get("path")
        rc, out, _ = virsh("domid", self.name, uri=self.uri, check=False)
        return f"/var/lib/libvirt/qemu/domain-{out.strip()}-{self.name[:20]}" if rc == 0 else None

    def lib_dir_files(self):
        d = self.lib_dir()
        try:
            return set(os.listdir(d)) if d else set()
        except OSError:
            return set()

    def state(self):
        return domstate(self.name, self.uri)

    def running(self):
        return self.state()[0] == "running"

    def virsh(self, *args, check=True, timeout=120):
        return virsh(*args, uri=self.uri, check=check, timeout=timeout)

    def alive(self):
        p = self.pid
        return bool(p) and alive(p)

    def stop(self):
        remove_domain(self.name, self.uri)
        shutil.rmtree(self.dir, ignore_errors=True)


def define_inactive(name, uri=URI):
    """A domain that is defined but never started (for error tests)."""
    xml = (f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>16</memory>"
           "<os><type arch='x86_64' machine='pc'>hvm</type></os>"
           "<devices><memballoon model='none'/></devices></domain>")
    r = subprocess.run([VIRTSH, "-q", "-c", uri, "define", "/dev/stdin"], input=xml,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"virsh define: {r.stderr.strip()}")


def term_is_exit():
    """meson's timeout sends SIGTERM: turn it into SystemExit so that the
    finally blocks remove domains and stop what the test started."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
