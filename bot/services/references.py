"""What depends on an image, every kind of reference, and which of them could not be checked.

The kinds: instances (any state but terminated); the $Default and $Latest version of *every* launch
template; Auto Scaling groups — on a launch configuration, on a launch template (``LaunchTemplate``),
or through ``MixedInstancesPolicy.LaunchTemplate`` and each of its ``Overrides`` — with the template
version they pin (a group pinned to version 4 uses version 4's image, wherever $Default points);
active EC2 Fleets and Spot Fleets (their launch template configs, overrides and launch
specifications); SSM parameters of data type ``aws:ec2:image``, and templates whose ImageId is
``resolve:ssm:<parameter>``, recorded under the image the parameter names ("via SSM /amibot/web/current");
Image Builder recipes whose parent image it is; and, where the endpoint has it, AWS's own check
(``DescribeImageReferences``), unioned with this scan: each reference says who found it, and one that
only AWS found is logged as a WARNING (this scan has a gap).

The number of calls per region does not grow with the number of images: one paginated listing per
source; the versions that groups or fleets pin and that are neither $Default nor $Latest need one
DescribeLaunchTemplateVersions call per *pinned template* (AWS takes version numbers only with one
template id), SSM values come 10 names a call, and DescribeImageReferences takes 10 image ids a call.

A source that fails or that the endpoint does not support is *unknown* (``References.unknown``), never
"nothing"; so is a source one of whose items cannot be read (an instance without its image id, a template
version without its number: ``unreadable``) — for the images the item names, or for every image of the region
when it names none that can be read. An account whose role cannot be assumed fails the whole scan (its AwsDenied
is raised, for the caller to report that account as unknown). What blocks a deregistration (``Usage.blocking``):
everything that can launch an instance — instances, templates, launch configurations, groups, fleets and
``aws:ec2:image`` parameters (they exist to be launched from: CloudFormation, ``run-instances --image-id
resolve:ssm:…`` and templates resolve them, and amibot cannot see every consumer). Image Builder recipes are shown as
warnings but do not block: a recipe version pins its parent image forever, so blocking on them would keep every
old base image, and a build whose parent is gone fails at build time without touching anything running.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from bot.aws.clients import Aws, call, paginate, requires
from bot.core.errors import AwsError

log = logging.getLogger(__name__)

LIVE_STATES = ["pending", "running", "shutting-down", "stopping", "stopped"]
ACTIVE_FLEET_STATES = {"submitted", "active", "modifying"}
SSM_PREFIX = "resolve:ssm:"
IMAGE_DATA_TYPE = "aws:ec2:image"
SSM_BATCH = 10  # GetParameters takes at most 10 names
REFERENCE_BATCH = 10  # DescribeImageReferences takes at most 10 image ids
ASSUME_ROLE = "sts:AssumeRole"  # the operation of bot.aws.clients.assumed_session's error when a role cannot be assumed

AMIBOT, AWS, BOTH = "amibot", "AWS", "amibot and AWS"

# The sources, as the preflight names the ones it could not check.
INSTANCES = "instances"
TEMPLATES = "launch templates"
GROUPS = "Auto Scaling groups and launch configurations"
FLEETS = "EC2 Fleets"
SPOT_FLEETS = "Spot Fleets"
PARAMETERS = "SSM parameters"
RECIPES = "Image Builder recipes"
AWS_CHECK = "AWS's own reference check (DescribeImageReferences)"
NON_BLOCKING_SOURCES = {RECIPES, AWS_CHECK}  # their absence is shown, but cannot hide something that launches


@dataclass(frozen=True)
class InstanceRef:
    id: str
    state: str
    name: str = ""
    found_by: str = AMIBOT
    group: str = ""  # its Auto Scaling group (the aws:autoscaling:groupName tag)


@dataclass(frozen=True)
class TemplateRef:
    id: str
    name: str
    version: int | None  # None: AWS's check named the template, not the version
    default: bool
    latest: bool
    via: str = ""  # the SSM parameter its ImageId resolves ("resolve:ssm:<via>")
    found_by: str = AMIBOT

    @property
    def which(self) -> str:
        return " and ".join(label for label, yes in (("default", self.default), ("latest", self.latest)) if yes)


@dataclass(frozen=True)
class LaunchConfigRef:
    name: str
    groups: tuple[str, ...] = ()
    found_by: str = AMIBOT


@dataclass(frozen=True)
class GroupRef:
    """An Auto Scaling group on a launch template, with the version it asks for and what that resolves to."""

    name: str
    template: str  # the template's name (its id when the name is unknown)
    version: str  # as the group says it: "4", "$Default", "$Latest"
    number: int | None  # the version that is
    path: str = "launch template"  # or "mixed instances policy", "override m5.large"
    via: str = ""
    found_by: str = AMIBOT
    template_id: str = ""


@dataclass(frozen=True)
class FleetRef:
    id: str
    kind: str  # "EC2 Fleet" or "Spot Fleet"
    state: str
    template: str = ""  # empty: a launch specification or an override naming the image itself
    version: str = ""
    number: int | None = None
    via: str = ""
    found_by: str = AMIBOT
    template_id: str = ""


@dataclass(frozen=True)
class ParameterRef:
    name: str
    resolved_by: tuple[str, ...] = ()  # templates whose ImageId resolves it
    found_by: str = AMIBOT


@dataclass(frozen=True)
class RecipeRef:
    arn: str
    name: str
    version: str = ""
    kind: str = "image recipe"  # or "container recipe"
    found_by: str = AMIBOT


@dataclass(frozen=True)
class OtherRef:
    """A reference AWS's check reported of a type this scan does not model."""

    resource_type: str
    arn: str
    found_by: str = AWS


