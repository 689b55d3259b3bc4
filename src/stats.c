#include "stats.h"

struct stats g_stats;

const int stats_latency_bounds_ms[STATS_N_BOUNDS] = {
	5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000,
};

void stats_observe_latency(int64_t ms)
{
	int i = 0;

	if (ms < 0)
		ms = 0;
	while (i < STATS_N_BOUNDS && ms > stats_latency_bounds_ms[i])
		i++;
	atomic_fetch_add_explicit(&g_stats.latency_bucket[i], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&g_stats.latency_sum_ms, (uint_fast64_t)ms, memory_order_relaxed);
}
