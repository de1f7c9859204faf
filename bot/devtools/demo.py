"""`amibot demo`: the real app on loopback, with a fake Slack and AWS in moto, and a console to drive it.

Nothing leaves the machine and no credentials are needed: the demo process drops every SLACK_*,
AWS_*, AMIBOT_* and MOTO_* variable it inherited (and any proxy), sets fake AWS credentials, and runs moto
in-process for its whole life — with what moto lacks (the Recycle Bin, deprecation, deregistration protection,
findings, instance image metadata, Allowed AMIs) emulated on the app's boto3 session by
bot.devtools.emulation — seeded with a fleet (bot.devtools.fleet). The app is built by the same
factory and served by the same waitress server as `amibot serve`, on 127.0.0.1, with a generated
signing secret and a SQLite file in a temporary directory; bot.devtools.fakeslack plays the Web API
and the console (bot.devtools.console) signs what a user does. EOF, :quit, Ctrl-C or SIGTERM stop it:
server, jobs, fake Slack and moto are stopped and the temporary directory is removed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import secrets
import signal
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from bot.devtools.console import Console, Person, ScriptSource, TerminalSource

log = logging.getLogger(__name__)

PEOPLE = [Person("U0ALICE", "alice", "operator: may run changing commands (not in prod: prod has its own)"),
          Person("U0BOB", "bob", "approver: approves what needs a second person"),
          Person("U0CAROL", "carol", "member: may look, not change"),
          Person("U0DAVE", "dave", "prod's operator: runs changing commands in the prod account only")]
CHANNEL, CHANNEL_NAME = "C0PLATFORM", "platform"
STOP_WAIT_SECONDS = 30
INTERRUPTED = 130
QUIET_LOGGERS = ("", "botocore", "boto3", "urllib3", "slack_bolt.App")  # "" is the root logger

# Set in the demo process only, before moto is imported (it reads MOTO_* at import).
ISOLATED_ENV = {
    "AWS_ACCESS_KEY_ID": "demo", "AWS_SECRET_ACCESS_KEY": "demo", "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,  # no profile from ~/.aws
    "MOTO_ENABLE_AMI_VALIDATION": "true",  # run_instances refuses unknown AMIs, as AWS does
    "MOTO_EC2_LOAD_DEFAULT_AMIS": "true",  # AWS's public images, so /ami base finds Amazon Linux
}
DROPPED_PREFIXES = ("SLACK_", "AWS_", "AMIBOT_", "MOTO_")
SCRIPTS_DIR = Path(__file__).resolve().parent / "scripts"  # package data, shipped in the wheel
DEMO_NEEDS = ("amibot: the demo needs moto, which a plain install leaves out: pip install 'amibot[demo]' "
              "(from a clone: pip install '.[demo]', or make demo)")
# Bakes (and instance refreshes) in the emulation move a stage every RUN_STAGE_SECONDS, and the app looks often
# enough to show each one: the demo's Waits (what tests shorten the same way), not production's minutes.
RUN_STAGE_SECONDS = 1.0
DEMO_WAITS = {"bake_poll_seconds": 0.5, "bake_scan_wait_seconds": 10.0, "bake_scan_poll_seconds": 1.0,
              "rollout_poll_seconds": 0.5}
PROXIES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


def policy_data(operator: str, approver: str, partner_account: str, regions: list[str],
                home: tuple[str, str], prod: dict, bakes: list[dict] | None = None) -> dict:
    """The demo's policy: one operator, one approver, the partner account (and the managed ones) pre-approved for
    sharing; two managed
    accounts: ``home`` (id, name), the one the bot runs in, and ``prod`` (an [[accounts]] entry: id, name, role,
    regions, its own operators), where the bot assumes a role; ``bakes``: its [[bakes]] tables."""
    home_id, home_name = home
    return {"aws": {"regions": regions}, "access": {"operators": [operator]},
            "approvals": {"approvers": [approver]},
            # the managed accounts too: prod runs what home bakes, so sharing a new version with it is routine
            "sharing": {"allowed_accounts": [partner_account], "allow_configured_accounts": True},
            "digest": {"channel": CHANNEL}, "accounts": [{"id": home_id, "name": home_name}, prod],
            **({"bakes": bakes} if bakes else {})}


def prod_account(operators: list[str]) -> dict:
    """prod's [[accounts]] entry: its role, its one region, its own operators (the global ones are not theirs)."""
    from bot.devtools import fleet

    return {"id": fleet.PROD_ACCOUNT, "name": fleet.PROD_NAME, "regions": fleet.PROD_REGIONS, "operators": operators,
            "role_arn": f"arn:aws:iam::{fleet.PROD_ACCOUNT}:role/amibot"}


