/* preflight.h - the files a configuration will need, checked before running.
 *
 * --check runs these after the configuration parsed: the broker's CA file,
 * client certificate and key must exist, be readable and look like PEM; the
 * spool directory must be writable, or creatable (its nearest existing
 * parent writable). Only files the configuration will use are checked (no
 * broker files without tls). The gateway's and the token endpoint's CA
 * files are checked by conf_load() itself, so a bad one stops the agent at
 * start as well. */
#ifndef M2Z_PREFLIGHT_H
#define M2Z_PREFLIGHT_H

#include <stdio.h>

struct config;

/* Write one line per problem to ERR, each starting with where the value
 * came from ("FILE:LINE: [mqtt] ca_file ...", "environment NAME ..." or
 * "FILE: [spool] directory (default) ..."). Returns the number of problems
 * (0 = all good). */
int preflight_files(const struct config *cfg, FILE *err);

#endif
