"""Which accounts amibot manages: `[[accounts]]` parsing, `[organization]` discovery through moto's Organizations
(members managed, exclude, overrides, paging, a failed listing) and `amibot check-config --aws`, one line per
account."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from bot import cli
from bot.aws.clients import Aws, AwsAccounts
from bot.core.accounts import Account, merge_discovered
from bot.core.config import parse_policy
from bot.core.errors import AwsError, ConfigError
from bot.services import organization
from tests.support import seed
from tests.support.org import listing_refused, organisation

REGIONS = ["us-east-1"]


def problems_of(data: dict) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        parse_policy(data)
    return raised.value.problems


# --- [[accounts]] parsing ------------------------------------------------------------------------------------

def test_accounts_parse_with_their_overrides():
    policy = parse_policy({"accounts": [
        {"id": seed.BAKE, "name": "bake"},
        {"id": 111111111111, "name": "prod", "role_arn": seed.role_arn(seed.PROD), "external_id": "ext-1",
         "regions": ["eu-west-1"], "operators": ["U0PRODOPS"], "approvers": ["S0PRODLEADS"]}]})
    bake, prod = policy.accounts
    assert bake == Account(seed.BAKE, "bake") and bake.is_home and bake.label == f"bake ({seed.BAKE})"
    assert prod.id == seed.PROD  # an unquoted id is read as the 12 digits it is
    assert (prod.role_arn, prod.external_id, prod.regions) == (seed.role_arn(seed.PROD), "ext-1", ("eu-west-1",))
    assert (prod.operators, prod.approvers, bake.operators) == (("U0PRODOPS",), ("S0PRODLEADS",), None)
    assert "ext-1" not in repr(prod)  # the external id is a shared secret of sorts: not in logs
    assert parse_policy({}).accounts == []


def test_every_account_problem_is_one_line_naming_the_key():
    problems = problems_of({"accounts": [
        {"id": "12345", "name": "short-id"},
        {"id": seed.PROD, "name": "prod", "role_arn": "arn:aws:iam::222222222222:role/amibot", "colour": "red"},
        {"id": seed.STAGING, "name": "PROD", "role_arn": "not-an-arn", "regions": ["mars-1"],
         "approvers": "S0LEADS", "external_id": ""},
        {"id": seed.STAGING, "name": "1234", "role_arn": seed.role_arn(seed.STAGING)},
        {"id": "333333333333"}, {"id": "444444444444"}, "not a table"]})
    assert all("\n" not in problem for problem in problems)
    expected = [
        "[[accounts]] #1.id: expected a 12-digit AWS account id, got '12345'",
        "[[accounts]] #2: unknown key 'colour'",
        f"[[accounts]] {seed.PROD}.role_arn: the role is in account 222222222222, not {seed.PROD}",
        f"[[accounts]] {seed.STAGING}.role_arn: expected a role ARN",
        f"[[accounts]] {seed.STAGING}.regions: expected an AWS region",
        f"[[accounts]] {seed.STAGING}.approvers: expected a list of strings",
        f"[[accounts]] {seed.STAGING}.external_id: expected a non-empty string",
        f"[[accounts]] {seed.STAGING}.name: expected a short name",
        f"[[accounts]] {seed.STAGING}: listed twice",
        f"[[accounts]] {seed.STAGING}.name: 'PROD' is used by another account",
        "[[accounts]]: only the account the bot runs in may omit role_arn",
        "[[accounts]] #7: expected a table",
    ]
    for line in expected:
        assert any(problem.startswith(line) for problem in problems), (line, problems)
    assert problems_of({"accounts": {"id": seed.PROD}}) == [
        "[[accounts]]: expected an array of tables ([[accounts]] blocks)"]


def test_with_an_organisation_an_override_may_omit_its_role():
    overrides = [{"id": seed.PROD, "name": "prod"}, {"id": seed.STAGING, "name": "staging"}]
    assert any("may omit role_arn" in problem for problem in problems_of({"accounts": overrides}))
    policy = parse_policy({"organization": {"enabled": True}, "accounts": overrides})
    assert [account.name for account in policy.accounts] == ["prod", "staging"]


def member(account_id: str, name: str, state: str | None = "ACTIVE", status: str | None = None) -> dict:
    item = {"Id": account_id, "Name": name, "Arn": f"arn:aws:organizations::{seed.BAKE}:account/o-x/{account_id}"}
    if state:
        item["State"] = state
    if status:
        item["Status"] = status
    return item


def test_merge_discovered_members():
    members = [member(seed.BAKE, "Management"), member(seed.PROD, "Prod Workloads"),
               member(seed.STAGING, "Staging"), member("333333333333", "Old", state="SUSPENDED"),
               member("444444444444", "Closing", state=None, status="SUSPENDED"),
               member("555555555555", "Sandbox A"), member("666666666666", "Sandbox A"),
               member("777777777777", "Excluded by name"), member("888888888888", "excluded-by-slug"),
               {"Id": "not-an-id", "Name": "broken"}, {}]
    configured = [Account(seed.PROD, "prod", approvers=("S0PRODLEADS",)),  # an override without its own role
                  Account("999999999999", "legacy", seed.role_arn("999999999999", "old-role"))]
    merged = merge_discovered(members, configured, "amibot",
                              ["Excluded by name", "EXCLUDED-BY-SLUG", seed.STAGING], seed.BAKE)
    by_id = {account.id: account for account in merged}
    assert set(by_id) == {seed.BAKE, seed.PROD, "555555555555", "666666666666", "999999999999"}
    assert by_id[seed.BAKE] == Account(seed.BAKE, "Management")  # the bot's own account: no role to assume
    assert by_id[seed.PROD] == Account(seed.PROD, "prod", seed.role_arn(seed.PROD), approvers=("S0PRODLEADS",))
    assert by_id["555555555555"] == Account("555555555555", "Sandbox-A", seed.role_arn("555555555555"))
    assert by_id["666666666666"].name == ""  # the same display name twice: the second is known by its id
    assert by_id["999999999999"].role_arn == seed.role_arn("999999999999", "old-role")  # configured, not listed


# --- [organization] through moto's Organizations -------------------------------------------------------------


def org_policy(**organization) -> dict:
    return {"aws": {"regions": REGIONS}, "organization": {"enabled": True, "role_name": "amibot", **organization}}


def test_the_organisations_members_are_managed(make_harness, aws):
    alpha, beta = organisation(aws, "Team Alpha", "Team Beta")
    alpha_image = seed.image(seed.account_session(aws, alpha), "alpha-web-v1")
    beta_image = seed.image(seed.account_session(aws, beta), "beta-web-v1")
    own_image = seed.image(aws, "bake-web-v1")
    bot = make_harness({**org_policy(exclude=["Team Beta"]),
                        "accounts": [{"id": alpha, "name": "alpha", "approvers": ["S0ALPHA"]}]})
    accounts = {account.id: account for account in bot.ctx.aws.accounts}
    assert set(accounts) == {seed.BAKE, alpha}  # Team Beta is excluded
    assert accounts[alpha] == Account(alpha, "alpha", seed.role_arn(alpha), approvers=("S0ALPHA",))
    assert accounts[seed.BAKE].is_home and accounts[seed.BAKE].name == "master"
    bot.command("list web")
    text = bot.last_reply().text
    assert alpha_image in text and own_image in text and beta_image not in text
    assert "alpha" in text and "master" in text  # the account column names the override's name
    bot.command("list --account alpha")
    text = bot.last_reply().text
    assert alpha_image in text and own_image not in text


def test_members_can_be_excluded_by_id_and_are_reached_through_the_role_name(aws):
    alpha, beta = organisation(aws, "Team Alpha", "Team Beta")
    handle = AwsAccounts(Aws(REGIONS, session=aws))
    accounts = organization.refresh(handle, parse_policy(org_policy(role_name="amibot-ro", exclude=[alpha])))
    assert [(account.id, account.name, account.role_arn) for account in accounts] == [
        (seed.BAKE, "master", None), (beta, "Team-Beta", f"arn:aws:iam::{beta}:role/amibot-ro")]
    assert handle.of("team-beta").verify() == beta  # the role ARN's account, through moto's STS


def test_list_accounts_is_read_page_by_page():
    handle = AwsAccounts(Aws(REGIONS, session=boto3.session.Session(region_name="us-east-1")))
    client = handle.home.client("organizations")
    with Stubber(client) as stub:
        stub.add_response("list_accounts", {"Accounts": [member(seed.BAKE, "Management")], "NextToken": "page-2"},
                          {})
        stub.add_response("list_accounts", {"Accounts": [member(seed.PROD, "Prod"), member(seed.STAGING, "Stage")],
                                            "NextToken": "page-3"}, {"NextToken": "page-2"})
        stub.add_response("list_accounts", {"Accounts": [member("333333333333", "Last")]}, {"NextToken": "page-3"})
        members = organization.list_members(handle)
        stub.assert_no_pending_responses()
    assert [item["Id"] for item in members] == [seed.BAKE, seed.PROD, seed.STAGING, "333333333333"]


def refuse_listing(events, code: str = "AccessDeniedException") -> None:
    """Organizations refuses ListAccounts (`events`: a session's, or an existing client's meta.events)."""
    events.register("before-call.organizations.ListAccounts", listing_refused(code))


def test_a_failed_listing_keeps_the_known_accounts(aws):
    alpha, beta = organisation(aws, "Team Alpha", "Team Beta")
    handle = AwsAccounts(Aws(REGIONS, session=aws))
    policy = parse_policy(org_policy())
    assert len(organization.refresh(handle, policy)) == 3
    known = handle.accounts
    refuse_listing(handle.home.client("organizations").meta.events)  # the client made by the first listing
    result = organization.refresh(handle, policy)
    assert isinstance(result, AwsError) and "organizations:ListAccounts" in result.message
    assert handle.accounts == known and handle.of(beta).account.id == beta  # not an organisation without accounts


def test_a_failed_first_listing_manages_the_configured_accounts(aws):
    alpha, = organisation(aws, "Team Alpha")
    refuse_listing(aws.events)
    handle = AwsAccounts(Aws(REGIONS, session=aws))
    policy = parse_policy({**org_policy(), "accounts": [{"id": alpha, "name": "alpha"}]})
    assert isinstance(organization.refresh(handle, policy), AwsError)
    assert handle.accounts == [Account(alpha, "alpha", seed.role_arn(alpha))]
    assert handle.of("alpha").verify() == alpha


# --- amibot check-config --aws --------------------------------------------------------------------------------

def deny_assume_role_into(account_id: str):
    """A boto3 Session class whose STS refuses AssumeRole into one account (the role's trust policy says no)."""
    class Denying(boto3.session.Session):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            seed.deny_assume_role(self, account_id)

    return Denying


def check_config(monkeypatch, tmp_path, capsys, toml: str) -> tuple[int, str, str]:
    config = tmp_path / "amibot.toml"
    config.write_text(toml)
    for key, value in {"AMIBOT_CONFIG": str(config), "AMIBOT_DB": str(tmp_path / "amibot.db"),
                       "SLACK_BOT_TOKEN": "xoxb-test-1", "SLACK_SIGNING_SECRET": "secret-0123"}.items():
        monkeypatch.setenv(key, value)
    code = cli.main(["check-config", "--aws"])
    out, err = capsys.readouterr()
    return code, out, err


ACCOUNTS_TOML = f"""
[aws]
regions = ["us-east-1", "eu-west-1"]

[[accounts]]
id = "{seed.BAKE}"
name = "bake"

[[accounts]]
id = "{seed.PROD}"
name = "prod"
role_arn = "{seed.role_arn(seed.PROD)}"

[[accounts]]
id = "{seed.STAGING}"
name = "staging"
role_arn = "{seed.role_arn(seed.STAGING)}"
external_id = "ext-staging"
"""


def test_check_config_assumes_each_role_once_and_prints_a_line_per_account(aws, monkeypatch, tmp_path, capsys):
    code, out, err = check_config(monkeypatch, tmp_path, capsys, ACCOUNTS_TOML)
    assert code == 0, err
    assert f"AWS: account {seed.BAKE}, regions us-east-1, eu-west-1" in out
    lines = [line.strip() for line in out.splitlines() if line.startswith("  ok") or line.startswith("  FAILED")]
    assert lines == [f"ok      bake ({seed.BAKE})", f"ok      prod ({seed.PROD})", f"ok      staging ({seed.STAGING})"]
    assert "AWS accounts (3, from [[accounts]]):" in out and "configuration OK" in out


def test_check_config_says_which_account_cannot_be_reached_and_fails(aws, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(boto3.session, "Session", deny_assume_role_into(seed.STAGING))
    wrong_home = ACCOUNTS_TOML.replace(f'id = "{seed.BAKE}"', 'id = "999999999999"')
    code, out, err = check_config(monkeypatch, tmp_path, capsys, wrong_home)
    assert code == 1
    assert f"  ok      prod ({seed.PROD})" in out
    assert (f"  FAILED  staging ({seed.STAGING}): cannot assume {seed.role_arn(seed.STAGING)} for staging "
            f"({seed.STAGING}): User is not authorized to perform: sts:AssumeRole") in out
    assert ("  FAILED  bake (999999999999): no role_arn, so it must be the account the bot runs in, but the bot's "
            f"credentials are in {seed.BAKE}") in out
    assert "2 problem(s)" in err and f"- AWS: staging ({seed.STAGING}): cannot assume" in err
    assert "ext-staging" not in out + err


def test_check_config_lists_the_organisation_first(aws, monkeypatch, tmp_path, capsys):
    alpha, beta = organisation(aws, "Team Alpha", "Team Beta")
    code, out, err = check_config(monkeypatch, tmp_path, capsys,
                                  '[aws]\nregions = ["us-east-1"]\n[organization]\nenabled = true\n'
                                  f'exclude = ["{beta}"]\n')
    assert code == 0, err
    assert "AWS accounts (2, from the organisation's members):" in out
    assert f"  ok      master ({seed.BAKE})" in out and f"  ok      Team-Alpha ({alpha})" in out
    assert f"Team-Beta ({beta})" not in out


def test_check_config_reports_an_organisation_it_cannot_list(aws, monkeypatch, tmp_path, capsys):
    class Refusing(boto3.session.Session):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            refuse_listing(self.events)

    monkeypatch.setattr(boto3.session, "Session", Refusing)
    code, out, err = check_config(monkeypatch, tmp_path, capsys, '[organization]\nenabled = true\n'
                                  f'[[accounts]]\nid = "{seed.PROD}"\nname = "prod"\n')
    assert code == 1
    assert f"  ok      prod ({seed.PROD})" in out  # the configured accounts are still checked
    assert "- AWS: cannot list the organisation's accounts: AWS denied organizations:ListAccounts" in err


def test_check_config_without_accounts_is_unchanged(aws, monkeypatch, tmp_path, capsys):
    code, out, err = check_config(monkeypatch, tmp_path, capsys, '[aws]\nregions = ["us-east-1"]\n')
    assert code == 0, err
    assert f"AWS: account {seed.BAKE}, regions us-east-1" in out
    assert "AWS accounts" not in out and "  ok " not in out


# --- the example file and the configuration page know every key ---------------------------------------------

def test_the_example_file_shows_every_key_and_an_accounts_table():
    import re
    import tomllib
    from pathlib import Path

    from bot.core.accounts import KEYS
    from bot.core.config import SCHEMA, load_policy

    path = Path(__file__).resolve().parents[1] / "amibot.example.toml"
    text = path.read_text()
    sections = dict(re.findall(r"^\[(\w+)\]\n(.*?)(?=^\[|\Z)", text, re.M | re.S))
    missing = [f"[{section}].{key}" for section, keys in SCHEMA.items() for key in keys
               if not re.search(rf"^#?\s*{key}\s*=", sections.get(section, ""), re.M)]
    assert not missing, f"add to amibot.example.toml: {missing}"
    example = text[text.index("# [[accounts]]"):]
    assert all(re.search(rf"^#\s*{key}\s*=", example, re.M) for key in KEYS)
    uncommented = "\n".join(line.removeprefix("# ") for line in example.splitlines() if line.startswith("#"))
    assert [account.name for account in parse_policy(tomllib.loads(uncommented)).accounts] == ["bake", "prod"]
    assert load_policy(path).accounts == []  # commented out: copying the example manages no other account


def test_the_configuration_page_is_what_config_reference_prints(capsys):
    from pathlib import Path

    cli.main(["config-reference"])
    reference = capsys.readouterr().out.strip()
    assert "**[[accounts]]**" in reference and "`max_concurrency`" in reference
    page = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text()
    assert reference in page, "regenerate docs/configuration.md: make docs"


# --- [organization].role_arn: listing the organisation from another account -----------------------------------

MANAGEMENT = "444444444444"
ORG_READER = f"arn:aws:iam::{MANAGEMENT}:role/org-reader"


def test_the_organisation_is_listed_through_role_arn_when_the_bot_runs_elsewhere(aws):
    alpha, = organisation(seed.account_session(aws, MANAGEMENT), "Team Alpha")  # the bot runs in a member
    handle = AwsAccounts(Aws(REGIONS, session=aws))
    accounts = organization.refresh(handle, parse_policy(org_policy(role_arn=ORG_READER)))
    assert {account.id for account in accounts} == {MANAGEMENT, alpha}
    assert handle.of(alpha).verify() == alpha
    # without it, the bot's own account has no organisation to list: none of the members
    alone = AwsAccounts(Aws(REGIONS, session=aws))
    assert alpha not in {account.id for account in organization.refresh(alone, parse_policy(org_policy()))}


def test_organization_role_arn_must_be_a_role_arn():
    assert problems_of({"organization": {"role_arn": "org-reader"}}) == [
        "[organization].role_arn: expected a role ARN such as 'arn:aws:iam::123456789012:role/amibot-org', "
        "got 'org-reader'"]


def test_check_config_says_it_assumes_the_organizations_role(aws, monkeypatch, tmp_path, capsys):
    alpha, = organisation(seed.account_session(aws, MANAGEMENT), "Team Alpha")
    code, out, err = check_config(monkeypatch, tmp_path, capsys, '[aws]\nregions = ["us-east-1"]\n[organization]\n'
                                  f'enabled = true\nrole_arn = "{ORG_READER}"\n')
    assert code == 0, err
    assert f"AWS organisation: listed by assuming {ORG_READER}" in out
    assert f"  ok      Team-Alpha ({alpha})" in out


def test_check_config_says_where_list_accounts_works(aws, monkeypatch, tmp_path, capsys):
    code, out, err = check_config(monkeypatch, tmp_path, capsys, '[organization]\nenabled = true\n')
    assert ("AWS organisation: listed from the bot's own account (ListAccounts works only from the management "
            "account or a delegated administrator; elsewhere set [organization].role_arn)") in out


def test_a_failed_global_call_is_logged_without_a_region_of_none(aws, caplog):
    from tests.support.org import listing_refused

    aws.events.register("before-call.sts.GetCallerIdentity", listing_refused("AccessDenied"))
    with pytest.raises(AwsError):
        Aws(REGIONS, session=aws).account_id()
    assert "sts:GetCallerIdentity" in caplog.text and "None" not in caplog.text


def test_members_are_assumed_with_the_organisations_external_id(aws):
    alpha, beta = organisation(aws, "Team Alpha", "Team Beta")
    handle = AwsAccounts(Aws(REGIONS, session=aws))
    policy = parse_policy({**org_policy(external_id="org-wide-ext"),
                           "accounts": [{"id": beta, "name": "beta", "external_id": "beta-own"}]})
    accounts = {account.id: account for account in organization.refresh(handle, policy)}
    assert accounts[alpha].external_id == "org-wide-ext"  # what the StackSet's ExternalId parameter asks for
    assert accounts[beta].external_id == "beta-own" and accounts[seed.BAKE].external_id is None
    assert handle.of(alpha).verify() == alpha


def test_check_config_does_not_print_the_organisations_external_id(aws, monkeypatch, tmp_path, capsys):
    code, out, err = check_config(monkeypatch, tmp_path, capsys, '[organization]\nenabled = true\n'
                                  'external_id = "org-wide-ext"\n')
    assert '[organization].external_id = "****"' in out and "org-wide-ext" not in out + err
