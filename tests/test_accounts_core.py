"""The multi-account core of the AWS layer: one handle per managed account, roles assumed through botocore's
refreshable credentials, one client per (account, region, service), one bounded pool over accounts × regions."""

from __future__ import annotations

import threading
import time

import pytest
from botocore.credentials import DeferredRefreshableCredentials

from bot.aws.clients import Aws, AwsAccounts, Target
from bot.core.accounts import Account
from bot.core.errors import AwsDenied, AwsError, NotFound
from tests.support import seed

REGIONS = ["us-east-1", "eu-west-1"]
BAKE = Account(seed.BAKE, "bake")
PROD = Account(seed.PROD, "prod", seed.role_arn(seed.PROD))
STAGING = Account(seed.STAGING, "staging", seed.role_arn(seed.STAGING), regions=("eu-west-1",))


def managed(session, *accounts: Account, max_concurrency: int = 16) -> AwsAccounts:
    aws = AwsAccounts(Aws(REGIONS, session=session))
    aws.manage(list(accounts or (BAKE, PROD, STAGING)), max_concurrency)
    return aws


def test_no_accounts_is_the_single_account_bot(aws):
    handle = AwsAccounts(Aws(REGIONS, session=aws))
    assert handle.handles() == [handle.home] and handle.accounts == [] and not handle.many
    assert handle.of("") is handle.home and handle.of("999999999999") is handle.home  # every image is its own
    assert handle.targets() == [Target(handle.home.account, region) for region in REGIONS]
    assert [target.label for target in handle.targets()] == REGIONS


def test_each_account_is_its_own_handle_in_its_own_account(aws):
    org = managed(aws)
    assert [handle.account.name for handle in org.handles()] == ["bake", "prod", "staging"]
    assert org.of("bake") is org.home and org.of(seed.BAKE) is org.home  # the bot's own account: its own credentials
    assert org.of("PROD") is org.of(seed.PROD) is org.of(PROD)  # by name (any case), id or Account
    assert org.of("prod").verify() == seed.PROD  # GetCallerIdentity through the assumed role
    assert org.of("staging").verify() == seed.STAGING
    assert org.home.verify() == seed.BAKE
    credentials = org.of("prod")._session.get_credentials()
    assert isinstance(credentials, DeferredRefreshableCredentials)  # botocore renews them, no expiry arithmetic here
    with pytest.raises(NotFound, match="account 333333333333 is not one amibot manages"):
        org.of("333333333333")


def test_images_stay_in_their_accounts(aws):
    seed.image(seed.account_session(aws, seed.PROD), "prod-only")
    org = managed(aws)
    names = {target.account.name: [image["Name"] for image in org.of(target.account).ec2(target.region)
                                   .describe_images(Owners=["self"])["Images"]]
             for target in org.targets(regions=["us-east-1"])}
    assert "prod-only" in names["prod"] and "prod-only" not in names["bake"] + names["staging"]


def test_one_client_per_account_region_and_service(aws):
    org = managed(aws)
    prod = org.of("prod")
    assert prod.ec2("us-east-1") is prod.ec2("us-east-1")
    assert prod.ec2("us-east-1") is not org.home.ec2("us-east-1")
    assert prod.ec2("eu-west-1") is not prod.ec2("us-east-1")
    assert prod.client("ssm", "us-east-1") is not prod.ec2("us-east-1")
    clients = []
    threads = [threading.Thread(target=lambda: clients.append(org.of("staging").ec2("eu-west-1"))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(client) for client in clients}) == 1


def test_targets_follow_each_accounts_regions(aws):
    org = managed(aws)
    assert [target.label for target in org.targets()] == [
        "bake (123456789012), us-east-1", "bake (123456789012), eu-west-1",
        "prod (111111111111), us-east-1", "prod (111111111111), eu-west-1",
        "staging (222222222222), eu-west-1"]
    assert [target.label for target in org.targets([PROD], ["eu-west-1"])] == ["prod (111111111111), eu-west-1"]


def test_the_fan_out_is_one_bounded_pool(aws):
    accounts = [BAKE] + [Account(f"1000000000{n:02d}", f"team{n}", seed.role_arn(f"1000000000{n:02d}"))
                         for n in range(10)]
    org = managed(aws, *accounts, max_concurrency=3)
    running, peak, lock = [0], [0], threading.Lock()

    def work(handle, region):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1
        return handle.account.id

    arrived = []
    results = org.each_target(work, on_result=lambda target, result: arrived.append(target))
    assert peak[0] == 3
    assert len(results) == len(arrived) == 22
    assert all(result == target.account.id for target, result in results.items())
    assert list(results) == org.targets()  # in the order asked, whatever the order of arrival


def test_a_role_that_cannot_be_assumed_names_the_account_and_the_rest_goes_on(aws):
    seed.deny_assume_role(aws, seed.PROD)
    org = managed(aws)
    results = org.each_target(lambda handle, region: handle.verify(), org.targets(regions=["us-east-1"]))
    by_account = {target.account.name: result for target, result in results.items()}
    assert by_account["bake"] == seed.BAKE and by_account["staging"] == seed.STAGING
    assert isinstance(by_account["prod"], AwsDenied)
    assert str(by_account["prod"]).startswith(
        "cannot assume arn:aws:iam::111111111111:role/amibot for prod (111111111111): User is not authorized")
    with pytest.raises(AwsError, match="prod \\(111111111111\\)"):
        org.of("prod").verify()


