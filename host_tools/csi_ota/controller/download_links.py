"""Signed download links: nginx sends firmware bytes with no Python per download (issue 14).

With ``csi-ota serve --signed-download-links SECRET_FILE`` the version check's
``X-Firmware-Url`` (not part of the signed manifest) names the image as

    /api/ota/firmware/<sha256>?device=<id>&expires=<unix s>&sig=<base64url MD5>

in the format of nginx's stock ``secure_link`` module (Debian's nginx-light has it):
``sig`` = base64url, unpadded MD5 of ``"<expires>|<uri>|<device>|<secret>"``. nginx in front
checks the link itself (:func:`nginx_config` writes the configuration) and serves the
image from the content-addressed store with sendfile, Range and ETag, capping concurrent
downloads per device with ``limit_conn``; a request without ``sig`` — an old device, an
old link — or with an expired link goes to the controller, which decides by the bearer
token as before. A link that does not verify (tampered, another device's, another image)
gets 403 from nginx. docs/security.md says why MD5 is acceptable here.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
import time
from pathlib import Path

from csi_ota.errors import CsiOtaError

SECRET_PATTERN = re.compile(r"^[A-Za-z0-9_-]{32,128}$")
DEVICE_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,31}$")  # the registry's: needs no URL escaping
SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
DEFAULT_LIFETIME_S = 7200
MIN_LIFETIME_S = 60
MAX_LIFETIME_S = 7 * 24 * 3600
FIRMWARE_PATH = "/api/ota/firmware/{sha256}"
NGINX_ZONE = "csi_ota_downloads"


def load_secret(path: Path) -> str:
    """The link secret from ``path`` (one line: 32–128 characters of A–Z a–z 0–9 _ -)."""
    try:
        text = Path(path).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise CsiOtaError(f"download link secret {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if SECRET_PATTERN.match(text) is None:
        raise CsiOtaError(
            f"download link secret {path}: must be one line of 32-128 characters A-Z a-z 0-9 _ - "
            "(csi-ota download-links new-secret writes one)"
        )
    return text


def new_secret(path: Path) -> None:
    """Writes a fresh 256-bit secret to ``path`` (mode 0600); refuses to overwrite a file."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise CsiOtaError(f"{path}: exists (remove it first to rotate the secret)") from None
    except OSError as exc:
        raise CsiOtaError(f"{path}: {exc.strerror}") from None
    with os.fdopen(fd, "w", encoding="ascii") as file:
        file.write(secrets.token_urlsafe(32) + "\n")


def signature(uri: str, device_id: str, expires: int, secret: str) -> str:
    """What nginx's ``secure_link_md5 "$secure_link_expires|$uri|$arg_device|<secret>"`` computes."""
    digest = hashlib.md5(f"{expires}|{uri}|{device_id}|{secret}".encode("ascii")).digest()  # noqa: S324
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def signed_url(sha256: str, device_id: str, secret: str, lifetime_s: int, now_s: float | None = None) -> str:
    """The link for ``device_id`` to download image ``sha256`` until now + ``lifetime_s`` (wall clock)."""
    if SHA256_PATTERN.match(sha256) is None or DEVICE_ID_PATTERN.match(device_id) is None:
        raise ValueError("sha256 or device id not in the registry's form")
    expires = int(time.time() if now_s is None else now_s) + lifetime_s
    uri = FIRMWARE_PATH.format(sha256=sha256)
    return f"{uri}?device={device_id}&expires={expires}&sig={signature(uri, device_id, expires, secret)}"


def firmware_url(settings, sha256: str, device_id: str) -> str:
    """The version check's X-Firmware-Url: a signed link with ``--signed-download-links``, else the plain path."""
    secret = settings.download_link_secret
    if secret is None:
        return FIRMWARE_PATH.format(sha256=sha256)
    return signed_url(sha256, device_id, secret, settings.download_link_lifetime_s)


def nginx_config(
    secret: str,
    firmware_dir: Path,
    controller: str = "127.0.0.1:8080",
    *,
    downloads_per_device: int = 4,
    send_timeout_s: int = 60,
) -> tuple[str, str]:
    """(http-level, server-level) nginx configuration for the offload in front of the controller.

    The server part sends everything but valid links to ``controller`` (host:port of
    ``csi-ota serve --insecure-http``); add ``listen``/TLS lines around it.
    """
    if SECRET_PATTERN.match(secret) is None:
        raise CsiOtaError("download link secret: not in the form load_secret accepts")
    if downloads_per_device < 1 or send_timeout_s < 1:
        raise CsiOtaError("downloads per device and send timeout must be at least 1")
    store = Path(firmware_dir).resolve()
    http = f"""
# csi-ota signed download links (csi-ota download-links nginx-config)
limit_conn_zone $arg_device zone={NGINX_ZONE}:10m;
upstream csi_ota_controller {{ server {controller}; keepalive 64; }}
"""
    server = f"""
# Signed links: nginx checks them and sends the image itself (sendfile, Range, ETag).
location ~ "^/api/ota/firmware/(?<csi_ota_sha256>[0-9a-f]{{64}})$" {{
    error_page 418 = @csi_ota_controller;
    if ($arg_sig = "") {{ return 418; }}       # no link (old device, old URL): the controller decides
    secure_link $arg_sig,$arg_expires;
    secure_link_md5 "$secure_link_expires|$uri|$arg_device|{secret}";
    if ($secure_link = "") {{ return 403; }}   # tampered, another device's or another image's link
    if ($secure_link = "0") {{ return 418; }}  # expired: the controller decides by the device token
    limit_conn {NGINX_ZONE} {downloads_per_device};   # per device (the link's, signed)
    limit_conn_status 429;
    send_timeout {send_timeout_s}s;              # how long a vanished device keeps its slot
    alias {store}/$csi_ota_sha256.bin;
    types {{ }}
    default_type application/octet-stream;
    etag off;
    add_header ETag "\\"$csi_ota_sha256\\"";
    add_header Cache-Control "private, max-age=31536000, immutable";
}}
location @csi_ota_controller {{
    proxy_pass http://csi_ota_controller;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
}}
location / {{
    proxy_pass http://csi_ota_controller;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
}}
"""
    return http, server
