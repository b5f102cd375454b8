"""winread: an independent reader of a Windows x64 kernel's memory.

Written from the public descriptions of the structures (x64 4-level paging,
KDDEBUGGER_DATA64 and its Windows 8+ encoding, EPROCESS.ActiveProcessLinks,
KLDR_DATA_TABLE_ENTRY.InLoadOrderLinks, PE headers), with offsets from a
Volatility 3 ISF. It shares no code with bsodmon's C. Python 3 stdlib only.

It reads through any physical-memory source:

    rd = WinReader(read_phys, isf, dtb)       # read_phys(pa, n) -> bytes
    rd.kernel_base()                          # found by scanning, or given
    rd.read_virt(va, n); rd.u64(va); ...      # 4 KiB / 2 MiB / 1 GiB pages
    rd.find_kdbg() -> va                      # symbol, else a 'KDBG' scan
    rd.decode_kdbg() -> dict                  # Windows 8+ decoding if encoded
    rd.processes() -> [{"PID", "PPID", "Name", "DirectoryTableBase",
                        "CreateTime", "Peb", "EProcess", "SessionId"}]
    rd.modules() -> [{"Name", "Base", "Size", "TimeDateStamp", "FullName"}]
    rd.pe_header(va) -> {"Machine", "SizeOfImage", "TimeDateStamp", ...}
    rd.self_ref_indices(dtb=None) -> [PML4 indices that point at the PML4]
    rd.kuser() -> KUSER_SHARED_DATA version fields
    rd.kd_version() -> KdVersionBlock (DBGKD_GET_VERSION64)
    rd.prcbs() -> [KPRCB VA per processor], from KiProcessorBlock
    rd.bugcheck_data() -> [code, P1..P4] from KiBugCheckData
    rd.context(va) -> parse_context(rd.read_virt(va, CONTEXT_SIZE))
    parse_context(raw) -> {"ContextFlags", "MxCsr", "SegCs", ..., "Rip", "FltSave.MxCsr"}
    dtb_candidates(read_phys, ranges) -> pages that pass a DTB self-reference scan
    scan_kdbg_phys(read_phys, ranges) -> [(pa, KernBase)] of plain 'KDBG' headers

Every value read from memory is treated as hostile: lists are walked with a
bound and loop detection, lengths are capped, and a page that is not mapped
raises WinReadError (never a wrong answer).
"""
import gzip
import json
import lzma
import struct

PAGE = 0x1000
ADDR_MASK = 0x000FFFFFFFFFF000
KUSER_SHARED_DATA = 0xFFFFF78000000000
KDBG_TAG = b"KDBG"
MAX_LIST = 4096          # entries of any kernel list walked
MAX_NAME = 1024          # bytes of a UNICODE_STRING read


CONTEXT_SIZE = 0x4D0
# The x64 CONTEXT (architectural: the same in every build).
CONTEXT_FIELDS = (
    ("ContextFlags", 0x30, "I"), ("MxCsr", 0x34, "I"), ("SegCs", 0x38, "H"),
    ("SegDs", 0x3A, "H"), ("SegEs", 0x3C, "H"), ("SegFs", 0x3E, "H"), ("SegGs", 0x40, "H"),
    ("SegSs", 0x42, "H"), ("EFlags", 0x44, "I"), ("Dr0", 0x48, "Q"), ("Dr1", 0x50, "Q"),
    ("Dr2", 0x58, "Q"), ("Dr3", 0x60, "Q"), ("Dr6", 0x68, "Q"), ("Dr7", 0x70, "Q"),
    ("Rax", 0x78, "Q"), ("Rcx", 0x80, "Q"), ("Rdx", 0x88, "Q"), ("Rbx", 0x90, "Q"),
    ("Rsp", 0x98, "Q"), ("Rbp", 0xA0, "Q"), ("Rsi", 0xA8, "Q"), ("Rdi", 0xB0, "Q"),
    ("R8", 0xB8, "Q"), ("R9", 0xC0, "Q"), ("R10", 0xC8, "Q"), ("R11", 0xD0, "Q"),
    ("R12", 0xD8, "Q"), ("R13", 0xE0, "Q"), ("R14", 0xE8, "Q"), ("R15", 0xF0, "Q"),
    ("Rip", 0xF8, "Q"), ("FltSave.ControlWord", 0x100, "H"), ("FltSave.MxCsr", 0x118, "I"),
)


