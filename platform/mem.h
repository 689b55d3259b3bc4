/* mem.h - the C library's allocator, tuned for a small long-running daemon.
 *
 * glibc gives every thread that allocates its own arena (up to 8 per core)
 * and keeps each arena's freed memory for that thread: with the MQTT
 * thread, the forwarder and gRPC's threads all allocating, that is ~1.5 MB
 * of resident memory nobody uses (measured: README "Benchmark", static
 * peak RSS). One arena shares it; per-thread caches (tcache) keep small
 * allocations lock-free, and CPU per event did not change measurably. */
#ifndef M2Z_MEM_H
#define M2Z_MEM_H

/* Call first in main(), before any thread starts. One malloc arena, unless
 * the operator chose otherwise (GLIBC_TUNABLES=glibc.malloc.arena_max=N or
 * MALLOC_ARENA_MAX=N); nothing on a C library without arenas. */
void mem_tune(void);

#endif
