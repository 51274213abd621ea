"""The remote side: the interface the core uses (protocol.py) and its HTTP implementation."""
