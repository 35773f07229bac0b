"""CsiOtaError kinds the HTTP layer maps to status codes (the CLI treats them all alike)."""

from __future__ import annotations

from csi_ota.errors import CsiOtaError


class NotFound(CsiOtaError):
    """The named device, release or user does not exist (HTTP 404)."""


class Conflict(CsiOtaError):
    """The request collides with stored state, e.g. a version that exists (HTTP 409)."""
