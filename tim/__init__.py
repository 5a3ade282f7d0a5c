"""Tim: recognise the artist of a painting with timm models, locally or on the Hub."""

__version__ = "0.1.0"
