"""Physical memory from an ELF core written by QEMU's dump-guest-memory
(paging off): each PT_LOAD segment's p_paddr is the guest-physical address
of its bytes. Stdlib only; bounds-checked; reads outside every segment give
None (a hole), never zeros.

    core = ElfCore(path); core.read(pa, n) -> bytes or None; core.ranges()
"""
import mmap
import struct

PT_LOAD = 1


class ElfCoreError(Exception):
    pass


class ElfCore:
    def __init__(self, path):
        self.f = open(path, "rb")
        try:
            self.m = mmap.mmap(self.f.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:
            raise ElfCoreError(f"{path}: empty file")
        m = self.m
        if len(m) < 64 or m[:4] != b"\x7fELF" or m[4] != 2 or m[5] != 1:
            raise ElfCoreError(f"{path}: not a little-endian ELF64 file")
        phoff, = struct.unpack_from("<Q", m, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", m, 0x36)
        if phentsize < 56 or phnum > 4096 or phoff + phnum * phentsize > len(m):
            raise ElfCoreError(f"{path}: program headers out of the file")
        self.segs = []
        for i in range(phnum):
            p_type, _fl, p_offset, _va, p_paddr, p_filesz = struct.unpack_from(
                "<IIQQQQ", m, phoff + i * phentsize)
            if p_type != PT_LOAD or p_filesz == 0:
                continue
            if p_offset + p_filesz > len(m):
                raise ElfCoreError(f"{path}: segment {i} runs past the end of the file")
            self.segs.append((p_paddr, p_filesz, p_offset))
        self.segs.sort()

    def ranges(self):
        return [(pa, size) for pa, size, _ in self.segs]

    def read(self, pa, n):
        out = bytearray()
        while n > 0:
            for start, size, offset in self.segs:
                if start <= pa < start + size:
                    k = min(n, start + size - pa)
                    o = offset + pa - start
                    out += self.m[o:o + k]
                    pa += k
                    n -= k
                    break
            else:
                return None
        return bytes(out)

    def close(self):
        self.m.close()
        self.f.close()