def test_an_error_in_a_managed_account_names_it_once(aws):
    org = managed(aws)

    def refuse(handle, region):
        raise AwsError(f"AWS refused ec2:DescribeImages in {region}: nope", "Boom")

    result = org.each_target(refuse, org.targets([PROD], ["us-east-1"]))
    assert [str(error) for error in result.values()] == [
        "prod (111111111111): AWS refused ec2:DescribeImages in us-east-1: nope"]


def test_an_organisation_refresh_keeps_the_handles_that_stay(aws):
    org = managed(aws, BAKE, PROD)
    prod = org.of("prod")
    org.manage([BAKE, PROD, STAGING])
    assert org.of("prod") is prod and org.of("staging").account.name == "staging"
    org.manage([BAKE, STAGING])
    with pytest.raises(NotFound):
        org.of("prod")


def test_clients_share_one_loader_yet_answer_for_their_own_account(aws):
    from botocore.stub import Stubber

    org = managed(aws)
    bake, prod = org.home.ec2("us-east-1"), org.of("prod").ec2("eu-west-1")
    loaders = {id(handle._session._session.get_component("data_loader")) for handle in org.handles()}
    assert len(loaders) == 1  # one parsed copy of each model and of the endpoint data for every account
    assert bake.meta.region_name == "us-east-1" and prod.meta.region_name == "eu-west-1"
    with Stubber(prod) as stub:  # stubbing one client leaves the other on AWS (moto)
        stub.add_response("describe_images", {"Images": [{"ImageId": "ami-0123456789abcdef0"}]})
        assert prod.describe_images()["Images"][0]["ImageId"] == "ami-0123456789abcdef0"
        assert bake.describe_images(Owners=["self"])["Images"] == []


def test_release_forgets_one_account_regions_clients_and_a_later_call_makes_new_ones(aws):
    org = managed(aws)
    prod = org.of("prod")
    east, west = prod.ec2("us-east-1"), prod.ec2("eu-west-1")
    prod.release("us-east-1")
    assert prod.ec2("eu-west-1") is west  # other regions (and accounts) keep theirs
    assert prod.ec2("us-east-1") is not east
    assert prod.ec2("us-east-1").describe_images(Owners=["self"])["Images"] == []


def test_at_most_so_many_account_regions_keep_their_clients_least_recently_used_first(aws):
    teams = [Account(f"1000000000{n:02d}", f"team{n}", seed.role_arn(f"1000000000{n:02d}")) for n in range(3)]
    org = AwsAccounts(Aws(REGIONS, session=aws), max_concurrency=2, max_cached_account_regions=3)
    org.manage([BAKE, *teams])
    team0, team1, team2 = (org.of(team.name) for team in teams)
    first, second = team0.ec2("us-east-1"), team1.ec2("us-east-1")
    assert team1.client("ssm", "us-east-1") is not second
    team2.ec2("eu-west-1")
    assert team0.ec2("us-east-1") is first  # kept, and now the most recently used
    org.home.ec2("us-east-1")  # a fourth account-region: the least recently used one gives its clients up
    assert org.cached_account_regions == [(team2.account.id, "eu-west-1"), (team0.account.id, "us-east-1"),
                                          (seed.BAKE, "us-east-1")]
    assert team0.ec2("us-east-1") is first
    again = team1.ec2("us-east-1")  # made anew when next needed, and it works
    assert again is not second and again.describe_images(Owners=["self"])["Images"] == []
    assert len(org.cached_account_regions) == 3 and (team2.account.id, "eu-west-1") not in org.cached_account_regions


def test_the_cap_is_never_below_the_fan_out_and_none_keeps_every_client(aws):
    org = AwsAccounts(Aws(REGIONS, session=aws), max_concurrency=4, max_cached_account_regions=1)
    org.manage([BAKE, PROD, STAGING])
    kept = [org.of(target.account).ec2(target.region) for target in org.targets()]  # 5 account-regions
    assert len(org.cached_account_regions) == 4  # max_concurrency account-regions at once keep theirs
    assert org.of(STAGING).ec2("eu-west-1") is kept[-1]
    unbounded = managed(aws)
    clients = [unbounded.of(target.account).ec2(target.region) for target in unbounded.targets()]
    assert [unbounded.of(target.account).ec2(target.region) for target in unbounded.targets()] == clients
    assert unbounded.cached_account_regions == []  # nothing tracked without a cap (amibot digest releases its own)


def test_the_app_bounds_its_clients_by_the_policy(make_harness):
    assert make_harness().ctx.aws.max_cached_account_regions == 32
    harness = make_harness({"aws": {"regions": ["us-east-1"], "max_cached_account_regions": 50}})
    assert harness.ctx.aws.max_cached_account_regions == 50


def test_fewer_malloc_arenas_respects_the_environment():
    from bot.cli import fewer_malloc_arenas

    assert fewer_malloc_arenas({"MALLOC_ARENA_MAX": "8"}) is False  # the operator's own setting wins
