"""Every command knows accounts (issue 11 §3): list, versions, show, launch, copy, create, promote and rollback
across three managed accounts — the bot's own (bake) and two assumed roles (prod, staging) — through the real
app over HTTP, with moto's STS landing each assumed role's calls in its account."""

from __future__ import annotations

import json

import pytest
from moto import settings as moto_settings

from tests.support import seed
from tests.support.seed import BAKE, PROD, STAGING

REGIONS = ["us-east-1", "eu-west-1"]


@pytest.fixture
def app(make_harness):
    return make_harness(seed.three_accounts(REGIONS, approvals={"approvers": ["U0LEAD"]}))


@pytest.fixture
def prod(aws):
    return seed.account_session(aws, PROD)


@pytest.fixture
def staging(aws):
    return seed.account_session(aws, STAGING)


def posts(harness, containing=""):
    return [c for c in harness.fake.calls_to("chat.postMessage") if containing in c.text]


def instances(session, region="us-east-1", **tag_filters):
    filters = [{"Name": f"tag:{key}", "Values": [value]} for key, value in tag_filters.items()]
    reservations = session.client("ec2", region).describe_instances(Filters=filters)["Reservations"]
    return [instance for reservation in reservations for instance in reservation["Instances"]]


def own_images(session, region, name=None):
    filters = [{"Name": "name", "Values": [name]}] if name else []
    return session.client("ec2", region).describe_images(Owners=["self"], Filters=filters)["Images"]


def parameter(session, name="/amibot/web/current", region="us-east-1"):
    try:
        return session.client("ssm", region).get_parameter(Name=name)["Parameter"]["Value"]
    except session.client("ssm", region).exceptions.ParameterNotFound:
        return None


def audit_detail(harness, action):
    return json.loads(harness.ctx.store.query("SELECT detail FROM audit WHERE action = ? ORDER BY id DESC",
                                              (action,))[0]["detail"])


# --- list, versions, show ---------------------------------------------------------------------------------

def test_list_spans_every_account_with_an_account_column_and_account_narrows(app, aws, prod, staging):
    baked = seed.image(aws, "web-bake-1")
    running = seed.image(prod, "api-prod-1")
    west = seed.image(staging, "db-staging-1", region="eu-west-1")

    app.command("list")
    text = app.last_reply().text
    assert f"*web-bake-1* `{baked}` · bake · us-east-1" in text
    assert f"*api-prod-1* `{running}` · prod · us-east-1" in text
    assert f"*db-staging-1* `{west}` · staging · eu-west-1" in text

    app.command("list --account prod")
    text = app.last_reply().text
    assert running in text and baked not in text and west not in text
    app.command(f"list --account {STAGING} --region eu-west-1")  # by id, with a region
    text = app.last_reply().text
    assert west in text and running not in text and baked not in text
    app.command("list nothing-like-this --account prod")
    assert ("No AMIs matching “nothing-like-this” owned by prod (111111111111) in us-east-1, eu-west-1."
            in app.last_reply().text)
    app.command("list nothing-like-this --region eu-west-1")  # every account: each one named, with the region
    assert ("No AMIs matching “nothing-like-this” owned by bake (123456789012), prod (111111111111), "
            "staging (222222222222) in eu-west-1." in app.last_reply().text)

    app.command("list --account sandbox")
    reply = app.last_reply().text
    assert "No account `sandbox` is configured; the accounts are `bake`, `prod`, `staging`." in reply
    assert "Traceback" not in reply


def test_versions_span_the_accounts_and_name_each_versions_account(app, aws, prod):
    one = seed.image(aws, "web-1", tags={"Family": "web", "Version": "1"})
    two = seed.image(prod, "web-2", tags={"Family": "web", "Version": "2"})
    app.command("versions web")
    text = app.last_reply().text
    assert f"*2* `{two}` · prod · us-east-1" in text and f"*1* `{one}` · bake · us-east-1" in text
    app.command("versions web --account bake")
    text = app.last_reply().text
    assert one in text and two not in text
    app.command("versions web --account nosuch")
    assert "No account `nosuch` is configured" in app.last_reply().text


def test_versions_show_each_versions_use_in_the_managed_accounts_it_is_shared_with(app, aws, prod):
    old = seed.image(aws, "base-1", tags={"Family": "base", "Version": "1"})
    new = seed.image(aws, "base-2", tags={"Family": "base", "Version": "2"})
    aws.client("ec2").modify_image_attribute(ImageId=new, LaunchPermission={"Add": [{"UserId": PROD}]})
    seed.instance_on_shared_image(prod, new, name="prod-base-1")
    app.command("versions base")
    rows = {line.split("`")[1]: line for line in app.last_reply().text.splitlines() if line.startswith("*")
            and "`ami-" in line}
    assert rows[new].endswith("· unused · in prod (111111111111): 1 instance")  # unused in bake, run in prod
    assert "prod" not in rows[old].split("·", 2)[2]  # not shared: prod is not looked at for it


