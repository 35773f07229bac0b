"""The management web UI in a real browser (headless Chromium + Selenium) against a real controller.

One controller (uvicorn on loopback, virtual clock at SCALE) with a simulated
fleet; three admin users (admin, operator, viewer). The tests sign in through
the form, watch a bad release halt in its first stage and roll back — the page
updates without a reload — pause and resume as operator, and are refused as
viewer. Device-supplied strings (`<script>`, `[/]`) must show as text.
Screenshots: out/ui/*.png.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time

import httpx
import pytest
from rollout_harness import (
    DAY_S,
    HOUR_S,
    build_image,
    create_rollout,
    fleet_config,
    start_world,
    stop_world,
    upload_release,
)
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from csi_ota import keys
from csi_ota.controller import admin as admin_lib
from csi_ota.fleet.runner import Fleet
from csi_ota.manifest import manifest_for_image, sign_manifest

pytestmark = pytest.mark.slow

SCALE = 600.0  # ten virtual minutes per wall-clock second: devices check every 6 s, heart-beat every 3 s
FLEET_SIZE = 40
EVIL_VERSION = "<script>alert(1)</script>[/]"  # a device may report any printable version string
EVIL_NOTES = "<script>alert(2)</script> [/] [bold]notes[/bold] <b>&amp;"
PROBE_ID = "probe-xss"
WAIT_S = 30
ROLLOUT_WAIT_S = 150
FLEET_BOUND_S = 600  # the module takes about 2 minutes


def bad_release_policy() -> dict:
    return {
        "stages": [25, 100],
        "soak_s": 4 * HOUR_S,
        "batch_size": FLEET_SIZE,
        "health_timeout_s": 30 * HOUR_S,
        "max_retries": 0,
        "success_percent": 90,
        "failure_percent": 10,
        "failure_min_count": 2,
    }


def steady_policy() -> dict:
    """A rollout that stays in its first stage's 30-day soak while the test pauses and resumes it."""
    # No failure count can halt it: on a heavily loaded machine a healthy device may still miss
    # heartbeats long enough to be judged silent, and this test is about the controls, not the gates.
    return {"stages": [25, 100], "soak_s": 30 * DAY_S, "batch_size": 5, "failure_min_count": 1_000_000}


class FleetThread:
    def __init__(self, config) -> None:
        self.fleet = Fleet(config)
        self.summary = None
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        async def main():
            self.loop = asyncio.get_running_loop()
            return await self.fleet.run()

        try:
            self.summary = asyncio.run(main())
        except BaseException as exc:
            self.error = exc

    def stop(self, timeout_s: float = 30) -> None:
        """Cancels every device task (the fleet runs for the whole module, with no rollout to follow)."""
        loop = getattr(self, "loop", None)
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(lambda: [task.cancel() for task in asyncio.all_tasks(loop)])
        self.thread.join(timeout_s)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    world = start_world(
        tmp_path_factory.mktemp("webui"),
        devices=FLEET_SIZE,
        scale=SCALE,
        versions=("1.0.0", "2.0.0"),
    )
    try:
        database_url = world.server.database_url
        world.operator_token = admin_lib.bootstrap_admin(database_url, name="olga", role="operator")
        world.viewer_token = admin_lib.bootstrap_admin(database_url, name="vera", role="viewer")
        with world.management() as client:
            response = client.post("/api/devices", json={"device_id": PROBE_ID, "tags": ["lab"]})
            assert response.status_code == 201, response.text
            probe_token = response.json()["token"]
        with world.server.device_client(probe_token) as device:
            response = device.post(
                f"/api/devices/{PROBE_ID}/heartbeat",
                json={"version": EVIL_VERSION, "uptime_s": 42, "rssi": -51, "ota_state": "valid"},
            )
            assert response.status_code == 200, response.text
        # A live fleet for the whole module: half the devices fail the self-test of any update.
        world.fleet = FleetThread(
            fleet_config(
                world,
                behaviours="healthy=50,fail_selftest=50",
                check_interval_s=HOUR_S,
                heartbeat_interval_s=HOUR_S / 2,
                duration_s=FLEET_BOUND_S,
            )
        )
        fleet_ids = {device_id for device_id, _ in world.credentials}

        def all_heard() -> bool:
            with world.management() as client:
                devices = client.get("/api/devices").json()
            return all(d["last_heartbeat"] for d in devices if d["device_id"] in fleet_ids)

        deadline = time.monotonic() + WAIT_S
        while not all_heard():
            assert time.monotonic() < deadline, "the fleet's devices were not all heard"
            time.sleep(0.5)
        world.healthy_ids = sorted(d.device_id for d in world.fleet.fleet.devices if d.behaviour == "healthy")
        yield world
    finally:
        if getattr(world, "fleet", None) is not None:
            world.fleet.stop()
        stop_world(world)


