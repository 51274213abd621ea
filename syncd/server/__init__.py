"""`syncd serve`: a local, stateful, Files-API-compatible server."""
