"""The OTA controller service (`csi-ota serve`): device API, management API, MQTT bridge.

Modules: ``models`` (tables), ``db`` (engine, sessions, migrations), ``settings``
(environment), ``tokens`` and ``admin`` (authentication), ``registry`` (devices,
status reports, health), ``releases`` and ``store`` (verified firmware),
``device_api`` / ``management_api`` (the two FastAPI apps), ``mqtt_bridge``,
``csi_sink``, ``mqtt_acl``, ``metrics``, ``server`` (both ports in one process).
"""

# Shared-subscription group of every controller's MQTT bridge (``csi-ota serve --mqtt-share-group``).
DEFAULT_MQTT_SHARE_GROUP = "csi-ota-controller"

# The controller's MQTT user (`csi-ota mqtt-acl --controller-user`); no device may take this name.
DEFAULT_MQTT_CONTROLLER_USER = "ota-controller"

# Admin roles, least to most privileged (management API, `csi-ota admin`).
ADMIN_ROLES = ("viewer", "operator", "admin")