# --------------------------------------------------------------------------- helpers


def wait_until(driver, predicate, what: str, timeout_s: float = WAIT_S):
    try:
        return WebDriverWait(driver, timeout_s, poll_frequency=0.25).until(lambda d: predicate(d))
    except Exception as exc:
        raise AssertionError(
            f"timed out after {timeout_s:.0f} s waiting for {what} (at {driver.current_url})"
        ) from exc


def text_of(driver, css: str) -> str:
    """The element's visible text, read in one script call (htmx replaces live parts every 2 s)."""
    return driver.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.innerText.trim() : '';", css
    )


def row_cells(driver, css: str) -> list[list[str]]:
    """Each table row's cell texts, read in one script call."""
    return driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])]"
        ".map(r => [...r.cells].map(c => c.innerText.trim()));",
        css,
    )


def js_click(driver, css: str) -> None:
    """Clicks after this call returns (a click that opens a confirmation must not block the script)."""
    found = driver.execute_script(
        "const e = document.querySelector(arguments[0]); if (e) setTimeout(() => e.click(), 0); return !!e;",
        css,
    )
    assert found, f"no {css} on {driver.current_url}"


def enabled(driver, element_id: str) -> bool:
    return driver.execute_script(
        "const e = document.getElementById(arguments[0]); return !!e && !e.disabled;", element_id
    )


def sign_in(driver, world, token: str) -> None:
    driver.delete_all_cookies()
    driver.get(world.server.management_url + "/ui/login")
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.ID, "sign-in").click()
    wait_until(driver, lambda d: d.find_elements(By.ID, "who"), "the signed-in header")


def post_from_page(driver, path: str, *, csrf: bool = True) -> tuple[int, str]:
    """A POST from the page's own JavaScript (cookie and, if asked, the page's CSRF token)."""
    return driver.execute_async_script(
        """
        const [path, withCsrf, done] = arguments;
        const meta = document.querySelector('meta[name="csrf-token"]');
        const headers = withCsrf && meta ? {"X-CSRF-Token": meta.content} : {};
        fetch(path, {method: "POST", headers, credentials: "same-origin"})
          .then(r => r.text().then(t => done([r.status, t])))
          .catch(e => done([0, String(e)]));
        """,
        path,
        csrf,
    )


def open_confirmation(driver, element_id: str):
    """Clicks a control (once it is enabled) and returns its confirmation dialog."""
    wait_until(driver, lambda d: enabled(d, element_id), f"#{element_id} enabled")
    js_click(driver, f"#{element_id}")
    WebDriverWait(driver, 5).until(ec.alert_is_present())
    alert = driver.switch_to.alert
    assert "rollout" in alert.text.lower()
    return alert


def confirm_click(driver, element_id: str) -> None:
    open_confirmation(driver, element_id).accept()


def no_script_ran(driver) -> bool:
    return driver.execute_script("return window.__csiOtaInjected === undefined") is True


# --------------------------------------------------------------------------- tests


