"""Reports for people: tag-check faults (tagfault.py) and their symbolization (symbols.py)."""
