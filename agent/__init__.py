"""The CommuniPute host agent. It imports nothing from Django: it is installed alone."""

__version__ = "0.1.0"