def isolate_environment(environ=os.environ) -> None:
    """Forget the user's Slack, AWS, amibot and moto settings (and proxies) in this process; use the demo's."""
    for name in list(environ):
        if name.startswith(DROPPED_PREFIXES) or name in PROXIES:
            del environ[name]
    environ.update(ISOLATED_ENV)


def bundled_scripts() -> list[str]:
    """The names of the scripts shipped with the package (bot/devtools/scripts/NAME.txt)."""
    return sorted(path.stem for path in SCRIPTS_DIR.glob("*.txt"))


def script_path(script: str) -> Path:
    """A file path as given, or a bare name (``lifecycle``) for a script shipped with the package, so that
    `amibot demo --script lifecycle` works from any directory, in a checkout or an installed wheel."""
    given = Path(script)
    if given.exists() or given.parent != Path("."):
        return given
    bundled = SCRIPTS_DIR / (script if script.endswith(".txt") else f"{script}.txt")
    return bundled if bundled.exists() else given


def run(script: str | None = None, port: int = 0, out: TextIO | None = None) -> int:
    """Run the demo: the console reads the script file's lines, or the terminal. Returns the exit status."""
    out = out or sys.stdout
    lines = None
    if script is not None:
        try:
            lines = script_path(script).read_text(encoding="utf-8").splitlines()
        except OSError as error:
            shipped = f" (scripts shipped with amibot: {', '.join(bundled_scripts())})" if "/" not in script else ""
            print(f"amibot: cannot read the script {script}: {error.strerror}{shipped}", file=sys.stderr)
            return 2
    isolate_environment()
    try:
        import moto  # noqa: F401  (a dev dependency)
    except ImportError:
        print(DEMO_NEEDS, file=sys.stderr)
        return 2
    if logging.getLogger().level == logging.INFO:  # the default: the console is the show, the log only errors
        for name in QUIET_LOGGERS:  # (moto's gaps make the bot warn a lot; --log-level WARNING shows them)
            logging.getLogger(name).setLevel(logging.ERROR)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if in_main_thread else None
    try:
        with contextlib.ExitStack() as stack:
            console = _start(stack, port, out)
            source = ScriptSource(lines) if lines is not None else TerminalSource()
            try:
                return console.run(source)
            except KeyboardInterrupt:
                out.write("\n· interrupted\n")
                return INTERRUPTED
    except KeyboardInterrupt:  # while starting or stopping
        return INTERRUPTED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        out.write("· demo stopped: server, jobs, fake Slack and moto are down; the temporary files are gone\n")
        out.flush()


