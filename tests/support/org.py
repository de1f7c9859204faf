"""Many accounts: moto's Organizations, images backdated in an assumed account, the organisation's digest."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from botocore.awsrequest import AWSResponse

from tests.support import seed

# --- [organization] through moto's Organizations ----------------------------------------------------------

def organisation(session, *names: str) -> list[str]:
    """An organisation managed from the bot's own account with one new member account per name: their ids."""
    client = session.client("organizations")
    client.create_organization(FeatureSet="ALL")
    return [client.create_account(Email=f"{name.replace(' ', '')}@example.com", AccountName=name)
            ["CreateAccountStatus"]["AccountId"] for name in names]


def listing_refused(code: str = "AccessDeniedException"):
    """A before-call handler with which Organizations refuses ListAccounts."""
    def deny(**_):
        return (AWSResponse("https://organizations.us-east-1.amazonaws.com/", 400, {}, None),
                {"Error": {"Code": code, "Message": "You don't have permissions to access this resource."}})

    return deny


# --- the organisation's digest ----------------------------------------------------------------------------

PROD_LABEL, STAGING_LABEL, BAKE_LABEL = "prod (111111111111)", "staging (222222222222)", "bake (123456789012)"


def registered(session, account: str, name: str, days_old: float, region: str = "us-east-1") -> str:
    """An own image in `account` (moto gives it a 15 GiB snapshot 'Auto-created snapshot for AMI …'), backdated."""
    image_id = session.client("ec2", region).register_image(Name=name, RootDeviceName="/dev/sda1")["ImageId"]
    seed.backdate(image_id, datetime.now(UTC) - timedelta(days=days_old), region, account=account)
    return image_id


def digest_post(harness, channel: str = "C0OPS"):
    return [c for c in harness.fake.calls_to("chat.postMessage")
            if c.params.get("channel") == channel and "AMI digest" in c.text][-1]
