/* libvirt-floor - what libvirt's client library alone keeps resident, as
 * figure 9's host mode uses it: the default event loop, a connection with
 * keepalive, a lifecycle event callback and one list of every domain. It
 * prints VmRSS and Pss in KiB and exits: the floor under any host-mode
 * monitor built on libvirt's API (bench/fig_libvirt.py).
 *
 *   libvirt-floor URI
 */
#define _GNU_SOURCE 1 /* clock_gettime in procmem.h, with -std=c11 */
#include <libvirt/libvirt.h>
#include <stdio.h>
#include <stdlib.h>

#include "procmem.h"

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
    printf("%ld %ld\n", bench_status_kib("VmRSS"),
           bench_proc_kib("/proc/self/smaps_rollup", "Pss"));
    virConnectClose(c);
    return 0;
}
