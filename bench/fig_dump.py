"""Figure 6: crash dump of a 4 GiB guest, timed until its file is on disk.

One shm-backed guest (--shm --mem 4096) that bug-checks once per trigger
(--count). Its RAM is filled from the host through the shared file, above
the low 64 MiB where the guest kernel and its structures live:
  (a) half random, half zeros: bsodmon --crashdump-dir against QMP
      dump-guest-memory (ELF, paging=false, file:) of the same guest;
  (b) all random: bsodmon against cp of the shared file (the disk's ceiling).
  (c) half random, half zeros again: bsodmon --crashdump-format dmp (the
      Windows crash dump) and both (crashdump.bin and crashdump.dmp from one
      pass over RAM) against the raw image, in the same run, interleaved.
Each is timed until its file is on disk: bsodmon from the guest's
"bugcheck now" to its exit (-b) plus an fsync of the dump; QEMU from the
command to its return plus fsync; cp plus fsync. Throughput is GB of guest
RAM per second (all RAM, including the low 64 MiB). The runs of the two
methods are interleaved (and alternate which goes first); each output is
deleted and the page cache written back (sync) before the next run.
"""
import os
import sys
import random
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import time

import benchlib as B
import dmpfile  # tests/lib, on the path through benchlib
import figures as F

LOW_KEEP = 64 << 20
TOP_KEEP = 16 << 20
BLOCK = 64 << 20
PAGE = 4096