KINDS = ("instances", "templates", "launch_configs", "groups", "fleets", "parameters", "recipes", "others")
BLOCKING_KINDS = ("instances", "templates", "launch_configs", "groups", "fleets", "parameters", "others")


@dataclass
class Usage:
    instances: list[InstanceRef] = field(default_factory=list)
    templates: list[TemplateRef] = field(default_factory=list)
    launch_configs: list[LaunchConfigRef] = field(default_factory=list)
    groups: list[GroupRef] = field(default_factory=list)
    fleets: list[FleetRef] = field(default_factory=list)
    parameters: list[ParameterRef] = field(default_factory=list)
    recipes: list[RecipeRef] = field(default_factory=list)
    others: list[OtherRef] = field(default_factory=list)
    unknown: dict[str, str] = field(default_factory=dict)  # source -> why it could not be checked

    @property
    def in_use(self) -> bool:
        return any(getattr(self, kind) for kind in KINDS)

    @property
    def blocking(self) -> bool:
        """Something that can launch an instance from the image uses it."""
        return any(getattr(self, kind) for kind in BLOCKING_KINDS)

    @property
    def blocking_unknown(self) -> dict[str, str]:
        """Sources that could hide something that launches instances, and why they could not be checked."""
        return {source: why for source, why in self.unknown.items() if source not in NON_BLOCKING_SOURCES}

    def refs(self) -> list:
        return [ref for kind in KINDS for ref in getattr(self, kind)]

    def to_data(self) -> dict[str, Any]:
        """JSON-able, for what is stored (an approval request's details); from_data reads it back."""
        return dataclasses.asdict(self)

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Usage:
        def ref(kind: type, item: dict) -> Any:  # JSON has lists where the references keep tuples
            return kind(**{key: tuple(value) if isinstance(value, list) else value for key, value in item.items()})
        return cls(**{kind: [ref(REF_TYPES[kind], item) for item in data.get(kind) or []] for kind in KINDS},
                   unknown=dict(data.get("unknown") or {}))

    def summary(self, limit: int = 10) -> str:
        """Plain text, one reference a line (for errors and logs; bot/render shows it in Slack)."""
        lines = [f"• {describe(ref)}" for ref in self.refs()[:limit]]
        if len(self.refs()) > limit:
            lines.append(f"• …and {len(self.refs()) - limit} more")
        lines += [f"• {source}: unknown ({why})" for source, why in self.unknown.items()]
        return "\n".join(lines) or "• nothing"


REF_TYPES = {"instances": InstanceRef, "templates": TemplateRef, "launch_configs": LaunchConfigRef,
             "groups": GroupRef, "fleets": FleetRef, "parameters": ParameterRef, "recipes": RecipeRef,
             "others": OtherRef}


def describe(ref) -> str:
    """One reference in words, without Slack formatting."""
    via = f" (via SSM {ref.via})" if getattr(ref, "via", "") else ""
    if isinstance(ref, InstanceRef):
        return f"instance {ref.id} ({ref.state}{', ' + ref.name if ref.name else ''})"
    if isinstance(ref, TemplateRef):
        which = f" version {ref.version}" if ref.version is not None else ""
        return f"launch template {ref.name}{which}" + (f" ({ref.which})" if ref.which else "") + via
    if isinstance(ref, LaunchConfigRef):
        return f"launch configuration {ref.name}" + (f" (ASG {', '.join(ref.groups)})" if ref.groups else "")
    if isinstance(ref, GroupRef):
        version = version_phrase(ref.version, ref.number)
        return f"Auto Scaling group {ref.name} ({ref.path} {ref.template} {version}){via}"
    if isinstance(ref, FleetRef):
        what = f"template {ref.template} {version_phrase(ref.version, ref.number)}" if ref.template else "its image"
        return f"{ref.kind} {ref.id} ({ref.state}, {what}){via}"
    if isinstance(ref, ParameterRef):
        return f"SSM parameter {ref.name}" + (f" (resolved by {', '.join(ref.resolved_by)})" if ref.resolved_by
                                              else "")
    if isinstance(ref, RecipeRef):
        return f"Image Builder {ref.kind} {ref.name} {ref.version}".rstrip()
    return f"{ref.resource_type} {ref.arn}"


def _names(label: str, plural: str, names: list[str], shown: int = 3) -> str:
    names = list(dict.fromkeys(names))
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return f"{label if len(names) == 1 else plural} {', '.join(names[:shown])}{more}"


def kinds_phrase(usage: Usage) -> str:
    """What uses the image, counted and named by kind on one line: "3 instances, ASG web-asg" ("" : nothing)."""
    parts = []
    if usage.instances:
        parts.append(f"{len(usage.instances)} instance{'s' if len(usage.instances) != 1 else ''}")
    if usage.templates:
        parts.append(_names("launch template", "launch templates", [ref.name for ref in usage.templates]))
    if usage.launch_configs:
        parts.append(_names("launch configuration", "launch configurations",
                            [ref.name for ref in usage.launch_configs]))
    if usage.groups:
        parts.append(_names("ASG", "ASGs", [ref.name for ref in usage.groups]))
    for kind in ("EC2 Fleet", "Spot Fleet"):
        fleets = [ref.id for ref in usage.fleets if ref.kind == kind]
        if fleets:
            parts.append(_names(kind, f"{kind}s", fleets))
    if usage.parameters:
        parts.append(_names("SSM parameter", "SSM parameters", [ref.name for ref in usage.parameters]))
    if usage.recipes:
        parts.append(_names("Image Builder recipe", "Image Builder recipes", [ref.name for ref in usage.recipes]))
    if usage.others:
        parts.append(f"{len(usage.others)} other resource{'s' if len(usage.others) != 1 else ''}")
    return ", ".join(parts)


