"""sle: spoken street-name linking. Find the street a person said among ~690k real European street names."""

__version__ = "0.1.0"
