"""The message lifecycle feature: status, cancel, progress, and the event streams."""
