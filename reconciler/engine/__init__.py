"""Every call to the Docker engine and to registries, and nothing else.

Returns what the engine says (plain dicts and IDs); turning that into observed state
is `observed`'s job. Docker SDK errors become reconciler errors here, in one place.
Imports `core` only.
"""
