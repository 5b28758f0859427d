"""Running a pass of jobs: sessions, batches, the I/O workers, progress and devices."""
