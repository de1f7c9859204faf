"""AWS's own base images: an alias (bot/base_images.toml) → a public SSM parameter → today's AMI.

The table is data so a new alias is one TOML entry. Copying a base image into the account starts a
family from it: the copy is ours (it no longer disappears when AWS retires the public image) and
carries the family, who copied it, and where it came from.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from importlib import resources

from bot.aws.clients import Aws, call, requires
from bot.core.errors import AwsError, ConfigError, NotFound
from bot.core.text import escape
from bot.services.create import Labels, check_name_free, explain_name_error
from bot.services.images import parse_time

SOURCE_TAG = "amibot:source-image"
BASE_TAG = "amibot:base"


@dataclass(frozen=True)
class Alias:
    name: str
    parameter: str
    description: str


@cache
def aliases() -> dict[str, Alias]:
    """The alias table shipped with the bot, validated once."""
    data = tomllib.loads(resources.files("bot").joinpath("base_images.toml").read_text(encoding="utf-8"))
    table, problems = {}, []
    for name, entry in data.items():
        if not isinstance(entry, dict) or not str(entry.get("parameter", "")).startswith("/aws/service/"):
            problems.append(f"base_images.toml: [{name}] needs parameter = \"/aws/service/…\"")
            continue
        table[name.lower()] = Alias(name, entry["parameter"], str(entry.get("description", name)))
    if problems:
        raise ConfigError(problems)
    return table


def alias_named(name: str) -> Alias:
    table = aliases()
    alias = table.get(name.lower())
    if alias is None:
        known = ", ".join(f"`{key}`" for key in table)
        raise NotFound(f"No base image alias `{escape(name[:40])}`. Known aliases: {known}.")
    return alias


@dataclass
class BaseImage:
    alias: Alias
    region: str
    image_id: str
    name: str = ""
    created: datetime | None = None
    description: str = ""
    architecture: str = ""
    owner_alias: str = ""


@requires("ssm:GetParameter", "ec2:DescribeImages")
def resolve(aws: Aws, alias: Alias, region: str) -> BaseImage:
    """Today's AMI behind the alias in the region, with its name and date when AWS describes it."""
    try:
        parameter = call(aws.client("ssm", region), "get_parameter", Name=alias.parameter)["Parameter"]
    except AwsError as error:
        if error.code == "ParameterNotFound":
            raise NotFound(f"AWS publishes no `{alias.name}` image in {region} "
                           f"(parameter {alias.parameter} not found).") from error
        raise
    base = BaseImage(alias, region, parameter["Value"])
    try:
        found = call(aws.ec2(region), "describe_images", resource=f"AMI {base.image_id}",
                     ImageIds=[base.image_id]).get("Images", [])
    except NotFound:
        found = []
    if found:
        data = found[0]
        base.name = data.get("Name", "")
        base.created = parse_time(data.get("CreationDate"))
        base.description = data.get("Description") or ""
        base.architecture = data.get("Architecture", "")
        base.owner_alias = data.get("ImageOwnerAlias") or data.get("OwnerId", "")
    return base


@requires("ec2:CopyImage", "ec2:CreateTags", "ec2:DescribeImages")
def copy_into_account(aws: Aws, base: BaseImage, name: str, labels: Labels, family_tag: str) -> str:
    """CopyImage into this account (same region), then tag: CopyImage's own tag options are not
    honoured everywhere (moto ignores them)."""
    check_name_free(aws, base.region, name, family_tag)
    ec2 = aws.ec2(base.region)
    try:
        image_id = call(ec2, "copy_image", resource=f"AMI {base.image_id}", SourceImageId=base.image_id,
                        SourceRegion=base.region, Name=name,
                        Description=f"Copy of {base.alias.name} {base.image_id} by amibot")["ImageId"]
    except AwsError as error:
        raise explain_name_error(error, name, base.region) from error
    extra = {SOURCE_TAG: base.image_id, BASE_TAG: base.alias.name}
    tags = Labels(labels.family, labels.version, labels.created_by, {**(labels.extra or {}), **extra})
    call(ec2, "create_tags", resource=f"AMI {image_id}", Resources=[image_id], Tags=tags.tags(family_tag))
    return image_id