SOURCES = (INSTANCES, TEMPLATES, GROUPS, FLEETS, SPOT_FLEETS, PARAMETERS, RECIPES)  # each kind of reference's


def nothing_found(usage: Usage) -> str:
    """What an image without references is *not* used by, naming only the sources that were read: one that could
    not be is never "no …" (the caller lists it as not checked)."""
    checked = [source for source in SOURCES if source not in usage.unknown]
    if not checked:
        return "nothing could be checked"
    listed = ", ".join(checked[:-1]) + (" or " if len(checked) > 1 else "") + checked[-1]
    rest = " (the rest could not be checked)" if len(checked) < len(SOURCES) else ""
    return f"nothing found: no {listed}{rest}"


def version_phrase(version: str, number: int | None) -> str:
    if version.startswith("$"):
        return f"{version} (version {number})" if number is not None else version
    return f"version {version}"


@dataclass
class References:
    """Usage of every image seen in one region's scan, by image id, and the sources that could not be read."""

    region: str
    by_image: dict[str, Usage] = field(default_factory=lambda: defaultdict(Usage))
    calls: int = 0
    unknown: dict[str, str] = field(default_factory=dict)
    # the Auto Scaling groups as DescribeAutoScalingGroups listed them (their instances, launch configuration,
    # mixed instances policy), for whoever needs more of a group than the reference (bot.services.rollout)
    asgs: list[dict] = field(default_factory=list)

    def of(self, image_id: str) -> Usage:
        """The image's usage, with what is unknown for it: the region's unknown sources and its own."""
        usage = self.by_image.get(image_id)
        if usage is None:
            return Usage(unknown=dict(self.unknown))
        if self.unknown:
            usage.unknown = {**self.unknown, **usage.unknown}
        return usage


def _guarded(refs: References, source: str, function: Callable[[], None]) -> None:
    """Run one source's scan; a failure makes that source unknown instead of breaking the whole scan."""
    try:
        function()
    except AwsError as error:
        if error.operation == ASSUME_ROLE:  # the whole account is out of reach, not this source: the caller says so
            raise
        refs.unknown[source] = error.message
        log.warning("%s in %s could not be checked: %s", source, refs.region, error.message)
    except Exception as error:  # an answer shaped as no AWS answer is: this source is unknown, the others stand
        refs.unknown[source] = f"AWS's answer could not be read ({type(error).__name__})"
        log.warning("%s in %s could not be read", source, refs.region, exc_info=True)


def unreadable(refs: References, source: str, what: str, item: Any, images: Iterable[str] | None = None) -> None:
    """An item of `source` that cannot be read could hide a use, so the source is unknown: for the images the item
    names (`images`), or for every image of the region when it names none."""
    why = f"AWS sent {what}, so what it uses is unknown"
    named = [image for image in images or () if image]
    for image_id in named:
        refs.by_image[image_id].unknown.setdefault(source, why)
    if not named:
        refs.unknown.setdefault(source, why)
    log.warning("%s in %s: %s, unknown for %s: %s", source, refs.region, what, ", ".join(named) or "every image",
                repr(item)[:160])


def _readable(items: Any, refs: References, source: str, what: str) -> Iterable[dict]:
    """The items of a list (or a listing) that are structures; any other item, or a list that is not one, is
    unreadable."""
    if not isinstance(items, list | Iterator):
        if items:
            unreadable(refs, source, f"{what}s that are not a list", items)
        return
    for item in items:
        if isinstance(item, dict):
            yield item
        else:
            unreadable(refs, source, f"{what} that is not a structure", item)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


# --- instances ------------------------------------------------------------------------------------------

@requires("ec2:DescribeInstances")
def scan_instances(aws: Aws, region: str, refs: References, image_ids: list[str] | None = None) -> None:
    filters = [{"Name": "instance-state-name", "Values": LIVE_STATES}]
    if image_ids:
        filters.append({"Name": "image-id", "Values": image_ids})
    refs.calls += 1
    listing = paginate(aws.ec2(region), "describe_instances", "Reservations", Filters=filters)
    for reservation in _readable(listing, refs, INSTANCES, "a reservation"):
        for instance in _readable(reservation.get("Instances") or [], refs, INSTANCES, "an instance"):
            instance_id, image_id = _text(instance.get("InstanceId")), _text(instance.get("ImageId"))
            if not image_id:  # it may run any image (asked about some: any of those)
                unreadable(refs, INSTANCES, f"instance {instance_id or '(no id)'} without its image id", instance,
                           image_ids)
                continue
            if not instance_id:
                unreadable(refs, INSTANCES, "an instance without its id", instance, [image_id])
                continue
            tags = instance.get("Tags") if isinstance(instance.get("Tags"), list) else []
            named = {t["Key"]: _text(t.get("Value")) for t in tags
                     if isinstance(t, dict) and isinstance(t.get("Key"), str)}
            name, group = named.get("Name", ""), named.get("aws:autoscaling:groupName", "")
            state = instance.get("State") if isinstance(instance.get("State"), dict) else {}
            refs.by_image[image_id].instances.append(InstanceRef(instance_id, _text(state.get("Name")) or "?", name,
                                                                 group=group))


