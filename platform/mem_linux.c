/* mem_linux.c - see mem.h. */
#include "mem.h"

#include <stdlib.h>
#include <string.h>

#ifdef __GLIBC__
#include <malloc.h>
#endif

void mem_tune(void)
{
#ifdef M_ARENA_MAX
	const char *t = getenv("GLIBC_TUNABLES");

	if (getenv("MALLOC_ARENA_MAX") || (t && strstr(t, "glibc.malloc.arena_max")))
		return;
	mallopt(M_ARENA_MAX, 1);
#endif
}
