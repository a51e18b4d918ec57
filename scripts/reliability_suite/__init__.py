"""The cases of the fault-and-load suite (scripts/reliability.py), by concern; ``core`` holds what they share."""
