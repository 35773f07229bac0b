"""The one error class of csi_ota. The CLI catches it once, at the top."""

from __future__ import annotations

EXIT_INPUT_ERROR = 2
EXIT_OPERATION_FAILED = 1


class CsiOtaError(Exception):
    """A failure the user can act on: bad input, a rule broken, a check failed.

    ``exit_code`` is 2 for usage and input errors (the default) and 1 for an
    operation that ran and failed (e.g. a budget exceeded, a verify mismatch).
    """

    def __init__(self, message: str, *, exit_code: int = EXIT_INPUT_ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message
