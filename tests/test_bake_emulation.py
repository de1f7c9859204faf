"""The demo's emulation of EC2 Image Builder and SSM Automation (bot.devtools.bake_emulation), driven by boto3
clients of the emulated session on moto: runs advance with the injected clock, their images appear in moto's
DescribeImages, tokens are idempotent, runs cancel and fail as configured — and every answer is one botocore's
Stubber accepts for the operation (the service model's shapes)."""

from __future__ import annotations

import boto3
import botocore.session
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from bot.devtools.bake_emulation import BakeEmulation
from tests.support import seed
from tests.support.clock import Clock

REGION = "us-east-1"
TOKEN = "0f1e2d3c-4b5a-4968-8776-655443322110"



@pytest.fixture
def world(aws):
    clock = Clock()
    session = boto3.session.Session(region_name=REGION)
    emulation = BakeEmulation(clock=clock, stage_seconds=2).install(session)
    base = seed.image(aws, "web-1.4.2", tags={"Family": "web", "Version": "1.4.2"})
    return session, emulation, clock, base


def valid(service: str, operation: str, answer: dict) -> dict:
    """The answer, once botocore's Stubber has accepted it as the operation's output shape."""
    client = botocore.session.get_session().create_client(service, REGION, aws_access_key_id="x",
                                                          aws_secret_access_key="x")
    Stubber(client).add_response(operation, {k: v for k, v in answer.items() if k != "ResponseMetadata"})
    return answer


def image_ids(session) -> set[str]:
    return {image["ImageId"] for image in session.client("ec2", REGION).describe_images(Owners=["self"])["Images"]}


def test_a_pipeline_run_goes_through_its_stages_and_registers_its_image_in_moto(world):
    session, emulation, clock, base = world
    arn = emulation.add_pipeline(REGION, "web", base)
    builder = session.client("imagebuilder", REGION)
    started = valid("imagebuilder", "start_image_pipeline_execution",
                    builder.start_image_pipeline_execution(imagePipelineArn=arn, clientToken=TOKEN))
    build = started["imageBuildVersionArn"]
    assert build.startswith(f"arn:aws:imagebuilder:{REGION}:") and ":image/web/1.0.0/1" in build
    before = image_ids(session)

    seen = []
    for _ in range(5):
        image = valid("imagebuilder", "get_image", builder.get_image(imageBuildVersionArn=build))["image"]
        seen.append(image["state"]["status"])
        if image["state"]["status"] != "AVAILABLE":
            assert image["outputResources"]["amis"] == []
        clock.tick(2)
    assert seen == ["PENDING", "BUILDING", "TESTING", "DISTRIBUTING", "AVAILABLE"]

    amis = image["outputResources"]["amis"]
    assert [(ami["region"], ami["accountId"]) for ami in amis] == [(REGION, "123456789012")]
    new = amis[0]["image"]
    assert image_ids(session) - before == {new}
    described = session.client("ec2", REGION).describe_images(ImageIds=[new])["Images"][0]
    assert described["Name"] == amis[0]["name"]
    assert described["SourceImageId"] == base  # lineage AWS reports and moto does not
    assert {"Key": "Ec2ImageBuilderArn", "Value": build} in described["Tags"]

    pipeline = valid("imagebuilder", "get_image_pipeline",
                     builder.get_image_pipeline(imagePipelineArn=arn))["imagePipeline"]
    assert pipeline["lastRunStatus"] == "AVAILABLE" and pipeline["name"] == "web"
    listed = valid("imagebuilder", "list_image_pipeline_images",
                   builder.list_image_pipeline_images(imagePipelineArn=arn))["imageSummaryList"]
    assert [(item["arn"], item["outputResources"]["amis"][0]["image"]) for item in listed] == [(build, new)]


def test_a_finished_build_has_its_image_in_describe_images_before_anyone_asks_image_builder(world):
    session, emulation, clock, base = world
    arn = emulation.add_pipeline(REGION, "web", base)
    session.client("imagebuilder", REGION).start_image_pipeline_execution(imagePipelineArn=arn, clientToken=TOKEN)
    before = image_ids(session)
    clock.tick(60)
    assert len(image_ids(session) - before) == 1