# --- launch templates -----------------------------------------------------------------------------------

@dataclass
class Templates:
    """What the scan learnt of launch templates: the versions it read, and how to name them."""

    versions: dict[tuple[str, int], dict] = field(default_factory=dict)  # (template id, number) -> version
    default: dict[str, int] = field(default_factory=dict)
    latest: dict[str, int] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)  # id -> name
    ids: dict[str, str] = field(default_factory=dict)  # name -> id
    parameters: dict[str, str] = field(default_factory=dict)  # SSM name -> image id (resolved)

    def add(self, version: dict) -> str | None:
        """Keep one version; when it cannot be (it lacks its template id or number), what it lacks."""
        template_id, number = _text(version.get("LaunchTemplateId")), version.get("VersionNumber")
        if not template_id or type(number) is not int:
            return "template id" if not template_id else "version number"
        self.versions[(template_id, number)] = version
        name = _text(version.get("LaunchTemplateName")) or template_id
        self.names[template_id], self.ids[name] = name, template_id
        return None

    def keep(self, refs: References, source: str, version: dict) -> bool:
        """add(), and a version that cannot be kept makes `source` unknown for the image it names."""
        missing = self.add(version)
        if missing is None:
            return True
        name = _text(version.get("LaunchTemplateName")) or _text(version.get("LaunchTemplateId")) or "?"
        data = version.get("LaunchTemplateData")
        image_id = _text(data.get("ImageId")) if isinstance(data, dict) else None
        if image_id == "":
            return False  # it names no image: it hides no use of one
        images = [image_id] if image_id and image_id.startswith("ami-") else None  # else: any image
        unreadable(refs, source, f"a version of launch template {name} without its {missing}", version, images)
        return False

    def template_id(self, spec: dict) -> str:
        return _text(spec.get("LaunchTemplateId")) or self.ids.get(_text(spec.get("LaunchTemplateName")), "") or \
            _text(spec.get("LaunchTemplateName"))

    def name(self, template_id: str) -> str:
        return self.names.get(template_id, template_id)

    def number(self, template_id: str, version: str) -> int | None:
        """The version a spec's Version means: a number, $Default (also when absent) or $Latest."""
        if version in ("", "$Default"):
            return self.default.get(template_id)
        if version == "$Latest":
            return self.latest.get(template_id)
        return int(version) if version.isdigit() else None

    def image(self, template_id: str, number: int | None) -> tuple[str | None, str]:
        """(image id or None, the SSM parameter it came through) of one template version."""
        version = self.versions.get((template_id, number)) if number is not None else None
        if version is None:
            return None, ""
        data = version.get("LaunchTemplateData") if isinstance(version.get("LaunchTemplateData"), dict) else {}
        image_id = _text(data.get("ImageId"))
        if image_id.startswith(SSM_PREFIX):
            parameter = image_id[len(SSM_PREFIX):]
            return self.parameters.get(parameter), parameter
        return image_id or None, ""


@requires("ec2:DescribeLaunchTemplateVersions")
def list_default_and_latest(aws: Aws, region: str, refs: References, templates: Templates,
                            resolve_alias: bool = False) -> None:
    """$Default and $Latest of every template in one paginated listing (no template id given)."""
    refs.calls += 1
    kwargs = {"ResolveAlias": True} if resolve_alias else {}
    # PageSize: AWS's largest page (fewer calls); moto also cuts this listing at 15 without a token by default.
    listing = paginate(aws.ec2(region), "describe_launch_template_versions", "LaunchTemplateVersions",
                       Versions=["$Default", "$Latest"], PaginationConfig={"PageSize": 200}, **kwargs)
    for version in _readable(listing, refs, TEMPLATES, "a launch template version"):
        if not templates.keep(refs, TEMPLATES, version):
            continue
        template_id, number = version["LaunchTemplateId"], version["VersionNumber"]
        templates.latest[template_id] = max(number, templates.latest.get(template_id, 0))
        if version.get("DefaultVersion"):
            templates.default[template_id] = number


@requires("ec2:DescribeLaunchTemplateVersions")
def read_pinned_versions(aws: Aws, region: str, refs: References, templates: Templates,
                         pinned: dict[str, set[int]]) -> None:
    """The numbered versions groups and fleets pin that the $Default/$Latest listing did not bring: AWS takes
    version numbers only together with one template id, so one call per pinned template (not per image)."""
    for template_id, numbers in sorted(pinned.items()):
        wanted = sorted(number for number in numbers if (template_id, number) not in templates.versions)
        if not wanted:
            continue
        refs.calls += 1
        key = "LaunchTemplateId" if template_id.startswith("lt-") else "LaunchTemplateName"
        listing = paginate(aws.ec2(region), "describe_launch_template_versions", "LaunchTemplateVersions",
                           **{key: template_id}, Versions=[str(number) for number in wanted],
                           PaginationConfig={"PageSize": 200})
        for version in _readable(listing, refs, GROUPS, "a launch template version"):
            templates.keep(refs, GROUPS, version)


def record_templates(refs: References, templates: Templates) -> None:
    for (template_id, number), _version in templates.versions.items():
        default, latest = templates.default.get(template_id) == number, templates.latest.get(template_id) == number
        if not (default or latest):
            continue  # a pinned version: recorded under the group or fleet that pins it
        image_id, via = templates.image(template_id, number)
        if image_id:
            refs.by_image[image_id].templates.append(
                TemplateRef(template_id, templates.name(template_id), number, default, latest, via))


