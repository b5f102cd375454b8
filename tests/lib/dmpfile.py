"""Independent readers of bsodmon's crash dumps (python3 stdlib only).

Written from the public description of the formats, sharing nothing with
the C writer:

- FlatDump: crashdump.bin, byte N = guest-physical address N.
- CrashDump: crashdump.dmp, a Windows x64 crash dump (DUMP_HEADER64:
  "PAGE" "DU64", 0x2000 bytes, DumpType 1: PhysicalMemoryBlock runs of
  pages stored back to back after the header). It checks what Volatility
  3's crash layer and kdmp-parser check (signatures, DumpType, a run list
  that is not the 'PAGE' fill, runs inside the file, ContextRecord MxCsr =
  FltSave.MxCsr) and reads physical memory through the runs.

Both give read_phys(pa, n): bytes of guest-physical memory (zeros where the
file has a hole), or raise KeyError for an address the dump does not hold.
"""
import struct

PAGE = 4096
HEADER = 0x2000

# DUMP_HEADER64 (offsets of the public layout).
FIELDS = {
    "Signature": (0x000, "4s"), "ValidDump": (0x004, "4s"),
    "MajorVersion": (0x008, "<I"), "MinorVersion": (0x00C, "<I"),
    "DirectoryTableBase": (0x010, "<Q"), "PfnDataBase": (0x018, "<Q"),
    "PsLoadedModuleList": (0x020, "<Q"), "PsActiveProcessHead": (0x028, "<Q"),
    "MachineImageType": (0x030, "<I"), "NumberProcessors": (0x034, "<I"),
    "BugCheckCode": (0x038, "<I"),
    "BugCheckParameter1": (0x040, "<Q"), "BugCheckParameter2": (0x048, "<Q"),
    "BugCheckParameter3": (0x050, "<Q"), "BugCheckParameter4": (0x058, "<Q"),
    "KdDebuggerDataBlock": (0x080, "<Q"),
    "NumberOfRuns": (0x088, "<I"), "NumberOfPages": (0x090, "<Q"),
    "ExceptionCode": (0xF00, "<I"), "ExceptionFlags": (0xF04, "<I"),
    "ExceptionAddress": (0xF10, "<Q"),
    "DumpType": (0xF98, "<I"), "RequiredDumpSpace": (0xFA0, "<Q"),
    "SystemTime": (0xFA8, "<Q"), "SystemUpTime": (0x1030, "<Q"),
    "ProductType": (0x1040, "<I"), "SuiteMask": (0x1044, "<I"),
}
CONTEXT_OFF = 0x348
CONTEXT_SIZE = 0x4D0
COMMENT_OFF = 0xFB0
MAX_RUNS = 42


class DumpError(Exception):
    pass


class FlatDump:
    def __init__(self, path, ranges):
        self.f = open(path, "rb")
        self.ranges = list(ranges)

    def holds(self, pa):
        return any(s <= pa <= e for s, e in self.ranges)

    def read_phys(self, pa, n):
        out = bytearray()
        while n > 0:
            rng = [r for r in self.ranges if r[0] <= pa <= r[1]]
            if not rng:
                raise KeyError(f"{pa:#x} is not RAM")
            step = min(n, rng[0][1] + 1 - pa)
            self.f.seek(pa)
            b = self.f.read(step)
            out += b + b"\0" * (step - len(b))
            pa += step
            n -= step
        return bytes(out)

    def close(self):
        self.f.close()


