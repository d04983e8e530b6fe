"""A worker process's attempts in flight: sent on the event loop, recorded in groups.

A `deliver` message carries up to `deliver_batch` delivery ids. Its worker
thread claims them in two round trips, builds and signs the requests, and
hands them to the process's event loop, where they are sent concurrently
(`sending`). Each answer goes to one recorder thread, which records whatever
has arrived (from every message) in one transaction (`recording`). A fan-out
hands its claims over before its transaction commits (`Pipeline.start_held`):
those answers are parked until the commit succeeded, and never recorded if it
failed.

The worker thread waits until its attempts are recorded, then returns, and
dramatiq acks the message: the state change is committed before the ack. An
attempt still unanswered after `deliver_handoff_s` (an endpoint that hangs
until the timeout) is left to finish alone and the thread goes back to work,
so a few slow endpoints cannot hold every thread. Nothing is lost by that:
the delivery was committed as `delivering` with a lease when it was claimed,
and if the process dies before the late answer is recorded, the scheduler's
lease sweep publishes it again.

`worker_max_in_flight` bounds the attempts a process holds, finished-but-not-
recorded and handed-off ones included (`admission`): a thread waits for room
before it claims, which is the backpressure that keeps memory flat.
"""

from actors.pipeline.admission import Admission, weigh
from actors.pipeline.batch import Batch
from actors.pipeline.recording import AfterRecord, Record, Recorder
from actors.pipeline.sending import Pipeline, RecordingFailed

__all__ = [
    "Admission",
    "AfterRecord",
    "Batch",
    "Pipeline",
    "Record",
    "Recorder",
    "RecordingFailed",
    "weigh",
]
