"""Getting files back and checking them: ``pull``, ``verify``, safe destinations and names."""