def _start(stack: contextlib.ExitStack, port: int, out: TextIO) -> Console:
    """Start moto, the fake Slack and the app; register their shutdown (in reverse order) on ``stack``."""
    from slack_sdk import WebClient

    from bot.app import create_app
    from bot.core.config import Settings, parse_policy
    from bot.devtools import fleet
    from bot.devtools.fakeslack import FakeSlack
    from bot.devtools.local import LocalApp

    workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="amibot-demo-"))
    moto = _Moto().start()
    stack.callback(moto.stop)
    fake = FakeSlack().start()
    stack.callback(fake.stop)
    for person in PEOPLE:
        fake.users[person.id] = {"name": person.name, "real_name": person.name.title()}

    token, secret = f"xoxb-demo-{secrets.token_hex(8)}", secrets.token_hex(32)
    settings = Settings(bot_token=token, signing_secret=secret, slack_api_url=fake.url,
                        db_path=str(Path(workdir) / "amibot.db"))
    from moto.core import DEFAULT_ACCOUNT_ID

    policy = parse_policy(policy_data(PEOPLE[0].id, PEOPLE[1].id, fleet.PARTNER_ACCOUNT, [fleet.HOME, fleet.AWAY],
                                      home=(DEFAULT_ACCOUNT_ID, fleet.HOME_NAME), prod=prod_account([PEOPLE[3].id]),
                                      bakes=fleet.bakes(DEFAULT_ACCOUNT_ID)),
                          source="the demo's policy")
    runs = RunEmulations.new(stage_seconds=RUN_STAGE_SECONDS)
    emulation, aws = emulated_aws(policy.aws.regions, runs=runs)
    runs.bake.registered = lambda region, image_id: emulation.add_findings(region, image_id, fleet.SCANNED_CLEAN)
    amibot = create_app(settings, policy, slack=WebClient(token=token, base_url=fake.url), aws=aws)
    amibot.ctx.waits = dataclasses.replace(amibot.ctx.waits, **DEMO_WAITS)
    emulate_accounts(emulation, amibot.ctx.aws, runs=runs)
    out.write("· building a fleet in moto…\n")
    out.flush()
    home = amibot.ctx.aws.home
    built = fleet.build(home, _backdate, findings=emulation.add_findings, binned=emulation.entered_bin)
    fleet.build_prod(home, amibot.ctx.aws.of(fleet.PROD_NAME), built, launching_shared_images)
    fleet.promote(amibot.ctx, built)
    fleet.build_groups(home, built)
    fleet.add_pipelines(runs.bake.add_pipeline, built)

    local = LocalApp(amibot, secret, fake, port=port).start(background=False)
    stack.callback(_stop, local, moto)
    _start_background(amibot)
    out.write("\n".join(banner(local.url, built, amibot.ctx.policy, workdir)) + "\n")
    out.flush()
    return Console(local, PEOPLE, CHANNEL, CHANNEL_NAME, out, digest=_daily_digest(amibot.ctx),
                   resolve=lambda ref: fleet.resolve(amibot.ctx.aws, amibot.ctx.policy.digest.family_tag, ref,
                                                         built))


@dataclass
class RunEmulations:
    """The long-running work moto lacks, emulated: EC2 Image Builder and SSM Automation (``bake``, in the bot's
    own account only, as bot.devtools.bake_emulation is single-account) and instance refreshes (``refresh``, one per
    account: bot.devtools.refresh_emulation). Each run moves a stage every ``stage_seconds``."""

    bake: Any
    stage_seconds: float
    refresh: dict[str, Any] = field(default_factory=dict)  # account id -> its RefreshEmulation

    @classmethod
    def new(cls, stage_seconds: float = RUN_STAGE_SECONDS) -> RunEmulations:
        from bot.devtools.bake_emulation import BakeEmulation

        return cls(BakeEmulation(stage_seconds=stage_seconds), stage_seconds)

    def install(self, session, account_id: str | None = None) -> None:
        """On the session of ``account_id`` (None: moto's default account, the bot's own)."""
        from bot.devtools.refresh_emulation import RefreshEmulation

        if account_id is None or account_id == self.bake.account_id:
            self.bake.install(session)
        refresh = RefreshEmulation(account_id=account_id, step_seconds=self.stage_seconds).install(session)
        self.refresh[refresh.account_id] = refresh


def emulated_aws(regions: list[str], session=None, runs: RunEmulations | None = None):
    """The app's ``Aws`` on a boto3 session of its own (or ``session``), with what moto lacks emulated on that
    session (bot.devtools.emulation; with ``runs``, bakes and instance refreshes too): every client the app and the
    fleet make comes from it."""
    import boto3

    from bot.aws.clients import Aws
    from bot.devtools.emulation import Emulation

    session = session or boto3.session.Session()
    emulation = Emulation().install(session)
    if runs is not None:
        runs.install(session)
    return emulation, Aws(regions, session=session)


