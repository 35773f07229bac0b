"""A typed client of the management API (what the `csi-ota` controller commands call)."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import httpx

from csi_ota.errors import EXIT_INPUT_ERROR, EXIT_OPERATION_FAILED, CsiOtaError

DEFAULT_SERVER = "https://127.0.0.1:8081"
CA_CERT_ENV = "CSI_OTA_CA_CERT"
TIMEOUT_S = 60.0
MANIFEST_HEADER = "X-Release-Manifest"
TOTAL_COUNT_HEADER = "X-Total-Count"  # list endpoints: rows matching before limit/offset


def management_verify(ca_cert: str | None = None) -> str | bool:
    """What an HTTPS client of the management port verifies against: ``ca_cert``, CSI_OTA_CA_CERT,
    or the system store."""
    return ca_cert or os.environ.get(CA_CERT_ENV) or True


class ManagementClient:
    def __init__(
        self, server: str, token: str | None, *, timeout_s: float = TIMEOUT_S, ca_cert: str | None = None
    ) -> None:
        if not token:
            raise CsiOtaError("no admin token: pass --token-file, or set CSI_OTA_TOKEN or CSI_OTA_TOKEN_FILE")
        self.server = server.rstrip("/")
        # https:// is verified against CSI_OTA_CA_CERT (the local CA of `csi-ota certs`) or the system store.
        ca_cert = ca_cert or os.environ.get(CA_CERT_ENV) or None
        if ca_cert is not None and not Path(ca_cert).is_file():
            raise CsiOtaError(f"{CA_CERT_ENV}={ca_cert}: no such file")
        self._client = httpx.Client(
            base_url=self.server,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout_s,
            verify=ca_cert if ca_cert is not None else True,
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ManagementClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def request(self, method: str, path: str, *, verification: bool = False, **kwargs) -> httpx.Response:
        """Sends a request; an error answer raises CsiOtaError with the server's reason."""
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise CsiOtaError(f"cannot reach {self.server}: {exc}", exit_code=EXIT_OPERATION_FAILED) from None
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            failed_check = response.status_code >= 500 or response.status_code in (401, 403)
            failed_check = failed_check or (verification and response.status_code == 422)
            raise CsiOtaError(
                f"{response.status_code}: {detail}",
                exit_code=EXIT_OPERATION_FAILED if failed_check else EXIT_INPUT_ERROR,
            )
        return response

    def get(self, path: str, **params) -> Any:
        clean = {k: v for k, v in params.items() if v is not None}
        return self.request("GET", path, params=clean).json()

    def get_page(self, path: str, **params) -> tuple[list[Any], int | None]:
        """A list endpoint's rows and its X-Total-Count (None when the endpoint does not send one)."""
        clean = {k: v for k, v in params.items() if v is not None}
        response = self.request("GET", path, params=clean)
        total = response.headers.get(TOTAL_COUNT_HEADER, "")
        return response.json(), int(total) if total.isdigit() else None

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, json=body if body is not None else {}).json()

    def put(self, path: str, body: Any) -> Any:
        return self.request("PUT", path, json=body).json()

    def upload_release(self, image_path: Path, manifest_path: Path) -> dict[str, Any]:
        manifest = Path(manifest_path).read_bytes()
        size = Path(image_path).stat().st_size
        with open(image_path, "rb") as image:
            return self.request(
                "POST",
                "/api/releases",
                verification=True,
                content=image,
                headers={
                    MANIFEST_HEADER: base64.b64encode(manifest).decode(),
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(size),
                },
            ).json()

    def export_audit(self, out, **params) -> int:
        clean = {k: v for k, v in params.items() if v is not None}
        lines = 0
        try:
            with self._client.stream("GET", "/api/audit/export", params=clean) as response:
                if response.status_code >= 400:
                    response.read()
                    raise CsiOtaError(
                        f"{response.status_code}: {response.text}", exit_code=EXIT_OPERATION_FAILED
                    )
                for line in response.iter_lines():
                    if line:
                        out.write(line + "\n")
                        lines += 1
        except httpx.HTTPError as exc:
            raise CsiOtaError(f"cannot reach {self.server}: {exc}", exit_code=EXIT_OPERATION_FAILED) from None
        return lines
