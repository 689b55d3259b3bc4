/* spool_internal.h - test seams of spool.c; not for other modules. */
#ifndef M2Z_SPOOL_INTERNAL_H
#define M2Z_SPOOL_INTERNAL_H

#include "spool.h"

/* Make records handed out but not acknowledged come out of spool_next()
 * again, as a restart does. Only the unit tests use it: the forwarder keeps
 * what it took in memory until acked. */
void spool_rewind(struct spool *sp);

#endif
