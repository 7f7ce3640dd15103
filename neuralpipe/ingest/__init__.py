"""Client-side bulk ingest: readers, the pipeline + bulk runner, checkpoint, dead-letter file, progress."""
