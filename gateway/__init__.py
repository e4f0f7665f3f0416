"""storegw: the store gateway daemon and its domain."""

__version__ = "0.1.0"
