"""Bearer tokens: random, shown once, stored only as SHA-256 hex, compared in constant time."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

TOKEN_BYTES = 32
DEVICE_TOKEN_PREFIX = "dev_"
ADMIN_TOKEN_PREFIX = "adm_"
# Mosquitto's `mosquitto_passwd` format: $7$<iterations>$<b64 salt>$<b64 PBKDF2-SHA512>.
MOSQUITTO_PBKDF2_ITERATIONS = 101
MOSQUITTO_SALT_BYTES = 12
MOSQUITTO_HASH_BYTES = 64


def new_device_token() -> str:
    return DEVICE_TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def new_admin_token() -> str:
    return ADMIN_TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def hashes_equal(stored_hash: str | None, presented_hash: str) -> bool:
    if stored_hash is None:
        return False
    return hmac.compare_digest(stored_hash.encode(), presented_hash.encode())


def bearer_token(authorization_header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not authorization_header:
        return None
    scheme, _, token = authorization_header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 256:
        return None
    return token


MQTT_PASSWORD_LABEL = b"csi-ota mqtt password v1"  # ota_core/include/ota_mqtt_credentials.h


def mqtt_password_for(device_token: str) -> str:
    """The device's MQTT password: HMAC-SHA256(key=token, OTA_MQTT_PASSWORD_LABEL), 64 hex characters.

    The device computes the same (ota_mqtt_password); the broker never holds a credential that also
    opens the HTTPS API, and the token cannot be computed back from it.
    """
    return hmac.new(device_token.encode("utf-8"), MQTT_PASSWORD_LABEL, hashlib.sha256).hexdigest()


def mosquitto_password_hash(password: str, *, salt: bytes | None = None) -> str:
    """A password-file hash Mosquitto 2 accepts (same as `mosquitto_passwd -H sha512-pbkdf2`)."""
    salt = secrets.token_bytes(MOSQUITTO_SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac(
        "sha512", password.encode("utf-8"), salt, MOSQUITTO_PBKDF2_ITERATIONS, MOSQUITTO_HASH_BYTES
    )
    return f"$7${MOSQUITTO_PBKDF2_ITERATIONS}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"
