"""servewise: evidence for taking model serving from prototype to production."""

__version__ = "0.1.0"
