#include "stats.h"

struct stats g_stats;