def emulate_accounts(emulation, accounts, runs: RunEmulations | None = None) -> None:
    """Install the emulation (and ``runs``' instance refreshes) on every managed account's session but the bot's own
    (which has them): an assumed role's calls are in its account, with that account's emulated state. Before any of
    their clients exists."""
    for handle in accounts.handles():
        if handle is not accounts.home:
            emulation.install(handle.session, handle.account.id)
            if runs is not None:
                runs.install(handle.session, handle.account.id)


@contextlib.contextmanager
def launching_shared_images():
    """moto launches an image another account shares with the launching one (as AWS does): its AMI check looks
    in the launching account's own images only, so it is off inside (for the fleet's seeding, before the app
    serves anyone)."""
    from moto import settings as moto_settings

    checking = moto_settings.ENABLE_AMI_VALIDATION
    moto_settings.ENABLE_AMI_VALIDATION = False
    try:
        yield
    finally:
        moto_settings.ENABLE_AMI_VALIDATION = checking


def _start_background(amibot) -> None:
    """The app's start hooks, minus the digest's catch-up and the look for versions of baked families built
    elsewhere: in the demo the digest comes when someone types :digest, not because the demo happened to start after
    [digest].at; and the fleet's unpromoted web-1.4.0 is part of the story, not a promotion request waiting for bob
    before anyone has typed anything."""
    from bot.services.digest import catch_up
    from handlers.commands import bake

    skipped = [catch_up, getattr(bake, "discover_at_start", None)]
    amibot.on_start = [hook for hook in amibot.on_start if all(hook is not skip for skip in skipped)]
    amibot.start_background()


class _Moto:
    """moto in-process for the demo's lifetime."""

    def __init__(self):
        from moto import mock_aws

        self._mock = mock_aws()
        self.keep = False  # set when work is still running at the end: then moto stays until the process ends

    def start(self) -> _Moto:
        self._mock.start()
        return self

    def stop(self) -> None:
        if not self.keep:
            self._mock.stop()


def _stop(local, moto: _Moto) -> None:
    """Stop taking requests and let the jobs finish before moto goes: a job still running after moto stops
    would send its request to the real AWS (with fake credentials, so refused, but sent)."""
    local.stop()
    busy = local.wait_idle(STOP_WAIT_SECONDS)
    if busy:
        log.warning("stopping with work still running (%s); moto stays up until the process ends", busy)
        moto.keep = True


def _daily_digest(ctx):
    """What the scheduler runs each day (bot.services.digest.run_daily), if this build has the digest."""
    try:
        from bot.services import digest
    except ImportError:
        return lambda: "this build has no daily digest"
    return lambda: digest.run_daily(ctx)