# --- SSM parameters -------------------------------------------------------------------------------------

@requires("ssm:DescribeParameters", "ssm:GetParameters")
def list_image_parameters(aws: Aws, region: str, refs: References) -> dict[str, str]:
    """Every parameter of data type aws:ec2:image, name -> value. DescribeParameters gives no values, so they come
    from GetParameters, 10 names a call. Filtered on Type=String (what aws:ec2:image parameters are) and on
    DataType here: moto refuses a DataType filter, and DescribeParameters never returns a parameter's value."""
    client = aws.client("ssm", region)
    refs.calls += 1
    listing = paginate(client, "describe_parameters", "Parameters",
                       ParameterFilters=[{"Key": "Type", "Values": ["String"]}], PaginationConfig={"PageSize": 50})
    names = []
    for item in _readable(listing, refs, PARAMETERS, "an SSM parameter"):
        if not _text(item.get("DataType")):  # it could be of an image's data type
            unreadable(refs, PARAMETERS, f"SSM parameter {_text(item.get('Name')) or '?'} without its data type",
                       item)
        elif item.get("DataType") == IMAGE_DATA_TYPE and not _text(item.get("Name")):
            unreadable(refs, PARAMETERS, "an SSM parameter of data type aws:ec2:image without its name", item)
        elif item.get("DataType") == IMAGE_DATA_TYPE:
            names.append(item["Name"])
    return get_parameters(aws, region, refs, names)


@requires("ssm:GetParameters")
def get_parameters(aws: Aws, region: str, refs: References, names: list[str],
                   source: str = PARAMETERS) -> dict[str, str]:
    """name -> value; a parameter in the answer without its name or value makes `source` unknown."""
    client = aws.client("ssm", region)
    values: dict[str, str] = {}
    for start in range(0, len(names), SSM_BATCH):
        refs.calls += 1
        answer = call(client, "get_parameters", Names=names[start:start + SSM_BATCH])
        for parameter in _readable(answer.get("Parameters") or [], refs, source, "an SSM parameter"):
            name, value = _text(parameter.get("Name")), _text(parameter.get("Value"))
            if name and value:
                values[name] = value
            else:
                unreadable(refs, source, f"SSM parameter {name or '?'} without its {'value' if name else 'name'}",
                           parameter)
        if answer.get("InvalidParameters"):
            log.info("SSM parameters not found in %s: %s", region, answer["InvalidParameters"][:10])
    return values


def resolve_aliases(aws: Aws, region: str, refs: References, templates: Templates) -> None:
    """Give every `resolve:ssm:<name>` of the templates read its image: from the aws:ec2:image parameters listed,
    else through GetParameters (versioned or labelled names, public parameters). Where SSM cannot answer, the
    endpoint's own resolution (ResolveAlias=True) is asked once; what is still a parameter string is unknown."""
    wanted = set()
    for version in templates.versions.values():
        data = version.get("LaunchTemplateData") if isinstance(version.get("LaunchTemplateData"), dict) else {}
        image_id = _text(data.get("ImageId"))
        if image_id.startswith(SSM_PREFIX) and image_id[len(SSM_PREFIX):] not in templates.parameters:
            wanted.add(image_id[len(SSM_PREFIX):])
    if not wanted:
        return
    try:
        templates.parameters.update(get_parameters(aws, region, refs, sorted(wanted), TEMPLATES))
    except AwsError as error:
        log.warning("could not resolve SSM parameters of launch templates in %s: %s", region, error.message)
    unresolved = {name for name in wanted if name not in templates.parameters}
    if unresolved:
        _resolve_by_endpoint(aws, region, refs, templates, unresolved)


def _resolve_by_endpoint(aws: Aws, region: str, refs: References, templates: Templates, names: set[str]) -> None:
    resolved = Templates()
    try:
        list_default_and_latest(aws, region, refs, resolved, resolve_alias=True)
    except AwsError as error:
        refs.unknown[TEMPLATES] = f"could not resolve {', '.join(sorted(names))}: {error.message}"
        return
    for key, version in templates.versions.items():
        data = version.get("LaunchTemplateData") if isinstance(version.get("LaunchTemplateData"), dict) else {}
        name = _text(data.get("ImageId"))[len(SSM_PREFIX):]
        answer = resolved.versions.get(key, {}).get("LaunchTemplateData") or {}
        if name in names and _text(answer.get("ImageId")).startswith("ami-"):
            templates.parameters[name] = answer["ImageId"]
    still = sorted(name for name in names if name not in templates.parameters)
    if still:  # moto returns the parameter string even with ResolveAlias
        refs.unknown[TEMPLATES] = f"the image of SSM parameter(s) {', '.join(still)} that templates name is unknown"


def record_parameters(refs: References, templates: Templates, listed: dict[str, str]) -> None:
    resolvers: dict[str, set[str]] = defaultdict(set)
    for (template_id, _number), version in templates.versions.items():
        data = version.get("LaunchTemplateData") if isinstance(version.get("LaunchTemplateData"), dict) else {}
        image_id = _text(data.get("ImageId"))
        if image_id.startswith(SSM_PREFIX):
            resolvers[image_id[len(SSM_PREFIX):]].add(templates.name(template_id))
    for name, image_id in listed.items():
        if image_id.startswith("ami-"):
            refs.by_image[image_id].parameters.append(ParameterRef(name, tuple(sorted(resolvers.get(name, ())))))


