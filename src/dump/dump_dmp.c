/* dump_dmp.c - the Windows crash dump's file format: DUMP_HEADER64 and the
 * run list of a complete memory dump (DumpType 1), and the patches of the
 * dump's copy of memory. Windows facts (what goes in the fields) come from
 * the caller; here is only where they go.
 *
 * Layout (little-endian; the offsets are those of the public DUMP_HEADER64
 * that WinDbg, Volatility 3's crash layer, kdmp-parser and QEMU's win_dump
 * agree on): 0x000 "PAGE", 0x004 "DU64", 0x008 MajorVersion, 0x00c
 * MinorVersion, 0x010 DirectoryTableBase, 0x018 PfnDataBase, 0x020
 * PsLoadedModuleList, 0x028 PsActiveProcessHead, 0x030 MachineImageType,
 * 0x034 NumberProcessors, 0x038 BugCheckCode, 0x040 BugCheckParameter1..4,
 * 0x080 KdDebuggerDataBlock, 0x088 PhysicalMemoryBlock (NumberOfRuns u32,
 * pad, NumberOfPages u64, then {BasePage, PageCount} u64 pairs, 42 at most
 * in its 700 bytes), 0x348 ContextRecord, 0xf00 Exception
 * (EXCEPTION_RECORD64), 0xf98 DumpType, 0xfa0 RequiredDumpSpace, 0xfa8
 * SystemTime, 0xfb0 Comment[128], 0x1030 SystemUpTime, 0x1040 ProductType,
 * 0x1044 SuiteMask, 0x104d KdSecondaryVersion. The rest is zero (as
 * elf2dmp writes it): every parser examined accepts a zero fill.
 */
#include "dump/dump.h"

#include <inttypes.h>
#include <string.h>

#define PAGE 4096u

