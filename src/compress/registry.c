/*
 * ramflow - the one place where compression methods are registered.
 *
 * Adding a method: write compress/NAME.c exporting `rf_method_NAME`, list
 * it below, add it to compress/meson.build.  Nothing else changes.
 */
#include "compress/method.h"

#include <pthread.h>
#include <string.h>

extern const RfMethodOps rf_method_none;
#ifdef RF_HAVE_ZLIB
extern const RfMethodOps rf_method_zlib;
#endif
#ifdef RF_HAVE_ZSTD
extern const RfMethodOps rf_method_zstd;
#endif
#ifdef RF_HAVE_QATZIP
extern const RfMethodOps rf_method_qatzip;
#endif

static const RfMethodOps *const methods[] = {
    &rf_method_none,
#ifdef RF_HAVE_ZLIB
    &rf_method_zlib,
#endif
#ifdef RF_HAVE_ZSTD
    &rf_method_zstd,
#endif
#ifdef RF_HAVE_QATZIP
    &rf_method_qatzip,
#endif
};

#define N_METHODS (sizeof(methods) / sizeof(methods[0]))

/* Every name ramflow knows, built or not, indexed by wire byte. */
static const char *const known_names[] = {
    [RF_METHOD_NONE] = "none",
    [RF_METHOD_ZLIB] = "zlib",
    [RF_METHOD_ZSTD] = "zstd",
    [RF_METHOD_QATZIP] = "qatzip",
};

const RfMethodOps *rf_method_find(const char *name)
{
    for (size_t i = 0; i < N_METHODS; i++) {
        if (strcmp(methods[i]->name, name) == 0) {
            return methods[i];
        }
    }
    return NULL;
}

const RfMethodOps *rf_method_by_id(uint8_t id)
{
    for (size_t i = 0; i < N_METHODS; i++) {
        if (methods[i]->id == id) {
            return methods[i];
        }
    }
    return NULL;
}

bool rf_method_known(const char *name)
{
    for (size_t i = 0; i < sizeof(known_names) / sizeof(known_names[0]);
         i++) {
        if (strcmp(known_names[i], name) == 0) {
            return true;
        }
    }
    return false;
}

/* Filled once, from the ops tables, then only read: any thread may call
 * rf_method_names() at any time. */
static const char *method_names[N_METHODS + 1];
static pthread_once_t method_names_once = PTHREAD_ONCE_INIT;

static void method_names_fill(void)
{
    for (size_t i = 0; i < N_METHODS; i++) {
        method_names[i] = methods[i]->name;
    }
    method_names[N_METHODS] = NULL;
}

const char *const *rf_method_names(void)
{
    pthread_once(&method_names_once, method_names_fill);
    return method_names;
}

const char *rf_method_name_for_id(uint8_t id)
{
    return id < sizeof(known_names) / sizeof(known_names[0])
               ? known_names[id] : NULL;
}