def test_show_finds_an_id_in_the_account_that_owns_it(app, aws, prod):
    image_id = seed.image(prod, "api-prod-7", tags={"Team": "payments"})
    seed.instance(prod, image_id=image_id)  # what uses it is looked up in prod too
    app.command(f"show {image_id}")
    reply = app.last_reply()
    assert "*Account*\nprod (111111111111)" in reply.text
    assert "Team = payments" in reply.text and "1 instance(s)" in reply.text
    assert audit_detail(app, "command.show")["account"] == PROD


def test_show_of_a_shared_image_lists_its_use_in_the_managed_accounts_it_is_shared_with(app, aws, prod):
    image_id = seed.image(aws, "base-bake-3")
    aws.client("ec2").modify_image_attribute(ImageId=image_id, LaunchPermission={
        "Add": [{"UserId": PROD}, {"UserId": STAGING}]})
    instance_id = seed.instance_on_shared_image(prod, image_id, name="prod-api-1")
    app.command(f"show {image_id}")
    text = app.last_reply().text
    assert "*In use by* (in bake (123456789012))\nnothing found" in text
    assert "*In the other managed accounts it is shared with*" in text
    assert "*prod (111111111111)*: 1 instance" in text and instance_id in text
    assert "*staging (222222222222)*: nothing found" in text


def test_a_name_in_two_accounts_is_ambiguous_and_names_both(app, aws, prod):
    baked = seed.image(aws, "web-v1")
    copied = seed.image(prod, "web-v1")
    app.command("show web-v1")
    text = app.last_reply().text
    assert "2 AMIs in accounts" in text and "bake" in text and "prod" in text
    assert f"`{baked}` · bake · us-east-1" in text and f"`{copied}` · prod · us-east-1" in text

    app.command("launch web-v1")  # acting on a name never guesses
    text = app.last_reply().text
    assert "2 AMIs are named “web-v1”" in text
    assert f"`{baked}` · us-east-1 · account bake (123456789012)" in text
    assert f"`{copied}` · us-east-1 · account prod (111111111111)" in text
    assert "say which one by id (or add `--region R`)" in text  # launch's --account is where to run, not a filter
    assert instances(aws, **{"amibot:requested-by": "U0OPS"}) == []
    assert instances(prod, **{"amibot:requested-by": "U0OPS"}) == []

    app.command("show web-v1 --account prod")  # narrowed to one account: the one image
    assert "*Account*\nprod (111111111111)" in app.last_reply().text
    aws.client("ec2").modify_image_attribute(ImageId=baked, LaunchPermission={"Add": [{"UserId": PROD}]})
    app.command(f"launch {baked} --account prod --region eu-west-1")  # an id names one image, wherever it is
    assert f"AMI {baked} not found in eu-west-1 of 3 accounts" in app.last_reply().text


# --- launch ----------------------------------------------------------------------------------------------

@pytest.fixture
def shared_images(monkeypatch):
    """moto looks a RunInstances image up in the launching account's own images (it does not model shared
    ones), and the suite turns that check on; AWS launches an image shared with the account, so it is off here."""
    monkeypatch.setattr(moto_settings, "ENABLE_AMI_VALIDATION", False)


def test_launch_a_bake_image_into_prod_runs_the_instances_in_prod(app, aws, prod, shared_images):
    image_id = seed.image(aws, "web-v3", tags={"Family": "web"})
    app.command(f"launch {image_id} --account prod")  # not shared with prod yet: EC2 would refuse it
    assert "is not shared with prod (111111111111)" in app.last_reply().text
    assert f"`/ami share {image_id} prod` first" in app.last_reply().text
    assert instances(prod, **{"amibot:requested-by": "U0OPS"}) == []

    aws.client("ec2").modify_image_attribute(ImageId=image_id, LaunchPermission={"Add": [{"UserId": PROD}]})
    app.command(f'launch {image_id} t3.small --account prod --name "web canary"')
    [instance] = instances(seed.account_session(aws, PROD), **{"amibot:requested-by": "U0OPS"})
    assert instance["ImageId"] == image_id and instance["InstanceType"] == "t3.small"
    assert instances(aws, **{"amibot:requested-by": "U0OPS"}) == []  # nothing in the bake account
    started = posts(app, "launched 1 ×")[-1]
    assert "into prod (111111111111)" in started.text and instance["InstanceId"] in started.text
    detail = audit_detail(app, "command.launch")
    assert detail["account"] == PROD and detail["image_account"] == BAKE
    assert detail["states"] == {instance["InstanceId"]: "running"}


