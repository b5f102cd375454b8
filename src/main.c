/* main.c - bsodmon's command line (DRAKVUF-compatible flags) -> monitor. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "monitor/monitor.h"
#include "vmi/qemu/guardian.h"
#include "vmi/qemu/libvirt.h"
#include "plugins/plugin.h"
#ifdef ENABLE_PLUGIN_BSODMON
#include "plugins/bsodmon/bsodmon.h"
#include "plugins/bsodmon/bugcheck.h"
#include "plugins/bsodmon/crashdump.h"
#endif

#define BSODMON_VERSION "0.1.0"

static void usage(FILE *f)
{
    fprintf(f,
        "Usage: bsodmon -d QMP_SOCKET|DOMAIN [options]\n"
        "Watches a Windows VM under QEMU/KVM from the host and reports every bug check\n"
        "(blue screen) the instant the guest enters KeBugCheck2.\n"
        "\n"
        "Required:\n"
        "  -d QMP_SOCKET|DOMAIN       the VM: its QMP unix socket (plain QEMU, Proxmox's\n"
        "                             /var/run/qemu-server/VMID.qmp), or the name or UUID\n"
        "                             of a libvirt domain (anything that is not a socket)\n"
        "  -c, --connect URI          libvirt connection for a DOMAIN (default:\n"
        "                             $LIBVIRT_DEFAULT_URI, else qemu:///system); libvirt\n"
        "                             marks the domain 'tainted: custom-monitor'\n"
        "The whole host, instead of -d (libvirt):\n"
        "  --all-domains              watch every running domain of -c URI and each one\n"
        "                             as it starts; events gain Domain and DomainUUID\n"
        "  --domains GLOB             only the domains whose name matches GLOB\n"
        "  --wait-windows SECONDS     how long a domain may run without an x64 kernel\n"
        "                             before it is left alone (default 600)\n"
        "Symbols (optional; without them the process fields are unavailable):\n"
        "  -r FILE                    kernel profile: Volatility 3 ISF (.json, .json.xz,\n"
        "                             .json.gz) or Rekall JSON\n"
        "  --symbols-dir DIR          Volatility symbol directory; the profile is picked by\n"
        "                             the running kernel's PDB GUID\n"
        "                             (DIR/windows/ntkrnlmp.pdb/GUID-AGE.json.xz)\n"
        "Output and run control:\n"
        "  -o FORMAT                  output format: default, csv, kv or json\n"
        "  -t SECONDS                 stop after SECONDS (then the stop phase)\n"
        "  --wait-stop-plugins SECONDS\n"
        "                             length of the stop phase after -t\n"
        "  -a PLUGIN                  activate only the named plugin(s)\n"
        "  -x PLUGIN                  do not activate PLUGIN\n"
        "  -p                         leave the guest paused when bsodmon exits\n"
        "  -v                         verbose diagnostics on stderr\n"
        "  --info                     attach, print what was found as JSON, detach\n"
        "  --software-breakpoints     use int3 (patches guest memory) instead of a\n"
        "                             hardware breakpoint\n"
        "  --memory-access MODE       shm, process or gdbstub (default: the fastest that works)\n"
#ifdef ENABLE_PLUGIN_BSODMON
        "bsodmon plugin:\n"
        "  -b                         exit with code 10 as soon as a bug check is seen\n"
        "  --bsodmon-ignore-stop      stay armed through the stop phase\n"
        "  --bsodmon-no-analysis      report DRAKVUF's fields only (no reported code,\n"
        "                             sub-code, faulting module, exception, bucket)\n"
        "  --bsodmon-follow-ms MS     follow a bug check for at most MS ms (default 5,\n"
        "                             0: never) to the code Windows stores, when the\n"
        "                             entry state does not decide it, or for a dump.\n"
        "                             0..1000\n"
        "  --crashdump-dir DIR        write all guest RAM to DIR/crashdump.bin and\n"
        "                             DIR/crashdump.metadata on a bug check\n"
        "  --crashdump-format FORMAT  raw (DIR/crashdump.bin, the default), dmp (a Windows\n"
        "                             crash dump, DIR/crashdump.dmp) or both\n"
        "  --list-bugchecks           print the bug check table and exit\n"
#endif
        "  -h, --help                 this text\n"
        "  --version                  version and plugins built in\n"
        "\n"
        "Plugins in this build:");
    for (size_t i = 0; plugin_registry[i] != NULL; i++)
        fprintf(f, " %s", plugin_registry[i]->name);
    if (plugin_registry[0] == NULL)
        fprintf(f, " (none)");
    fprintf(f, "\n"
        "Exit codes: 0 success, 1 failure, 10 bug check seen with -b, 11 VM gone.\n");
}

static int parse_seconds(const char *opt, const char *s, int *out);

/* Before the guest is touched: a bad dump directory is a start-up error,
 * not a surprise at crash time. */