# --- Auto Scaling groups and launch configurations ------------------------------------------------------

@dataclass
class GroupSpec:
    group: str
    template: str  # id, or name when the group gave only a name we could not map
    version: str
    path: str


@requires("autoscaling:DescribeAutoScalingGroups")
def list_groups(aws: Aws, region: str, refs: References) -> list[dict]:
    refs.calls += 1
    listing = paginate(aws.client("autoscaling", region), "describe_auto_scaling_groups", "AutoScalingGroups")
    return list(_readable(listing, refs, GROUPS, "an Auto Scaling group"))


def group_specs(groups: list[dict], templates: Templates, refs: References) -> list[GroupSpec]:
    """Every launch template a group can launch from: its own, its mixed instances policy's, each override's. A
    specification that names no template that can be read makes the groups unknown."""
    specs = []
    for group in groups:
        name = _text(group.get("AutoScalingGroupName")) or "?"
        direct = group.get("LaunchTemplate")
        if direct is not None:
            specs.append(_group_spec(refs, templates, name, direct, "launch template"))
        policy = group.get("MixedInstancesPolicy") if isinstance(group.get("MixedInstancesPolicy"), dict) else {}
        mixed = policy.get("LaunchTemplate") if isinstance(policy.get("LaunchTemplate"), dict) else {}
        if mixed.get("LaunchTemplateSpecification") is not None:
            specs.append(_group_spec(refs, templates, name, mixed["LaunchTemplateSpecification"],
                                     "mixed instances policy"))
        for override in _readable(mixed.get("Overrides") or [], refs, GROUPS, "an override"):
            if override.get("LaunchTemplateSpecification") is not None:
                label = f"override {_text(override.get('InstanceType'))}".rstrip()
                specs.append(_group_spec(refs, templates, name, override["LaunchTemplateSpecification"], label))
    return [spec for spec in specs if spec is not None]


def _group_spec(refs: References, templates: Templates, group: str, spec: Any, path: str) -> GroupSpec | None:
    template = templates.template_id(spec) if isinstance(spec, dict) else ""
    if not template:
        unreadable(refs, GROUPS, f"Auto Scaling group {group} with a {path} that names no template", spec)
        return None
    return GroupSpec(group, template, _text(spec.get("Version")), path)


@requires("autoscaling:DescribeLaunchConfigurations")
def scan_launch_configs(aws: Aws, region: str, refs: References, groups: list[dict]) -> None:
    groups_by_config: dict[str, list[str]] = defaultdict(list)
    for group in groups:
        if _text(group.get("LaunchConfigurationName")):
            groups_by_config[group["LaunchConfigurationName"]].append(_text(group.get("AutoScalingGroupName")))
    refs.calls += 1
    listing = paginate(aws.client("autoscaling", region), "describe_launch_configurations", "LaunchConfigurations")
    for config in _readable(listing, refs, GROUPS, "a launch configuration"):
        name, image_id = _text(config.get("LaunchConfigurationName")), _text(config.get("ImageId"))
        if name and image_id:
            refs.by_image[image_id].launch_configs.append(LaunchConfigRef(name, tuple(groups_by_config.get(name, []))))
        else:
            unreadable(refs, GROUPS, f"launch configuration {name or '?'} without its {'image' if name else 'name'}",
                       config, [image_id])


def record_groups(refs: References, templates: Templates, specs: list[GroupSpec]) -> None:
    for spec in specs:
        number = templates.number(spec.template, spec.version)
        image_id, via = templates.image(spec.template, number)
        if image_id:
            refs.by_image[image_id].groups.append(GroupRef(spec.group, templates.name(spec.template),
                                                           spec.version or "$Default", number, spec.path, via,
                                                           template_id=spec.template))
        else:  # no such template or version, or one without an image; a read that failed is already unknown
            log.info("Auto Scaling group %s in %s: no image for %s %s", spec.group, refs.region, spec.template,
                     spec.version or "$Default")


# --- fleets ---------------------------------------------------------------------------------------------

@dataclass
class FleetSpec:
    id: str
    kind: str
    state: str
    template: str = ""
    version: str = ""
    image_id: str = ""  # an override or launch specification naming the image itself


@requires("ec2:DescribeFleets")
def list_fleets(aws: Aws, region: str, refs: References, templates: Templates) -> list[FleetSpec]:
    refs.calls += 1
    specs = []
    for fleet in _readable(paginate(aws.ec2(region), "describe_fleets", "Fleets"), refs, FLEETS, "an EC2 Fleet"):
        state = _text(fleet.get("FleetState"))
        if state not in ACTIVE_FLEET_STATES:
            continue
        specs += _template_configs(_text(fleet.get("FleetId")) or "?", "EC2 Fleet", state,
                                   fleet.get("LaunchTemplateConfigs"), templates, refs)
    return specs