def test_the_same_client_token_starts_one_build_and_another_pipeline_with_it_is_refused(world):
    session, emulation, clock, base = world
    arn = emulation.add_pipeline(REGION, "web", base)
    other = emulation.add_pipeline(REGION, "api", base)
    builder = session.client("imagebuilder", REGION)
    first = builder.start_image_pipeline_execution(imagePipelineArn=arn, clientToken=TOKEN)["imageBuildVersionArn"]
    clock.tick(3)
    again = builder.start_image_pipeline_execution(imagePipelineArn=arn, clientToken=TOKEN)["imageBuildVersionArn"]
    assert again == first
    assert len(builder.list_image_pipeline_images(imagePipelineArn=arn)["imageSummaryList"]) == 1
    with pytest.raises(builder.exceptions.IdempotentParameterMismatchException):
        builder.start_image_pipeline_execution(imagePipelineArn=other, clientToken=TOKEN)
    with pytest.raises(builder.exceptions.ResourceNotFoundException):
        builder.get_image_pipeline(imagePipelineArn=arn.replace("/web", "/nope"))


def test_a_cancelled_build_stops_and_registers_nothing(world):
    session, emulation, clock, base = world
    arn = emulation.add_pipeline(REGION, "web", base)
    builder = session.client("imagebuilder", REGION)
    build = builder.start_image_pipeline_execution(imagePipelineArn=arn, clientToken=TOKEN)["imageBuildVersionArn"]
    before = image_ids(session)
    clock.tick(3)
    cancel_token = "1f1e2d3c-4b5a-4968-8776-655443322110"
    valid("imagebuilder", "cancel_image_creation",
          builder.cancel_image_creation(imageBuildVersionArn=build, clientToken=cancel_token))
    assert builder.cancel_image_creation(imageBuildVersionArn=build, clientToken=cancel_token)[
        "imageBuildVersionArn"] == build  # the same cancellation again is answered the same
    clock.tick(60)
    image = valid("imagebuilder", "get_image", builder.get_image(imageBuildVersionArn=build))["image"]
    assert image["state"]["status"] == "CANCELLED" and image["outputResources"]["amis"] == []
    assert image_ids(session) == before
    with pytest.raises(ClientError) as refused:
        builder.cancel_image_creation(imageBuildVersionArn=build, clientToken="2" + cancel_token[1:])
    assert refused.value.response["Error"]["Code"] == "ResourceInUseException"


def test_a_build_configured_to_fail_fails_in_its_stage_with_the_reason(world):
    session, emulation, clock, base = world
    arn = emulation.add_pipeline(REGION, "web", base)
    emulation.fail_next_build("TESTING", "Test component 'reboot-linux' failed", pipeline_arn=arn)
    builder = session.client("imagebuilder", REGION)
    build = builder.start_image_pipeline_execution(imagePipelineArn=arn, clientToken=TOKEN)["imageBuildVersionArn"]
    before = image_ids(session)
    statuses = []
    for _ in range(5):
        statuses.append(builder.get_image(imageBuildVersionArn=build)["image"]["state"])
        clock.tick(2)
    assert [state["status"] for state in statuses] == ["PENDING", "BUILDING", "TESTING", "FAILED", "FAILED"]
    assert statuses[-1]["reason"] == "Test component 'reboot-linux' failed"
    assert image_ids(session) == before
    # the next run is not failed again
    second = builder.start_image_pipeline_execution(imagePipelineArn=arn, clientToken="3" + TOKEN[1:])
    clock.tick(60)
    assert builder.get_image(imageBuildVersionArn=second["imageBuildVersionArn"])["image"]["state"]["status"] \
        == "AVAILABLE"


def automation_steps(ssm, execution_id) -> tuple[str, list[tuple[str, str]], dict]:
    execution = valid("ssm", "get_automation_execution",
                      ssm.get_automation_execution(AutomationExecutionId=execution_id))["AutomationExecution"]
    steps = [(step["StepName"], step["StepStatus"]) for step in execution["StepExecutions"]]
    return execution["AutomationExecutionStatus"], steps, execution


