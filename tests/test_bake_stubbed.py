"""`/ami bake` by an Image Builder pipeline and by an SSM Automation runbook, through the real app over HTTP, with
botocore's Stubber answering Image Builder and SSM (moto has neither) and moto everything EC2."""

from __future__ import annotations

import dataclasses

import pytest
from botocore.stub import ANY

from tests.support import seed
from tests.support.approvals import approval_message
from tests.support.harness import AppWithAws
from tests.support.stubs import StubbedBake
from tests.support.waiting import until

PIPELINE = "arn:aws:imagebuilder:us-east-1:123456789012:image-pipeline/web"
BUILD = "arn:aws:imagebuilder:us-east-1:123456789012:image/web/1.0.0/7"
EXECUTION = "0123abcd-0123-4567-89ab-0123456789ab"
ROLE = "arn:aws:iam::123456789012:role/AutomationServiceRole"
REGIONS = ["us-east-1", "eu-west-1"]


def policy(**bake):
    return {"aws": {"regions": REGIONS}, "access": {"operators": ["U0OPS", "U0LEAD"]},
            "approvals": {"approvers": ["U0LEAD"]}, "bakes": [{"family": "web", "region": "us-east-1", **bake}]}


@pytest.fixture
def stubbed_app(aws, fake_slack, tmp_path):
    started = []

    def start(policy_data, ssm=False, poll=0.02, db="amibot.db", layer=None):
        layer = layer or StubbedBake(REGIONS, ssm=ssm)
        running = AppWithAws(fake_slack, str(tmp_path / db), policy_data, aws_layer=layer).start()
        running.ctx.waits = dataclasses.replace(running.ctx.waits, bake_poll_seconds=poll, create_poll_seconds=0.02,
                                                create_wait_seconds=5.0)
        started.append(running)
        return running, layer

    yield start
    for running in started:
        running.stop()


def image_state(status, amis=()):
    image = {"state": {"status": status}}
    if amis:
        image["outputResources"] = {"amis": [{"region": "us-east-1", "image": ami} for ami in amis]}
    return {"image": image}


def messages(harness):
    posts = [c for c in harness.fake.calls_to("chat.postMessage") if "Bake of" in c.text]
    updates = [c for c in harness.fake.calls_to("chat.update") if "Bake of" in c.text]
    return posts, updates


def tags_of(aws, image_id, region="us-east-1"):
    image = aws.client("ec2", region).describe_images(ImageIds=[image_id])["Images"][0]
    return {tag["Key"]: tag["Value"] for tag in image.get("Tags", [])}


def test_a_pipeline_bake_shows_each_stage_and_its_output_joins_the_family(stubbed_app, aws):
    seed.family(aws, ["web-12"], name="web")
    output = seed.image(aws, "web-pipeline-output")
    app, layer = stubbed_app(policy(pipeline=PIPELINE))
    stub = layer.ib_stub
    stub.add_response("start_image_pipeline_execution",
                      {"requestId": "r-1", "clientToken": "t", "imageBuildVersionArn": BUILD},
                      {"imagePipelineArn": PIPELINE, "clientToken": ANY})
    for status in ("BUILDING", "TESTING", "DISTRIBUTING"):
        stub.add_response("get_image", image_state(status), {"imageBuildVersionArn": BUILD})
    stub.add_response("get_image", image_state("AVAILABLE", [output]), {"imageBuildVersionArn": BUILD})
    app.command("bake web")
    stub.assert_no_pending_responses()
    posts, updates = messages(app)
    assert len(posts) == 1
    final = updates[-1].text
    assert "Image Builder pipeline web" in final and "BUILDING → TESTING → DISTRIBUTING → AVAILABLE" in final
    assert "imagebuilder/home?region=us-east-1" in str(updates[-1].params["blocks"])
    assert tags_of(aws, output)["Version"] == "web-13" and tags_of(aws, output)["Family"] == "web"
    _, request_id = approval_message(app.fake)
    assert request_id.startswith("req-")


def test_the_client_token_is_the_same_for_the_same_bake(stubbed_app, aws):
    from bot.services.bake import bake_id_for, client_token

    first = client_token(bake_id_for("command:123.456"))
    assert first == client_token(bake_id_for("command:123.456")) and len(first) == 36
    assert first != client_token(bake_id_for("command:123.457"))


