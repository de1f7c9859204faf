"""Issue 23 §1, the approval engine: a request that changes several accounts (a rollout across prod and staging) is
approved only when EVERY account it changes has its own approval — from that account's approvers, never the
requester — and one person who may approve in both covers both with one click. Through the real app: the request's
message, the clicker's answer, the Home tab, the audit trail and what AWS was asked to do."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

import botocore.handlers
import pytest
from botocore.awsrequest import AWSResponse

from tests.support import seed
from tests.support.approvals import approval_message, last_update
from tests.support.home import open_home, view_text
from tests.support.rollout import group, shared_family, template

REGION = "us-east-1"
PROD_LABEL, STAGING_LABEL = f"prod ({seed.PROD})", f"staging ({seed.STAGING})"


def policy(prod: list[str], staging: list[str]) -> dict:
    """Three accounts; U0OPS operates everywhere; prod's and staging's own approvers as given."""
    data = seed.three_accounts([REGION], access={"operators": ["U0OPS"]}, approvals={"approvers": ["U0LEAD"]})
    for account in data["accounts"]:
        if account["name"] == "prod":
            account["approvers"] = prod
        if account["name"] == "staging":
            account["approvers"] = staging
    return data


@pytest.fixture
def refreshes(monkeypatch):
    """Instance refresh as AWS answers it (moto has none): each start is recorded and at once Successful."""
    started: dict[str, str] = {}

    def respond(parsed: dict):
        return AWSResponse(f"https://autoscaling.{REGION}.amazonaws.com/", 200, {}, None), {
            **parsed, "ResponseMetadata": {"HTTPStatusCode": 200}}

    def start(params, **_):
        name = (params.get("body") or {}).get("AutoScalingGroupName")
        started[name] = f"0a1b2c3d-4e5f-4a6b-8c7d-{len(started):012d}"
        return respond({"InstanceRefreshId": started[name]})

    def describe(params, **_):
        name = (params.get("body") or {}).get("AutoScalingGroupName")
        items = [{"InstanceRefreshId": started[name], "AutoScalingGroupName": name, "Status": "Successful",
                  "PercentageComplete": 100, "InstancesToUpdate": 0,
                  "StartTime": datetime.now(UTC)}] if name in started else []
        return respond({"InstanceRefreshes": items})

    monkeypatch.setattr(botocore.handlers, "BUILTIN_HANDLERS", [
        *botocore.handlers.BUILTIN_HANDLERS,
        ("before-call.autoscaling.StartInstanceRefresh", start),
        ("before-call.autoscaling.DescribeInstanceRefreshes", describe)])
    return started


def rollout_request(aws, make_harness, prod: list[str], staging: list[str], requester: str = "U0OPS"):
    """web pinned to its old version in one group of prod and one of staging; `/ami rollout web` asked for."""
    old, _new = shared_family(aws)
    for account, name in ((seed.PROD, "web-prod"), (seed.STAGING, "web-staging")):
        session = seed.account_session(aws, account)
        group(session, name, [old], LaunchTemplate={"LaunchTemplateId": template(session, f"{name}-lt", old),
                                                    "Version": "1"})
    app = make_harness(policy(prod, staging))
    app.ctx.waits = dataclasses.replace(app.ctx.waits, rollout_poll_seconds=0.05)
    app.command("rollout web", user=requester)
    message, request_id = approval_message(app.fake)
    params = json.loads(app.ctx.store.one("SELECT params FROM requests WHERE id = ?", (request_id,))["params"])
    assert params["accounts"] == [seed.PROD, seed.STAGING]  # one request changing both accounts
    return app, message, request_id


def click(app, request_id: str, user: str, message) -> str:
    app.click("approval.approve", request_id, user=user, message_ts=message.ts)
    app.wait_idle()
    return app.last_reply().text


def state(app, request_id: str) -> str:
    return app.ctx.store.one("SELECT state FROM requests WHERE id = ?", (request_id,))["state"]


def audit_rows(app, action: str) -> list[dict]:
    rows = app.ctx.store.query("SELECT * FROM audit WHERE action = ? ORDER BY id", (action,))
    return [{**row, "detail": json.loads(row["detail"])} for row in rows]


def test_each_account_it_changes_needs_its_own_approver_and_it_executes_once_when_both_have(
        aws, make_harness, refreshes):
    app, message, request_id = rollout_request(aws, make_harness, prod=["U0BOB"], staging=["U0DAVE"])
    needs = message.text
    assert PROD_LABEL in needs and STAGING_LABEL in needs
    assert "<@U0BOB>" in needs and "<@U0DAVE>" in needs  # who may approve, per account

    answer = click(app, request_id, "U0BOB", message)  # prod's approver
    assert state(app, request_id) == "pending" and refreshes == {}
    assert f"{STAGING_LABEL} still needs an approval from <@U0DAVE>" in answer
    shown = last_update(app.fake, message.ts).text
    assert f"{STAGING_LABEL} still needs an approval from <@U0DAVE>" in shown
    assert f"{PROD_LABEL} still needs" not in shown
    [approval] = audit_rows(app, "request.approval")
    assert approval["detail"]["covered"] == [seed.PROD] and PROD_LABEL in approval["detail"]["covered_labels"]

    # The Home tab: staging's approver has it waiting for them; prod's approver (already covered) no longer
    waiting = view_text(open_home(app, "U0DAVE")[-1])
    assert request_id in waiting and f"{STAGING_LABEL} still needs an approval from <@U0DAVE>" in waiting
    assert request_id not in view_text(open_home(app, "U0BOB")[-1])

    answer = click(app, request_id, "U0LEAD", message)  # a global approver: neither account's
    assert "not an approver" in answer and f"{STAGING_LABEL} still needs an approval from <@U0DAVE>" in answer
    assert state(app, request_id) == "pending"

    answer = click(app, request_id, "U0DAVE", message)
    assert state(app, request_id) == "succeeded"
    assert sorted(refreshes) == ["web-prod", "web-staging"]  # one refresh per group, in each account
    assert len(audit_rows(app, "request.executing")) == 1
    [_, second] = audit_rows(app, "request.approval")
    assert second["detail"]["covered"] == [seed.STAGING]
    [approved] = audit_rows(app, "request.approved")
    assert approved["actor"] == "U0DAVE" and approved["detail"]["approvers"] == ["U0BOB", "U0DAVE"]

    click(app, request_id, "U0DAVE", message)  # a late double click changes nothing
    assert len(audit_rows(app, "request.executing")) == 1 and len(refreshes) == 2


def test_an_approver_whose_accounts_already_have_their_approval_is_told_what_it_waits_for(
        aws, make_harness, refreshes):
    app, message, request_id = rollout_request(aws, make_harness, prod=["U0BOB", "U0CAROL"], staging=["U0DAVE"])
    click(app, request_id, "U0BOB", message)
    answer = click(app, request_id, "U0CAROL", message)  # prod's other approver: prod already has its approval
    assert f"already has {PROD_LABEL}'s approval" in answer and f"waiting for {STAGING_LABEL}'s" in answer
    assert "<@U0DAVE>" in answer
    assert state(app, request_id) == "pending" and refreshes == {}
    assert len(audit_rows(app, "request.approval")) == 1  # nothing recorded for the extra click


def test_the_requester_who_approves_in_one_of_the_accounts_cannot_approve(aws, make_harness, refreshes):
    app, message, request_id = rollout_request(aws, make_harness, prod=["U0BOB", "U0OPS"], staging=["U0DAVE"])
    answer = click(app, request_id, "U0OPS", message)
    assert "someone else has to approve it" in answer
    assert app.ctx.store.query("SELECT * FROM approvals") == []
    answer = click(app, request_id, "U0DAVE", message)  # staging approved; prod still needs bob, not the requester
    assert f"{PROD_LABEL} still needs an approval from <@U0BOB>" in answer and "<@U0OPS>" not in answer
    assert state(app, request_id) == "pending" and refreshes == {}
    click(app, request_id, "U0BOB", message)
    assert state(app, request_id) == "succeeded" and len(refreshes) == 2


def test_one_approver_of_both_accounts_approves_with_one_click(aws, make_harness, refreshes):
    app, message, request_id = rollout_request(aws, make_harness, prod=["U0BOB", "U0CAROL"],
                                               staging=["U0DAVE", "U0CAROL"])
    click(app, request_id, "U0CAROL", message)
    assert state(app, request_id) == "succeeded" and sorted(refreshes) == ["web-prod", "web-staging"]
    [approval] = audit_rows(app, "request.approval")
    assert approval["detail"]["covered"] == [seed.PROD, seed.STAGING]


def test_the_reminder_names_who_is_still_needed(aws, make_harness, refreshes):
    from datetime import timedelta

    from bot.services import approvals

    app, message, request_id = rollout_request(aws, make_harness, prod=["U0BOB"], staging=["U0DAVE"])
    click(app, request_id, "U0BOB", message)
    later = app.ctx.clock() + timedelta(hours=app.ctx.policy.approvals.remind_after_hours + 1)
    app.ctx.clock = lambda: later
    assert approvals.sweep(app.ctx)["reminded"] == 1
    app.wait_idle()
    [reminder] = [c.text for c in app.fake.calls_to("chat.postMessage") if c.params.get("thread_ts")
                  and ":bell:" in c.text]
    assert "<@U0DAVE>" in reminder and "<@U0BOB>" not in reminder and STAGING_LABEL in reminder


def test_both_accounts_approvers_clicking_at_once_decide_it_exactly_once(aws, make_harness, refreshes):
    app, message, request_id = rollout_request(aws, make_harness, prod=["U0BOB"], staging=["U0DAVE"])
    for user in ("U0BOB", "U0DAVE", "U0BOB", "U0DAVE"):  # both, each twice (a double click), without waiting
        app.click("approval.approve", request_id, user=user, message_ts=message.ts, wait=False)
    app.wait_idle()
    assert state(app, request_id) == "succeeded"
    [approved] = audit_rows(app, "request.approved")
    assert sorted(approved["detail"]["approvers"]) == ["U0BOB", "U0DAVE"]
    assert len(audit_rows(app, "request.executing")) == 1 and sorted(refreshes) == ["web-prod", "web-staging"]