def test_sign_in_fleet_page_and_device_strings_shown_as_text(browser, world, screenshot):
    base = world.server.management_url
    browser.delete_all_cookies()
    browser.get(base + "/ui/")
    assert "/ui/login" in browser.current_url  # not signed in: the sign-in form
    browser.find_element(By.ID, "token").send_keys("adm_not-a-real-token")
    browser.find_element(By.ID, "sign-in").click()
    assert "unknown or revoked" in text_of(browser, ".message.bad")

    sign_in(browser, world, world.server.admin_token)
    cookie = browser.get_cookie("csi_ota_ui")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict" and cookie["path"] == "/ui"
    assert browser.execute_script("return document.cookie") == ""  # invisible to scripts

    # Counts by version / health / OTA state, and the device table.
    versions = text_of(browser, "#counts-version")
    assert EVIL_VERSION in versions  # literally, as text
    assert "1.0.0" in versions
    assert row_cells(browser, "#counts-health tr")[0][:2] == ["healthy", str(FLEET_SIZE + 1)]
    rows = row_cells(browser, "#devices tbody tr")
    assert len(rows) == FLEET_SIZE + 1
    assert rows[0][0] == PROBE_ID and rows[0][2] == EVIL_VERSION and rows[0][3] == "healthy"
    assert "&lt;script&gt;alert(1)&lt;/script&gt;[/]" in browser.page_source
    assert no_script_ran(browser)
    screenshot(browser, "fleet")

    # Filters: tag and health, then version (the attacker's string is just a value).
    browser.find_element(By.NAME, "tag").send_keys("lab")
    browser.find_element(By.CSS_SELECTOR, "select[name=health] option[value=healthy]").click()
    browser.find_element(By.CSS_SELECTOR, "form.filters button").click()
    wait_until(browser, lambda d: "health=healthy" in d.current_url, "the filtered page")
    assert [row[0] for row in row_cells(browser, "#devices tbody tr")] == [PROBE_ID]
    browser.get(base + "/ui/?health=offline")
    assert row_cells(browser, "#devices tbody tr")[0][0] == "No device matches these filters."
    browser.get(base + "/ui/?" + str(httpx.QueryParams({"version": EVIL_VERSION})))
    assert [row[0] for row in row_cells(browser, "#devices tbody tr")] == [PROBE_ID]
    assert browser.find_element(By.NAME, "version").get_attribute("value") == EVIL_VERSION

    # Device detail: the same string in the header facts and in its timeline's heartbeat.
    js_click(browser, f'#devices a[href="/ui/devices/{PROBE_ID}"]')
    wait_until(browser, lambda d: d.find_elements(By.ID, "device-version"), "the device page")
    assert text_of(browser, "#device-version") == EVIL_VERSION
    assert "heartbeat" in text_of(browser, "#timeline")
    assert no_script_ran(browser)
    screenshot(browser, "device-probe")


def test_release_upload_shows_verification_errors_and_release_detail(browser, world, screenshot, tmp_path):
    private = keys.load_private_key(world.key_path)
    key_id = keys.key_id_for(private.public_key())
    image = build_image("2.2.0")
    other = build_image("2.2.1")
    manifest = sign_manifest(manifest_for_image(image, sequence=10, key_id=key_id, notes=EVIL_NOTES), private)
    wrong = sign_manifest(manifest_for_image(other, sequence=11, key_id=key_id), private)
    (tmp_path / "app.bin").write_bytes(image)
    (tmp_path / "app.manifest").write_bytes(manifest)
    (tmp_path / "other.manifest").write_bytes(wrong)

    sign_in(browser, world, world.operator_token)
    browser.get(world.server.management_url + "/ui/releases")
    assert "2.0.0" in text_of(browser, "#releases")

    def upload(manifest_name: str) -> None:
        form = browser.find_element(By.ID, "upload")
        form.find_element(By.NAME, "image").send_keys(str(tmp_path / "app.bin"))
        form.find_element(By.NAME, "manifest").send_keys(str(tmp_path / manifest_name))
        form.find_element(By.TAG_NAME, "button").click()

    upload("other.manifest")  # the manifest of another image: refused, nothing stored
    wait_until(browser, lambda d: "Refused" in text_of(d, "#upload-result"), "the refusal")
    refusal = text_of(browser, "#upload-result")
    assert "HTTP 422" in refusal and "differs from the manifest" in refusal, refusal
    screenshot(browser, "release-upload-refused")
    with world.management() as client:
        assert "2.2.0" not in [r["version"] for r in client.get("/api/releases").json()]

    browser.get(world.server.management_url + "/ui/releases")
    upload("app.manifest")
    wait_until(browser, lambda d: d.find_elements(By.ID, "key-id"), "the new release's page")
    assert text_of(browser, "#key-id") == key_id
    assert f"{len(image):,} B of the 1,310,720 B slot" in text_of(browser, "#slot-use")
    fields = text_of(browser, "#manifest-fields")
    assert "2.2.0" in fields and EVIL_NOTES in fields and key_id in fields
    assert no_script_ran(browser)
    screenshot(browser, "release-detail")


