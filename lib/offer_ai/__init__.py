"""offer-ai: raw game events -> Delta sessions -> point-in-time features -> offer policy."""

__version__ = "0.1.0"
