"""The pure rules of the digest, one at a time: what is stale, what is orphaned, what it costs, and how
the message fits Slack's limits whatever the numbers. No AWS, no Slack."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest

from bot.render import digest as render
from bot.services.inventory import Inventory, Snapshot, ami_of
from bot.services.references import InstanceRef, LaunchConfigRef, TemplateRef
from bot.services.staleness import Findings, Rules, failed_region, judge
from tests.support.inventory import DESCRIPTIONS, GONE, NOW, REGION, image, inventory, snap_id

RULES = Rules(stale_after_days=90, keep_latest=2, price_per_gb_month=0.05)


def stale_ids(inv: Inventory, rules: Rules = RULES, snoozed=()) -> set[str]:
    return {item.image.id for item in judge(inv, rules, NOW, snoozed).stale}


# --- each rule on its own -------------------------------------------------------------------------------

def test_an_old_unused_image_is_stale_and_a_young_one_is_not():
    old, young = image("app-v1", 120), image("app-v2", 30)
    findings = judge(inventory([old, young]), Rules(90, 0, 0.05), NOW)
    assert [item.image.id for item in findings.stale] == [old.id]
    assert findings.stale[0].age_days == 120
    assert findings.kept["younger than stale_after_days"] == 1


def test_keep_latest_spares_the_newest_of_each_family():
    web = [image(f"web-v{n}", 100 + 10 * (5 - n)) for n in range(1, 6)]  # web-v5 is the newest
    api = [image("api-2025-01-01", 300, tags={"Family": "api"}), image("other-name", 200, tags={"Family": "api"})]
    stale = stale_ids(inventory(web + api))
    assert stale == {web[0].id, web[1].id, web[2].id}  # v4 and v5 kept; both api images kept (2 newest)
    assert stale_ids(inventory(web + api), Rules(90, 0, 0.05)) == {i.id for i in web + api}


def test_disabled_images_do_not_count_among_the_newest_and_are_marked():
    newest_disabled = image("db-v3", 100, state="disabled")
    older = [image("db-v2", 200), image("db-v1", 300)]
    findings = judge(inventory([newest_disabled, *older]), RULES, NOW)
    assert [item.image.id for item in findings.stale] == [newest_disabled.id]  # v2 and v1 are the 2 newest available
    assert findings.stale[0].disabled and findings.stale[0].note == "disabled, ready to deregister"


def _used(kind: str) -> Inventory:
    target, other = image("svc-v1", 400), image("svc-v0", 500)
    inv = inventory([target, other, image("svc-v2", 100), image("svc-v3", 95)])
    usage = inv.references.by_image[target.id]
    if kind == "instance":
        usage.instances.append(InstanceRef("i-0123456789abcdef0", "stopped"))
    elif kind == "template default":
        usage.templates.append(TemplateRef("lt-0123456789abcdef0", "svc", 1, default=True, latest=False))
    elif kind == "template latest":
        usage.templates.append(TemplateRef("lt-0123456789abcdef0", "svc", 7, default=False, latest=True))
    elif kind == "launch configuration":
        usage.launch_configs.append(LaunchConfigRef("svc-lc", ("svc-asg",)))
    inv.target, inv.other = target, other
    return inv


@pytest.mark.parametrize("kind", ["instance", "template default", "template latest", "launch configuration"])
def test_an_image_in_use_is_never_stale(kind):
    inv = _used(kind)
    stale = stale_ids(inv)
    assert inv.target.id not in stale
    assert inv.other.id in stale  # the same family's unused old image still is


def test_recently_launched_images_are_not_stale_when_aws_reports_it():
    recent = image("batch-v1", 400, last_launched_days=10)
    long_ago = image("batch-v2", 300, last_launched_days=200)
    never = image("batch-v3", 200)
    assert stale_ids(inventory([recent, long_ago, never]), Rules(90, 0, 0.05)) == {long_ago.id, never.id}


def test_snoozed_images_are_not_stale():
    first, second = image("cron-v1", 400), image("cron-v2", 300)
    inv = inventory([first, second])
    assert stale_ids(inv, Rules(90, 0, 0.05), snoozed={first.id}) == {second.id}


def test_pending_images_and_images_without_a_date_are_left_alone():
    pending = image("build-v9", 400, state="pending")
    undated = image("build-v8", 400)
    undated.created = None
    findings = judge(inventory([pending, undated]), Rules(90, 0, 0.05), NOW)
    assert findings.stale == []
    assert findings.kept == {"state pending": 1, "creation date unknown": 1}


# --- orphaned snapshots ---------------------------------------------------------------------------------


@pytest.mark.parametrize("form", DESCRIPTIONS)
def test_each_description_form_names_its_image(form):
    assert ami_of(DESCRIPTIONS[form]) == GONE


@pytest.mark.parametrize("form", DESCRIPTIONS)
def test_a_snapshot_whose_image_is_gone_is_orphaned(form):
    snapshot = Snapshot(snap_id(), REGION, 20, ami_of(DESCRIPTIONS[form]), NOW - timedelta(days=40),
                        DESCRIPTIONS[form])
    findings = judge(inventory([image("keep-v1", 10)], [snapshot]), RULES, NOW)
    assert [(o.snapshot.id, o.age_days, o.monthly_cost) for o in findings.orphans] == [(snapshot.id, 40, 1.0)]


def test_snapshots_of_existing_images_and_other_snapshots_are_not_orphaned():
    living = image("live-v1", 10)
    own = Snapshot(living.snapshot_ids[0], REGION, 10, living.id, NOW, f"Auto-created snapshot for AMI {living.id}")
    reused = Snapshot(snap_id(), REGION, 10, GONE, NOW, DESCRIPTIONS["create-image"])
    sharing = image("shares-v1", 10, snapshot_ids=[reused.id])  # another image still references it
    backup = Snapshot(snap_id(), REGION, 10, ami_of("nightly backup of vol-1"), NOW, "nightly backup of vol-1")
    disabled = image("off-v1", 10, state="disabled")
    of_disabled = Snapshot(snap_id(), REGION, 10, disabled.id, NOW, f"Auto-created snapshot for AMI {disabled.id}")
    findings = judge(inventory([living, sharing, disabled], [own, reused, backup, of_disabled]), RULES, NOW)
    assert findings.orphans == []
    assert backup.ami_id is None


# --- cost -----------------------------------------------------------------------------------------------

def test_cost_is_size_times_price_and_totals_count_each_snapshot_once():
    rules = Rules(stale_after_days=90, keep_latest=0, price_per_gb_month=0.05)
    two_disks = image("two-v1", 200, sizes=(8, 20))  # 28 GiB → $1.40
    shared = snap_id()
    first = image("pair-a-v1", 200, snapshot_ids=[shared], sizes=(30,))
    second = image("pair-b-v1", 200, snapshot_ids=[shared], sizes=(30,))
    held = snap_id()
    stale_holder = image("held-a-v1", 200, snapshot_ids=[held], sizes=(50,))
    keeper = image("held-b-v1", 10, snapshot_ids=[held], sizes=(50,))  # young: kept, so `held` is not freed
    orphan = Snapshot(snap_id(), REGION, 100, GONE, NOW, DESCRIPTIONS["register-image"])
    findings = judge(inventory([two_disks, first, second, stale_holder, keeper], [orphan]), rules, NOW)
    costs = {item.image.id: (item.size_gb, round(item.monthly_cost, 2)) for item in findings.stale}
    assert costs[two_disks.id] == (28, 1.40)
    assert costs[first.id] == costs[second.id] == (30, 1.50)  # an image costs the sum of its snapshots
    assert costs[stale_holder.id] == (50, 2.50)
    assert findings.orphans[0].monthly_cost == pytest.approx(5.0)
    # freed: 28 + 30 (shared, once) + 100 (orphan); `held` stays for the kept image
    assert findings.saving_gb == 158
    assert findings.monthly_cost == pytest.approx(7.90)
    assert [item.image.id for item in findings.stale][:1] == [stale_holder.id]  # costliest first


def test_the_snapshot_list_size_wins_over_the_mapping_size():
    item = image("sized-v1", 200, sizes=(8,))
    listed = Snapshot(item.snapshot_ids[0], REGION, 12, item.id, NOW, f"Auto-created snapshot for AMI {item.id}")
    findings = judge(inventory([item], [listed]), Rules(90, 0, 0.10), NOW)
    assert findings.stale[0].size_gb == 12 and findings.stale[0].monthly_cost == pytest.approx(1.2)


def _findings(stale_per_region: int, orphans_per_region: int, regions=("us-east-1", "eu-west-1")) -> Findings:
    judged = []
    for region in regions:
        images = [image(f"<!channel> {'very-long-name-' * 12}{n}-v1", 100 + n, sizes=(n % 50 + 1,), region=region)
                  for n in range(stale_per_region)]
        snapshots = [Snapshot(snap_id(), region, n % 40 + 1, GONE, NOW - timedelta(days=n), DESCRIPTIONS["copy-image"])
                     for n in range(orphans_per_region)]
        judged.append(judge(inventory(images, snapshots, region), Rules(90, 0, 0.05), NOW))
    return Findings(judged, NOW, Rules(90, 0, 0.05))


def _sections(msg: dict) -> list[str]:
    return [block["text"]["text"] for block in msg["blocks"] if block.get("text")]


def test_the_message_fits_slacks_limits_with_thousands_of_items():
    findings = _findings(2500, 1500)
    rendered = render.digest_message(findings, "2026-06-01")
    msg = rendered.message
    assert len(msg["blocks"]) <= 50
    assert all(len(text) <= 3000 for text in _sections(msg))
    values = [element["value"] for block in msg["blocks"] if block["type"] == "actions"
              for element in block["elements"]]
    assert values and all(len(value) <= 2000 for value in values)
    assert len({block.get("block_id") for block in msg["blocks"] if block.get("block_id")}) == \
        len([block for block in msg["blocks"] if block.get("block_id")])
    shown = len(rendered.shown_images) + sum(len(items) for items in rendered.shown_orphans.values())
    assert rendered.more == 5000 + 3000 - shown > 0
    text = " ".join(_sections(msg)) + " ".join(e["text"] for b in msg["blocks"] if b["type"] == "context"
                                               for e in b["elements"])
    assert f"and {rendered.more:,} more" in text
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text
    assert "5,000 stale images" in text and "3,000 orphaned snapshots" in text
    # the listed images are the costliest, and each has both buttons
    costliest = max(item.monthly_cost for item in findings.stale)
    assert rendered.shown_images[0].monthly_cost == costliest
    action_ids = [e["action_id"] for b in msg["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert action_ids.count(render.DEREGISTER) == action_ids.count(render.SNOOZE) == len(rendered.shown_images)
    assert action_ids.count(render.CLEANUP) == 2
    cleanup = [e["value"] for b in msg["blocks"] if b["type"] == "actions" for e in b["elements"]
               if e["action_id"] == render.CLEANUP]
    assert cleanup[0].split(":")[1].split(",") == [o.snapshot.id for o in rendered.shown_orphans[cleanup[0][:9]]]


def test_totals_per_region_come_first():
    findings = _findings(3, 2)
    msg = render.digest_message(findings, "2026-06-01").message
    texts = _sections(msg)
    region_text = next(text for text in texts if "us-east-1" in text and "eu-west-1" in text)
    assert texts.index(region_text) < next(i for i, t in enumerate(texts) if "days old" in t)
    assert "3 stale images" in region_text and "2 orphaned snapshots" in region_text


def test_nothing_stale_is_a_short_all_clean_line():
    findings = Findings([judge(inventory([image("fresh-v1", 5)]), RULES, NOW)], NOW, RULES)
    rendered = render.digest_message(findings, "2026-06-01")
    assert rendered.more == 0 and len(rendered.message["blocks"]) == 1
    assert "all clean" in rendered.message["text"] and "1 image checked" in _sections(rendered.message)[0]


def test_regions_that_could_not_be_checked_are_never_called_clean():
    denied = "AWS denied ec2:DescribeImages in eu-west-1 — check the bot's IAM role"
    partly = Findings([judge(inventory([image("fresh-v1", 5)]), RULES, NOW), failed_region("eu-west-1", denied)],
                      NOW, RULES)
    text = str(render.digest_message(partly, "2026-06-01").message["blocks"])
    assert "All clean" in text and "in us-east-1 (" in text and "eu-west-1*: not checked" in text
    nothing = Findings([failed_region("us-east-1", denied), failed_region("eu-west-1", denied)], NOW, RULES)
    msg = render.digest_message(nothing, "2026-06-01").message
    assert "clean" not in msg["text"].replace("nothing is known to be clean", "")
    assert "no region could be checked" in msg["text"] and msg["text"].count("denied") == 0
    assert " ".join(_sections(msg)).count("AWS denied") == 2


def test_the_csv_lists_everything_and_defuses_formulas():
    findings = _findings(30, 10, regions=("us-east-1",))
    formula = judge(inventory([image("=HYPERLINK(\"http://evil\")", 200)]), Rules(90, 0, 0.05), NOW)
    findings.regions[0].stale.extend(formula.stale)
    rows = list(csv.DictReader(io.StringIO(render.as_csv(findings))))
    assert len(rows) == 41
    assert {row["kind"] for row in rows} == {"image", "snapshot"}
    expected = sum(i.monthly_cost for i in findings.stale) + sum(o.monthly_cost for o in findings.orphans)
    assert sum(float(row["monthly_cost_usd"]) for row in rows) == pytest.approx(expected)
    assert any(row["name"].startswith("'=HYPERLINK") for row in rows)
    assert all(row["image_id"] == GONE for row in rows if row["kind"] == "snapshot")