def test_an_automation_bake_patches_the_current_version_and_tags_its_lineage(stubbed_app, aws):
    [current] = seed.family(aws, ["1.4.2"], name="web")
    output = seed.image(aws, "web-patched")
    app, layer = stubbed_app(policy(automation="AWS-UpdateLinuxAmi", parameters={
        "IamInstanceProfileName": "ManagedInstanceProfile", "AutomationAssumeRole": ROLE}), ssm=True)
    stub = layer.ssm_stub
    stub.add_response("start_automation_execution", {"AutomationExecutionId": EXECUTION},
                      {"DocumentName": "AWS-UpdateLinuxAmi", "ClientToken": ANY, "Parameters": {
                          "SourceAmiId": [current], "IamInstanceProfileName": ["ManagedInstanceProfile"],
                          "AutomationAssumeRole": [ROLE]}})
    stub.add_response("get_automation_execution", {"AutomationExecution": {
        "AutomationExecutionStatus": "InProgress", "StepExecutions": [
            {"StepName": "launchInstance", "StepStatus": "Success"},
            {"StepName": "updateOSSoftware", "StepStatus": "InProgress"}]}}, {"AutomationExecutionId": EXECUTION})
    stub.add_response("get_automation_execution", {"AutomationExecution": {
        "AutomationExecutionStatus": "Success", "Outputs": {"createImage.ImageId": [output]}, "StepExecutions": [
            {"StepName": "launchInstance", "StepStatus": "Success"},
            {"StepName": "updateOSSoftware", "StepStatus": "Success"},
            {"StepName": "createImage", "StepStatus": "Success"}]}}, {"AutomationExecutionId": EXECUTION})
    app.command("bake web")
    stub.assert_no_pending_responses()
    final = messages(app)[1][-1].text
    assert f"runbook AWS-UpdateLinuxAmi on 1.4.2 ({current})" in final and "createImage: Success" in final
    tags = tags_of(aws, output)
    assert tags["Version"] == "1.4.3" and tags["amibot:source-image"] == current and tags["Family"] == "web"


def test_an_automation_bake_that_fails_at_a_step_says_which_and_joins_nothing(stubbed_app, aws):
    seed.family(aws, ["1.4.2"], name="web")
    app, layer = stubbed_app(policy(automation="AWS-UpdateLinuxAmi", parameters={
        "IamInstanceProfileName": "ManagedInstanceProfile", "AutomationAssumeRole": ROLE}), ssm=True)
    stub = layer.ssm_stub
    stub.add_response("start_automation_execution", {"AutomationExecutionId": EXECUTION})
    stub.add_response("get_automation_execution", {"AutomationExecution": {
        "AutomationExecutionStatus": "Failed", "FailureMessage": "Step fails when it is verifying the command",
        "StepExecutions": [{"StepName": "launchInstance", "StepStatus": "Success"},
                           {"StepName": "updateOSSoftware", "StepStatus": "Failed",
                            "FailureMessage": "yum exited with 1"}]}})
    app.command("bake web")
    final = messages(app)[1][-1].text
    assert "FAILED" in final and "Failed at *updateOSSoftware*: yum exited with 1" in final
    assert "Nothing joined the family" in final and "systems-manager/automation/execution" in str(
        messages(app)[1][-1].params["blocks"])
    rows = app.ctx.store.query("SELECT action, outcome FROM audit WHERE action = 'bake.failed'")
    assert [row["outcome"] for row in rows] == ["failed: failed at updateOSSoftware: yum exited with 1"]
    assert not [c for c in app.fake.calls_to("chat.postMessage") if "Promote" in c.text]


def test_an_automation_bake_of_a_family_without_a_current_version_says_so(stubbed_app, aws):
    app, layer = stubbed_app(policy(automation="AWS-UpdateLinuxAmi", parameters={
        "IamInstanceProfileName": "ManagedInstanceProfile", "AutomationAssumeRole": ROLE}), ssm=True)
    app.command("bake web")
    assert "web has no current version in us-east-1" in app.last_reply().text
    layer.ssm_stub.assert_no_pending_responses()


