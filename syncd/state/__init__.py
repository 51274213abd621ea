"""The ledger: what syncd knows about each path, the intents, and the lock on them."""
