"""Building blocks every stage uses: the registry class, paths and caches, progress bars, atomic writes, image I/O,
results as JSON, the process group, data-loader workers, settings fields. Nothing here knows what a lock is."""