def test_cancel_stops_the_pipeline_build_and_the_message_says_so(stubbed_app, aws):
    app, layer = stubbed_app(policy(pipeline=PIPELINE), poll=10.0)  # the cancel comes within one poll, even when loaded
    stub = layer.ib_stub
    stub.add_response("start_image_pipeline_execution",
                      {"requestId": "r-1", "clientToken": "t", "imageBuildVersionArn": BUILD})
    stub.add_response("get_image", image_state("BUILDING"))
    stub.add_response("cancel_image_creation", {"requestId": "r-2", "clientToken": "t", "imageBuildVersionArn": BUILD},
                      {"imageBuildVersionArn": BUILD, "clientToken": ANY})
    stub.add_response("get_image", image_state("CANCELLED"))
    app.command("bake web", wait=False)
    # the watch read the first status before the cancel comes: the Stubber answers in the order the test queued
    until(lambda: any("BUILDING" in update.text for update in messages(app)[1]), timeout=20.0,
          what="the watch's first status in the bake's message")
    bake_id = app.ctx.store.query("SELECT owner FROM steps WHERE owner LIKE 'bake:%' LIMIT 1")[0]["owner"][5:]
    app.command(f"bake cancel {bake_id}", wait=False)
    app.wait_idle(timeout=60)
    assert "Stopped the Image Builder build" in app.replies()[-1].text
    stub.assert_no_pending_responses()
    final = messages(app)[1][-1].text
    assert "cancelled" in final and "Cancelled by <@U0OPS>" in final
    rows = app.ctx.store.query("SELECT action FROM audit WHERE action LIKE 'bake.%'")
    assert {"bake.started", "bake.cancelled"} <= {row["action"] for row in rows}


def test_a_restart_while_a_run_is_in_progress_resumes_watching_it_and_proposes_once(stubbed_app, aws):
    """In process: the first app loses AWS mid-watch (its job ends with the watch step open, as a kill would
    leave it); a second app on the same database resumes the stored run at start, starts nothing new."""
    output = seed.image(aws, "web-pipeline-output")
    first, layer = stubbed_app(policy(pipeline=PIPELINE))
    layer.ib_stub.add_response("start_image_pipeline_execution",
                               {"requestId": "r-1", "clientToken": "t", "imageBuildVersionArn": BUILD})
    layer.ib_stub.add_response("get_image", image_state("BUILDING"))
    layer.ib_stub.add_client_error("get_image", service_error_code="InvalidRequestException", http_status_code=400)
    first.command("bake web")
    layer.ib_stub.assert_no_pending_responses()
    assert "Bake of" in messages(first)[0][0].text
    second_layer = StubbedBake(REGIONS)  # its Image Builder knows no start: a second run would fail the test
    # one answer, AVAILABLE: the resumed watch starts at the app's start, before a test could shorten its polls
    second_layer.ib_stub.add_response("get_image", image_state("AVAILABLE", [output]), {"imageBuildVersionArn": BUILD})
    second, _ = stubbed_app(policy(pipeline=PIPELINE), layer=second_layer)
    second.wait_idle()
    second_layer.ib_stub.assert_no_pending_responses()
    posts, updates = messages(second)
    assert len(posts) == 1 and posts[0].ts == updates[-1].params["ts"]  # the same message, finished
    assert "BUILDING → AVAILABLE" in updates[-1].text  # the stages seen before the restart, and after
    approvals = [c for c in second.fake.calls_to("chat.postMessage") if "Promote web" in c.text]
    assert len(approvals) == 1


