/* redact.h - mask anything token-like in peer-provided text before it is
 * logged.
 *
 * A gateway's status details or a token endpoint's error_description are
 * written by someone else and may echo what we sent them (Zeebe's identity
 * check answers "... but found: Bearer <token>"). Everything such a peer
 * says goes through redact() before it reaches a log line. */
#ifndef M2Z_REDACT_H
#define M2Z_REDACT_H

#include <stddef.h>

#define REDACTED "[redacted]"

/* Copy SRC into DST (size N, always NUL-terminated when N > 0), with:
 *   - "Bearer <credential>" (any case)      -> "Bearer [redacted]"
 *   - a JWT-shaped word (eyJ...<.>...<.>...) -> "[redacted]"
 *   - any string registered with redact_add -> "[redacted]"
 *   - bytes outside printable ASCII         -> '?'
 * The output is cut at N-1 bytes; the result never ends in a partial
 * secret. Thread-safe. Returns DST. */
char *redact(char *dst, size_t n, const char *src);

/* Register a secret (the client secret, the current token) to be masked
 * wherever it appears verbatim; copied. Strings shorter than 6 bytes are
 * ignored (masking them would mangle ordinary text). Returns 0 or
 * M2Z_ERR_NOMEM / M2Z_ERR_FULL (more than REDACT_MAX_SECRETS at once). */
#define REDACT_MAX_SECRETS 16
int redact_add(const char *secret);

/* Forget a secret registered with redact_add (its copy is wiped). */
void redact_remove(const char *secret);

#endif
