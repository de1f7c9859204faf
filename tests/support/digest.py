"""The single-account digest as tests build and read it: backdated images, the daily policy, the posted digest."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.support import seed
from tests.support.harness import REGIONS

DIGEST = {"stale_after_days": 90, "keep_latest": 1, "snapshot_price_per_gb_month": 0.05}


def registered(aws, name: str, days_old: float, region: str = "us-east-1", family: str | None = None,
               now: datetime | None = None) -> str:
    """An own image (moto gives it a 15 GiB snapshot 'Auto-created snapshot for AMI …'), backdated."""
    ec2 = aws.client("ec2", region)
    image_id = ec2.register_image(Name=name, RootDeviceName="/dev/sda1")["ImageId"]
    if family:
        ec2.create_tags(Resources=[image_id], Tags=[{"Key": "Family", "Value": family}])
    seed.backdate(image_id, (now or datetime.now(UTC)) - timedelta(days=days_old), region)
    return image_id


def digest_posts(harness, channel: str = "C0OPS") -> list:
    return [c for c in harness.fake.calls_to("chat.postMessage")
            if c.params.get("channel") == channel and "AMI digest" in c.text]


def daily_policy(at: str = "09:00", timezone: str = "Europe/Berlin") -> dict:
    return {"aws": {"regions": REGIONS},
            "digest": {**DIGEST, "keep_latest": 0, "channel": "C0DIGEST", "at": at, "timezone": timezone}}
