"""Keeps Mosquitto's password and ACL files in step with the registry (`serve --mqtt-acl-dir`).

After every change to device credentials (register, rotate, revoke,
decommission, batch revoke) the controller rewrites ``passwd`` and ``acl``
in the directory `csi-ota mqtt-acl` writes, then sends SIGHUP to the broker
whose pid is in ``--mosquitto-pid-file``. Mosquitto 2 re-reads both files on
SIGHUP and disconnects clients whose credentials are gone, so a revoked
token stops feeding MQTT at once (issue 12 L3) instead of at the operator's
next `mqtt-acl` run. A failed reload is logged; the credential change itself
has already committed.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from csi_ota.controller import DEFAULT_MQTT_CONTROLLER_USER
from csi_ota.controller.mqtt_acl import MqttFiles, write_mqtt_files
from csi_ota.controller.registry import mqtt_credentials

if TYPE_CHECKING:
    from csi_ota.controller.context import ControllerContext

log = logging.getLogger("csi_ota.mqtt_sync")


class MqttFilesSync:
    def __init__(
        self,
        acl_dir: Path,
        *,
        controller_user: str = DEFAULT_MQTT_CONTROLLER_USER,
        mosquitto_pid_file: Path | None = None,
    ) -> None:
        self.acl_dir = Path(acl_dir)
        self.controller_user = controller_user
        self.mosquitto_pid_file = None if mosquitto_pid_file is None else Path(mosquitto_pid_file)
        self._lock = threading.Lock()
        self.reloads = 0

    def sync(self, ctx: ControllerContext) -> MqttFiles:
        """Rewrites the files from the registry and reloads the broker (one sync at a time)."""
        with self._lock:
            with ctx.session() as session:
                credentials = mqtt_credentials(session)
            files = write_mqtt_files(self.acl_dir, credentials, controller_user=self.controller_user)
            self._reload()
            return files

    def _reload(self) -> None:
        if self.mosquitto_pid_file is None:
            return
        try:
            pid = int(self.mosquitto_pid_file.read_text().split()[0])
            os.kill(pid, signal.SIGHUP)
            self.reloads += 1
        except (OSError, ValueError, IndexError) as exc:
            log.warning("could not reload Mosquitto (pid file %s): %s", self.mosquitto_pid_file, exc)
