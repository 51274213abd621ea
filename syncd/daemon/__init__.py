"""``syncd run``: the loop that schedules passes, one runner per mirror, and its plumbing."""
