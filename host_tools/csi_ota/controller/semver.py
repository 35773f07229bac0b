"""Semantic-version ordering for releases (MAJOR.MINOR.PATCH[-pre], SemVer 2.0 precedence)."""

from __future__ import annotations

import re

# A pre-release identifier: a number without leading zeros, or alphanumerics with a non-digit
# (semver 2.0 rule 9; firmware/components/ota_core/ota_version.c refuses the same).
PRERELEASE_IDENTIFIER = r"(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
SEMVER_PATTERN = re.compile(
    r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
    rf"(?:-({PRERELEASE_IDENTIFIER}(?:\.{PRERELEASE_IDENTIFIER})*))?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)


def is_semver(version: str) -> bool:
    return SEMVER_PATTERN.match(version) is not None


def semver_key(version: str) -> tuple:
    """Sort key: releases sort before their pre-releases' absence; non-semver strings sort first."""
    match = SEMVER_PATTERN.match(version)
    if match is None:
        return (0, (), version)
    major, minor, patch, pre = match.groups()
    if pre is None:
        pre_key: tuple = ((2,),)
    else:
        pre_key = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split("."))
        pre_key = ((1,), *pre_key)
    return (1, (int(major), int(minor), int(patch)), pre_key)