@requires("ec2:DescribeSpotFleetRequests")
def list_spot_fleets(aws: Aws, region: str, refs: References, templates: Templates) -> list[FleetSpec]:
    refs.calls += 1
    specs = []
    listing = paginate(aws.ec2(region), "describe_spot_fleet_requests", "SpotFleetRequestConfigs")
    for request in _readable(listing, refs, SPOT_FLEETS, "a Spot Fleet request"):
        state = _text(request.get("SpotFleetRequestState"))
        if state not in ACTIVE_FLEET_STATES:
            continue
        fleet_id = _text(request.get("SpotFleetRequestId")) or "?"
        config = request.get("SpotFleetRequestConfig") if isinstance(request.get("SpotFleetRequestConfig"), dict) \
            else {}
        specs += _template_configs(fleet_id, "Spot Fleet", state, config.get("LaunchTemplateConfigs"), templates, refs)
        for launch in _readable(config.get("LaunchSpecifications") or [], refs, SPOT_FLEETS, "a launch specification"):
            if _text(launch.get("ImageId")):
                specs.append(FleetSpec(fleet_id, "Spot Fleet", state, image_id=launch["ImageId"]))
    return specs


def _template_configs(fleet_id: str, kind: str, state: str, configs: Any, templates: Templates,
                      refs: References) -> list[FleetSpec]:
    source = FLEETS if kind == "EC2 Fleet" else SPOT_FLEETS
    specs = []
    for config in _readable(configs or [], refs, source, "a launch template config"):
        spec = config.get("LaunchTemplateSpecification") if isinstance(config.get("LaunchTemplateSpecification"),
                                                                         dict) else {}
        template, version = templates.template_id(spec), _text(spec.get("Version"))
        if template:
            specs.append(FleetSpec(fleet_id, kind, state, template, version))
        for override in _readable(config.get("Overrides") or [], refs, source, "an override"):
            if _text(override.get("ImageId")):  # EC2 Fleet overrides may name the image instead of the template's
                specs.append(FleetSpec(fleet_id, kind, state, image_id=override["ImageId"]))
    return specs


def record_fleets(refs: References, templates: Templates, specs: list[FleetSpec]) -> None:
    for spec in specs:
        if spec.image_id:
            refs.by_image[spec.image_id].fleets.append(FleetRef(spec.id, spec.kind, spec.state))
            continue
        number = templates.number(spec.template, spec.version)
        image_id, via = templates.image(spec.template, number)
        if image_id:
            refs.by_image[image_id].fleets.append(FleetRef(
                spec.id, spec.kind, spec.state, templates.name(spec.template), spec.version or "$Default", number, via,
                template_id=spec.template))
        else:
            log.info("%s %s in %s: no image for %s %s", spec.kind, spec.id, refs.region, spec.template,
                     spec.version or "$Default")


# --- Image Builder --------------------------------------------------------------------------------------

@requires("imagebuilder:ListImageRecipes")
def scan_recipes(aws: Aws, region: str, refs: References) -> None:
    """Own image recipes whose parent image is an AMI id (the summaries carry parentImage: no GetImageRecipe)."""
    refs.calls += 1
    # One attempt: an endpoint without Image Builder answers 500 or 404 (moto), and retrying that only waits.
    listing = paginate(aws.client("imagebuilder", region, max_attempts=1), "list_image_recipes",
                       "imageRecipeSummaryList", owner="Self")
    for recipe in _readable(listing, refs, RECIPES, "an image recipe"):
        parent, arn = _text(recipe.get("parentImage")), _text(recipe.get("arn"))
        if parent.startswith("ami-") and arn:
            refs.by_image[parent].recipes.append(RecipeRef(arn, _text(recipe.get("name")) or arn, _arn_version(arn)))
        elif not parent or (parent.startswith("ami-") and not arn):  # a parent that is no AMI is not a use
            unreadable(refs, RECIPES, f"an image recipe without its {'arn' if parent else 'parent image'}", recipe,
                       [parent])


def _arn_version(arn: str) -> str:
    parts = arn.rsplit("/", 2)
    return parts[-1] if len(parts) == 3 else ""


# --- AWS's own check ------------------------------------------------------------------------------------

AWS_RESOURCE_TYPES = [
    {"ResourceType": "ec2:Instance",
     "ResourceTypeOptions": [{"OptionName": "state-name", "OptionValues": LIVE_STATES}]},
    # the latest version only: $Default and pinned versions are this scan's (deeper versions are not a use)
    {"ResourceType": "ec2:LaunchTemplate", "ResourceTypeOptions": [{"OptionName": "version-depth",
                                                                    "OptionValues": ["1"]}]},
    {"ResourceType": "ssm:Parameter"}, {"ResourceType": "imagebuilder:ImageRecipe"},
    {"ResourceType": "imagebuilder:ContainerRecipe"},
]


@requires("ec2:DescribeImageReferences")
def aws_references(aws: Aws, region: str, refs: References, image_ids: list[str]) -> None:
    """Ask AWS which resources reference the images (10 ids a call) and union its answer into refs: a reference
    both found is marked so, one only AWS found is added and logged as a WARNING (amibot's scan missed it)."""
    for start in range(0, len(image_ids), REFERENCE_BATCH):
        refs.calls += 1
        batch = image_ids[start:start + REFERENCE_BATCH]
        # One attempt: where the endpoint lacks the API (a 500 from moto's server), retrying only waits — and the
        # digest holds a region's inventory meanwhile. A failed check is unknown, shown, and blocks nothing.
        listing = paginate(aws.client("ec2", region, max_attempts=1), "describe_image_references",
                           "ImageReferences", ImageIds=batch, ResourceTypes=AWS_RESOURCE_TYPES)
        for found in _readable(listing, refs, AWS_CHECK, "an image reference"):
            image_id, arn = _text(found.get("ImageId")), _text(found.get("Arn"))
            if image_id and arn:
                _union(refs, image_id, _text(found.get("ResourceType")), arn)
            else:
                unreadable(refs, AWS_CHECK, f"an image reference without its {'arn' if image_id else 'image id'}",
                           found, [image_id] if image_id else batch)