class WinReadError(Exception):
    pass


def parse_context(raw):
    if len(raw) < CONTEXT_SIZE:
        raise WinReadError(f"a CONTEXT is {CONTEXT_SIZE:#x} bytes, got {len(raw):#x}")
    return {name: struct.unpack_from("<" + fmt, raw, o)[0] for name, o, fmt in CONTEXT_FIELDS}


def scan_kdbg_phys(read_phys, ranges):
    """Plain KDDEBUGGER_DATA64 headers in physical memory, as a scanner such as
    Volatility's finds them: 'KDBG' at +0x10, then [(pa of the block, KernBase)]
    for those whose KernBase (+0x18) is a kernel-space address."""
    hits = []
    for start, size in ranges:
        for pa in range(start, start + size, PAGE):
            page = read_phys(pa, PAGE)
            if page is None:
                continue
            i = page.find(KDBG_TAG)
            while i >= 0:
                if 0x10 <= i <= PAGE - 0x10:
                    kern = struct.unpack_from("<Q", page, i + 8)[0]
                    if kern >> 47 == 0x1FFFF:
                        hits.append((pa + i - 0x10, kern))
                i = page.find(KDBG_TAG, i + 1)
    return hits


def load_isf(path):
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:6] == b"\xfd7zXZ\x00":
        raw = lzma.decompress(raw)
    elif raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return json.loads(raw)


def canonical(va):
    va &= (1 << 64) - 1
    return va | 0xFFFF000000000000 if va & (1 << 47) else va & 0x0000FFFFFFFFFFFF


def rol64(v, n):
    n &= 63
    return ((v << n) | (v >> (64 - n))) & 0xFFFFFFFFFFFFFFFF if n else v


def bswap64(v):
    return int.from_bytes(v.to_bytes(8, "little"), "big")


def kdbg_decode_qword(v, wait_never, wait_always, flag_va):
    """KdCopyDataBlock's decoding of one qword of an encoded block."""
    return wait_always ^ bswap64(flag_va ^ rol64(wait_never ^ v, wait_never & 63))


def self_ref_indices_of(page, pa):
    """Indices of present entries of a 4 KiB table page that map the page itself."""
    out = []
    for i in range(512):
        e = struct.unpack_from("<Q", page, 8 * i)[0]
        if e & 1 and (e & ADDR_MASK) == pa:
            out.append(i)
    return out


def dtb_candidates(read_phys, ranges, valid=range(0x100, 0x1FF)):
    """Pages in the physical ranges [(start, size)] that a DTB scan of the
    kind Volatility 3 runs accepts: no present entry with PS (bit 7), exactly
    one present self-reference, at an index in `valid`. [(pa, index)], by address."""
    hits = []
    for start, size in ranges:
        for pa in range(start, start + size, PAGE):
            page = read_phys(pa, PAGE)
            if page is None or len(page) != PAGE:
                continue
            entries = struct.unpack("<512Q", page)
            if any(e & 0x81 == 0x81 for e in entries):
                continue
            refs = self_ref_indices_of(page, pa)
            if pa > 0 and len(refs) == 1 and refs[0] in valid:
                hits.append((pa, refs[0]))
    return hits


