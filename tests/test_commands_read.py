"""`/ami help`, `list` and `show` end to end: signed HTTP in, fake Slack out, moto behind."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.support import seed


def test_help_is_in_the_ack_and_lists_every_subcommand(harness):
    response = harness.command("help")
    assert response.status == 200
    body = response.json()
    assert body["response_type"] == "ephemeral"
    text = " ".join(block.get("text", {}).get("text", "") for block in body["blocks"])
    for spec in harness.ctx.registry.specs:
        assert f"`{spec.name}`" in text
    assert "e.g." in text
    assert "&lt;subcommand&gt;" in str(body["blocks"]) and "<" not in str(body["blocks"])  # Slack: <…> is a link
    assert harness.replies() == []  # no second copy through response_url


def test_bare_ami_shows_help(harness):
    body = harness.command("").json()
    assert "/ami list" in str(body["blocks"])


def test_unknown_subcommand_suggests_the_close_one(harness):
    assert harness.command("lsit").status == 200
    reply = harness.last_reply()
    assert "Unknown subcommand `lsit`" in reply.text
    assert "Did you mean `list`?" in reply.text
    assert "/ami list [text] [--region R]" in reply.text  # the suggestion's own usage…
    assert "/ami show" not in reply.text  # …not the whole help


def test_list_shows_own_images_newest_first_across_regions(harness, aws):
    now = datetime.now(UTC)
    old = seed.image(aws, "web-2024-01-01", tags={"Family": "web", "Version": "1"}, created=now - timedelta(days=400))
    new = seed.image(aws, "web-2025-06-01", tags={"Family": "web", "Version": "2"}, created=now - timedelta(days=3))
    europe = seed.image(aws, "api-v7", region="eu-west-1", created=now - timedelta(days=10))
    harness.command("list")
    text = harness.last_reply().text
    assert text.index(new) < text.index(europe) < text.index(old)
    assert "eu-west-1" in text and "family *web* v2" in text
    assert "13mo" in text and "3d" in text
    assert "private" in text


def test_list_filters_by_text_and_region(harness, aws):
    seed.image(aws, "web-1")
    seed.image(aws, "db-1", tags={"Team": "storage"})
    seed.image(aws, "db-2", region="eu-west-1")
    harness.command("list storage")
    text = harness.last_reply().text
    assert "db-1" in text and "web-1" not in text and "db-2" not in text
    harness.command("list --region eu-west-1")
    text = harness.last_reply().text
    assert "db-2" in text and "db-1" not in text


def test_long_list_shows_twenty_and_counts_the_rest(harness, aws):
    ec2 = aws.client("ec2")
    for number in range(45):
        ec2.register_image(Name=f"bulk-{number:03d}", RootDeviceName="/dev/sda1")
    harness.command("list bulk")
    reply = harness.last_reply()
    assert "45 AMIs" in reply.text
    assert "…and 25 more" in reply.text
    assert sum(reply.text.count(f"bulk-{n:03d}") for n in range(45)) == 20
    assert len(reply.params["blocks"]) <= 50
    assert all(len(b.get("text", {}).get("text", "")) <= 3000 for b in reply.params["blocks"])


def test_show_describes_image_with_usage_and_shares(harness, aws):
    ec2 = aws.client("ec2")
    source = seed.instance(aws)
    image_id = seed.image(aws, "web-v3", tags={"Family": "web", "Owner": "platform"}, from_instance=source)
    running = seed.instance(aws, image_id=image_id)
    seed.launch_template(aws, "web-lt", image_id)
    ec2.modify_image_attribute(ImageId=image_id, LaunchPermission={"Add": [{"UserId": "210987654321"}]})
    harness.command(f"show {image_id}")
    text = harness.last_reply().text
    assert image_id in text and "web-v3" in text and "us-east-1" in text
    assert "Owner = platform" in text
    assert "/dev/sda1" in text and "snap-" in text
    assert "account `210987654321`" in text
    assert running in text and "launch template *web-lt* v1 (default and latest)" in text


def test_show_by_name_lists_when_several_match(harness, aws):
    seed.image(aws, "dup")
    seed.image(aws, "dup", region="eu-west-1")
    harness.command("show dup")
    text = harness.last_reply().text
    assert "2 AMIs are named" in text


def test_the_choices_say_what_list_says_about_sharing(harness, aws):
    """One truth per number: an image shared with one account is "shared (1)" in the ambiguity list as in
    `/ami list` — never "private" because the choices did not look."""
    shared = seed.image(aws, "twin")
    seed.image(aws, "twin", region="eu-west-1")
    aws.client("ec2", "us-east-1").modify_image_attribute(ImageId=shared,
                                                          LaunchPermission={"Add": [{"UserId": "210987654321"}]})
    harness.command("list twin")
    listed = next(line for line in harness.last_reply().text.splitlines() if shared in line)
    harness.command("show twin")
    chosen = next(line for line in harness.last_reply().text.splitlines() if shared in line)
    assert "shared (1)" in listed and "shared (1)" in chosen and "private" not in chosen


def test_show_unknown_image_says_so(harness, aws):
    harness.command("show ami-0123456789abcdef0")
    assert "AMI ami-0123456789abcdef0 not found in us-east-1, eu-west-1" in harness.last_reply().text


def test_every_command_is_audited(harness, aws):
    harness.command("list")
    harness.command("show ami-0123456789abcdef0")
    rows = harness.ctx.store.query("SELECT actor, action, outcome, channel FROM audit ORDER BY id")
    assert [(r["action"], r["outcome"][:5]) for r in rows] == [("command.list", "ok"), ("command.show", "error")]
    assert rows[0]["actor"] == "U0OPS" and rows[0]["channel"] == "C0OPS"