def availability(ctx):
    """None when bsodmon can write crash dumps, else the reason."""
    d = tempfile.mkdtemp(prefix="bsodmon-bench-dumpcheck-", dir=ctx.scratch)
    try:
        r = subprocess.run([ctx.bsodmon, "-d", os.path.join(d, "absent.sock"),
                            "--crashdump-dir", os.path.join(d, "out")],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
        msg = r.stderr.strip()
        if r.returncode != 0 and ("crashdump" in msg.lower() or "crash dump" in msg.lower()):
            return f"bsodmon --crashdump-dir: {msg.splitlines()[0] if msg else 'failed'}"
        return None
    finally:
        shutil.rmtree(d, ignore_errors=True)


def rows_unavailable(reason):
    return [
        F.unavailable("6", "(a) crash dump, RAM half random/half zero: throughput", "GB/s",
                      "QEMU dump-guest-memory (ELF)", reason, ">= 1.5x QEMU"),
        F.unavailable("6", "(a) crash dump file: allocated size / RAM", "%",
                      "QEMU dump-guest-memory (ELF)", reason, "<= 55%"),
        F.unavailable("6", "(b) crash dump, RAM all random: throughput", "GB/s",
                      "cp of the shm file + sync", reason, ">= 0.9x cp"),
    ] + formats_unavailable(reason)


def formats_unavailable(reason):
    return [
        F.unavailable("6", "(c) crash dump as crashdump.dmp, RAM half random/half zero: "
                      "throughput", "GB/s", "bsodmon raw (crashdump.bin), same run", reason,
                      ">= 0.9x raw"),
        F.unavailable("6", "(c) crashdump.dmp: allocated size / RAM", "%",
                      "crashdump.bin, same run", reason, "<= 55%"),
        F.unavailable("6", "(c) both files from one pass: throughput", "GB/s",
                      "bsodmon raw (crashdump.bin), same run", reason, ""),
    ]


def fig_dump(ctx):
    reason = availability(ctx)
    if reason:
        B.log(f"  not available: {reason}")
        ctx.notes["figure6"] = f"not available: {reason}"
        return rows_unavailable(reason)
    runs = ctx.dump_runs
    mem = ctx.dump_mem << 20
    res = {k: [] for k in ("a_b", "a_q", "a_b_alloc", "a_q_alloc", "b_b", "b_cp")}
    with B.Guest(ctx.isf, "--shm", "--mem", str(ctx.dump_mem), "--count", str(5 * runs + 2),
                 "--bugcheck", "0x1a,0x41790,0xfffffa8000000000,0x0,0x0") as g:
        shm = g.shm_path()
        rng = random.Random(ctx.seed + 6)
        pool = Pool(rng)
        t = time.monotonic()
        n = fill(shm, g.truth, mem, pool, mem // 2)
        B.log(f"  filled guest RAM: {n >> 20} MiB random from 64 MiB up, zeros above "
              f"({time.monotonic() - t:.1f} s)")
        t_fig = time.monotonic()
        short = []
        for i in range(runs):
            if i >= 3 and time.monotonic() - t_fig > ctx.dump_budget / 2:
                short.append(f"(a) {i} runs per method, not {runs}")
                break
            order = ("bsodmon", "qemu") if i % 2 == 0 else ("qemu", "bsodmon")
            for who in order:
                if who == "bsodmon":
                    gbs, alloc = dump_bsodmon(ctx, g, shm, mem, rng)
                    if gbs is not None:
                        res["a_b"].append(gbs)
                        res["a_b_alloc"].append(alloc)
                else:
                    gbs, alloc = dump_qemu(ctx, g, shm, mem, rng)
                    res["a_q"].append(gbs)
                    res["a_q_alloc"].append(alloc)
            B.log(f"  (a) run {i + 1}/{runs}: GB/s bsodmon {F._fmt(res['a_b'][-1:])} "
                  f"QEMU {F._fmt(res['a_q'][-1:])}; allocated % bsodmon "
                  f"{F._fmt(res['a_b_alloc'][-1:])} QEMU {F._fmt(res['a_q_alloc'][-1:])}")
        rows_c = formats_phase(ctx, g, shm, mem, rng, runs)
        t = time.monotonic()
        n = fill(shm, g.truth, mem, pool, mem)
        B.log(f"  filled guest RAM: {n >> 20} MiB random (all but the guest kernel's "
              f"{(mem - n) >> 20} MiB) ({time.monotonic() - t:.1f} s)")
        for i in range(runs):
            if i >= 3 and time.monotonic() - t_fig > ctx.dump_budget:
                short.append(f"(b) {i} runs per method, not {runs}")
                break
            order = ("bsodmon", "cp") if i % 2 == 0 else ("cp", "bsodmon")
            for who in order:
                if who == "bsodmon":
                    gbs, _ = dump_bsodmon(ctx, g, shm, mem, rng)
                    if gbs is not None:
                        res["b_b"].append(gbs)
                else:
                    res["b_cp"].append(copy_ceiling(ctx, shm, mem))
            B.log(f"  (b) run {i + 1}/{runs}: GB/s bsodmon {F._fmt(res['b_b'][-1:])} "
                  f"cp+sync {F._fmt(res['b_cp'][-1:])}")
    note = (f"{ctx.dump_mem} MiB guest; written to {ctx.scratch}; "
            "timed to the file on disk (fsync)")
    if short:
        note += ("; the disk was too slow for all runs within --dump-budget "
                 f"{ctx.dump_budget:.0f} s: " + ", ".join(short))
        B.log(f"  NOTE: {'; '.join(short)} (disk too slow for the time budget)")
    return [
        F.row("6", "(a) crash dump, RAM half random/half zero: throughput", "GB/s",
              res["a_b"], res["a_q"], "QEMU dump-guest-memory (ELF)",
              (">= 1.5x QEMU", lambda r: r["ratio"] >= 1.5), "higher", note),
        F.row("6", "(a) crash dump file: allocated size / RAM", "%", res["a_b_alloc"],
              res["a_q_alloc"], "QEMU dump-guest-memory (ELF)",
              ("<= 55%", lambda r: r["bsodmon"] <= 55), "lower"),
        F.row("6", "(b) crash dump, RAM all random: throughput", "GB/s", res["b_b"],
              res["b_cp"], "cp of the shm file + sync (disk ceiling)",
              (">= 0.9x cp", lambda r: r["ratio"] >= 0.9), "higher", note),
    ] + rows_c


def formats_phase(ctx, g, shm, mem, rng, runs):
    """(c): raw, dmp and both on the half-zero guest, interleaved (the order
    rotates), each timed to its files on disk and checked against guest
    RAM. Rows: dmp against raw, both against raw, dmp's allocated size."""
    res = {"raw": [], "dmp": [], "both": [], "dmp_alloc": [], "raw_alloc": []}
    fmts = ("raw", "dmp", "both")
    for i in range(runs):
        for fmt in fmts[i % 3:] + fmts[:i % 3]:
            per_file = {}
            gbs, _ = dump_bsodmon(ctx, g, shm, mem, rng, fmt, per_file)
            if gbs is None:
                continue
            res[fmt].append(gbs)
            if fmt == "dmp":
                res["dmp_alloc"].append(per_file["crashdump.dmp"] * 100 / mem)
            if fmt == "raw":
                res["raw_alloc"].append(per_file["crashdump.bin"] * 100 / mem)
        B.log(f"  (c) run {i + 1}/{runs}: GB/s raw {F._fmt(res['raw'][-1:])} dmp "
              f"{F._fmt(res['dmp'][-1:])} both {F._fmt(res['both'][-1:])}; crashdump.dmp "
              f"allocated {F._fmt(res['dmp_alloc'][-1:])} %")
    note = (f"{ctx.dump_mem} MiB guest, half random; written to {ctx.scratch}; timed to the "
            "files on disk (fsync); both = one pass over RAM, two files written")
    return [
        F.row("6", "(c) crash dump as crashdump.dmp, RAM half random/half zero: throughput",
              "GB/s", res["dmp"], res["raw"], "bsodmon raw (crashdump.bin), same run",
              (">= 0.9x raw", lambda r: r["ratio"] >= 0.9), "higher", note),
        F.row("6", "(c) crashdump.dmp: allocated size / RAM", "%", res["dmp_alloc"],
              res["raw_alloc"], "crashdump.bin, same run",
              ("<= 55%", lambda r: r["bsodmon"] <= 55), "lower"),
        F.row("6", "(c) both files from one pass: throughput", "GB/s", res["both"], res["raw"],
              "bsodmon raw (crashdump.bin), same run", None, "higher",
              "twice the data written; RAM read once (tests/unit/dump/test_dmp.c counts the "
              "reads)"),
    ]


# ---- filling guest RAM -----------------------------------------------------------------

class Pool:
    """Incompressible data without generating 4 GiB of it: one random
    buffer, read at a different offset for every block, so no two blocks
    (or pages) are equal."""

    def __init__(self, rng):
        self.buf = memoryview(os.urandom(BLOCK + (1 << 20)))
        self.rng = rng

    def block(self, i):
        off = (i * 4099 * 8 + 8) % (1 << 20)
        return self.buf[off:off + BLOCK]


def writable(truth, mem):
    """[(gpa, end)) RAM the host may overwrite: all RAM except the low 64 MiB
    (guest kernel, page tables, world) and the top 16 MiB of the range the
    kernel runs in (where QEMU put the layout blob the guest still reads at
    its bug check)."""
    out = []
    ranges = [(int(a, 16), int(b, 16) + 1) for a, b in truth["Ram"]]
    for a, b in ranges:
        if a <= LOW_KEEP < b:
            b = b - TOP_KEEP
        a = max(a, LOW_KEEP)
        if b > a:
            out.append((a, b))
    return out


def fill(shm, truth, mem, pool, random_bytes):
    """Write random data over the first random_bytes of the writable RAM
    (in guest-physical order) and zeros over the rest. Returns the random
    bytes written."""
    zeros = bytes(BLOCK)
    left = random_bytes
    fd = os.open(shm, os.O_WRONLY)
    try:
        i = 0
        for a, b in writable(truth, mem):
            for gpa in range(a, b, BLOCK):
                n = min(BLOCK, b - gpa)
                if left > 0:
                    n = min(n, left)
                    os.pwrite(fd, pool.block(i)[:n], ram_offset(gpa, mem))
                    left -= n
                    i += 1
                    if n < min(BLOCK, b - gpa):     # the rest of this block: zeros
                        os.pwrite(fd, zeros[:min(BLOCK, b - gpa) - n], ram_offset(gpa + n, mem))
                else:
                    os.pwrite(fd, zeros[:n], ram_offset(gpa, mem))
    finally:
        os.close(fd)
    return random_bytes - left


# ---- each method ---------------------------------------------------------------------------

def fsync_path(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def settle():
    """Write back whatever is dirty before the next timed run."""
    os.sync()
    time.sleep(0.5)


def dump_bsodmon(ctx, g, shm, mem, rng, fmt="raw", per_file=None):
    """GB/s and allocated % of all files; per_file (if given) gets each
    file's allocated bytes."""
    out = tempfile.mkdtemp(prefix="bsodmon-bench-dump-", dir=ctx.scratch)
    m = B.Monitor(ctx.bsodmon, *F.monitor_args(g, "-b", "--crashdump-dir", os.path.join(out, "d"),
                                               "--crashdump-format", fmt))
    s = None
    try:
        settle()
        if m.wait_stderr("plugin bsodmon armed", 60) is None:
            ctx.errors.add(f"bsodmon (crash dump) did not arm: {m.stderr().strip()[-300:]}")
            return None, None
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(g.serial_path)
        s.sendall(b"t")
        buf = b""
        deadline = time.monotonic() + 30
        while b"bugcheck now\n" not in buf and time.monotonic() < deadline:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                c = s.recv(4096)
            except socket.timeout:
                break
            if not c:
                break
            buf += c
        t0 = time.monotonic()
        if b"bugcheck now\n" not in buf:
            ctx.errors.add("crash dump run: the guest did not bug-check on its trigger")
            return None, None
        try:
            rc = m.p.wait(600)
        except subprocess.TimeoutExpired:
            rc = None
        files = sorted(os.listdir(os.path.join(out, "d"))) if os.path.isdir(
            os.path.join(out, "d")) else []
        dump = pick_dump(os.path.join(out, "d"), files)
        for f in files:
            fsync_path(os.path.join(out, "d", f))
        t1 = time.monotonic()
        lines = m.read_stdout(5).strip().splitlines()
        if rc != 10:
            ctx.errors.add(f"bsodmon --crashdump-dir -b exited {rc}, not 10: "
                           f"{m.stderr().strip()[-300:]}")
        if len(lines) != 1:
            ctx.errors.add(f"crash dump run: {len(lines)} event lines, not 1")
        else:
            bad = B.check_bsodmon_event(lines[0], g.truth)
            if bad:
                ctx.errors.add(f"crash dump run: wrong event: {bad}")
        if not dump:
            ctx.errors.add(f"crash dump run: no dump file in {files}")
            return None, None
        bad = verify(dump, shm, g.truth, mem, rng) if dump.endswith(".bin") else None
        if not bad and "crashdump.dmp" in files:
            bad = verify_dmp(os.path.join(out, "d", "crashdump.dmp"), shm, g.truth, mem, rng)
        if bad:
            ctx.errors.add(f"crash dump content ({fmt}): {bad}")
            return None, None
        if per_file is not None:
            for f in files:
                per_file[f] = os.stat(os.path.join(out, "d", f)).st_blocks * 512
        st = os.stat(dump)
        alloc = sum(os.stat(os.path.join(out, "d", f)).st_blocks * 512 for f in files)
        if not g.wait_serial("bluescreen", 30, count=g.serial().count("bugcheck now")):
            ctx.errors.add("crash dump run: the guest did not resume after the dump")
        mm = re.search(r"crash dump written: .* in ([0-9.]+) s", m.stderr())
        if mm:      # bsodmon's own timing of the write, for comparison
            ctx.notes.setdefault("figure6_bsodmon_self_reported_s", []).append(float(mm.group(1)))
        ctx.notes.setdefault("figure6_bsodmon_total_s", []).append(round(t1 - t0, 3))
        ctx.notes.setdefault("figure6_files", sorted(set(files)))
        ctx.notes["figure6_dump_size_bytes"] = st.st_size
        return mem / 1e9 / (t1 - t0), alloc * 100 / mem
    finally:
        if s:
            s.close()
        m.end()
        shutil.rmtree(out, ignore_errors=True)
        settle()


def pick_dump(d, files):
    """The memory file bsodmon wrote (crashdump.bin, else crashdump.dmp, else
    the largest), or None."""
    for name in ("crashdump.bin", "crashdump.dmp"):
        if name in files:
            return os.path.join(d, name)
    best = None
    for f in files:
        p = os.path.join(d, f)
        if os.path.isfile(p) and (best is None or os.path.getsize(p) > os.path.getsize(best)):
            best = p
    return best


def dump_qemu(ctx, g, shm, mem, rng):
    out = tempfile.mkdtemp(prefix="bsodmon-bench-qdump-", dir=ctx.scratch)
    path = os.path.join(out, "dump.elf")
    try:
        settle()
        q = g.qmp(timeout=600)
        try:
            t0 = time.monotonic()
            q.cmd("dump-guest-memory", paging=False, protocol=f"file:{path}", format="elf")
            fsync_path(path)
            t1 = time.monotonic()
        finally:
            q.close()
        bad = verify(path, shm, g.truth, mem, rng)
        if bad:
            raise B.BenchError(f"QEMU's dump does not match guest RAM: {bad}")
        return mem / 1e9 / (t1 - t0), os.stat(path).st_blocks * 512 * 100 / mem
    finally:
        shutil.rmtree(out, ignore_errors=True)
        settle()


def copy_ceiling(ctx, shm, mem):
    out = tempfile.mkdtemp(prefix="bsodmon-bench-cp-", dir=ctx.scratch)
    path = os.path.join(out, "ram.bin")
    try:
        settle()
        t0 = time.monotonic()
        subprocess.run(["cp", shm, path], check=True)
        fsync_path(path)
        t1 = time.monotonic()
        if os.path.getsize(path) != os.path.getsize(shm):
            raise B.BenchError("cp made a file of another size")
        return mem / 1e9 / (t1 - t0)
    finally:
        shutil.rmtree(out, ignore_errors=True)
        settle()


# ---- checking a dump against guest RAM -------------------------------------------------------

def ram_offset(gpa, mem):
    """Offset in the shm file of a guest-physical address (pc machine: RAM
    above the hole below 4 GiB continues at 4 GiB)."""
    low = mem if mem < 0xe0000000 else 0xc0000000
    if gpa < low:
        return gpa
    if gpa >= 1 << 32:
        return low + gpa - (1 << 32)
    return None


def loads(path):
    """[(gpa, file offset, size)] of a dump: ELF PT_LOADs, or a raw image
    where the file offset is the guest-physical address."""
    with open(path, "rb") as f:
        h = f.read(64)
        if h[:4] != b"\x7fELF" or h[4] != 2:
            return None
        phoff, = struct.unpack_from("<Q", h, 32)
        phentsize, phnum = struct.unpack_from("<HH", h, 54)
        f.seek(phoff)
        ph = f.read(phentsize * phnum)
    out = []
    for i in range(phnum):
        p_type, _, p_offset, _, p_paddr, p_filesz = struct.unpack_from("<IIQQQQ", ph, i * phentsize)
        if p_type == 1 and p_filesz:
            out.append((p_paddr, p_offset, p_filesz))
    return out


def verify(path, shm, truth, mem, rng, samples=256):
    """None when sampled pages of the dump equal guest RAM, else what differs."""
    ranges = [(a, b - 1) for a, b in writable(truth, mem)]
    elf = loads(path)
    size = os.path.getsize(path)
    with open(path, "rb") as d, open(shm, "rb") as r:
        for _ in range(samples):
            a, b = rng.choice(ranges)
            gpa = rng.randrange(a, b + 1 - PAGE) & ~(PAGE - 1)
            off = None
            if elf is None:
                off = gpa
            else:
                for pa, fo, n in elf:
                    if pa <= gpa and gpa + PAGE <= pa + n:
                        off = fo + gpa - pa
                        break
            if off is None or off + PAGE > size:
                return f"{os.path.basename(path)} has no data for GPA {gpa:#x}"
            d.seek(off)
            r.seek(ram_offset(gpa, mem))
            if d.read(PAGE) != r.read(PAGE):
                return f"{os.path.basename(path)}: page at GPA {gpa:#x} differs from guest RAM"
    return None


def verify_dmp(path, shm, truth, mem, rng, samples=256):
    """None when sampled pages of crashdump.dmp (read through its runs by
    tests/lib/dmpfile.py) equal guest RAM, else what differs."""
    ranges = [(a, b - 1) for a, b in writable(truth, mem)]
    try:
        d = dmpfile.CrashDump(path)
    except dmpfile.DumpError as e:
        return f"crashdump.dmp refused by the reader: {e}"
    try:
        with open(shm, "rb") as r:
            for _ in range(samples):
                a, b = rng.choice(ranges)
                gpa = rng.randrange(a, b + 1 - PAGE) & ~(PAGE - 1)
                r.seek(ram_offset(gpa, mem))
                try:
                    page = d.read_phys(gpa, PAGE)
                except KeyError:
                    return f"crashdump.dmp has no run for GPA {gpa:#x}"
                if page != r.read(PAGE):
                    return f"crashdump.dmp: page at GPA {gpa:#x} differs from guest RAM"
    finally:
        d.close()
    return None


def main():
    """bench/fig_dump.py formats [RUNS] [MiB]: phase (c) alone, printed."""
    if len(sys.argv) < 2 or sys.argv[1] != "formats":
        sys.exit(main.__doc__)

    class Ctx:
        pass
    ctx = Ctx()
    ctx.bsodmon = os.environ.get("BSODMON") or os.path.join(B.ROOT, "build", "bsodmon")
    ctx.isf = B.T.isfs()[0]
    ctx.scratch, ctx.seed, ctx.errors, ctx.notes = "/var/tmp", 20240601, B.Errors(), {}
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    ctx.dump_mem = int(sys.argv[3]) if len(sys.argv) > 3 else 4096
    mem = ctx.dump_mem << 20
    with B.Guest(ctx.isf, "--shm", "--mem", str(ctx.dump_mem), "--count", str(3 * runs + 2),
                 "--bugcheck", "0x1a,0x41790,0xfffffa8000000000,0x0,0x0") as g:
        rng = random.Random(ctx.seed + 6)
        n = fill(g.shm_path(), g.truth, mem, Pool(rng), mem // 2)
        B.log(f"  filled guest RAM: {n >> 20} MiB random from 64 MiB up, zeros above")
        rows = formats_phase(ctx, g, g.shm_path(), mem, rng, runs)
    for r in rows:
        B.log(f"{r['name']}: bsodmon {F._fmt([r['bsodmon']])} {r['unit']} vs {r['peer_name']} "
              f"{F._fmt([r['peer']])} (ratio {r['ratio'] and round(r['ratio'], 2)}); goal "
              f"{r.get('goal')}: {r.get('goal_met')}; runs {r['runs']}")
    return 1 if ctx.errors.items else 0


if __name__ == "__main__":
    sys.exit(main())
