"""The worker layer: one worker process (fetch, run within a bound, settle, scan), the
supervisor of many, and running an app's work in this process (`run_until_idle`)."""