def test_launch_into_another_account_outside_policy_asks_approval_carrying_both_accounts(make_harness, aws, prod,
                                                                                        shared_images):
    app = make_harness(seed.three_accounts(REGIONS, approvals={"approvers": ["U0LEAD"]},
                                           launch={"allowed_instance_types": ["t3.*"]}))
    image_id = seed.image(aws, "web-v4")
    aws.client("ec2").modify_image_attribute(ImageId=image_id, LaunchPermission={"Add": [{"UserId": PROD}]})
    app.command(f"launch {image_id} m5.large --account prod --name big")
    assert "outside the launch policy" in app.last_reply().text
    request = app.ctx.store.query("SELECT * FROM requests ORDER BY created_at DESC")[0]
    params = json.loads(request["params"])
    assert params["account"] == PROD and params["image_account"] == BAKE
    approval = next(c for c in posts(app) if request["id"] in c.text and "Approve" in c.text)
    assert "in prod (111111111111)" in approval.text
    app.click("approval.approve", value=request["id"], user="U0LEAD", channel="C0OPS", message_ts=approval.ts)
    [instance] = instances(prod, Name="big")
    assert instance["ImageId"] == image_id and instance["InstanceType"] == "m5.large"
    assert instances(aws, Name="big") == []


def test_launch_without_account_runs_in_the_images_own_account(app, aws, prod):
    image_id = seed.image(prod, "api-v9")
    app.command(f"launch {image_id}")
    [instance] = instances(prod, **{"amibot:requested-by": "U0OPS"})
    assert instance["ImageId"] == image_id
    app.command(f"launch {image_id} --account nosuch")
    assert "No account `nosuch` is configured; the accounts are `bake`, `prod`, `staging`." in app.last_reply().text


# --- promote, rollback -----------------------------------------------------------------------------------

def test_promote_in_bake_says_to_roll_it_out_to_the_groups_in_prod_that_run_an_older_version(app, aws, prod):
    """The bake account owns the family; prod runs it in an Auto Scaling group: the promotion's drift is the
    fleet's (every managed account in that region), so the groups to roll are found where they run."""
    old, new = seed.family(aws, ["1", "2"])
    aws.client("ec2").modify_image_attribute(ImageId=old, LaunchPermission={"Add": [{"UserId": PROD}]})
    instance = seed.instance_on_shared_image(prod, old)
    prod.client("ec2").create_tags(Resources=[instance], Tags=[{"Key": "aws:autoscaling:groupName",
                                                                "Value": "web-asg"}])
    app.command(f"promote {new}")
    post = posts(app, "promoted")[-1]
    assert "1 instance of web in us-east-1 run another version" in post.text, post.text
    assert "roll it out: `/ami rollout web` (1 Auto Scaling group: prod/web-asg)" in post.text


def test_promote_in_prod_writes_the_parameter_in_prod_not_in_bake(app, aws, prod):
    baked = seed.image(aws, "web-1", tags={"Family": "web", "Version": "1"})
    first = seed.image(prod, "web-p1", tags={"Family": "web", "Version": "1"})
    second = seed.image(prod, "web-p2", tags={"Family": "web", "Version": "2"})

    app.command(f"promote {first}")
    post = posts(app, "promoted")[-1]
    assert f"promoted `{first}`" in post.text and "in prod (111111111111), us-east-1" in post.text
    assert parameter(prod) == first and parameter(aws) is None
    tags = {t["Key"]: t["Value"] for t in own_images(prod, "us-east-1", "web-p1")[0].get("Tags", [])}
    assert tags["amibot:current"] == "true"
    assert audit_detail(app, "command.promote")["account"] == PROD

    app.command(f"promote {baked}")  # the same family in bake is promoted on its own: no "previous" from prod
    assert "its first promoted version" in posts(app, "promoted")[-1].text
    assert parameter(aws) == baked and parameter(prod) == first
    app.command(f"promote {second}")
    assert f"was `{first}`" in posts(app, "promoted")[-1].text and parameter(prod) == second
    rows = app.ctx.store.query("SELECT account, image_id FROM promotions ORDER BY id")
    assert rows == [{"account": PROD, "image_id": first}, {"account": BAKE, "image_id": baked},
                    {"account": PROD, "image_id": second}]

    app.command("rollback web")  # promoted in two accounts: which one?
    assert "say which with `--account`" in app.last_reply().text
    app.command("rollback web --account prod")
    post = posts(app, "rolled family")[-1]
    assert "back in prod (111111111111), us-east-1" in post.text and f"current is `{first}`" in post.text
    assert parameter(prod) == first and parameter(aws) == baked


