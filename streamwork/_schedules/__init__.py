"""The schedules feature: periodic tasks with no beat process (definitions and the ticker)."""