def test_watch_a_bad_release_halt_and_roll_back_live(browser, world, screenshot):
    fleet_ids = [device_id for device_id, _ in world.credentials]
    rollout = create_rollout(world, "2.0.0", bad_release_policy(), selection={"devices": fleet_ids})
    sign_in(browser, world, world.operator_token)
    browser.get(world.server.management_url + "/ui/rollouts")
    js_click(browser, f'#rollouts a[href="/ui/rollouts/{rollout["id"]}"]')
    wait_until(browser, lambda d: d.find_elements(By.ID, "rollout-state"), "the rollout page")
    page_url = browser.current_url
    browser.execute_script("window.__csiOtaSamePage = 'yes'")  # gone if the page reloads

    def counts(d) -> str:
        return text_of(d, "#rollout-counts")

    wait_until(
        browser,
        lambda d: "succeeded" in counts(d) or "failed" in counts(d),
        "first decisions",
        ROLLOUT_WAIT_S,
    )
    screenshot(browser, "rollout-progress")
    wait_until(
        browser,
        lambda d: text_of(d, "#rollout-state") in ("halted", "rolling_back", "rolled_back"),
        "the halt",
        ROLLOUT_WAIT_S,
    )
    assert "stage 1" in text_of(browser, "#halt-reason")
    wait_until(
        browser, lambda d: text_of(d, "#rollout-state") == "rolled_back", "the rollback", ROLLOUT_WAIT_S
    )
    assert browser.execute_script("return window.__csiOtaSamePage") == "yes"  # updated in place
    assert browser.current_url == page_url
    events = text_of(browser, "#events")
    for kind in ("halt", "rollback_started", "rolled_back"):
        assert kind in events, events
    # The gate's decision with its numbers, e.g. "stage 1: 2 of 4 decided devices failed (limit 10 % …".
    assert re.search(r"halted: .*stage 1: \d+ of \d+ decided devices failed \(limit 10 %", events), events
    target = text_of(browser, "#rollback-target")
    assert target.startswith("1.0.0") and "signed rollback release" in target
    assert "failed" in text_of(browser, "#stage-1")  # the stage that halted shows its failures
    for action in ("pause", "resume", "promote", "abort"):  # nothing left to control
        wait_until(browser, lambda d, a=action: not enabled(d, f"btn-{a}"), f"{action} disabled")
    screenshot(browser, "rollout-rolled-back")
    screenshot(browser, "rollout-view", full_page=False)  # README's picture
    with world.management() as client:
        versions = {d["device_id"]: d["version"] for d in client.get("/api/devices").json()}
    assert {versions[device_id] for device_id in fleet_ids} == {"1.0.0"}  # all back on the old release

    # A device's history: its reports and the rollout decision (which device depends on timing:
    # healthy ones rolled back with the signed rollback release, self-test failers by the bootloader).
    with world.management() as client:
        members = client.get(f"/api/rollouts/{rollout['id']}/devices").json()
        candidates = [
            m["device_id"]
            for m in sorted(members, key=lambda m: m["state"] != "rolled_back")
            if m["state"] in ("rolled_back", "failed")
            and any(
                r["target_version"] == "2.0.0"
                for r in client.get(f"/api/devices/{m['device_id']}/reports").json()
            )
        ]
    assert candidates, [(m["device_id"], m["state"], m["reason"]) for m in members if m["stage"] == 1]
    js_click(browser, f'#rollout-devices a[href="/ui/devices/{candidates[0]}"]')
    wait_until(browser, lambda d: d.find_elements(By.ID, "timeline"), "the device page")
    timeline = text_of(browser, "#timeline")
    assert f"rollout {rollout['id']}" in timeline and "rolled_back" in timeline
    assert "report" in timeline and "2.0.0" in timeline
    screenshot(browser, "device-timeline")


