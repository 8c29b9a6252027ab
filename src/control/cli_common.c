/* ramflow - option handling shared by the subcommands. */
#include <stdlib.h>
#include <string.h>

#include "control/cli.h"

int rf_cli_add_param_options(struct option *opts, int n)
{
    const char *const *names = rf_params_names();
    for (int i = 0; names[i]; i++) {
        /* A switch: "--insecure" alone means on. */
        bool flag = strcmp(names[i], "insecure") == 0;
        opts[n++] = (struct option){names[i],
                                    flag ? optional_argument
                                         : required_argument,
                                    NULL, RF_OPT_PARAM_BASE + i};
    }
    opts[n] = (struct option){0};
    return n;
}

int rf_cli_param_option(RfParams *p, int val, const char *arg,
                        RfError **errp)
{
    const char *const *names = rf_params_names();
    int count = 0;
    while (names[count]) {
        count++;
    }
    if (val < RF_OPT_PARAM_BASE || val >= RF_OPT_PARAM_BASE + count) {
        return 0;
    }
    return rf_params_set(p, names[val - RF_OPT_PARAM_BASE], arg ? arg : "on",
                         errp) ? 1 : -1;
}

int rf_cli_fail(const char *what, RfError *err)
{
    int status = rf_error_kind(err) == RF_ERR_PARAM  ? RF_EXIT_USAGE
                 : rf_error_kind(err) == RF_ERR_AUTH ? RF_EXIT_AUTH
                                                     : RF_EXIT_FAIL;
    fprintf(stderr, "ramflow: %s%s%s\n", what ? what : "",
            what ? ": " : "", rf_error_msg(err));
    rf_error_free(err);
    return status;
}

bool rf_cli_add_memory_spec(const char **specs, unsigned *n,
                            const char *spec)
{
    if (*n == RF_MAX_BLOCKS) {
        fprintf(stderr, "ramflow: at most %u --memory blocks\n",
                RF_MAX_BLOCKS);
        return false;
    }
    specs[(*n)++] = spec;
    return true;
}

/* Sizes parse as max-bandwidth does: one syntax for every size. */
bool rf_cli_parse_size(const char *s, uint64_t *out)
{
    RfParams *tmp = rf_params_new();
    char text[32];
    bool ok = tmp && rf_params_set(tmp, "max-bandwidth", s, NULL) &&
              rf_params_get(tmp, "max-bandwidth", text, sizeof(text), NULL);
    rf_params_free(tmp);
    if (ok) {
        *out = strtoull(text, NULL, 10);
    }
    return ok;
}
