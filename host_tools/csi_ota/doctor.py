"""`csi-ota doctor`: does this firmware configuration keep OTA safe?

Reads firmware/sdkconfig (or, before the first build, the repository's
sdkconfig.defaults with ESP-IDF's Kconfig defaults for unset options) and the
partition table it names, and explains each finding. The checks that matter
most: rollback enabled in the bootloader (without it a bad update is never
rolled back and nothing says so — esp-idf issue 4799), the custom 1.25 MB
two-slot table matching the layout spec, the table fitting the flash, and what
the firmware's own OTA client does: trusted release keys present, http:// refused
(CONFIG_CSI_OTA_ALLOW_PLAIN_HTTP off), NVS encryption on or off.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from csi_ota.budget import SEED_SLOT_BYTES
from csi_ota.errors import CsiOtaError
from csi_ota.partitions import Layout, find_violations, load_layout, load_spec, load_table, parse_flash_size
from csi_ota.partitions.model import APP_SUBTYPE_NAMES, TYPE_APP
from csi_ota.partitions.spec import SHIPPED_LAYOUTS

OK = "ok"
WARN = "warn"
ERROR = "error"

# ESP-IDF v6 Kconfig defaults of the options checked here, used when an option is
# absent (sdkconfig.defaults only lists what differs). Bool "n" = not set.
KCONFIG_DEFAULTS = {
    "IDF_TARGET": "",
    "BOOTLOADER_APP_ROLLBACK_ENABLE": "n",
    "BOOTLOADER_APP_ANTI_ROLLBACK": "n",
    "BOOTLOADER_APP_SECURE_VERSION": "0",
    "PARTITION_TABLE_CUSTOM": "n",
    "PARTITION_TABLE_CUSTOM_FILENAME": "partitions.csv",
    "PARTITION_TABLE_OFFSET": "0x8000",
    "ESPTOOLPY_FLASHSIZE": "2MB",
    "COMPILER_OPTIMIZATION_SIZE": "n",
    "ESP_HTTPS_OTA_ALLOW_HTTP": "n",
    "ESP_TLS_INSECURE": "n",
    "ESP_TLS_SKIP_SERVER_CERT_VERIFY": "n",
    "MBEDTLS_SSL_PROTO_TLS1_3": "n",
    "BOOTLOADER_WDT_ENABLE": "y",
    "ESP_TASK_WDT_EN": "y",
    "SECURE_BOOT": "n",
    "SECURE_FLASH_ENC_ENABLED": "n",
    "NVS_ENCRYPTION": "n",
    "NVS_SEC_KEY_PROTECT_USING_HMAC": "n",
    "NVS_SEC_KEY_PROTECT_USING_FLASH_ENC": "n",
    "NVS_SEC_HMAC_EFUSE_KEY_ID": "-1",
    # firmware/main/Kconfig.projbuild (the firmware's own options)
    "CSI_OTA_TRUSTED_KEYS": "",
    "CSI_OTA_ALLOW_PLAIN_HTTP": "n",
    "CSI_OTA_TEST_HOOKS": "n",
    "CSI_OTA_VERSION_CHECK_URL": "https://ota-controller.local:8080/api/ota/version",
    "CSI_OTA_UPDATE_URL": "https://ota-controller.local:8080/firmware/latest",
    "CSI_OTA_PUBLISH_HTTP": "n",
    "CSI_OTA_DATA_URL": "",
}
# Old names ESP-IDF still accepts (components' sdkconfig.rename): old → current.
RENAMED_OPTIONS = {
    "APP_ROLLBACK_ENABLE": "BOOTLOADER_APP_ROLLBACK_ENABLE",
    "APP_ANTI_ROLLBACK": "BOOTLOADER_APP_ANTI_ROLLBACK",
    "APP_SECURE_VERSION": "BOOTLOADER_APP_SECURE_VERSION",
    "OTA_ALLOW_HTTP": "ESP_HTTPS_OTA_ALLOW_HTTP",
    "OPTIMIZATION_LEVEL_RELEASE": "COMPILER_OPTIMIZATION_SIZE",
    "COMPILER_OPTIMIZATION_LEVEL_RELEASE": "COMPILER_OPTIMIZATION_SIZE",
}
FLASH_SIZE_CHOICES = ("1MB", "2MB", "4MB", "8MB", "16MB", "32MB", "64MB", "128MB")
SDKCONFIG_LINE = re.compile(r"^CONFIG_([A-Za-z0-9_]+)=(.*)$")
NOT_SET_LINE = re.compile(r"^# CONFIG_([A-Za-z0-9_]+) is not set$")
ISSUE_4799 = "esp-idf issue 4799"


@dataclass(frozen=True)
class Finding:
    check: str
    level: str  # ok | warn | error
    message: str


@dataclass
class SdkConfig:
    path: Path
    is_defaults: bool
    values: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> str:
        if name == "ESPTOOLPY_FLASHSIZE" and name not in self.values:
            for size in FLASH_SIZE_CHOICES:
                if self.enabled(f"ESPTOOLPY_FLASHSIZE_{size}"):
                    return size
        return self.values.get(name, KCONFIG_DEFAULTS.get(name, ""))

    def enabled(self, name: str) -> bool:
        return self.get(name) == "y"

    def explicitly_set(self, name: str) -> bool:
        return name in self.values


@dataclass(frozen=True)
class DoctorReport:
    sdkconfig: str
    used_defaults: bool
    partition_table: str | None
    findings: tuple[Finding, ...]

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == ERROR]

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, object]:
        return {
            "sdkconfig": self.sdkconfig,
            "used_defaults": self.used_defaults,
            "partition_table": self.partition_table,
            "ok": self.ok,
            "findings": [asdict(f) for f in self.findings],
        }


def parse_sdkconfig(text: str, *, source: str = "sdkconfig") -> dict[str, str]:
    """KEY → value ('y', 'n' for "is not set", strings unquoted, numbers as written)."""
    values: dict[str, str] = {}
    for line_no, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        not_set = NOT_SET_LINE.match(line)
        if not_set:
            values[not_set.group(1)] = "n"
            continue
        if line.startswith("#"):
            continue
        match = SDKCONFIG_LINE.match(line)
        if not match:
            raise CsiOtaError(
                f"{source}:{line_no}: not an sdkconfig line (expected CONFIG_NAME=value): {line[:80]}"
            )
        value = match.group(2).strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        values[match.group(1)] = value
    return values


def find_sdkconfig(firmware_dir: Path, sdkconfig: Path | None) -> tuple[Path, bool]:
    """(file, is_defaults): an explicit file, else the built firmware/sdkconfig, else sdkconfig.defaults."""
    if sdkconfig is not None:
        if not sdkconfig.is_file():
            raise CsiOtaError(f"sdkconfig file {sdkconfig} does not exist")
        return sdkconfig, sdkconfig.name.startswith("sdkconfig.defaults")
    if not firmware_dir.is_dir():
        raise CsiOtaError(f"firmware directory {firmware_dir} does not exist")
    built = firmware_dir / "sdkconfig"
    if built.is_file():
        return built, False
    # firmware/sdkconfig.defaults is what ESP-IDF builds with and what `idf.py save-defconfig`
    # writes (in this repository a symlink to the root file); the root file otherwise.
    for candidate in (firmware_dir / "sdkconfig.defaults", firmware_dir.parent / "sdkconfig.defaults"):
        if candidate.is_file():
            return candidate, True
    raise CsiOtaError(
        f"no sdkconfig in {firmware_dir} and no sdkconfig.defaults next to it; pass --sdkconfig FILE"
    )


def load_sdkconfig(path: Path, is_defaults: bool) -> SdkConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CsiOtaError(f"cannot read {path}: {exc}") from exc
    values = parse_sdkconfig(text, source=str(path))
    for old, new in RENAMED_OPTIONS.items():
        if old in values and new not in values:
            values[new] = values[old]
    return SdkConfig(path, is_defaults, values)


def check_renamed(cfg: SdkConfig) -> list[Finding]:
    old = sorted(name for name in RENAMED_OPTIONS if name in cfg.values)
    if not old:
        return []
    names = ", ".join(f"CONFIG_{n} (now CONFIG_{RENAMED_OPTIONS[n]})" for n in old)
    return [Finding("option-names", WARN, f"old option names, read under their new names: {names}")]


# --- checks: each returns its findings ---------------------------------------------------------


def check_target(cfg: SdkConfig) -> list[Finding]:
    target = cfg.get("IDF_TARGET")
    if target == "esp32s3":
        return [Finding("target", OK, "IDF_TARGET is esp32s3")]
    if not target:
        return [Finding("target", WARN, "IDF_TARGET is not set; run `idf.py -C firmware set-target esp32s3`")]
    return [
        Finding(
            "target", ERROR, f"IDF_TARGET is {target}; the CSI sensor and its images are ESP32-S3 (chip id 9)"
        )
    ]


def check_rollback(cfg: SdkConfig) -> list[Finding]:
    if cfg.enabled("BOOTLOADER_APP_ROLLBACK_ENABLE"):
        return [
            Finding(
                "rollback",
                OK,
                "CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE=y: a new app boots PENDING_VERIFY and is rolled back unless "
                "it confirms itself",
            )
        ]
    return [
        Finding(
            "rollback",
            ERROR,
            "CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE is off: the bootloader never marks a new app PENDING_VERIFY, "
            "so a broken update is never rolled back and nothing reports it - rollback is lost silently "
            f"({ISSUE_4799}). Set CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE=y and reflash the bootloader",
        )
    ]


def check_anti_rollback(cfg: SdkConfig, layout: Layout | None) -> list[Finding]:
    if not cfg.enabled("BOOTLOADER_APP_ANTI_ROLLBACK"):
        return [Finding("anti-rollback", OK, "app anti-rollback is off (documented in sdkconfig.defaults)")]
    out = []
    if not cfg.enabled("BOOTLOADER_APP_ROLLBACK_ENABLE"):
        out.append(
            Finding(
                "anti-rollback",
                ERROR,
                "anti-rollback is on but rollback is off; ESP-IDF requires rollback for it",
            )
        )
    version = cfg.get("BOOTLOADER_APP_SECURE_VERSION")
    if not cfg.explicitly_set("BOOTLOADER_APP_SECURE_VERSION"):
        out.append(
            Finding(
                "anti-rollback",
                ERROR,
                "anti-rollback is on but CONFIG_BOOTLOADER_APP_SECURE_VERSION is not set; set it and keep release "
                "manifests' secure_version in step",
            )
        )
    elif not version.isdigit():
        out.append(
            Finding("anti-rollback", ERROR, f"CONFIG_BOOTLOADER_APP_SECURE_VERSION={version} is not a number")
        )
    else:
        out.append(
            Finding(
                "anti-rollback",
                WARN,
                f"anti-rollback is on with secure version {version}: each confirmed update with a higher "
                "secure_version burns eFuse bits for good",
            )
        )
    if layout is not None:
        factory_like = [
            e.name
            for e in layout.entries
            if e.type == TYPE_APP and e.subtype in (APP_SUBTYPE_NAMES["factory"], APP_SUBTYPE_NAMES["test"])
        ]
        if factory_like:
            out.append(
                Finding(
                    "anti-rollback",
                    ERROR,
                    f"anti-rollback needs a table without factory/test apps; found {', '.join(factory_like)}",
                )
            )
    return out


def _table_path(cfg: SdkConfig, firmware_dir: Path) -> Path:
    name = Path(cfg.get("PARTITION_TABLE_CUSTOM_FILENAME"))
    return name if name.is_absolute() else firmware_dir / name


def check_partition_table(
    cfg: SdkConfig, firmware_dir: Path, spec_path: Path | None
) -> tuple[list[Finding], Layout | None, str | None]:
    """(findings, the table or None when unusable, its path)."""
    if not cfg.enabled("PARTITION_TABLE_CUSTOM"):
        message = (
            "CONFIG_PARTITION_TABLE_CUSTOM is off: ESP-IDF builds one of its own tables (1 MB slots or a "
            "single app), not the 1.25 MB two-slot layout; set CONFIG_PARTITION_TABLE_CUSTOM=y"
        )
        return [Finding("partition-table", ERROR, message)], None, None
    path = _table_path(cfg, firmware_dir)

    def unusable(message: str) -> tuple[list[Finding], None, str]:
        return [Finding("partition-table", ERROR, message)], None, str(path)

    if not path.is_file():
        return unusable(f"custom table {path} does not exist; run `csi-ota partitions generate --csv {path}`")
    try:
        offset = int(cfg.get("PARTITION_TABLE_OFFSET"), 0)
    except ValueError:
        return unusable(f"PARTITION_TABLE_OFFSET={cfg.get('PARTITION_TABLE_OFFSET')} is not a number")
    try:
        layout = load_table(path, validate=False, table_offset=offset)
    except CsiOtaError as exc:
        return unusable(f"{path} cannot be read: {exc.message}")
    out = [Finding("partition-table", ERROR, str(v)) for v in find_violations(layout)]
    if not out:
        out.append(
            Finding(
                "partition-table", OK, f"{path} is a valid ESP-IDF table ({len(layout.entries)} partitions)"
            )
        )
    out += _compare_with_spec(cfg, layout, spec_path)
    slots = layout.ota_slots()
    usable = [s for n, s in enumerate(slots) if s.ota_slot == n]  # the app counts slots up to the first gap
    if len(usable) < 2:
        out.append(
            Finding(
                "ota-slots",
                ERROR,
                f"{len(usable)} usable OTA slot(s); OTA with rollback needs ota_0 and ota_1",
            )
        )
    else:
        smallest = min(s.size for s in slots)
        level = OK if smallest >= SEED_SLOT_BYTES else WARN
        out.append(
            Finding(
                "ota-slots",
                level,
                f"{len(slots)} OTA slots, the smallest {smallest:,} bytes (design: {SEED_SLOT_BYTES:,})",
            )
        )
    return out, layout, str(path)


def _compare_with_spec(cfg: SdkConfig, layout: Layout, spec_path: Path | None) -> list[Finding]:
    flash = cfg.get("ESPTOOLPY_FLASHSIZE")
    if spec_path is not None:
        spec, label = load_spec(spec_path), f"layout spec {spec_path}"
    elif flash in SHIPPED_LAYOUTS:
        spec, label = load_layout(flash), f"the shipped {flash} layout"
    else:
        return [
            Finding("partition-spec", WARN, f"no shipped layout for {flash} flash; pass --spec to compare")
        ]
    if spec.entries == layout.entries:
        return [Finding("partition-spec", OK, f"table matches {label}")]
    for other in SHIPPED_LAYOUTS:
        if other != flash and spec_path is None and load_layout(other).entries == layout.entries:
            return [
                Finding(
                    "partition-spec",
                    WARN,
                    f"table is the {other} layout but the flash is {flash}; run "
                    f"`csi-ota partitions generate --flash-size {flash}` to use the whole chip",
                )
            ]
    mine = {e.name: e for e in layout.entries}
    theirs = {e.name: e for e in spec.entries}
    differing = sorted(n for n in mine.keys() | theirs.keys() if mine.get(n) != theirs.get(n))
    return [
        Finding(
            "partition-spec",
            ERROR,
            f"table differs from {label} in {', '.join(differing)}; run `csi-ota partitions generate` "
            "(or `csi-ota partitions check` for the diff)",
        )
    ]


def check_flash_fits(cfg: SdkConfig, layout: Layout | None) -> list[Finding]:
    flash = cfg.get("ESPTOOLPY_FLASHSIZE")
    try:
        flash_bytes = parse_flash_size(flash)
    except ValueError:
        return [Finding("flash-size", ERROR, f"flash size {flash!r} is not one ESP-IDF knows")]
    if not cfg.explicitly_set("ESPTOOLPY_FLASHSIZE") and not any(
        cfg.explicitly_set(f"ESPTOOLPY_FLASHSIZE_{s}") for s in FLASH_SIZE_CHOICES
    ):
        note = f"flash size not set, ESP-IDF's default is {flash}"
    else:
        note = f"flash size {flash}"
    if layout is None:
        return [Finding("flash-size", OK, note)]
    end = layout.used_end()
    if end > flash_bytes:
        return [
            Finding(
                "flash-size",
                ERROR,
                f"{note}, but the table ends at {end:#x} ({end / 1048576:.2f} MB): the build fails; set "
                "CONFIG_ESPTOOLPY_FLASHSIZE_4MB=y (or larger)",
            )
        ]
    return [
        Finding("flash-size", OK, f"{note}; the table ends at {end:#x}, {flash_bytes - end:,} bytes to spare")
    ]


def check_size_and_watchdogs(cfg: SdkConfig) -> list[Finding]:
    out = []
    if cfg.enabled("COMPILER_OPTIMIZATION_SIZE"):
        out.append(Finding("size", OK, "compiled for size (-Os)"))
    else:
        out.append(
            Finding(
                "size",
                WARN,
                "CONFIG_COMPILER_OPTIMIZATION_SIZE is off; the app grows towards its 1.25 MB slot",
            )
        )
    missing = [n for n in ("BOOTLOADER_WDT_ENABLE", "ESP_TASK_WDT_EN") if not cfg.enabled(n)]
    if missing:
        out.append(
            Finding(
                "watchdog",
                WARN,
                f"{', '.join('CONFIG_' + n for n in missing)} off: a hung new app may never reset to roll back",
            )
        )
    else:
        out.append(
            Finding("watchdog", OK, "bootloader and task watchdogs on: a hung new app resets and rolls back")
        )
    return out


def check_defaults_file(firmware_dir: Path) -> list[Finding]:
    """One sdkconfig.defaults: firmware/sdkconfig.defaults should be the symlink to the root file.

    ESP-IDF reads (and `idf.py save-defconfig` writes) the project directory's file; a
    separate copy there that differs from the root file silently wins over it.
    """
    project_file = firmware_dir / "sdkconfig.defaults"
    root_file = firmware_dir.parent / "sdkconfig.defaults"
    if not (project_file.is_file() and root_file.is_file()) or project_file.resolve() == root_file.resolve():
        return []
    if project_file.read_bytes() == root_file.read_bytes():
        return [
            Finding(
                "sdkconfig.defaults",
                WARN,
                f"{project_file} is a copy of {root_file}, not a symlink to it: the next "
                "`idf.py save-defconfig` changes only the copy - restore the link with "
                f"`ln -sf ../sdkconfig.defaults {project_file}`",
            )
        ]
    return [
        Finding(
            "sdkconfig.defaults",
            WARN,
            f"{project_file} is a separate file that differs from {root_file}; the build and this check "
            f"use {project_file} - merge the changes into {root_file} and restore the link with "
            f"`ln -sf ../sdkconfig.defaults {project_file}`",
        )
    ]


def check_defaults_staleness(cfg: SdkConfig, firmware_dir: Path) -> list[Finding]:
    if cfg.is_defaults:
        return [
            Finding(
                "sdkconfig",
                OK,
                f"no built sdkconfig; checked {cfg.path} with ESP-IDF's Kconfig defaults for unset options",
            )
        ]
    defaults = firmware_dir / "sdkconfig.defaults"
    if not defaults.is_file():
        defaults = firmware_dir.parent / "sdkconfig.defaults"
    if defaults.is_file() and defaults.stat().st_mtime > cfg.path.stat().st_mtime:
        return [
            Finding(
                "sdkconfig",
                WARN,
                f"{defaults} is newer than {cfg.path}; idf.py applies defaults only to options missing from "
                "sdkconfig - delete it or run `idf.py -C firmware fullclean` to pick the changes up",
            )
        ]
    return [Finding("sdkconfig", OK, f"checked {cfg.path}")]


def run_doctor(
    firmware_dir: str | Path = "firmware",
    *,
    sdkconfig: str | Path | None = None,
    spec: str | Path | None = None,
) -> DoctorReport:
    from csi_ota import doctor_security  # its checks import this module's types

    firmware = Path(firmware_dir)
    path, is_defaults = find_sdkconfig(firmware, Path(sdkconfig) if sdkconfig is not None else None)
    cfg = load_sdkconfig(path, is_defaults)
    findings: list[Finding] = []
    findings += check_defaults_file(firmware)
    findings += check_defaults_staleness(cfg, firmware)
    findings += check_renamed(cfg)
    findings += check_target(cfg)
    findings += check_rollback(cfg)
    table_findings, layout, table_path = check_partition_table(cfg, firmware, Path(spec) if spec else None)
    findings += table_findings
    findings += check_flash_fits(cfg, layout)
    findings += check_anti_rollback(cfg, layout)
    findings += doctor_security.check_transport(cfg)
    findings += doctor_security.check_trusted_keys(cfg)
    findings += doctor_security.check_nvs_encryption(cfg, layout)
    findings += check_size_and_watchdogs(cfg)
    return DoctorReport(str(path), is_defaults, table_path, tuple(findings))