def _backdate(region: str, image_id: str, created: datetime) -> None:
    """Age an image and its snapshot in moto (AWS has no API for it)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ec2.models import ec2_backends

    ami = ec2_backends[DEFAULT_ACCOUNT_ID][region].amis[image_id]
    naive = created.replace(tzinfo=None) if ami.creation_date.tzinfo is None else created
    ami.creation_date = naive
    snapshot = getattr(ami, "ebs_snapshot", None)
    if snapshot is not None:
        snapshot.start_time = naive


def banner(url: str, built, policy, workdir: str) -> list[str]:
    """What the person sees first: where things run, who is who, what is in the fleet, what to try."""
    from bot.devtools import fleet

    lines = ["", "amibot demo — the real app, a fake Slack, AWS in moto: nothing leaves this machine.",
             f"  app: {url}/slack/events (signed requests only)   workspace: #{CHANNEL_NAME} ({CHANNEL})",
             f"  state: {workdir} (the bot's SQLite; removed when the demo stops)", "",
             "People (:as NAME switches):"]
    lines += [f"  {person.name:<6} {person.id:<8} {person.role}" for person in PEOPLE]
    lines += ["", f"Fleet in account {fleet.HOME_NAME} ({built.account_id}), regions {', '.join(policy.aws.regions)}:"]
    for family, (team, versions) in fleet.FAMILIES.items():
        current = next((name for name in built.promoted if name.startswith(f"{family}-")), None)
        labels = ", ".join(version for version, _ in versions)
        lines.append(f"  {family:<6} {team:<9} versions {labels}" + (f" (current: {current})" if current else ""))
    lines += [f"  running: {', '.join(f'{name} ({image})' for name, image in fleet.RUNNING.items())}",
              f"  builders: {', '.join(built.builders)}",
              f"  launch templates: {', '.join(f'{name} ({image})' for name, image in fleet.TEMPLATES.items())}",
              f"  shared: {', '.join(f'{name} with {account}' for name, account in fleet.SHARED.items())}"
              f" (sharing with {fleet.PARTNER_ACCOUNT} needs no approval; other accounts do)",
              f"  shared with prod: {', '.join(fleet.PROD_SHARED)}",
              f"  in {fleet.AWAY} too: {', '.join(fleet.COPIED_AWAY)}; disabled: {', '.join(fleet.DISABLED)}; "
              f"{len(built.orphaned_snapshots)} orphaned snapshots",
              f"  emulated (moto lacks them): a {fleet.RECYCLE_BIN_DAYS}-day Recycle Bin rule in {fleet.HOME} "
              f"({fleet.IN_BIN[0]} is in the bin), Inspector findings on older versions, Allowed AMIs in audit mode,"
              f" instance image metadata (drifting: {', '.join(sorted(fleet.ON_GONE))} on {fleet.DEREGISTERED[0][1]},"
              " deregistered)",
              "  baked (emulated, a stage a second): "
              + "; ".join(f"{family} by Image Builder pipeline {name} (on {_current(built, family)}), copied to "
                          f"{fleet.AWAY}, promoted on approval" for family, name in fleet.PIPELINES.items())
              + f"; {fleet.RUNBOOK_FAMILY} by the runbook {fleet.RUNBOOK} on its current version",
              "",
              f"Account {fleet.PROD_NAME} ({fleet.PROD_ACCOUNT}), the bot assumes a role there; region "
              f"{', '.join(fleet.PROD_REGIONS)}; its operator is dave, not alice:",
              *[f"  Auto Scaling group {group} (launch template {template}) on {image}: {count} instances"
                for group, (template, image, count) in fleet.PROD_GROUPS.items()],
              f"  (and in {fleet.HOME_NAME}: "
              + "; ".join(f"Auto Scaling group {group} (launch template {template}"
                          + (f" resolving {named.removeprefix('resolve:ssm:')}" if named.startswith("resolve:ssm:")
                             else "") + f") on {running}: {count} instance{'s' if count != 1 else ''}"
                          for group, (template, named, running, count) in fleet.HOME_GROUPS.items()) + ")",
              f"  running: {', '.join(f'{name} ({image})' for name, image in fleet.PROD_RUNNING.items())}",
              "",
              "Try: /ami list · /ami show web-1.3.0 · /ami versions web · /ami launch · /ami deregister {web-1.0.0}"
              " · /ami recycle-bin · /ami drift · :digest · :home · :help",
              f"Bake: /ami bake web (watch its stages; :as bob to approve the promotion) · /ami bake "
              f"{fleet.RUNBOOK_FAMILY} · /ami bakes",
              "Roll out: /ami promote {web-1.4.0} · /ami rollout web --account platform (:as bob approves; the thread"
              " follows each group to 100 %) · /ami drift web · /ami revoke {web-1.4.0} --reason TEXT · prod's group:"
              " /ami share {web-1.4.0} prod, then :as dave, /ami rollout web --account prod",
              "With prod: /ami deregister {web-1.2.0} (its blast radius reaches prod) · /ami drift --account prod"
              " · /ami launch {web-1.3.0} t3.small 1 --account prod (alice may not; :as dave may)",
              "{name} stands for the id of the image or instance called name. You are @alice.", ""]
    return lines


def _current(built, family: str) -> str:
    return next((name for name in built.promoted if name.startswith(f"{family}-")), "no current version")


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt()
