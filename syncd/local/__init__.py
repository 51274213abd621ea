"""The folder: walking it, fingerprinting its files, which paths are in scope, checks."""
