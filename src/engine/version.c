/* ramflow - the loaded library's version (ramflow.h: rf_version_*). */
#include "ramflow/ramflow.h"

unsigned rf_version_number(void)
{
    return RAMFLOW_VERSION_NUMBER;
}

const char *rf_version_string(void)
{
    return RAMFLOW_VERSION_STRING;
}
