"""What ``mbk run`` is: a YAML recipe read safely, one step per stage wired output -> input,
cross-stage checks, and reuse of unchanged steps by content hash.
"""