static void put32(uint8_t *h, size_t off, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        h[off + (size_t)i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *h, size_t off, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        h[off + (size_t)i] = (uint8_t)(v >> (8 * i));
}

/* Merge the two neighbouring runs with the smallest gap; the new count. */
static size_t merge_closest(struct dump_dmp_run *tmp, size_t n)
{
    size_t best = 0;
    uint64_t gap = UINT64_MAX;
    for (size_t j = 0; j + 1 < n; j++) {
        uint64_t g = tmp[j + 1].base_page - (tmp[j].base_page + tmp[j].pages);
        if (g < gap) {
            gap = g;
            best = j;
        }
    }
    tmp[best].pages = tmp[best + 1].base_page + tmp[best + 1].pages - tmp[best].base_page;
    memmove(&tmp[best + 1], &tmp[best + 2], (n - best - 2) * sizeof tmp[0]);
    return n - 1;
}

int dump_dmp_layout(const struct dump_source *src, struct dump_dmp_layout *lay,
                    struct bm_err *err)
{
    memset(lay, 0, sizeof *lay);
    /* Page-granular runs, one per range (ranges sharing a page merge). */
    struct dump_dmp_run tmp[DUMP_DMP_MAX_RUNS + 1];
    size_t n = 0;
    for (size_t i = 0; i < src->nranges; i++) {
        uint64_t first = src->ranges[i].start / PAGE, last = src->ranges[i].end / PAGE;
        if (n > 0 && tmp[n - 1].base_page + tmp[n - 1].pages >= first) {
            tmp[n - 1].pages = last + 1 - tmp[n - 1].base_page;
            continue;
        }
        if (n == DUMP_DMP_MAX_RUNS + 1)
            n = merge_closest(tmp, n);
        tmp[n++] = (struct dump_dmp_run){ first, last + 1 - first, 0 };
    }
    while (n > DUMP_DMP_MAX_RUNS)
        n = merge_closest(tmp, n);
    if (n == 0)
        return bm_err_set(err, "no guest RAM for the Windows crash dump");
    uint64_t off = DUMP_DMP_HEADER_SIZE;
    for (size_t i = 0; i < n; i++) {
        lay->run[i] = tmp[i];
        lay->run[i].file_off = off;
        off += tmp[i].pages * PAGE;
        lay->pages += tmp[i].pages;
    }
    lay->nruns = n;
    lay->file_size = off;
    return 0;
}

uint64_t dump_dmp_file_off(const struct dump_dmp_layout *lay, uint64_t pa)
{
    uint64_t page = pa / PAGE;
    for (size_t i = 0; i < lay->nruns; i++)
        if (page >= lay->run[i].base_page && page - lay->run[i].base_page < lay->run[i].pages)
            return lay->run[i].file_off + (pa - lay->run[i].base_page * PAGE);
    return UINT64_MAX; /* not RAM: never asked for */
}

static bool in_ram(const struct dump_source *src, uint64_t pa, uint64_t len)
{
    for (size_t i = 0; i < src->nranges; i++)
        if (pa >= src->ranges[i].start && pa + len - 1 <= src->ranges[i].end)
            return true;
    return false;
}

int dump_dmp_check(const struct dump_dmp *d, const struct dump_source *src, struct bm_err *err)
{
    if (d == NULL)
        return bm_err_set(err, "no facts for the Windows crash dump header");
    if (d->npatches > DUMP_DMP_MAX_PATCHES || (d->npatches > 0 && d->patches == NULL))
        return bm_err_set(err, "%zu patches of the crash dump's memory (at most %u)", d->npatches,
                          DUMP_DMP_MAX_PATCHES);
    for (size_t i = 0; i < d->npatches; i++) {
        const struct dump_patch *p = &d->patches[i];
        if (p->len == 0 || p->len > PAGE || p->bytes == NULL || p->pa % PAGE + p->len > PAGE ||
            !in_ram(src, p->pa, p->len) || (i > 0 && p->pa < d->patches[i - 1].pa +
                                                              d->patches[i - 1].len))
            return bm_err_set(err, "crash dump patch %zu (%u bytes at %#" PRIx64 ") is not "
                              "sorted, within one page and inside RAM", i, p->len, p->pa);
    }
    return 0;
}

void dump_dmp_header(const struct dump_dmp *d, const struct dump_dmp_layout *lay,
                     uint8_t h[DUMP_DMP_HEADER_SIZE])
{
    memset(h, 0, DUMP_DMP_HEADER_SIZE);
    memcpy(h + 0x000, "PAGE", 4);
    memcpy(h + 0x004, "DU64", 4);
    put32(h, 0x008, d->major_version);
    put32(h, 0x00c, d->minor_version);
    put64(h, 0x010, d->directory_table_base);
    put64(h, 0x018, d->pfn_database);
    put64(h, 0x020, d->ps_loaded_module_list);
    put64(h, 0x028, d->ps_active_process_head);
    put32(h, 0x030, d->machine_image_type);
    put32(h, 0x034, d->number_processors);
    put32(h, 0x038, d->bugcheck_code);
    for (int i = 0; i < 4; i++)
        put64(h, 0x040 + 8 * (size_t)i, d->bugcheck_param[i]);
    put64(h, 0x080, d->kd_debugger_data_block);
    put32(h, 0x088, (uint32_t)lay->nruns);
    put64(h, 0x090, lay->pages);
    for (size_t i = 0; i < lay->nruns; i++) {
        put64(h, 0x098 + 16 * i, lay->run[i].base_page);
        put64(h, 0x0a0 + 16 * i, lay->run[i].pages);
    }
    memcpy(h + 0x348, d->context, DUMP_DMP_CONTEXT_SIZE);
    put32(h, 0xf00, d->exception_code);
    put32(h, 0xf04, d->exception_flags);
    put64(h, 0xf10, d->exception_address);
    put32(h, 0xf98, 1); /* DumpType: full, with a run list */
    put64(h, 0xfa0, lay->file_size);
    put64(h, 0xfa8, d->system_time);
    size_t n = strnlen(d->comment, sizeof d->comment - 1);
    for (size_t i = 0; i < n; i++)
        h[0xfb0 + i] = (uint8_t)d->comment[i] < 0x80 ? (uint8_t)d->comment[i] : '?';
    put64(h, 0x1030, d->system_uptime);
    put32(h, 0x1040, d->product_type);
    put32(h, 0x1044, d->suite_mask);
    h[0x104d] = d->kd_secondary_version;
}

bool dump_dmp_touches(const struct dump_dmp *d, size_t *cursor, uint64_t pa, uint64_t len)
{
    while (*cursor < d->npatches &&
           d->patches[*cursor].pa + d->patches[*cursor].len <= pa)
        (*cursor)++;
    return *cursor < d->npatches && d->patches[*cursor].pa < pa + len;
}

void dump_dmp_apply(const struct dump_dmp *d, size_t cursor, uint64_t pa, uint8_t *buf,
                    uint64_t len)
{
    for (size_t i = cursor; i < d->npatches && d->patches[i].pa < pa + len; i++) {
        const struct dump_patch *p = &d->patches[i];
        uint64_t from = p->pa > pa ? p->pa : pa;
        uint64_t to = p->pa + p->len < pa + len ? p->pa + p->len : pa + len;
        if (from < to)
            memcpy(buf + (from - pa), p->bytes + (from - p->pa), (size_t)(to - from));
    }
}
