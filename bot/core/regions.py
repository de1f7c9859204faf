"""AWS regions, checked in one place against botocore's own region data (no network call).

Every region a person or a policy names goes through here: the parser's ``--region R``, copy's
target region and ``[aws].regions`` (a malformed name is a configuration error; a well-formed one that
botocore does not know is a ``check-config`` warning, because a region newer than the installed
botocore is still real). A name that is not a region gets a suggestion:
"eu-wset-1 is not an AWS region — did you mean eu-west-1?".

The data are botocore's endpoint files: every partition (aws, aws-cn, aws-us-gov, the ISO ones…) and
its regions with EC2, opt-in regions included.
"""

from __future__ import annotations

import difflib
import re
from functools import cache

DEFAULT_PARTITION = "aws"
WELL_FORMED = re.compile(r"^[a-z]{2,4}(-gov|-iso[a-z]*)?-[a-z]+-\d{1,2}$")
EXAMPLE = "eu-west-1"


@cache
def partitions() -> dict[str, frozenset[str]]:
    """{partition: its regions with EC2}, from botocore's data (loaded once)."""
    import boto3  # here, not at import: the parser imports this module and most commands never need the data

    session = boto3.session.Session()
    return {partition: frozenset(session.get_available_regions("ec2", partition_name=partition))
            for partition in session.get_available_partitions()}


def all_regions() -> frozenset[str]:
    return frozenset(region for regions in partitions().values() for region in regions)


def partition_of(region: str | None) -> str:
    """The partition a region belongs to (the default partition for an unknown or missing region)."""
    for partition, regions in partitions().items():
        if region in regions:
            return partition
    return DEFAULT_PARTITION


def is_region(region: str, partition: str | None = None) -> bool:
    return region in (partitions().get(partition, frozenset()) if partition else all_regions())


def suggestion(text: str, partition: str | None = None) -> str | None:
    """The closest real region name, if one is close enough to be a typo."""
    candidates = sorted(partitions().get(partition or DEFAULT_PARTITION, frozenset()) or all_regions())
    close = difflib.get_close_matches(text.strip().lower(), candidates, n=1, cutoff=0.75)
    if not close and partition is None:
        close = difflib.get_close_matches(text.strip().lower(), sorted(all_regions()), n=1, cutoff=0.75)
    return close[0] if close else None


def _shown(text: str) -> str:
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("`", "'")
    return text if len(text) <= 40 else text[:39] + "…"


def problem(text: str, partition: str | None = None) -> str | None:
    """None for a region of `partition` (any partition when None); else one sentence saying what is wrong."""
    if is_region(text, partition):
        return None
    if partition and is_region(text):
        return (f"{_shown(text)} is in the {partition_of(text)} partition; images in {partition} cannot be used "
                f"or copied there")
    close = suggestion(text, partition)
    hint = f" — did you mean {close}?" if close else f" (e.g. {EXAMPLE})"
    return f"{_shown(text)} is not an AWS region{hint}"


def unknown_warning(text: str) -> str | None:
    """For a well-formed name botocore does not know: the check-config warning, else None."""
    if is_region(text):
        return None
    close = suggestion(text)
    hint = f" — did you mean {close}?" if close else " (or it is newer than the installed botocore)"
    return f"{_shown(text)} is not an AWS region{hint}"