def test_the_promotion_request_says_scan_pending_until_inspector_reports_then_shows_the_counts(stubbed_app, aws):
    output = seed.image(aws, "web-pipeline-output")
    layer = StubbedBake(REGIONS, findings=True)
    app, _ = stubbed_app(policy(pipeline=PIPELINE), layer=layer)
    layer.ib_stub.add_response("start_image_pipeline_execution",
                               {"requestId": "r-1", "clientToken": "t", "imageBuildVersionArn": BUILD})
    layer.ib_stub.add_response("get_image", image_state("AVAILABLE", [output]))
    findings = layer.findings_stub
    findings.add_response("get_image_findings", {"ImageFindings": []}, {"ImageId": output})  # the request: pending
    findings.add_response("get_image_findings", {"ImageFindings": []}, {"ImageId": output})  # still pending
    findings.add_response("get_image_findings", {"ImageFindings": [
        {"Title": "CVE-2026-0001 openssl", "SeverityLabel": "CRITICAL"},
        {"Title": "CVE-2026-0002 glibc", "SeverityLabel": "HIGH"},
        {"Title": "CVE-2026-0003 curl", "SeverityLabel": "HIGH"}]}, {"ImageId": output})
    app.ctx.waits = dataclasses.replace(app.ctx.waits, bake_scan_poll_seconds=0.02)
    app.command("bake web")
    findings.assert_no_pending_responses()
    call, request_id = approval_message(app.fake)
    assert "Inspector: scan pending" in call.text
    updates = [c for c in app.fake.calls_to("chat.update") if c.params.get("ts") == call.ts]
    assert updates and "Inspector: 1 critical, 2 high" in updates[-1].text


def test_a_failed_pipeline_names_the_stage_and_the_image_it_left_behind(stubbed_app, aws):
    app, layer = stubbed_app(policy(pipeline=PIPELINE))
    stub = layer.ib_stub
    stub.add_response("start_image_pipeline_execution",
                      {"requestId": "r-1", "clientToken": "t", "imageBuildVersionArn": BUILD})
    stub.add_response("get_image", image_state("TESTING"))
    failed = image_state("FAILED", ["ami-0123456789abcdef0"])
    failed["image"]["state"]["reason"] = "Test component reboot-test failed"
    stub.add_response("get_image", failed)
    app.command("bake web")
    final = messages(app)[1][-1].text
    assert "Failed at *TESTING*: Test component reboot-test failed" in final
    assert "AWS left `ami-0123456789abcdef0` behind; `/ami deregister ami-0123456789abcdef0` cleans it up" in final
    assert not approval_requests(app)


def test_a_run_that_outlives_its_deadline_is_reported_not_forgotten(stubbed_app, aws):
    app, layer = stubbed_app(policy(pipeline=PIPELINE))
    app.ctx.waits = dataclasses.replace(app.ctx.waits, bake_deadline_seconds=0.0)
    layer.ib_stub.add_response("start_image_pipeline_execution",
                               {"requestId": "r-1", "clientToken": "t", "imageBuildVersionArn": BUILD})
    layer.ib_stub.add_response("get_image", image_state("BUILDING"))
    app.command("bake web")
    assert "Still running after" in messages(app)[1][-1].text
    rows = app.ctx.store.query("SELECT outcome FROM audit WHERE action = 'bake.overdue'")
    assert len(rows) == 1
    app.command("bakes web")
    assert "overdue" in app.last_reply().text


def approval_requests(app):
    return [c for c in app.fake.calls_to("chat.postMessage") if "Promote web" in c.text]


def test_the_current_version_without_findings_is_no_findings_reported_not_scan_pending(stubbed_app, aws):
    """Only the version just baked is 'scan pending' when Inspector reports nothing: for the current one,
    Inspector does not say whether it scanned it clean or never scanned it, so neither is claimed."""
    current = seed.image(aws, "web-1.4.2", tags={"Family": "web", "Version": "1.4.2"})
    output = seed.image(aws, "web-pipeline-output")
    layer = StubbedBake(REGIONS, findings=True)
    app, _ = stubbed_app(policy(pipeline=PIPELINE), layer=layer)
    app.command(f"promote {current}")
    layer.ib_stub.add_response("start_image_pipeline_execution",
                               {"requestId": "r-1", "clientToken": "t", "imageBuildVersionArn": BUILD})
    layer.ib_stub.add_response("get_image", image_state("AVAILABLE", [output]))
    findings = layer.findings_stub
    findings.add_response("get_image_findings", {"ImageFindings": []}, {"ImageId": output})
    findings.add_response("get_image_findings", {"ImageFindings": []}, {"ImageId": current})
    findings.add_response("get_image_findings", {"ImageFindings": [
        {"Title": "CVE-2026-0001 openssl", "SeverityLabel": "CRITICAL"}]}, {"ImageId": output})
    app.ctx.waits = dataclasses.replace(app.ctx.waits, bake_scan_poll_seconds=0.02)
    app.command("bake web")
    findings.assert_no_pending_responses()
    call, _ = approval_message(app.fake)
    assert "Inspector: scan pending" in call.text and "Inspector: no findings reported" in call.text, call.text


