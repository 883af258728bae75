"""awesearch: spoken term detection with acoustic word embeddings."""

__version__ = "0.1.0"
