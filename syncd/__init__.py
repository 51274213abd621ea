"""syncd: keep a local folder mirrored to the OpenAI Files API."""

__version__ = "0.1.0"
