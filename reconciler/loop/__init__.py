"""What the long-running loops share (`watch`, `sync`): the `backoff` policy for temporary
failures, the `holds` on permanent ones, the `lines` they print (values, never parsed back),
`rounds` (settling a run's outcomes into those) and `signals` (SIGINT/SIGTERM stop them)."""

from reconciler.loop.backoff import MAX_BACKOFF_S, Backoff
from reconciler.loop.holds import Holds
from reconciler.loop.lines import Line, outcome_line
from reconciler.loop.rounds import Said, settle
from reconciler.loop.signals import stop_on_signals

__all__ = ["MAX_BACKOFF_S", "Backoff", "Holds", "Line", "Said", "outcome_line", "settle", "stop_on_signals"]