# --- a pipeline's own runs (its schedule, the console): ListImagePipelineImages ---------------------------------

OWN_BUILD = "arn:aws:imagebuilder:us-east-1:123456789012:image/web/1.0.0/9"


def summary(arn, status, ami, created):
    return {"arn": arn, "state": {"status": status}, "dateCreated": created,
            "outputResources": {"amis": [{"region": "us-east-1", "image": ami}]}}


def test_a_pipeline_run_outside_amibot_joins_the_family_with_its_lineage_and_is_proposed_once(stubbed_app, aws):
    from handlers.commands import bake as bake_command

    seed.family(aws, ["web-12"], name="web")
    nightly = seed.image(aws, "web-nightly")
    old = seed.image(aws, "web-last-year")
    layer = StubbedBake(REGIONS)
    listing = {"imageSummaryList": [
        summary(OWN_BUILD, "AVAILABLE", nightly, "2099-01-01T03:00:00.000Z"),
        summary(BUILD, "FAILED", "ami-0123456789abcdef0", "2099-01-01T02:00:00.000Z"),
        summary("arn:aws:imagebuilder:us-east-1:123456789012:image/web/1.0.0/1", "AVAILABLE", old,
                "2020-01-01T00:00:00.000Z")]}
    for _ in range(4):  # at start, the claimed job's own look, then two hourly looks
        layer.listing_stub.add_response("list_image_pipeline_images", listing, {"imagePipelineArn": PIPELINE})
    data = {**policy(pipeline=PIPELINE), "approvals": {"approvers": ["U0LEAD"], "channel": "C0BAKES"}}
    app, _ = stubbed_app(data, layer=layer)
    app.wait_idle()
    other = StubbedBake(REGIONS)  # a second process on the same database, seeing the same pipeline
    for _ in range(2):  # at its start, and one hourly look
        other.listing_stub.add_response("list_image_pipeline_images", listing, {"imagePipelineArn": PIPELINE})
    second, _ = stubbed_app(data, layer=other)
    second.wait_idle()
    for running in (app, second, app):
        bake_command.discover(running.ctx)
        running.wait_idle()
    layer.listing_stub.assert_no_pending_responses()
    other.listing_stub.assert_no_pending_responses()
    requests = [c for c in app.fake.calls_to("chat.postMessage") if "Promote web" in c.text]
    assert len(requests) == 1 and "Promote web web-13 (built elsewhere)" in requests[0].text
    assert requests[0].params["channel"] == "C0BAKES"
    tags = tags_of(aws, nightly)
    assert tags["Family"] == "web" and tags["Version"] == "web-13"
    assert tags["amibot:bake"] == f"pipeline:web/{OWN_BUILD}"
    assert "Family" not in tags_of(aws, old)  # older than the current version: history, not a new version


def test_a_pipeline_whose_outputs_cannot_be_listed_is_not_checked_and_proposes_nothing(stubbed_app, aws, caplog):
    from handlers.commands import bake as bake_command

    seed.family(aws, ["web-12"], name="web")
    layer = StubbedBake(REGIONS)
    data = {**policy(pipeline=PIPELINE), "approvals": {"approvers": ["U0LEAD"], "channel": "C0BAKES"}}
    app, _ = stubbed_app(data, layer=layer)
    app.wait_idle()
    layer.listing_stub.add_client_error("list_image_pipeline_images", service_error_code="UnknownOperationException",
                                        http_status_code=400)
    with caplog.at_level("WARNING"):
        assert bake_command.discover(app.ctx) == 0
    layer.listing_stub.assert_no_pending_responses()
    assert "the outputs of pipeline web (web) were not checked: this AWS endpoint does not support" in caplog.text
    assert not [c for c in app.fake.calls_to("chat.postMessage") if "Promote web" in c.text]