static int check_dump_dir(const struct monitor_config *cfg)
{
#ifdef ENABLE_PLUGIN_BSODMON
    if (cfg->plugin_opts.crashdump_dir != NULL && !cfg->info) {
        struct bm_err err = BM_ERR_INIT;
        if (crashdump_check_dir(cfg->plugin_opts.crashdump_dir, &err) < 0) {
            fprintf(stderr, "bsodmon: --crashdump-dir: %s\n", bm_err_msg(&err));
            return -1;
        }
    }
#else
    (void)cfg;
#endif
    return 0;
}

/* --all-domains: what makes sense for one VM only is refused, saying what
 * to use instead. */
static int run_host(struct monitor_config *cfg, const char *target, const char *uri,
                    const char *glob, int wait_windows)
{
    const char *bad = NULL;
    if (target != NULL)
        bad = "-d names one VM; --all-domains watches every domain (narrow it with --domains GLOB)";
#ifdef ENABLE_PLUGIN_BSODMON
    else if (cfg->plugin_opts.bsodmon_abort)
        bad = "-b (exit at the first bug check) makes no sense for a whole host: read the event "
              "lines (each names its Domain), or run one bsodmon -d DOMAIN -b per VM";
#endif
    else if (cfg->info)
        bad = "--info is for one VM: bsodmon -d DOMAIN --info";
    else if (cfg->timeout_s > 0 || cfg->wait_stop_s > 0)
        bad = "-t and --wait-stop-plugins are for one VM; the host mode runs until SIGTERM";
    if (bad != NULL) {
        fprintf(stderr, "bsodmon: %s\n", bad);
        return MONITOR_EXIT_FAIL;
    }
    if (check_dump_dir(cfg) < 0)
        return MONITOR_EXIT_FAIL;
    return monitor_run_host(cfg, uri != NULL ? uri : lv_default_uri(), glob, wait_windows);
}

static int parse_seconds(const char *opt, const char *s, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < 0 || v > INT_MAX) {
        fprintf(stderr, "bsodmon: %s takes a number of seconds, not '%s'\n", opt, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int select_plugin(struct monitor_config *cfg, const char *name, bool only, bool *any_a)
{
    size_t i = 0;
    for (; plugin_registry[i] != NULL; i++)
        if (strcmp(plugin_registry[i]->name, name) == 0)
            break;
    if (plugin_registry[i] == NULL) {
        fprintf(stderr, "bsodmon: no plugin '%s' in this build\n", name);
        return -1;
    }
    if (only) {
        if (!*any_a)
            for (size_t j = 0; plugin_registry[j] != NULL; j++)
                cfg->plugin_enabled[j] = false;
        *any_a = true;
        cfg->plugin_enabled[i] = true;
    } else {
        cfg->plugin_enabled[i] = false;
    }
    return 0;
}

enum {
    OPT_SYMBOLS_DIR = 256, OPT_WAIT_STOP, OPT_INFO, OPT_SW_BP, OPT_MEM_ACCESS, OPT_VERSION,
    OPT_IGNORE_STOP, OPT_NO_ANALYSIS, OPT_CRASHDUMP_DIR, OPT_LIST_BUGCHECKS, OPT_ALL_DOMAINS,
    OPT_DOMAINS, OPT_WAIT_WINDOWS, OPT_CRASHDUMP_FORMAT, OPT_FOLLOW_MS,
};

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], GUARDIAN_ARG) == 0)
        return guardian_exec_main(argc, argv);
    static struct monitor_config cfg;
    cfg.format = OUTPUT_FORMAT_DEFAULT;
