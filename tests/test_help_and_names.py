"""Help for one subcommand, mistyped subcommands, names that match several images, copies onto a name
that exists, and audit rows that name what each command was about."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.support import seed


def _ack_text(response) -> str:
    body = response.json()
    return " ".join(block.get("text", {}).get("text", "") for block in body["blocks"])


def test_help_for_one_subcommand_lists_its_flags_with_their_meaning_in_the_ack(harness):
    response = harness.command("help copy")
    text = _ack_text(response)
    assert response.json()["response_type"] == "ephemeral"
    assert "*/ami copy*" in text and "Usage: `/ami copy &lt;ami-id|name&gt; &lt;region&gt;" in text
    assert "`--kms-key K` — the KMS key for --encrypt" in text
    assert "`--force` — copy even when the destination already has an image of that name" in text
    assert "Example: `/ami copy ami-0abc1234def567890 eu-west-2 --encrypt`" in text
    assert "/ami list" not in text  # only the one asked about
    assert harness.replies() == []  # answered in the ack, nothing after


@pytest.mark.parametrize("text", ["launch --help", "deregister -h"])
def test_dash_dash_help_after_a_subcommand_gives_the_same_help(harness, text):
    harness.command(text)
    reply = harness.last_reply().text
    name = text.split()[0]
    assert f"*/ami {name}*" in reply and "Options:" in reply and "Example:" in reply


def test_every_flag_of_every_subcommand_has_a_meaning(harness):
    from bot.slack.subcommands import flag_doc

    missing = [(spec.name, flag) for spec in harness.ctx.registry.specs for flag in spec.flags
               if not flag_doc(spec, flag)]
    assert missing == []


def test_help_for_an_unknown_subcommand_suggests_the_close_one(harness):
    harness.command("help promot")
    reply = harness.last_reply().text
    assert "Unknown subcommand `promot`. Did you mean `promote`?" in reply
    assert "/ami promote &lt;ami-id|name&gt;" in reply


def test_a_word_like_no_subcommand_gets_the_names_on_one_line_not_the_whole_help(harness):
    harness.command("xyzzy")
    reply = harness.last_reply()
    assert "Unknown subcommand `xyzzy`. Subcommands: list, show, versions" in reply.text
    assert "amibot — AMIs from Slack" not in reply.text
    assert len(reply.params["blocks"]) <= 2


def test_launch_by_a_name_that_two_images_share_asks_which_with_ids_regions_and_dates(harness, aws):
    now = datetime.now(UTC)
    here = seed.image(aws, "web-golden", created=now - timedelta(days=40))
    there = seed.image(aws, "web-golden", region="eu-west-1", created=now - timedelta(days=2))
    harness.command("launch web-golden")
    reply = harness.last_reply().text
    assert "2 AMIs are named “web-golden”; say which one by id" in reply
    assert f"`{here}` · us-east-1 · created {(now - timedelta(days=40)).strftime('%Y-%m-%d')}" in reply
    assert f"`{there}` · eu-west-1 · created {(now - timedelta(days=2)).strftime('%Y-%m-%d')}" in reply
    ec2 = aws.client("ec2")
    launched = [i for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]
                if i["ImageId"] in (here, there)]
    assert launched == []  # nothing was launched from either


def test_copy_onto_a_name_the_destination_already_has_needs_force(harness, aws):
    source = seed.image(aws, "api-7")
    existing = seed.image(aws, "api-7", region="eu-west-1")
    harness.command(f"copy {source} eu-west-1")
    reply = harness.last_reply().text
    assert "eu-west-1 already has an image named “api-7”" in reply and existing in reply
    assert "`--force`" in reply
    west = aws.client("ec2", "eu-west-1")
    names = [i["ImageId"] for i in west.describe_images(Owners=["self"])["Images"] if i["Name"] == "api-7"]
    assert names == [existing]  # no copy was started

    harness.command(f"copy {source} eu-west-1 --force")
    copies = [i["ImageId"] for i in west.describe_images(Owners=["self"])["Images"] if i["Name"] == "api-7"]
    assert len(copies) == 2
    posted = harness.fake.calls_to("chat.postMessage")[-1]
    assert "already had an image of this name" in str(posted.params)


def test_audit_rows_name_the_target_of_every_command(harness, aws):
    image_id = seed.image(aws, "web-9", tags={"Family": "web"})
    harness.command("show web-9")
    harness.command("versions web")
    harness.command("list web")
    rows = harness.ctx.store.query("SELECT action, target FROM audit WHERE action LIKE 'command.%' ORDER BY id")
    assert [(row["action"], row["target"]) for row in rows] == [
        ("command.show", image_id), ("command.versions", "web"), ("command.list", "web")]


def test_versions_counts_a_version_copied_to_another_region_once(harness, aws):
    source = seed.instance(aws)
    v1 = seed.image(aws, "web-1", tags={"Family": "web", "Version": "1"}, from_instance=source)
    seed.image(aws, "web-2", tags={"Family": "web", "Version": "2"}, from_instance=source)
    seed.image(aws, "web-1", region="eu-west-1", tags={"Family": "web", "Version": "1",
                                                       "amibot:copied-from": f"{v1}@us-east-1"})
    harness.command("versions web")
    text = harness.last_reply().text
    assert "Family *web*: 2 versions (3 images in 2 regions), newest first" in text


def test_launch_form_says_current_version_only_for_promoted_families(harness, aws):
    from bot.render.launch import launch_modal
    from bot.services.images import list_images

    seed.image(aws, "web-1", tags={"Family": "web"})
    seed.image(aws, "api-1", tags={"Family": "api", "amibot:current": "true"})
    images, _ = list_images(harness.ctx.aws, "Family")
    view = launch_modal(images, ["web", "api"], "t3.micro", datetime.now(UTC), "C0OPS", promoted={"api"})
    labels = [option["text"]["text"] for group in view["blocks"][0]["element"]["option_groups"]
              for option in group["options"]]
    assert "api (current version)" in labels and "web (newest version)" in labels


def test_a_mistyped_flag_gets_the_closest_flag_of_that_subcommand(harness):
    harness.command("deregister ami-0abc1234def567890 --keep-snapshot")
    reply = harness.last_reply().text
    assert "`deregister` has no option `--keep-snapshot`. Did you mean `--keep-snapshots`?" in reply
    assert "Usage: `/ami deregister" in reply


def test_a_mistyped_flag_is_matched_against_that_subcommands_flags_only(harness):
    harness.command("list --regoin us-east-1")
    assert "Did you mean `--region`?" in harness.last_reply().text
    harness.command("list --keep-snapshots")  # a flag of deregister, not of list
    reply = harness.last_reply().text
    assert "`list` has no option `--keep-snapshots`." in reply and "Did you mean" not in reply


def test_a_flag_like_nothing_declared_gets_no_suggestion(harness):
    harness.command("deregister ami-0abc1234def567890 --xyzzy")
    reply = harness.last_reply().text
    assert "`deregister` has no option `--xyzzy`." in reply and "Did you mean" not in reply


def test_versions_without_a_family_lists_the_families_with_their_versions(harness, aws):
    seed.image(aws, "web-1", tags={"Family": "web", "Version": "1"})
    seed.image(aws, "web-2", tags={"Family": "web", "Version": "2", "amibot:current": "true"})
    seed.image(aws, "api-1", tags={"Family": "api", "Version": "1"})
    harness.command("versions")
    reply = harness.last_reply().text
    assert "needs a family" not in reply
    assert "image families owned by this account in us-east-1, eu-west-1" in reply  # (seed's base image: one more)
    assert "*api* · 1 version" in reply and "*web* · 2 versions · current 2" in reply
    assert "`/ami versions web`" in reply


def test_versions_without_a_family_when_there_are_no_images_says_where_it_looked(harness):
    harness.command("versions")
    reply = harness.last_reply().text
    assert "No image families" in reply and "us-east-1" in reply


def test_show_of_a_family_name_points_at_versions(harness, aws):
    seed.image(aws, "web-1", tags={"Family": "web", "Version": "1"})
    harness.command("show web")
    reply = harness.last_reply().text
    assert "not found" in reply and "`web` is an image family: `/ami versions web` lists its versions." in reply


def test_no_amis_names_the_regions_looked_in(harness):
    harness.command("list")
    assert "No AMIs owned by this account in us-east-1, eu-west-1." in harness.last_reply().text


def test_help_groups_the_subcommands_by_stage_in_a_short_message_with_an_example_each(harness):
    from bot.slack.subcommands import STAGES

    response = harness.command("help")
    blocks = response.json()["blocks"]
    text = "\n".join([block.get("text", {}).get("text", "") for block in blocks]
                     + [element["text"] for block in blocks for element in block.get("elements", [])])
    text = text.replace("&amp;", "&")  # "Create &amp; bake" in mrkdwn
    lines = text.splitlines()
    stage_lines = [next(line for line in lines if line.startswith(f"*{stage.capitalize()}*")) for stage in STAGES]
    assert [lines.index(line) for line in stage_lines] == sorted(lines.index(line) for line in stage_lines)
    assert "*Find* `list` · `show` · `versions`" in text
    assert "*Retire* `deprecate` · " in text and "`deregister`" in stage_lines[4]
    for line in stage_lines:  # each stage with one example, right under it
        assert lines[lines.index(line) + 1].strip().startswith("e.g. `/ami ")
    assert "e.g. `/ami list web --region eu-west-1`" in text
    assert "`/ami help &lt;subcommand&gt;`" in text
    assert len(text) < 1800 and len(response.json()["blocks"]) <= 4  # fits a screen, not a page of usages


def test_every_subcommand_declares_its_stage(harness):
    from bot.slack.subcommands import STAGES

    assert [spec.name for spec in harness.ctx.registry.specs if spec.stage not in STAGES] == []


def test_a_refusal_names_the_operators_as_mentions_posted_ephemerally(make_harness):
    harness = make_harness({"aws": {"regions": ["us-east-1"]}, "access": {"operators": ["U0OPS", "S0LEADS"]}})
    harness.command("deregister ami-0abc1234def567890", user="U0NOBODY")
    reply = harness.last_reply()
    assert "Only amibot operators may run `/ami deregister`." in reply.text
    assert "Operators: <@U0OPS>, <!subteam^S0LEADS>; ask one of them" in reply.text
    assert reply.params.get("response_type") == "ephemeral"  # mentions shown as names, nobody notified


def test_a_flag_typed_with_one_dash_gets_the_two_dash_flag(harness):
    harness.command("deregister ami-0abc1234def567890 -keep-snapshots")
    reply = harness.last_reply().text
    assert "`deregister` has no option `-keep-snapshots`. Did you mean `--keep-snapshots`?" in reply
