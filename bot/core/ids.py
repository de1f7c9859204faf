"""The shapes of AWS ids, one definition for every layer: the command parser checks what users type against
them, the services tell an id from a name with them."""

from __future__ import annotations

import re

AMI_ID = re.compile(r"^ami-[0-9a-f]{8}([0-9a-f]{9})?$")
INSTANCE_ID = re.compile(r"^i-[0-9a-f]{8}([0-9a-f]{9})?$")
SNAPSHOT_ID = re.compile(r"^snap-[0-9a-f]{8}([0-9a-f]{9})?$")
ACCOUNT_ID = re.compile(r"^\d{12}$")
REGION_NAME = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d$")
