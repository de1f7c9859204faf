"""Building AWS state in moto for tests: images (optionally backdated), instances, templates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from moto.core import DEFAULT_ACCOUNT_ID
from moto.ec2.models import ec2_backends


def instance(session, region: str = "us-east-1", image_id: str | None = None, name: str | None = None) -> str:
    ec2 = session.client("ec2", region)
    image_id = image_id or base_image(session, region)
    tags = [{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": name}]}] if name else []
    result = ec2.run_instances(ImageId=image_id, MinCount=1, MaxCount=1, InstanceType="t3.micro",
                               TagSpecifications=tags)
    return result["Instances"][0]["InstanceId"]


def base_image(session, region: str = "us-east-1") -> str:
    """An image to launch the first instance from (moto's default AMIs are off in tests)."""
    ec2 = session.client("ec2", region)
    found = ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": ["seed-base"]}])["Images"]
    if found:
        return found[0]["ImageId"]
    return ec2.register_image(Name="seed-base", RootDeviceName="/dev/sda1", Architecture="x86_64")["ImageId"]


def image(session, name: str, region: str = "us-east-1", tags: dict | None = None,
          created: datetime | None = None, from_instance: str | None = None, description: str = "") -> str:
    ec2 = session.client("ec2", region)
    source = from_instance or instance(session, region)
    spec = [{"ResourceType": "image", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}] if tags else []
    image_id = ec2.create_image(InstanceId=source, Name=name, Description=description,
                                TagSpecifications=spec)["ImageId"]
    if created:
        backdate(image_id, created, region)
    return image_id


def instance_on_shared_image(session, image_id: str, name: str | None = None, region: str = "us-east-1") -> str:
    """An instance in the session's account running an image another account shares with it, as AWS allows.
    moto looks a RunInstances image up in the launching account's own images only, so the check the suite turns
    on (MOTO_ENABLE_AMI_VALIDATION, read from moto.settings at each call) is off for this one call."""
    from moto import settings as moto_settings

    checking = moto_settings.ENABLE_AMI_VALIDATION
    moto_settings.ENABLE_AMI_VALIDATION = False
    try:
        return instance(session, region, image_id=image_id, name=name)
    finally:
        moto_settings.ENABLE_AMI_VALIDATION = checking


def backdate(image_id: str, created: datetime, region: str = "us-east-1", account: str = DEFAULT_ACCOUNT_ID) -> None:
    # moto's private backend: no public call sets an image's CreationDate (moto.md; the code reads the real clock)
    ami = ec2_backends[account][region].amis[image_id]
    # moto 5.2.5 keeps a datetime here (its note's string form is from older versions)
    ami.creation_date = created if isinstance(ami.creation_date, datetime) else created.strftime(
        "%Y-%m-%dT%H:%M:%S.000Z")


def launch_template(session, name: str, image_id: str, region: str = "us-east-1") -> str:
    ec2 = session.client("ec2", region)
    return ec2.create_launch_template(LaunchTemplateName=name,
                                      LaunchTemplateData={"ImageId": image_id})["LaunchTemplate"]["LaunchTemplateId"]


# Many accounts (moto: an assumed role's calls land in the role's account). The bot runs in DEFAULT_ACCOUNT_ID.
BAKE, PROD, STAGING = DEFAULT_ACCOUNT_ID, "111111111111", "222222222222"


def role_arn(account: str, name: str = "amibot") -> str:
    return f"arn:aws:iam::{account}:role/{name}"


def account_session(session, account: str, region: str = "us-east-1"):
    """A boto3 session whose calls land in `account` (through moto's STS), for building state there."""
    import boto3

    if account == DEFAULT_ACCOUNT_ID:
        return session
    credentials = session.client("sts").assume_role(RoleArn=role_arn(account), RoleSessionName="seed")["Credentials"]
    return boto3.session.Session(aws_access_key_id=credentials["AccessKeyId"],
                                 aws_secret_access_key=credentials["SecretAccessKey"],
                                 aws_session_token=credentials["SessionToken"], region_name=region)


def deny_assume_role(session, account: str) -> None:
    """Make STS refuse AssumeRole into `account`, as AWS does when the role's trust policy does not let us in
    (moto accepts any): the session's AssumeRole calls into it get a 403 before they are sent. Register it on the
    session the roles are assumed from before anything assumed that role."""
    from botocore.awsrequest import AWSResponse

    def deny(params, **_):
        if f"::{account}:" in str((params.get("body") or {}).get("RoleArn", "")):
            return (AWSResponse("https://sts.amazonaws.com/", 403, {}, None),
                    {"Error": {"Code": "AccessDenied", "Message": "User is not authorized to perform: sts:AssumeRole"},
                     "ResponseMetadata": {"HTTPStatusCode": 403}})
        return None

    session.events.register("before-call.sts.AssumeRole", deny)


def three_accounts(regions: list[str], **extra) -> dict:
    """A policy with the bot's own bake account and two assumed ones: prod and staging."""
    return {"aws": {"regions": regions},
            "accounts": [{"id": BAKE, "name": "bake"},
                         {"id": PROD, "name": "prod", "role_arn": role_arn(PROD)},
                         {"id": STAGING, "name": "staging", "role_arn": role_arn(STAGING)}],
            **extra}


NOW = datetime.now(UTC)  # what `family` dates its versions from


def family(aws, versions, name="web", days_apart=30):
    """One image per version, from one instance, `days_apart` days apart, the last the newest."""
    source = instance(aws)
    return [image(aws, f"{name}-{version}", tags={"Family": name, "Version": version}, from_instance=source,
                  created=NOW - timedelta(days=days_apart * (len(versions) - number)))
            for number, version in enumerate(versions)]