def test_pause_and_resume_as_operator_refused_as_viewer(browser, world, screenshot):
    healthy = world.healthy_ids  # (the fleet keeps reporting: a silent fleet would make the engine hold it)
    # A sequence above the signed rollback's: devices rolled back refuse older manifests (anti-replay).
    upload_release(world.server, world.key_path, "2.3.0", 1000)
    rollout = create_rollout(world, "2.3.0", steady_policy(), selection={"devices": healthy})
    path = f"/ui/rollouts/{rollout['id']}"
    try:
        sign_in(browser, world, world.operator_token)
        browser.get(world.server.management_url + path)
        assert text_of(browser, "#rollout-state") == "active"
        confirm_click(browser, "btn-pause")
        wait_until(
            browser,
            lambda d: text_of(d, "#rollout-state") == "paused",
            f"the paused state ({text_of(browser, '#action-result')!r})",
        )
        assert "pause done" in text_of(browser, "#action-result")
        screenshot(browser, "rollout-paused")
        confirm_click(browser, "btn-resume")
        wait_until(browser, lambda d: text_of(d, "#rollout-state") == "active", "the resumed state")
        events = text_of(browser, "#events")
        assert "paused by admin:olga" in events and "resumed by admin:olga" in events
        wait_until(browser, lambda d: not enabled(d, "btn-resume"), "resume disabled while active")
        # Exclude one device.
        browser.find_element(By.ID, "exclude-device").send_keys(healthy[0])
        browser.find_element(By.ID, "btn-exclude").click()
        WebDriverWait(browser, 5).until(ec.alert_is_present())
        browser.switch_to.alert.accept()
        wait_until(browser, lambda d: "excluded" in text_of(d, "#action-result"), "the exclusion")
        wait_until(browser, lambda d: "excluded" in text_of(d, "#rollout-counts"), "the excluded count")
        # Dismissing the confirmation changes nothing.
        open_confirmation(browser, "btn-pause").dismiss()
        time.sleep(1)
        assert text_of(browser, "#rollout-state") == "active"
        # Without the CSRF token even the operator is refused.
        status, body = post_from_page(browser, path + "/pause", csrf=False)
        assert status == 403 and "CSRF" in body

        # The audit log shows who did it, and exports it as JSON Lines.
        browser.get(world.server.management_url + "/ui/audit?action=rollout.pause")
        audit_rows = row_cells(browser, "#audit tbody tr")
        assert len(audit_rows) == 1 and audit_rows[0][2] == "admin:olga"
        export = browser.find_element(By.ID, "export").get_attribute("href")
        lines = browser.execute_async_script(
            "const done = arguments[1]; fetch(arguments[0]).then(r => r.text()).then(done);", export
        ).splitlines()
        assert (
            len(lines) == 1 and '"action":"rollout.pause"' in lines[0] and '"actor":"admin:olga"' in lines[0]
        )

        # A viewer sees the rollout but no controls, and a forged request is refused with the reason.
        sign_in(browser, world, world.viewer_token)
        browser.get(world.server.management_url + path)
        assert not browser.find_elements(By.ID, "btn-pause")
        assert "need the operator role" in text_of(browser, "#controls-note")
        status, body = post_from_page(browser, path + "/pause")
        assert status == 403 and "needs the operator role (you are viewer)" in body
        status, body = post_from_page(browser, "/ui/releases/upload")
        assert status == 403
        with world.management() as client:
            assert client.get(f"/api/rollouts/{rollout['id']}").json()["state"] == "active"
        screenshot(browser, "rollout-viewer")
    finally:
        with world.management() as client:
            client.post(f"/api/rollouts/{rollout['id']}/abort")
