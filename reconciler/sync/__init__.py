"""`reconciler sync`: decides *when* to run the apply pipeline from a git ref, never *what*.

`repository` is the agent's own clone, `status` its status file, `agent` the rounds.
Imports `loop`, `pipeline` and below.
"""