class WinReader:
    def __init__(self, read_phys, isf, dtb, kernel_base=None):
        self.read_phys = read_phys
        self.isf = isf
        self.dtb = dtb & ADDR_MASK
        self._base = kernel_base
        self.sym = {n: v["address"] for n, v in isf["symbols"].items()
                    if isinstance(v, dict) and isinstance(v.get("address"), int)}
        self.types = isf["user_types"]
        self.ldr_type = ("_KLDR_DATA_TABLE_ENTRY" if "_KLDR_DATA_TABLE_ENTRY" in self.types
                         else "_LDR_DATA_TABLE_ENTRY")

    # ---- structure offsets ---------------------------------------------------

    def off(self, tname, *path):
        o = 0
        for f in path:
            t = self.types.get(tname)
            if t is None or f not in t.get("fields", {}):
                raise WinReadError(f"the ISF has no {tname}.{f}")
            field = t["fields"][f]
            o += field["offset"]
            tname = field["type"].get("name")
        return o

    def has(self, tname, field):
        return field in self.types.get(tname, {}).get("fields", {})

    # ---- virtual memory --------------------------------------------------------

    def _phys(self, pa, n):
        data = self.read_phys(pa, n)
        if data is None or len(data) != n:
            raise WinReadError(f"physical {pa:#x}+{n:#x} is outside the memory source")
        return data

    def translate(self, va, dtb=None):
        """Physical address of va through 4-level paging (1 GiB, 2 MiB, 4 KiB pages)."""
        table = self.dtb if dtb is None else dtb & ADDR_MASK
        va = canonical(va)
        for level, shift in enumerate((39, 30, 21, 12)):
            idx = (va >> shift) & 0x1FF
            e = struct.unpack("<Q", self._phys(table + 8 * idx, 8))[0]
            if not e & 1:
                raise WinReadError(f"{va:#x} is not mapped (level {4 - level} entry {idx:#x} = {e:#x})")
            if shift in (30, 21) and e & 0x80:
                size = 1 << shift
                return (e & ADDR_MASK & ~(size - 1)) | (va & (size - 1))
            table = e & ADDR_MASK
        return table | (va & 0xFFF)

    def read_virt(self, va, n, dtb=None):
        if n < 0 or n > 64 << 20:
            raise WinReadError(f"refusing to read {n} bytes")
        out = bytearray()
        while n > 0:
            chunk = min(n, PAGE - (va & 0xFFF))
            out += self._phys(self.translate(va, dtb), chunk)
            va += chunk
            n -= chunk
        return bytes(out)

    def u8(self, va):
        return self.read_virt(va, 1)[0]

    def u16(self, va):
        return struct.unpack("<H", self.read_virt(va, 2))[0]

    def u32(self, va):
        return struct.unpack("<I", self.read_virt(va, 4))[0]

    def u64(self, va):
        return struct.unpack("<Q", self.read_virt(va, 8))[0]

    def mapped(self, va):
        try:
            self.translate(va)
            return True
        except WinReadError:
            return False

    # ---- the kernel --------------------------------------------------------------

    def _rsds_guid(self):
        pdb = self.isf["metadata"]["windows"]["pdb"]
        g = pdb["GUID"].upper()
        raw = struct.pack("<IHH", int(g[0:8], 16), int(g[8:12], 16), int(g[12:16], 16))
        return b"RSDS" + raw + bytes.fromhex(g[16:32]) + struct.pack("<I", int(pdb["age"]))

    def _is_kernel_at(self, va, rsds):
        try:
            hdr = self.read_virt(va, PAGE)
            if hdr[:2] != b"MZ":
                return False
            lfanew = struct.unpack_from("<I", hdr, 0x3C)[0]
            if lfanew > PAGE - 0x108 or hdr[lfanew:lfanew + 4] != b"PE\0\0":
                return False
            opt = lfanew + 24
            size = struct.unpack_from("<I", hdr, opt + 56)[0]
            dbg_rva, dbg_size = struct.unpack_from("<II", hdr, opt + 112 + 6 * 8)
            if not 0 < dbg_size <= 28 * 16 or dbg_rva + dbg_size > size:
                return False
            dbg = self.read_virt(va + dbg_rva, dbg_size)
            for i in range(0, dbg_size - 27, 28):
                typ, dsize, rva = struct.unpack_from("<IIIxxxx", dbg, i + 12)[0:3]
                if typ == 2 and 24 <= dsize <= 0x200 and rva + dsize <= size:
                    if self.read_virt(va + rva, 24) == rsds:
                        return True
        except WinReadError:
            return False
        return False

    def kernel_base(self):
        """The ntoskrnl base: the page that starts with MZ and whose CodeView
        record carries the ISF's GUID and age, found by walking the page
        tables of PML4 slot 0x1F0 (0xfffff800`00000000-0xfffff87f`ffffffff)."""
        if self._base is not None:
            return self._base
        rsds = self._rsds_guid()
        for va in self._mapped_pages(0x1F0, limit=1 << 22):
            if self._is_kernel_at(va, rsds):
                self._base = va
                return va
        raise WinReadError("no ntoskrnl image with the ISF's RSDS found in 0xfffff800`00000000+")

    def _mapped_pages(self, pml4_index, limit):
        """VAs of mapped 4 KiB pages (large pages: their 4 KiB steps) under one PML4 slot."""
        def entries(table):
            page = self._phys(table, PAGE)
            return struct.unpack("<512Q", page)
        pml4e = entries(self.dtb)[pml4_index]
        if not pml4e & 1:
            return
        base = 0xFFFF000000000000 | (pml4_index << 39)
        n = 0
        for i, pdpte in enumerate(entries(pml4e & ADDR_MASK)):
            if not pdpte & 1:
                continue
            va1 = base | (i << 30)
            if pdpte & 0x80:
                continue  # a 1 GiB page: no kernel image starts in one here
            for j, pde in enumerate(entries(pdpte & ADDR_MASK)):
                if not pde & 1:
                    continue
                va2 = va1 | (j << 21)
                if pde & 0x80:
                    for k in range(512):
                        yield va2 | (k << 12)
                        n += 1
                    continue
                for k, pte in enumerate(entries(pde & ADDR_MASK)):
                    if pte & 1:
                        yield va2 | (k << 12)
                        n += 1
                if n > limit:
                    return

    def symbol(self, name):
        if name not in self.sym:
            raise WinReadError(f"the ISF has no symbol {name}")
        return self.kernel_base() + self.sym[name]

    # ---- KDBG ----------------------------------------------------------------------

    def find_kdbg(self):
        """The KDDEBUGGER_DATA64's VA: the ISF's KdDebuggerDataBlock, or, without
        that symbol, a scan of the image for a plain 'KDBG' tag whose KernBase
        is the kernel base."""
        if "KdDebuggerDataBlock" in self.sym:
            return self.symbol("KdDebuggerDataBlock")
        base = self.kernel_base()
        size = struct.unpack_from("<I", self.read_virt(base + self._nt_headers(base) + 24 + 56, 4))[0]
        for va in range(base, base + min(size, 64 << 20), PAGE):
            try:
                page = self.read_virt(va, PAGE)
            except WinReadError:
                continue
            i = page.find(KDBG_TAG)
            while i >= 0:
                if i >= 0x10 and i + 0x10 <= PAGE and \
                        struct.unpack_from("<Q", page, i + 8)[0] == base:
                    return va + i - 0x10
                i = page.find(KDBG_TAG, i + 1)
        raise WinReadError("no KDBG found")

    def kdbg_encoded(self):
        """True when KdpDataBlockEncoded is set (Windows 8+ without a debugger)."""
        if "KdpDataBlockEncoded" not in self.sym:
            return False
        return self.u8(self.symbol("KdpDataBlockEncoded")) != 0

    def decode_kdbg(self):
        """The KDBG's bytes, decoded if encoded, and its main fields."""
        va = self.find_kdbg()
        head = self.read_virt(va, 0x18)
        keys = None
        if head[0x10:0x14] != KDBG_TAG:
            if not self.kdbg_encoded():
                raise WinReadError(f"KDBG at {va:#x}: no 'KDBG' tag and not marked encoded")
            keys = (self.u64(self.symbol("KiWaitNever")), self.u64(self.symbol("KiWaitAlways")),
                    self.symbol("KdpDataBlockEncoded"))
            head = b"".join(struct.pack("<Q", kdbg_decode_qword(q, *keys))
                            for q in struct.unpack("<3Q", head))
            if head[0x10:0x14] != KDBG_TAG:
                raise WinReadError(f"KDBG at {va:#x}: decoding did not give the 'KDBG' tag")
        size = struct.unpack_from("<I", head, 0x14)[0]
        if not 0x80 <= size <= 0x1000 or size % 8:
            raise WinReadError(f"KDBG at {va:#x}: implausible size {size:#x}")
        raw = self.read_virt(va, size)
        if keys is not None:
            raw = b"".join(struct.pack("<Q", kdbg_decode_qword(q, *keys))
                           for q in struct.unpack(f"<{size // 8}Q", raw))

        def q(o):
            return struct.unpack_from("<Q", raw, o)[0] if o + 8 <= size else None

        def w(o):
            return struct.unpack_from("<H", raw, o)[0] if o + 2 <= size else None
        return {
            "Address": va, "Encoded": keys is not None, "Raw": raw,
            "OwnerTag": raw[0x10:0x14].decode("latin-1"), "Size": size,
            "KernBase": q(0x18), "PsLoadedModuleList": q(0x48), "PsActiveProcessHead": q(0x50),
            "PspCidTable": q(0x58), "KiBugCheckData": q(0x88), "MmPfnDatabase": q(0xC0),
            "NtBuildLab": q(0x208), "KiProcessorBlock": q(0x218), "CmNtCSDVersion": q(0x268),
            "MmPhysicalMemoryBlock": q(0x270), "KeLoaderBlock": q(0x2D8),
            "OffsetPrcbProcStateContext": w(0x2BC), "OffsetPrcbNumber": w(0x2BE),
            "OffsetPrcbCurrentThread": w(0x2B4), "SizeEProcess": w(0x2A8),
            "OffsetPrcbContext": w(0x338), "PteBase": q(0x360),
        }

    # ---- lists -----------------------------------------------------------------------

    def walk_list(self, head, link_off):
        """Structure VAs on a LIST_ENTRY list (Flink), bounded, loop-safe."""
        seen = {head}
        out = []
        flink = self.u64(head)
        while flink not in seen:
            if len(out) >= MAX_LIST:
                raise WinReadError(f"list at {head:#x}: more than {MAX_LIST} entries")
            seen.add(flink)
            out.append(flink - link_off)
            flink = self.u64(flink)
        return out

    def unicode_string(self, va):
        length, _maxlen = struct.unpack("<HH", self.read_virt(va, 4))
        buf = self.u64(va + 8)
        if length == 0 or buf == 0:
            return ""
        data = self.read_virt(buf, min(length, MAX_NAME) & ~1)
        return data.decode("utf-16-le", "replace").split("\0")[0]

    def processes(self):
        head = self.symbol("PsActiveProcessHead")
        e = "_EPROCESS"
        links = self.off(e, "ActiveProcessLinks")
        out = []
        for ep in self.walk_list(head, links):
            name = self.read_virt(ep + self.off(e, "ImageFileName"), 15).split(b"\0")[0]
            out.append({
                "PID": self.u64(ep + self.off(e, "UniqueProcessId")),
                "PPID": self.u64(ep + self.off(e, "InheritedFromUniqueProcessId")),
                "Name": name.decode("latin-1"),
                "DirectoryTableBase": self.u64(ep + self.off(e, "Pcb", "DirectoryTableBase")),
                "CreateTime": self.u64(ep + self.off(e, "CreateTime")),
                "Peb": self.u64(ep + self.off(e, "Peb")),
                "EProcess": ep,
                "SessionId": self._session_id(ep),
            })
        return out

    def _session_id(self, ep):
        """MM_SESSION_SPACE.SessionId through EPROCESS.Session; None without a session."""
        if not self.has("_EPROCESS", "Session") or not self.has("_MM_SESSION_SPACE", "SessionId"):
            return None
        ss = self.u64(ep + self.off("_EPROCESS", "Session"))
        if ss == 0:
            return None
        return self.u32(ss + self.off("_MM_SESSION_SPACE", "SessionId"))

    def modules(self):
        head = self.symbol("PsLoadedModuleList")
        t = self.ldr_type
        out = []
        for ent in self.walk_list(head, self.off(t, "InLoadOrderLinks")):
            m = {
                "Name": self.unicode_string(ent + self.off(t, "BaseDllName")),
                "FullName": self.unicode_string(ent + self.off(t, "FullDllName")),
                "Base": self.u64(ent + self.off(t, "DllBase")),
                "Size": self.u32(ent + self.off(t, "SizeOfImage")),
                "TimeDateStamp": None,
                "Entry": ent,
            }
            if self.has(t, "TimeDateStamp"):
                m["TimeDateStamp"] = self.u32(ent + self.off(t, "TimeDateStamp"))
            out.append(m)
        return out

    def _nt_headers(self, base):
        hdr = self.read_virt(base, 0x40)
        if hdr[:2] != b"MZ":
            raise WinReadError(f"{base:#x}: no MZ")
        lfanew = struct.unpack_from("<I", hdr, 0x3C)[0]
        if lfanew > PAGE - 0x108:
            raise WinReadError(f"{base:#x}: e_lfanew {lfanew:#x} out of the first page")
        return lfanew

    def pe_header(self, base):
        lfanew = self._nt_headers(base)
        nt = self.read_virt(base + lfanew, 24 + 0x70)
        if nt[:4] != b"PE\0\0":
            raise WinReadError(f"{base:#x}: no PE signature")
        machine, nsec, ts = struct.unpack_from("<HHI", nt, 4)
        magic = struct.unpack_from("<H", nt, 24)[0]
        if magic != 0x20B:
            raise WinReadError(f"{base:#x}: not PE32+ (magic {magic:#x})")
        return {"Machine": machine, "NumberOfSections": nsec, "TimeDateStamp": ts,
                "Magic": magic, "ImageBase": struct.unpack_from("<Q", nt, 24 + 24)[0],
                "SizeOfImage": struct.unpack_from("<I", nt, 24 + 56)[0],
                "MajorOperatingSystemVersion": struct.unpack_from("<H", nt, 24 + 40)[0]}

    # ---- paging, KUSER_SHARED_DATA, processors -------------------------------------------

    def self_ref_indices(self, dtb=None):
        pa = self.dtb if dtb is None else dtb & ADDR_MASK
        return self_ref_indices_of(self._phys(pa, PAGE), pa)

    def kuser(self):
        k = "_KUSER_SHARED_DATA"
        out = {}
        for f, size in (("NtMajorVersion", 4), ("NtMinorVersion", 4), ("NtBuildNumber", 4),
                        ("NtProductType", 4), ("SuiteMask", 4), ("NativeProcessorArchitecture", 2)):
            if self.has(k, f):
                raw = self.read_virt(KUSER_SHARED_DATA + self.off(k, f), size)
                out[f] = int.from_bytes(raw, "little")
        lo, hi = struct.unpack("<Ii", self.read_virt(KUSER_SHARED_DATA + self.off(k, "SystemTime"), 8))
        out["SystemTime"] = (hi << 32) | lo
        root = self.read_virt(KUSER_SHARED_DATA + self.off(k, "NtSystemRoot"), 520)
        out["NtSystemRoot"] = root.decode("utf-16-le", "replace").split("\0")[0]
        return out

    def kd_version(self):
        raw = self.read_virt(self.symbol("KdVersionBlock"), 0x28)
        major, minor, proto, sec, flags, machine = struct.unpack_from("<HHBBHH", raw, 0)
        kern, mods, dbglist = struct.unpack_from("<QQQ", raw, 0x10)
        return {"MajorVersion": major, "MinorVersion": minor, "ProtocolVersion": proto,
                "KdSecondaryVersion": sec, "Flags": flags, "MachineType": machine,
                "KernBase": kern, "PsLoadedModuleList": mods, "DebuggerDataList": dbglist}

    def number_processors(self):
        return self.u32(self.symbol("KeNumberProcessors"))

    def bugcheck_data(self):
        base = self.symbol("KiBugCheckData")
        return [self.u64(base + 8 * i) for i in range(5)]

    def context(self, va):
        return parse_context(self.read_virt(va, CONTEXT_SIZE))

    def prcbs(self):
        n = self.number_processors()
        if not 1 <= n <= 2048:
            raise WinReadError(f"KeNumberProcessors = {n}")
        base = self.symbol("KiProcessorBlock")
        return [self.u64(base + 8 * i) for i in range(n)]
