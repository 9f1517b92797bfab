"""Crash points for the fault tests: `point(name)` kills the whole job, as a power cut would.

A no-op unless the environment variable OFFER_AI_FAULT names the point, so production runs
are unaffected. The kill takes the job's whole process group, found through the session the
tests start it in (the JVM and the driver's Python; Spark's Python workers sit in a group of
their own inside that session, so a point reached on an executor takes that one too), with
SIGKILL: nothing gets to clean up, which is what the tests must survive.
"""

from __future__ import annotations

import os
import signal

ENV = "OFFER_AI_FAULT"


def point(name: str) -> None:
    if os.environ.get(ENV) != name:
        return
    for group in dict.fromkeys((os.getsid(0), os.getpgid(0))):  # the job's session group, then this one
        try:
            os.killpg(group, signal.SIGKILL)
        except OSError:
            pass
    os.kill(os.getpid(), signal.SIGKILL)  # whatever happened above, at least this process
