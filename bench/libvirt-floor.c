/* libvirt-floor - what libvirt's client library alone keeps resident, as
 * figure 9's host mode uses it: the default event loop, a connection with
 * keepalive, a lifecycle event callback and one list of every domain. It
 * prints VmRSS and Pss in KiB and exits: the floor under any host-mode
 * monitor built on libvirt's API (bench/fig_libvirt.py).
 *
 *   libvirt-floor URI
 */
#include <libvirt/libvirt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long field_kib(const char *path, const char *key)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    char line[256];
    long v = -1;
    size_t n = strlen(key);
    while (fgets(line, sizeof line, f) != NULL)
        if (strncmp(line, key, n) == 0) {
            v = strtol(line + n, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

static int on_lifecycle(virConnectPtr c, virDomainPtr d, int event, int detail, void *opaque)
{
    (void)c, (void)d, (void)event, (void)detail, (void)opaque;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: libvirt-floor URI\n");
        return 2;
    }
    if (virEventRegisterDefaultImpl() < 0)
        return 1;
    virConnectPtr c = virConnectOpen(argv[1]);
    if (c == NULL)
        return 1;
    virConnectSetKeepAlive(c, 5, 3);
    if (virConnectDomainEventRegisterAny(c, NULL, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                         VIR_DOMAIN_EVENT_CALLBACK(on_lifecycle), NULL, NULL) < 0)
        return 1;
    virDomainPtr *doms = NULL;
    int n = virConnectListAllDomains(c, &doms, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
    for (int i = 0; i < n; i++)
        virDomainFree(doms[i]);
    free(doms);
    printf("%ld %ld\n", field_kib("/proc/self/status", "VmRSS:"),
           field_kib("/proc/self/smaps_rollup", "Pss:"));
    virConnectClose(c);
    return 0;
}