def _union(refs: References, image_id: str, resource_type: str, arn: str) -> None:
    usage = refs.by_image[image_id]
    # "instance/i-…", "launch-template/lt-…", "parameter/amibot/web/current", "image-recipe/<name>/<version>"
    tail = arn.split(":", 5)[-1]
    resource = tail.split("/", 1)[-1]
    if resource_type == "ec2:Instance":
        matched = _mark(usage, "instances", lambda ref: ref.id == resource)
        added = None if matched else InstanceRef(resource, "state unknown", found_by=AWS)
    elif resource_type == "ec2:LaunchTemplate":
        marked = [_mark(usage, kind, lambda ref: getattr(ref, "id", None) == resource or
                        getattr(ref, "template_id", None) == resource) for kind in ("templates", "groups", "fleets")]
        matched = any(marked)
        added = None if matched else TemplateRef(resource, resource, None, False, False, found_by=AWS)
    elif resource_type == "ssm:Parameter":
        names = {resource, "/" + resource}
        marked = [_mark(usage, "parameters", lambda ref: ref.name in names),
                  _mark(usage, "templates", lambda ref: ref.via in names)]
        matched = any(marked)
        added = None if matched else ParameterRef("/" + resource if not resource.startswith("/") else resource,
                                                  found_by=AWS)
    elif resource_type in ("imagebuilder:ImageRecipe", "imagebuilder:ContainerRecipe"):
        matched = _mark(usage, "recipes", lambda ref: ref.arn == arn)
        kind = "image recipe" if resource_type.endswith("ImageRecipe") else "container recipe"
        name = resource.split("/")[0]
        added = None if matched else RecipeRef(arn, name, _arn_version(arn), kind, found_by=AWS)
    else:
        matched, added = False, OtherRef(resource_type or "resource", arn)
    if added is not None:
        kind = {InstanceRef: "instances", TemplateRef: "templates", ParameterRef: "parameters", RecipeRef: "recipes",
                OtherRef: "others"}[type(added)]
        getattr(usage, kind).append(added)
        log.warning("AWS's reference check found %s %s using %s in %s that amibot's scan missed", resource_type, arn,
                    image_id, refs.region)


def _mark(usage: Usage, kind: str, matches: Callable[[Any], bool]) -> bool:
    """Mark the refs of one kind that AWS also found; True if any."""
    found = False
    items = getattr(usage, kind)
    for index, ref in enumerate(items):
        if matches(ref):
            found = True
            if ref.found_by == AMIBOT:
                items[index] = dataclasses.replace(ref, found_by=BOTH)
    return found


def check_with_aws(aws: Aws, region: str, refs: References, image_ids: list[str]) -> None:
    """AWS's own check for the given images, feature-detected: where the endpoint lacks it, it is unknown."""
    if image_ids:
        _guarded(refs, AWS_CHECK, lambda: aws_references(aws, region, refs, image_ids))


# --- the whole scan -------------------------------------------------------------------------------------

def scan(aws: Aws, region: str, image_ids: list[str] | None = None) -> References:
    """Everything that references images in one region. With image_ids, instances are filtered server-side to
    those images and AWS's own check is asked about them; every other source is always listed in full (a
    template or group is found whatever image it names). Without image_ids (the digest), AWS's check is left to
    the caller, for the candidates only (``check_with_aws``)."""
    refs = References(region)
    templates = Templates()
    _guarded(refs, INSTANCES, lambda: scan_instances(aws, region, refs, image_ids))
    _guarded(refs, TEMPLATES, lambda: list_default_and_latest(aws, region, refs, templates))
    groups: list[dict] = []

    def read_groups() -> None:
        groups.extend(list_groups(aws, region, refs))
        scan_launch_configs(aws, region, refs, groups)

    _guarded(refs, GROUPS, read_groups)
    refs.asgs = groups
    fleets: list[FleetSpec] = []
    _guarded(refs, FLEETS, lambda: fleets.extend(list_fleets(aws, region, refs, templates)))
    _guarded(refs, SPOT_FLEETS, lambda: fleets.extend(list_spot_fleets(aws, region, refs, templates)))
    specs = group_specs(groups, templates, refs)
    pinned: dict[str, set[int]] = defaultdict(set)
    for template, version in [(s.template, s.version) for s in specs] + [(f.template, f.version) for f in fleets
                                                                         if f.template]:
        if version.isdigit() and template in templates.names:  # a template not listed does not exist
            pinned[template].add(int(version))
    if pinned:
        _guarded(refs, GROUPS, lambda: read_pinned_versions(aws, region, refs, templates, pinned))
    listed: dict[str, str] = {}
    _guarded(refs, PARAMETERS, lambda: listed.update(list_image_parameters(aws, region, refs)))
    templates.parameters.update(listed)
    resolve_aliases(aws, region, refs, templates)
    record_templates(refs, templates)
    record_groups(refs, templates, specs)
    record_fleets(refs, templates, fleets)
    record_parameters(refs, templates, listed)
    _guarded(refs, RECIPES, lambda: scan_recipes(aws, region, refs))
    if image_ids:
        check_with_aws(aws, region, refs, image_ids)
    return refs


def usage_of(aws: Aws, region: str, image_id: str) -> Usage:
    """Everything that uses one image (the scan of its region, AWS's check included)."""
    return scan(aws, region, [image_id]).of(image_id)
