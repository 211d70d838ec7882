/* API keys: loaded from the config and a key file, compared in constant time.
 *
 * The key file holds one key per line ('#' starts a comment line, blank lines are skipped).
 * It must be a regular file owned by the daemon's user and not readable or writable by group or
 * others, since it holds secrets.
 */
#ifndef INFERD_SERVER_AUTH_H
#define INFERD_SERVER_AUTH_H

#include <stdbool.h>
#include <stddef.h>

struct auth;

/* @return 0 and *out (free with auth_free()), or a negative errno with a message in err. */
int auth_new(const char *const *keys, size_t n_keys, const char *key_file, struct auth **out,
             char *err, size_t errlen);
void auth_free(struct auth *auth);

/* @return true when no keys are configured at all. */
bool auth_is_open(const struct auth *auth);
/* @return true when key (may be NULL) equals one of the keys. The time taken depends only on
 * the configured keys, not on how much of the candidate matches. */
bool auth_check(const struct auth *auth, const char *key);

/* Compares two byte strings in time that depends only on blen. @return 1 when equal. */
int auth_ct_equal(const char *a, size_t alen, const char *b, size_t blen);

#endif
