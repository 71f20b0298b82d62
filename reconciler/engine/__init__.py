"""Every call to the Docker engine and to registries, and nothing else.

Returns what the engine says (plain dicts and IDs); turning that into observed state
is `observed`'s job. What to create arrives as `specs`, every setting decided. Docker SDK
errors become reconciler errors here, in one place. The only layer that imports the Docker
SDK. Imports `desired`, `spec` and `core`.
"""
