/* lvapi.h - libvirt's client library, loaded when first needed.
 *
 * Only a VM named as a libvirt domain and the host mode need libvirt; its
 * library and what it pulls in (glib, gnutls, libxml2, ICU) would add some
 * 8 MiB to every bsodmon's resident memory, also one watching a plain QEMU
 * through its QMP socket. So the functions used are looked up with dlopen()
 * the first time, by libvirt's own prototypes (the headers come from
 * libvirt-dev as usual; base/dynlib.h). Private to libvirt.c and lvhost.c.
 */
#ifndef BM_VMI_QEMU_LVAPI_H
#define BM_VMI_QEMU_LVAPI_H

#ifdef HAVE_LIBVIRT

#include <libvirt/libvirt-qemu.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "base/dynlib.h"
#include "base/err.h"

#define LV_API_FUNCS(X)                                                              \
    X(virConnectClose) X(virConnectDomainEventDeregisterAny)                         \
    X(virConnectDomainEventRegisterAny) X(virConnectDomainQemuMonitorEventDeregister) \
    X(virConnectDomainQemuMonitorEventRegister) X(virConnectGetType)                 \
    X(virConnectGetURI) X(virConnectListAllDomains) X(virConnectOpen)                \
    X(virConnectRegisterCloseCallback) X(virConnectSetKeepAlive)                     \
    X(virConnectUnregisterCloseCallback) X(virDomainFree) X(virDomainGetName)        \
    X(virDomainGetState) X(virDomainGetUUIDString) X(virDomainLookupByName)          \
    X(virDomainLookupByUUIDString) X(virDomainQemuMonitorCommand)                    \
    X(virEventAddHandle) X(virEventAddTimeout) X(virEventRegisterDefaultImpl)        \
    X(virEventRemoveHandle) X(virEventRemoveTimeout) X(virEventRunDefaultImpl)       \
    X(virGetLastError) X(virGetLastErrorMessage) X(virSetErrorFunc)

struct lv_api {
    LV_API_FUNCS(BM_DL_FIELD)
};

/* The functions, loaded once (thread-safe); NULL with err when libvirt's
 * libraries cannot be loaded. */
const struct lv_api *lv_api(struct bm_err *err);
/* The same, once lv_api() has succeeded. */
const struct lv_api *lv_api_loaded(void);

#endif /* HAVE_LIBVIRT */
#endif