#ifdef ENABLE_PLUGIN_BSODMON
    cfg.plugin_opts.bsodmon_follow_ms = BSODMON_FOLLOW_MS;
#endif
    for (size_t i = 0; plugin_registry[i] != NULL; i++)
        cfg.plugin_enabled[i] = true;
    bool any_a = false;
    const char *target = NULL, *uri = NULL, *glob = NULL;
    bool all_domains = false;
    int wait_windows = 600;
    static const struct option longopts[] = {
        { "connect", required_argument, NULL, 'c' },
        { "all-domains", no_argument, NULL, OPT_ALL_DOMAINS },
        { "domains", required_argument, NULL, OPT_DOMAINS },
        { "wait-windows", required_argument, NULL, OPT_WAIT_WINDOWS },
        { "symbols-dir", required_argument, NULL, OPT_SYMBOLS_DIR },
        { "wait-stop-plugins", required_argument, NULL, OPT_WAIT_STOP },
        { "info", no_argument, NULL, OPT_INFO },
        { "software-breakpoints", no_argument, NULL, OPT_SW_BP },
        { "memory-access", required_argument, NULL, OPT_MEM_ACCESS },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, OPT_VERSION },
#ifdef ENABLE_PLUGIN_BSODMON
        { "bsodmon-ignore-stop", no_argument, NULL, OPT_IGNORE_STOP },
        { "bsodmon-no-analysis", no_argument, NULL, OPT_NO_ANALYSIS },
        { "bsodmon-follow-ms", required_argument, NULL, OPT_FOLLOW_MS },
        { "crashdump-dir", required_argument, NULL, OPT_CRASHDUMP_DIR },
        { "crashdump-format", required_argument, NULL, OPT_CRASHDUMP_FORMAT },
        { "list-bugchecks", no_argument, NULL, OPT_LIST_BUGCHECKS },
#endif
        { NULL, 0, NULL, 0 },
    };
#ifdef ENABLE_PLUGIN_BSODMON
    const char *shortopts = "d:c:r:o:t:a:x:pvhb";
#else
    const char *shortopts = "d:c:r:o:t:a:x:pvh";