def test_an_automation_run_steps_through_the_runbook_and_outputs_its_image(world):
    session, emulation, clock, base = world
    ssm = session.client("ssm", REGION)
    started = valid("ssm", "start_automation_execution", ssm.start_automation_execution(
        DocumentName="AWS-UpdateLinuxAmi", ClientToken=TOKEN,
        Parameters={"SourceAmiId": [base], "IamInstanceProfileName": ["ManagedInstanceProfile"]}))
    execution_id = started["AutomationExecutionId"]
    before = image_ids(session)

    status, steps, _ = automation_steps(ssm, execution_id)
    assert (status, steps) == ("InProgress", [("launchInstance", "InProgress")])
    clock.tick(5)
    status, steps, execution = automation_steps(ssm, execution_id)
    assert status == "InProgress" and execution["CurrentStepName"] == "stopInstance"
    assert steps == [("launchInstance", "Success"), ("updateOSSoftware", "Success"), ("stopInstance", "InProgress")]
    clock.tick(10)
    status, steps, execution = automation_steps(ssm, execution_id)
    assert status == "Success"
    assert steps == [(name, "Success") for name in
                     ("launchInstance", "updateOSSoftware", "stopInstance", "createImage", "terminateInstance")]
    new = execution["Outputs"]["createImage.ImageId"][0]
    assert image_ids(session) - before == {new}
    described = session.client("ec2", REGION).describe_images(ImageIds=[new])["Images"][0]
    assert described["SourceImageId"] == base and base in described["Name"]
    # moto still serves the rest of SSM
    ssm.put_parameter(Name="/amibot/web/current", Value=new, Type="String")
    assert ssm.get_parameter(Name="/amibot/web/current")["Parameter"]["Value"] == new


def test_the_same_automation_client_token_starts_one_run(world):
    session, emulation, clock, base = world
    ssm = session.client("ssm", REGION)
    arguments = {"DocumentName": "AWS-UpdateLinuxAmi", "ClientToken": TOKEN, "Parameters": {"SourceAmiId": [base]}}
    first = ssm.start_automation_execution(**arguments)["AutomationExecutionId"]
    clock.tick(1)
    assert ssm.start_automation_execution(**arguments)["AutomationExecutionId"] == first
    with pytest.raises(ClientError) as refused:
        ssm.start_automation_execution(**arguments | {"DocumentName": "AWS-UpdateWindowsAmi"})
    assert refused.value.response["Error"]["Code"] == "IdempotentParameterMismatch"
    with pytest.raises(ssm.exceptions.AutomationExecutionNotFoundException):
        ssm.get_automation_execution(AutomationExecutionId="00000000-0000-0000-0000-000000000000")


def test_a_stopped_automation_is_cancelled_and_makes_no_image(world):
    session, emulation, clock, base = world
    ssm = session.client("ssm", REGION)
    execution_id = ssm.start_automation_execution(DocumentName="AWS-UpdateLinuxAmi",
                                                  Parameters={"SourceAmiId": [base]})["AutomationExecutionId"]
    before = image_ids(session)
    clock.tick(3)
    valid("ssm", "stop_automation_execution", ssm.stop_automation_execution(AutomationExecutionId=execution_id))
    clock.tick(60)
    status, steps, execution = automation_steps(ssm, execution_id)
    assert status == "Cancelled" and steps == [("launchInstance", "Success"), ("updateOSSoftware", "Cancelled")]
    assert "Outputs" not in execution and image_ids(session) == before
    with pytest.raises(ssm.exceptions.InvalidAutomationStatusUpdateException):
        ssm.stop_automation_execution(AutomationExecutionId=execution_id)


def test_an_automation_configured_to_fail_fails_at_its_step_with_the_message(world):
    session, emulation, clock, base = world
    emulation.fail_next_automation("updateOSSoftware", "yum update exited with code 1")
    ssm = session.client("ssm", REGION)
    execution_id = ssm.start_automation_execution(DocumentName="AWS-UpdateLinuxAmi",
                                                  Parameters={"SourceAmiId": [base]})["AutomationExecutionId"]
    before = image_ids(session)
    clock.tick(60)
    status, steps, execution = automation_steps(ssm, execution_id)
    assert status == "Failed" and steps == [("launchInstance", "Success"), ("updateOSSoftware", "Failed")]
    assert execution["StepExecutions"][-1]["FailureMessage"] == "yum update exited with code 1"
    assert "yum update exited with code 1" in execution["FailureMessage"]
    assert image_ids(session) == before
