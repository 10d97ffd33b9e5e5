"""A test kit for users' workflows: a real engine on memory persistence and a fake clock.

``async with TestKit(order) as kit:`` gives an open engine (``kit.engine``) whose time moves
only when the test says so: ``await kit.run_until_idle()`` lets every run go as far as it can,
``await kit.advance("72h")`` fires on the way every timer, retry, timeout and cron schedule due
within the span, ``kit.fail("charge", on_attempt=1)`` makes a step fail without touching its
code, and ``await kit.steps(run_id)`` / ``await kit.events(run_id, kind)`` read the history.
See docs/testing.md.
"""

from treadle.testing._faults import Fault, InjectedFailure
from treadle.testing._kit import TestKit

__all__ = ["Fault", "InjectedFailure", "TestKit"]
