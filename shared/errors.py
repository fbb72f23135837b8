"""The errors stigwatch raises, one small hierarchy.

    StigwatchError
    ├── UsageError        a wrong command line, setting or policy file: exit 2, one line
    ├── InputError        content that is not a usable agent document: a Not_Reviewed
    │                     verdict with the reason, never a crash and never a pass
    ├── CollectError      a target's data could not be had; stored as Not_Reviewed
    │   └── TransientCollectError   worth retrying (the queue redelivers the message)
    ├── StoreError        Table or queue storage failed; the message is retried
    └── AlertDeliveryError   an alert is still pending on a channel; retried later

Every message quotes the bad value where there is one and says what to do.
"""


class StigwatchError(Exception):
    """Base class of every error stigwatch raises on purpose."""


class UsageError(StigwatchError):
    """A wrong command line, setting or policy file."""


class InputError(StigwatchError):
    """The input cannot be read as an agent document; the reason becomes a verdict."""


class CollectError(StigwatchError):
    """The target's data could not be collected and retrying will not help."""


class TransientCollectError(CollectError):
    """Collection failed in a way that may pass (timeout, 503, throttling)."""


class StoreError(StigwatchError):
    """Table or queue storage failed."""


class AlertDeliveryError(StigwatchError):
    """An alert is still pending on some channel; the queue should try again later.

    `wait` is how many seconds until the earliest channel may be tried again, when a
    receiver said (Retry-After) or a backoff applies.
    """

    def __init__(self, message: str, wait: float | None = None) -> None:
        super().__init__(message)
        self.wait = wait
