"""Core helpers of every layer: typed errors, atomic files and hashing, progress,
self-describing config fields, retrieval metrics."""
