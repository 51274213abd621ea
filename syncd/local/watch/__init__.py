"""Watching the folder: inotify events become hints, debounced per path."""
