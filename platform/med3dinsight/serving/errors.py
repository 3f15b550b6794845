"""The one error type of the serving code: an HTTP status, a stable reason code and a message.

Reason codes are the ingest stage's `Reason` values for invalid volumes (422, or 415 for UNKNOWN_FORMAT),
plus the serving codes below for what only a request can get wrong.
"""

from __future__ import annotations

from med3dinsight.ingest.reasons import Reason, VolumeRejected

PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
BAD_REQUEST = "BAD_REQUEST"
UNKNOWN_VOLUME = "UNKNOWN_VOLUME"
PREPROCESSING_MISMATCH = "PREPROCESSING_MISMATCH"
"""A stored volume was ingested with other preprocessing than the model was trained on."""
UNAUTHORIZED = "UNAUTHORIZED"
TIMEOUT = "TIMEOUT"
NO_HEAD = "NO_HEAD"
INTERNAL_ERROR = "INTERNAL_ERROR"


class ServeError(Exception):
    """A request that cannot be answered; becomes a JSON error response.

    Args:
        status: HTTP status code.
        reason: stable reason code (an ingest `Reason` value or a serving code of this module).
        message: human-readable detail naming the offending value.
    """

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = str(reason)
        self.message = message

    def to_json(self) -> dict[str, str | int]:
        return {"status": self.status, "reason": self.reason, "message": self.message}


def from_rejection(error: VolumeRejected) -> ServeError:
    """The response for a volume the ingest validator refused: 415 for an unknown format, else 422."""
    status = 415 if error.reason == Reason.UNKNOWN_FORMAT else 422
    if error.reason == Reason.INTERNAL_ERROR:
        status = 500
    return ServeError(status, str(error.reason), error.message)
