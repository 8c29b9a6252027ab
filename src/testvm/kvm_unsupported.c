/*
 * ramflow - the test VM's KVM back end where it is not built (anything but
 * x86-64 Linux): a table whose create() always fails, so that AUTO falls
 * back to the thread back end.
 */
#include "testvm/guest_backend.h"

static void *kvm_create(const RfGuestMem *mem, RfError **errp)
{
    (void)mem;
    rf_error_set(errp, RF_ERR_PARAM, "the KVM guest is built only for "
                 "x86-64 Linux");
    return NULL;
}

/* Never reached: create always fails. */
const RfGuestBackendOps rf_guest_kvm_ops = {
    .name = "kvm",
    .kind = RF_GUEST_KVM,
    .create = kvm_create,
};