# --- copy, create -----------------------------------------------------------------------------------------

def test_copy_of_a_prod_image_lands_in_prods_other_region(app, aws, prod):
    image_id = seed.image(prod, "api-v2", tags={"Family": "api"})
    app.command(f"copy {image_id} eu-west-1")
    [copy] = own_images(prod, "eu-west-1", "api-v2")
    assert own_images(aws, "eu-west-1", "api-v2") == []  # not in the bake account
    started = posts(app, "is making AMI")[-1]
    assert f"`{copy['ImageId']}` in prod (111111111111), eu-west-1" in started.text
    [final] = [c for c in app.fake.calls_to("chat.update") if c.params.get("ts") == started.ts]
    assert "— *available*" in final.text  # the watch looked in prod
    assert audit_detail(app, "command.copy")["account"] == PROD


def test_create_with_account_bakes_in_that_account(app, aws, staging):
    source = seed.instance(staging, name="builder")
    app.command(f"create {source} web-staging-1 --family web")
    assert f"Instance {source} not found" in app.last_reply().text  # default: the bot's own account
    app.command(f"create {source} web-staging-1 --family web --account staging")
    [image] = own_images(staging, "us-east-1", "web-staging-1")
    assert own_images(aws, "us-east-1", "web-staging-1") == []
    assert audit_detail(app, "command.create")["account"] == STAGING
    assert image["ImageId"] in posts(app, "is making AMI")[-1].text


def test_help_shows_the_account_flags(app):
    for subcommand, words in (("launch", "to launch into"), ("list", "only this managed account"),
                              ("create", "the image is made in"), ("rollback", "promoted in several")):
        text = json.dumps(app.command(f"help {subcommand}").json())  # help is in the ack
        assert "--account" in text and words in text, subcommand


def test_promotions_from_before_accounts_are_the_bots_own_accounts(app, aws):
    one = seed.image(aws, "web-1", tags={"Family": "web", "Version": "1"})
    two = seed.image(aws, "web-2", tags={"Family": "web", "Version": "2"})
    app.command(f"promote {one}")
    app.ctx.store.execute("UPDATE promotions SET account = ''")  # as migration 14 leaves rows written before it
    app.command(f"promote {two}")
    assert f"was `{one}`" in posts(app, "promoted")[-1].text
    app.command("rollback web")  # the old row and the new one are both the bake account's: one place
    assert f"current is `{one}`" in posts(app, "rolled family")[-1].text
    assert parameter(aws) == one


# --- stages ----------------------------------------------------------------------------------------------

def test_stage_commands_act_in_the_account_that_owns_the_image(app, aws, prod):
    image_id = seed.image(prod, "api-v5", tags={"Family": "api"})
    app.command(f"disable {image_id}")
    [image] = prod.client("ec2").describe_images(ImageIds=[image_id], IncludeDisabled=True)["Images"]
    assert image["State"] == "disabled"
    assert audit_detail(app, "command.disable")["account"] == PROD
    app.command(f"enable {image_id}")
    [image] = prod.client("ec2").describe_images(ImageIds=[image_id])["Images"]
    assert image["State"] == "available"


def test_the_current_version_in_prod_needs_approval_with_the_account_in_the_request(app, aws, prod):
    image_id = seed.image(prod, "api-v6", tags={"Family": "api"})
    app.command(f"promote {image_id}")
    app.command(f"disable {image_id}")
    assert "needs approval" in app.last_reply().text
    request = app.ctx.store.query("SELECT * FROM requests ORDER BY created_at DESC")[0]
    assert json.loads(request["params"])["account"] == PROD
    approval = next(c for c in posts(app) if request["id"] in c.text and "Approve" in c.text)
    app.click("approval.approve", value=request["id"], user="U0LEAD", channel="C0OPS", message_ts=approval.ts)
    [image] = prod.client("ec2").describe_images(ImageIds=[image_id], IncludeDisabled=True)["Images"]
    assert image["State"] == "disabled"


def test_account_flags_without_accounts_configured_say_so(harness, aws):
    seed.image(aws, "web-1")
    harness.command("list --account prod")
    assert "No accounts are configured" in harness.last_reply().text
    harness.command("list")  # and without the flag nothing changed: no account column
    assert "· us-east-1 ·" in harness.last_reply().text and "bake" not in harness.last_reply().text
