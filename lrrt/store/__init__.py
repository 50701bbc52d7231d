"""The Redis job store: the key layout (`keys`), the job records and their transitions (`jobs`), and
the fleet's counters (`stats`). Nothing outside this package touches Redis keys by name."""
