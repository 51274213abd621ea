"""The remote side: the Files interface (protocol.py) and its HTTP implementation (http.py)."""
