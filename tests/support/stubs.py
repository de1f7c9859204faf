"""Stand-ins for the AWS answers moto lacks or cannot get wrong: botocore Stubbers routed into the running app,
and items shaped as AWS documents them."""

from __future__ import annotations

from datetime import UTC, datetime

from botocore.stub import Stubber

from bot.aws.clients import Aws

# --- some of the running app's calls to stubbed clients -------------------------------------------------

class Partly:
    """The real (moto) client, except the named operations (and their paginators), which go to a stubbed one."""

    def __init__(self, real, stubbed, operations):
        self.real, self.stubbed, self.operations = real, stubbed, set(operations)

    def __getattr__(self, name):
        return getattr(self.stubbed if name in self.operations else self.real, name)

    def get_paginator(self, name):
        return (self.stubbed if name in self.operations else self.real).get_paginator(name)


def route(monkeypatch, harness, ec2_operations=(), ec2_stubbed=None, imagebuilder=None, ssm=None):
    """Send some of the app's us-east-1 AWS calls to stubbed clients."""
    aws_layer = harness.ctx.aws.home
    real_client = aws_layer.client

    def client(service, region=None, max_attempts=6):
        real = real_client(service, region, max_attempts)
        if (region or "us-east-1") != "us-east-1":
            return real
        if service == "imagebuilder" and imagebuilder is not None:
            return imagebuilder
        if service == "ssm" and ssm is not None:
            return ssm
        if service == "ec2" and ec2_stubbed is not None:
            return Partly(real, ec2_stubbed, ec2_operations)
        return real

    monkeypatch.setattr(aws_layer, "client", client)
    monkeypatch.setattr(aws_layer, "ec2", lambda region=None: client("ec2", region))


# --- image usage reports (moto lacks them) ---------------------------------------------------------------

def report(image_id, state, created=None):
    return {"ImageId": image_id, "ReportId": "amiur-0123456789abcdef0", "State": state,
            "ResourceTypes": [{"ResourceType": "ec2:Instance"}], "CreationTime": created or datetime.now(UTC)}


REPORT_OPERATIONS = ["describe_image_usage_reports", "create_image_usage_report", "describe_image_usage_report_entries"]


# --- DescribeImages items as AWS sends them, and the app's Aws with DescribeImages from a Stubber ----------

ACCOUNT = "123456789012"  # moto's account: the digest's snapshot listing is filtered by it
OLD = "2024-01-15T10:00:00.000Z"
GOOD = "ami-0000000000000a001"


def good_item(image_id: str = GOOD, name: str = "good-1.0.0", **extra) -> dict:
    return {"ImageId": image_id, "Name": name, "State": "available", "OwnerId": ACCOUNT, "CreationDate": OLD,
            "Architecture": "x86_64", "RootDeviceName": "/dev/xvda", "RootDeviceType": "ebs", "Public": False,
            "Tags": [{"Key": "Team", "Value": "web"}],
            "BlockDeviceMappings": [{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": "snap-0000000000000a001",
                                                                       "VolumeSize": 8, "VolumeType": "gp3"}}],
            **extra}


STUBBED = {"describe_images", "describe_image_attribute"}


class Routed:
    """The real (moto) ec2 client, except the stubbed operations (and their paginators)."""

    def __init__(self, real, stubbed):
        self.real, self.stubbed = real, stubbed

    def get_paginator(self, operation):
        return (self.stubbed if operation in STUBBED else self.real).get_paginator(operation)

    def __getattr__(self, name):
        return getattr(self.stubbed if name in STUBBED else self.real, name)


class StubbedImages(Aws):
    """bot/aws/clients.py's Aws with moto behind it, but DescribeImages answered by a Stubber on a real ec2 client."""

    def __init__(self, regions):
        super().__init__(regions)
        self.stubbed = Aws(regions).ec2(regions[0])  # a real client, made by bot/aws/clients.py
        self.stub = Stubber(self.stubbed)
        self.stub.activate()

    def client(self, service, region=None, max_attempts=6):
        real = super().client(service, region, max_attempts)
        return Routed(real, self.stubbed) if service == "ec2" else real

    def images(self, items: list[dict], shares: int = 0) -> None:
        self.stub.add_response("describe_images", {"Images": items})
        for _ in range(shares):
            self.stub.add_response("describe_image_attribute", {"LaunchPermissions": []})


# --- Image Builder and SSM Automation (moto has neither): the app's Aws with those clients stubbed -------------

class StubbedBake(Aws):
    """bot/aws/clients.py's Aws with moto behind it, but Image Builder and (when asked) SSM answered by Stubbers on
    real clients made by bot/aws/clients.py, in the first region."""

    def __init__(self, regions, ssm: bool = False, findings: bool = False):
        super().__init__(regions)
        maker = Aws(regions)
        self.ec2_stubbed = maker.client("ec2", regions[0])  # GetImageFindings only (findings=True)
        self.findings_stub = Stubber(self.ec2_stubbed)
        self.findings_stub.activate()
        self.stub_findings = findings
        self.imagebuilder = maker.client("imagebuilder", regions[0])
        self.ssm = maker.client("ssm", regions[0])
        self.ib_stub, self.ssm_stub = Stubber(self.imagebuilder), Stubber(self.ssm)
        self.ib_stub.activate()
        self.ssm_stub.activate()
        self.stub_ssm = ssm
        # ListImagePipelineImages (the hourly look for a pipeline's own outputs) on its own Stubber: it answers "no
        # images" while nothing is queued on it, so a test about one bake need not script the look at start.
        self.listing = Aws(regions).client("imagebuilder", regions[0])  # a client of its own (clients are cached)
        self.listing_stub = Stubber(self.listing)
        self.listing_stub.activate()

    def client(self, service, region=None, max_attempts=6):
        if (region or self.regions[0]) == self.regions[0]:
            if service == "imagebuilder":
                return Listing(self.imagebuilder, self.listing, self.listing_stub)
            if service == "ssm" and self.stub_ssm:
                return self.ssm
            if service == "ec2" and self.stub_findings:
                return Partly(super().client(service, region, max_attempts), self.ec2_stubbed, ["get_image_findings"])
        return super().client(service, region, max_attempts)


class Listing:
    """The stubbed Image Builder client, with ListImagePipelineImages from its own Stubber (or empty, when nothing
    is queued there)."""

    def __init__(self, stubbed, listing, listing_stub):
        self.stubbed, self.listing, self.listing_stub = stubbed, listing, listing_stub

    def __getattr__(self, name):
        return getattr(self.stubbed, name)

    def list_image_pipeline_images(self, **kwargs):
        if not self.listing_stub._queue:
            return {"imageSummaryList": []}
        return self.listing.list_image_pipeline_images(**kwargs)
