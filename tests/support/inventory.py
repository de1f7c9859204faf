"""Pure digest inputs — images, snapshots, an inventory — at a fixed NOW, for the digest's rules (no AWS)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from bot.services.images import BlockDevice, Image, family_of
from bot.services.inventory import Inventory, Snapshot
from bot.services.references import References

NOW = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
REGION = "us-east-1"
_numbers = itertools.count(1)


def ami_id() -> str:
    return f"ami-{next(_numbers):017x}"


def snap_id() -> str:
    return f"snap-{next(_numbers):017x}"


def image(name: str, days_old: float, state: str = "available", sizes: tuple[int, ...] = (10,),
          last_launched_days: float | None = None, tags: dict | None = None, snapshot_ids: list[str] | None = None,
          region: str = REGION) -> Image:
    snapshot_ids = snapshot_ids or [snap_id() for _ in sizes]
    devices = [BlockDevice(f"/dev/sd{chr(97 + n)}", snapshot, size, "gp3")
               for n, (snapshot, size) in enumerate(zip(snapshot_ids, sizes, strict=True))]
    launched = NOW - timedelta(days=last_launched_days) if last_launched_days is not None else None
    return Image(id=ami_id(), name=name, region=region, state=state, owner_id="123456789012",
                 created=NOW - timedelta(days=days_old), public=False, tags=tags or {}, devices=devices,
                 last_launched=launched, family=family_of(name, tags or {}, "Family"))


def inventory(images: list[Image], snapshots: list[Snapshot] = (), region: str = REGION) -> Inventory:
    return Inventory(region, list(images), list(snapshots), References(region))


# Snapshots whose image is gone, in each form of description AWS writes
GONE = "ami-0aaaaaaaaaaaaaaaa"
DESCRIPTIONS = {
    "create-image": f"Created by CreateImage(i-0123456789abcdef0) for {GONE} from vol-0123456789abcdef0",
    "copy-image": f"Copied for DestinationAmi {GONE} from SourceAmi ami-0bbbbbbbbbbbbbbbb for SourceSnapshot "
                  "snap-0ccccccccccccccccc. Task created on 1,700,000,000,000.",
    "register-image": f"Auto-created snapshot for AMI {GONE}",
}
