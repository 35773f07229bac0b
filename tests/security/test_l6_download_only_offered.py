"""L6: a device token downloads only the image it is offered (or the one it runs), not any stored image.

Before: GET /api/ota/firmware/<sha256> served every stored release to every device token.
"""

from __future__ import annotations

from controller_helpers import build_release, new_device, upload


def test_only_the_assigned_or_running_image(sqlite_controller, release_key):
    offered, other = build_release(release_key), build_release(release_key)
    for release in (offered, other):
        assert upload(sqlite_controller, release).status_code == 201
    device_id, token = new_device(sqlite_controller)
    stranger_id, stranger_token = new_device(sqlite_controller)
    with sqlite_controller.management_client() as mgmt:
        mgmt.put(f"/api/devices/{device_id}/assignment", json={"release": offered.version}).raise_for_status()
    with sqlite_controller.device_client(token) as device:
        got = device.get(f"/api/ota/firmware/{offered.sha256}")
        assert got.status_code == 200 and got.content == offered.image
        refused = device.get(f"/api/ota/firmware/{other.sha256}")
        assert refused.status_code == 404 and refused.content != other.image
        # Once the device runs `other` (heartbeat), it may fetch its own image again (repair, Range resume).
        beat = device.post(f"/api/devices/{device_id}/heartbeat", json={"version": other.version})
        assert beat.status_code == 200
        assert device.get(f"/api/ota/firmware/{other.sha256}").status_code == 200
    with sqlite_controller.device_client(stranger_token) as stranger:
        for release in (offered, other):
            assert stranger.get(f"/api/ota/firmware/{release.sha256}").status_code == 404
        assert stranger.get("/firmware/latest", params={"device_id": stranger_id}).status_code == 404
