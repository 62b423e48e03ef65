/* Unknown command-line options (suggest.c). */
#ifndef ENS_CLI_SUGGEST_H
#define ENS_CLI_SUGGEST_H

/* The option of the NULL-terminated list known that opt was probably meant
 * to be ('_' for '-', "--x=v" as "--x", or at most 2 edits away), or NULL. */
const char *ens_cli_closest_option(const char *opt, const char *const *known);
/* Prints "ens CMD: unknown option 'OPT' (did you mean X? HINT;
 * see ens CMD --help)" on stderr; known and hint may be NULL. */
void ens_cli_unknown_option(const char *cmd, const char *opt, const char *const *known,
                            const char *hint);

#endif