#endif
    int c;
    while ((c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
        switch (c) {
        case 'd': target = optarg; break;
        case 'c': uri = optarg; break;
        case OPT_ALL_DOMAINS: all_domains = true; break;
        case OPT_DOMAINS: glob = optarg; break;
        case OPT_WAIT_WINDOWS:
            if (parse_seconds("--wait-windows", optarg, &wait_windows) < 0)
                return MONITOR_EXIT_FAIL;
            break;
        case 'r': cfg.profile = optarg; break;
        case OPT_SYMBOLS_DIR: cfg.symbols_dir = optarg; break;
        case 'o':
            cfg.format = output_parse_format(optarg);
            if (cfg.format == OUTPUT_FORMAT_INVALID) {
                fprintf(stderr, "bsodmon: unknown output format '%s' (default, csv, kv, json)\n",
                        optarg);
                return MONITOR_EXIT_FAIL;
            }
            break;
        case 't':
            if (parse_seconds("-t", optarg, &cfg.timeout_s) < 0)
                return MONITOR_EXIT_FAIL;
            break;
        case OPT_WAIT_STOP:
            if (parse_seconds("--wait-stop-plugins", optarg, &cfg.wait_stop_s) < 0)
                return MONITOR_EXIT_FAIL;
            break;
        case 'a':
        case 'x':
            if (select_plugin(&cfg, optarg, c == 'a', &any_a) < 0)
                return MONITOR_EXIT_FAIL;
            break;
        case 'p': cfg.leave_paused = true; break;
        case 'v': cfg.verbose = cfg.plugin_opts.verbose = true; break;
        case OPT_INFO: cfg.info = true; break;
        case OPT_SW_BP: cfg.software_breakpoints = true; break;
        case OPT_MEM_ACCESS: cfg.memory_access = optarg; break;
        case 'h': usage(stdout); return 0;
        case OPT_VERSION:
            printf("bsodmon %s\n", BSODMON_VERSION);
            return 0;
#ifdef ENABLE_PLUGIN_BSODMON
        case 'b': cfg.plugin_opts.bsodmon_abort = true; break;
        case OPT_IGNORE_STOP: cfg.plugin_opts.bsodmon_ignore_stop = true; break;
        case OPT_NO_ANALYSIS: cfg.plugin_opts.bsodmon_no_analysis = true; break;
        case OPT_FOLLOW_MS: {
            char *end;
            errno = 0;
            long v = strtol(optarg, &end, 10);
            if (errno || end == optarg || *end != '\0' || v < 0 || v > BSODMON_FOLLOW_MS_MAX) {
                fprintf(stderr, "bsodmon: --bsodmon-follow-ms takes 0..%d milliseconds, not "
                        "'%s'\n", BSODMON_FOLLOW_MS_MAX, optarg);
                return MONITOR_EXIT_FAIL;
            }
            cfg.plugin_opts.bsodmon_follow_ms = (int)v;
            break;
        }
        case OPT_CRASHDUMP_DIR: cfg.plugin_opts.crashdump_dir = optarg; break;
        case OPT_CRASHDUMP_FORMAT:
            if (crashdump_parse_format(optarg, &cfg.plugin_opts.crashdump_formats) < 0)
                return MONITOR_EXIT_FAIL;
            break;
        case OPT_LIST_BUGCHECKS:
            for (size_t i = 0; i < bugcheck_count(); i++) {
                uint32_t code;
                const char *name;
                bugcheck_entry(i, &code, &name);
                printf("0x%08X\t%s\n", code, name);
            }
            return fflush(stdout) == 0 ? 0 : MONITOR_EXIT_FAIL;
#endif
        default:
            fprintf(stderr, "Try 'bsodmon --help'.\n");
            return MONITOR_EXIT_FAIL;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "bsodmon: unexpected argument '%s'\nTry 'bsodmon --help'.\n", argv[optind]);
        return MONITOR_EXIT_FAIL;
    }
    if (cfg.profile != NULL && cfg.symbols_dir != NULL) {
        fprintf(stderr, "bsodmon: give -r or --symbols-dir, not both\n");
        return MONITOR_EXIT_FAIL;
    }
    if (all_domains)
        return run_host(&cfg, target, uri, glob, wait_windows);
    if (glob != NULL) {
        fprintf(stderr, "bsodmon: --domains goes with --all-domains\n");
        return MONITOR_EXIT_FAIL;
    }
    if (target == NULL) {
        fprintf(stderr, "bsodmon: -d QMP_SOCKET|DOMAIN (or --all-domains) is required\n"
                        "Try 'bsodmon --help'.\n");
        return MONITOR_EXIT_FAIL;
    }
    struct bm_err rerr = BM_ERR_INIT;
    if (qemu_route_parse(&cfg.route, target, uri, &rerr) < 0) {
        fprintf(stderr, "bsodmon: %s\n", bm_err_msg(&rerr));
        return MONITOR_EXIT_FAIL;
    }
    if (check_dump_dir(&cfg) < 0)
        return MONITOR_EXIT_FAIL;
    return monitor_run(&cfg);
}