class CrashDump:
    def __init__(self, path):
        self.f = open(path, "rb")
        h = self.f.read(HEADER)
        if len(h) != HEADER:
            raise DumpError(f"{path}: {len(h)} bytes, shorter than the 0x2000-byte header")
        self.raw_header = h
        self.h = {k: struct.unpack_from(fmt, h, off)[0] for k, (off, fmt) in FIELDS.items()}
        if self.h["Signature"] != b"PAGE" or self.h["ValidDump"] != b"DU64":
            raise DumpError(f"signature {self.h['Signature']!r} {self.h['ValidDump']!r}, "
                            "not PAGE DU64")
        if self.h["DumpType"] != 1:
            raise DumpError(f"DumpType {self.h['DumpType']}, not 1 (full, run list)")
        nruns = self.h["NumberOfRuns"]
        if nruns == 0x45474150 or self.h["NumberOfPages"] == 0x4547415045474150:
            raise DumpError("the run list is the 'PAGE' fill")
        if not 0 < nruns <= MAX_RUNS:
            raise DumpError(f"NumberOfRuns {nruns} not in 1..{MAX_RUNS}")
        self.runs = []  # (base page, page count, file offset)
        off = HEADER
        for i in range(nruns):
            base, count = struct.unpack_from("<QQ", h, 0x98 + 16 * i)
            if count == 0:
                raise DumpError(f"run {i} is empty")
            if self.runs and base < self.runs[-1][0] + self.runs[-1][1]:
                raise DumpError(f"run {i} at page {base:#x} overlaps or is out of order")
            self.runs.append((base, count, off))
            off += count * PAGE
        if sum(r[1] for r in self.runs) != self.h["NumberOfPages"]:
            raise DumpError("NumberOfPages is not the sum of the runs")
        self.f.seek(0, 2)
        self.file_size = self.f.tell()
        if off != self.file_size:
            raise DumpError(f"runs end at {off:#x}, the file at {self.file_size:#x}")
        self.context = h[CONTEXT_OFF:CONTEXT_OFF + CONTEXT_SIZE]
        mx1, = struct.unpack_from("<I", self.context, 0x34)
        mx2, = struct.unpack_from("<I", self.context, 0x100 + 0x18)
        if mx1 != mx2:
            raise DumpError(f"ContextRecord MxCsr {mx1:#x} != FltSave.MxCsr {mx2:#x} "
                            "(kdmp-parser refuses this)")
        self.comment = h[COMMENT_OFF:COMMENT_OFF + 128].split(b"\0")[0].decode("ascii")

    def context_field(self, isf_fields, name):
        """A member of ContextRecord, at the offset the ISF gives for _CONTEXT."""
        f = isf_fields[name]
        size = {"unsigned short": 2, "unsigned long": 4, "unsigned long long": 8}.get(
            f["type"].get("name"), 8)
        return int.from_bytes(self.context[f["offset"]:f["offset"] + size], "little")

    def run_of(self, pa):
        page = pa // PAGE
        for base, count, off in self.runs:
            if base <= page < base + count:
                return base, count, off
        raise KeyError(f"{pa:#x} is in no run")

    def file_offset(self, pa):
        base, _, off = self.run_of(pa)
        return off + (pa - base * PAGE)

    def holds(self, pa):
        try:
            self.file_offset(pa)
            return True
        except KeyError:
            return False

    def read_phys(self, pa, n):
        out = bytearray()
        while n > 0:
            base, count, off = self.run_of(pa)
            step = min(n, (base + count) * PAGE - pa)
            self.f.seek(off + (pa - base * PAGE))
            b = self.f.read(step)
            out += b + b"\0" * (step - len(b))
            pa += step
            n -= step
        return bytes(out)

    def close(self):
        self.f.close()


def translate(read_phys, dtb, va):
    """x64 4-level translation of va through the tables at dtb (2 MiB and
    1 GiB pages honoured); None if not present."""
    table = dtb & 0x000FFFFFFFFFF000
    for level, shift in enumerate((39, 30, 21, 12)):
        idx = (va >> shift) & 0x1FF
        e, = struct.unpack("<Q", read_phys(table + idx * 8, 8))
        if not e & 1:
            return None
        base = e & 0x000FFFFFFFFFF000
        if level in (1, 2) and e & 0x80:
            size = 1 << shift
            return (base & ~(size - 1)) + (va & (size - 1))
        table = base
    return table + (va & 0xFFF)


def read_virt(read_phys, dtb, va, n):
    out = bytearray()
    while n > 0:
        step = min(n, PAGE - va % PAGE)
        pa = translate(read_phys, dtb, va)
        if pa is None:
            raise KeyError(f"VA {va:#x} is not mapped")
        out += read_phys(pa, step)
        va += step
        n -= step
    return bytes(out)
