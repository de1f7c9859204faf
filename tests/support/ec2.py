"""Reading EC2 state back from moto with boto3: does an image or snapshot still exist, an image's snapshots."""

from __future__ import annotations


def snapshot_exists(aws, snapshot_id, region="us-east-1"):
    return bool(aws.client("ec2", region).describe_snapshots(
        Filters=[{"Name": "snapshot-id", "Values": [snapshot_id]}])["Snapshots"])


def image_exists(aws, image_id, region="us-east-1"):
    return bool(aws.client("ec2", region).describe_images(ImageIds=[image_id])["Images"])


def snapshots_of(aws, image_id, region="us-east-1"):
    image = aws.client("ec2", region).describe_images(ImageIds=[image_id])["Images"][0]
    return [m["Ebs"]["SnapshotId"] for m in image["BlockDeviceMappings"] if "Ebs" in m]
