"""Code shared by every jobq function: settings, models, keys, the Redis store and the queue engine."""
