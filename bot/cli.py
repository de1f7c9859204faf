"""The `amibot` command line: run the bot, check its configuration, read the audit trail."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from datetime import datetime

from bot.core.config import Settings, load_policy, policy_warnings
from bot.core.errors import ConfigError

# Everything else is imported inside the command that needs it: `amibot digest` and `check-config` stay small.

log = logging.getLogger("amibot")


class Fatal(SystemExit):
    """A one-line reason to stop with its own exit status: ``SystemExit("amibot: …")`` always exits 1, and the README
    documents 2 for a start refused until the operator decides (a lost database)."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


def _setup_logging(level: str) -> None:
    """bot/core/logs.py: the human format or AMIBOT_LOG_FORMAT=json, libraries quiet, secrets masked."""
    from bot.core import logs

    try:
        logs.setup(level)
    except logs.ConfigurationError as error:
        raise SystemExit(f"amibot: {error}") from None


def _load(mode: str):
    settings = Settings.from_env()
    problems = settings.problems(mode)
    try:
        policy = load_policy(settings.config_path)
    except ConfigError as error:
        problems += error.problems
        policy = None
    if problems:
        for problem in problems:
            print(f"amibot: {problem}", file=sys.stderr)
        raise SystemExit(2)
    return settings, policy


def cmd_serve(args) -> int:
    from bot.app import create_app
    from bot.slack.server import create_server, serve_forever, stop_workers

    settings, policy = _load("http")
    _refuse_a_lost_database(settings, policy, args.new_database)
    _check_slack(settings)
    amibot = create_app(settings, policy, scheduled=True)
    try:
        server = create_server(amibot, host=args.host, port=args.port, threads=args.threads)
    except OSError as error:  # the port is taken (or privileged): say so, not a traceback
        amibot.stop()
        raise SystemExit(f"amibot: cannot listen on {args.host}:{args.port}: {error.strerror or error}") from None
    amibot.start_background()
    log.info("amibot serving on http://%s:%s/slack/events (health: /healthz)", args.host, server.effective_port)

    def stop(*_):
        log.info("shutting down")
        server.close()

    signal.signal(signal.SIGTERM, stop)
    try:
        serve_forever(server)
    except KeyboardInterrupt:
        pass
    finally:
        stop_workers(server)  # requests in flight finish before the app's parts stop
        amibot.stop()
    return 0


def cmd_socket(args) -> int:
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    from bot.app import create_app

    settings, policy = _load("socket")
    _refuse_a_lost_database(settings, policy, args.new_database)
    _check_slack(settings)
    amibot = create_app(settings, policy, socket_mode=True, scheduled=True)
    metrics_server = _start_metrics(amibot, getattr(args, "metrics_host", "127.0.0.1"),
                                    getattr(args, "metrics_port", None))
    amibot.start_background()
    handler = SocketModeHandler(amibot.app, settings.app_token)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        try:
            from bot.core import logs

            with logs.quiet("slack_bolt.App"):  # its log of this failure would repeat ours, over several lines
                handler.connect()
        except Exception as error:  # a bad SLACK_APP_TOKEN or Slack unreachable: one line, not a traceback
            problem = _slack_problem(error, "SLACK_APP_TOKEN", "apps.connections.open", settings)
            raise SystemExit(f"amibot: {problem}") from None
        log.info("amibot connected in Socket Mode")
        done.wait()
    except KeyboardInterrupt:
        pass
    finally:
        handler.close()
        if metrics_server is not None:
            metrics_server.close()
        amibot.stop()
    return 0


SLACK_CHECK_TIMEOUT_SECONDS = 10


def _check_slack(settings) -> None:
    """auth.test before anything starts, so a wrong SLACK_BOT_TOKEN or an unreachable Slack is one clear line
    and a non-zero exit rather than a traceback from deep inside Bolt."""
    from slack_sdk import WebClient

    quiet = logging.getLogger("amibot.slack_check")  # slack_sdk's own error lines would repeat ours
    quiet.setLevel(logging.DEBUG if logging.getLogger().level <= logging.DEBUG else logging.CRITICAL)
    client = WebClient(token=settings.bot_token, base_url=settings.slack_api_url,
                       timeout=SLACK_CHECK_TIMEOUT_SECONDS, logger=quiet)
    try:
        client.auth_test()
    except Exception as error:
        raise SystemExit(f"amibot: {_slack_problem(error, 'SLACK_BOT_TOKEN', 'auth.test', settings)}") from None


def _slack_problem(error: Exception, token: str, method: str, settings) -> str:
    """One sentence for what went wrong talking to Slack; the token itself is never part of it."""
    from slack_sdk.errors import SlackApiError

    if isinstance(error, SlackApiError):
        data = getattr(error.response, "data", None)
        code = data.get("error") if isinstance(data, dict) else None
        if code in ("invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive"):
            return f"Slack refused {token} ({method} answered {code}): check the token in the app's settings"
        return f"Slack answered {method} with an error: {code or getattr(error.response, 'status_code', '?')}"
    reason = getattr(error, "reason", None) or error  # urllib's URLError wraps the socket error
    text = getattr(reason, "strerror", None) or str(reason) or type(reason).__name__
    return f"cannot reach Slack at {settings.slack_api_url} ({method}): {text}"


def _start_metrics(amibot, host: str, port: int | None):
    """Socket Mode has no HTTP server of its own: --metrics-port starts a small one for /metrics and /healthz."""
    if not port:
        return None
    from bot.slack import metrics_server

    try:
        return metrics_server.start_server(amibot.ctx, host, port)
    except OSError as error:
        amibot.stop()
        raise SystemExit(f"amibot: cannot serve metrics on {host}:{port}: {error.strerror or error}") from None


def cmd_check_config(args) -> int:
    settings = Settings.from_env()
    problems = settings.problems(args.mode)
    policy = None
    try:
        policy = load_policy(settings.config_path)
    except ConfigError as error:
        problems += error.problems
    print("Environment:")
    for key, value in settings.masked().items():
        print(f"  {key} = {value}")
    if policy is not None:
        print(f"Policy ({policy.source}):")
        for section, values in policy.as_dict().items():
            for key, value in values.items():
                if key == "external_id" and value:  # shown no more than an [[accounts]] entry's
                    value = "****"
                print(f"  [{section}].{key} = {json.dumps(value)}")
        for bake in policy.bakes:
            print(f"  [[bakes]] {bake.family}: {bake.mechanism} {bake.source}"
                  + (f", account {bake.account}" if bake.account else "") + (f", region {bake.region}" if bake.region
                                                                             else "")
                  + (f", schedule {bake.schedule!r}" if bake.schedule else "") + f", promote = {bake.promote}")
    if args.aws and not problems:
        problems += _check_aws(policy)
    warnings = policy_warnings(policy) if policy is not None else []
    if warnings:  # worth knowing, not wrong: the exit code does not change
        print(f"\n{len(warnings)} warning(s):", file=sys.stderr)
        for warning in warnings:
            print(f"  - warning: {warning}", file=sys.stderr)
    if problems:
        print(f"\n{len(problems)} problem(s):", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    print("\nconfiguration OK" + (f" ({len(warnings)} warning(s) above)" if warnings else ""))
    return 0


def _check_aws(policy) -> list[str]:
    from bot.aws.clients import Aws, AwsAccounts
    from bot.core.errors import AwsError

    try:
        aws = AwsAccounts(Aws(policy.aws.regions))
        print(f"AWS: account {aws.home.account_id()}, regions {', '.join(aws.regions)}")
    except AwsError as error:
        return [f"AWS: {error.message}"]
    problems = _check_accounts(aws, policy) if (policy.accounts or policy.organization.enabled) else []
    if policy.bakes and not problems:
        from bot.services.bake import automation_problems

        problems += automation_problems(aws, policy)
    return problems


def _check_accounts(aws, policy) -> list[str]:
    """Many accounts: each role assumed once, one line per account; every failure is also a problem (exit 1)."""
    from bot.core.errors import AwsError
    from bot.services import organization

    try:
        checks, listing = organization.check(aws, policy)
    except AwsError as error:
        return [f"AWS: {error.message}"]
    if policy.organization.enabled:
        print(f"AWS organisation: {organization.listed_from(policy)}")
    problems = [f"AWS: {listing}"] if listing else []
    source = "the organisation's members" + (" and [[accounts]]" if policy.accounts else "") \
        if policy.organization.enabled and not listing else "[[accounts]]"
    print(f"AWS accounts ({len(checks)}, from {source}):")
    for check in checks:
        if check.problem is None:
            print(f"  ok      {check.account.label}")
        else:
            print(f"  FAILED  {check.account.label}: {check.problem}")
            problems.append(f"AWS: {check.account.label}: {check.problem}")
    return problems


def _store():
    """The database, opened read-only: read-only commands never create (or migrate) one. A missing or empty
    file is one line and exit 1."""
    from bot.durable.store import Store, StoreMissing

    path = Settings.from_env().db_path
    try:
        return Store(path, create=False)
    except StoreMissing as error:
        raise SystemExit(f"amibot: {error}") from None


def _not_a_database(error: Exception) -> SystemExit:
    return SystemExit(f"amibot: {Settings.from_env().db_path} is not a readable amibot database ({error})")


def _anchors_in_bucket():
    """(every object under the anchors' prefix, where they are, why there are none) from [audit].anchor_bucket."""
    from bot.durable import anchors

    settings = Settings.from_env()
    try:
        policy = load_policy(settings.config_path)
    except ConfigError as error:
        raise SystemExit(f"amibot: {error.problems[0]}") from None
    bucket = policy.audit.anchor_bucket
    if not bucket:
        return [], None, "no [audit].anchor_bucket configured"
    from bot.aws.clients import Aws

    try:
        stored = anchors.read_bucket(Aws(policy.aws.regions), bucket)
    except Exception as error:
        return [], None, f"cannot read s3://{bucket}: {getattr(error, 'message', None) or error}"
    if not stored:
        return [], None, f"no anchor in s3://{bucket} yet"
    return stored, f"s3://{bucket}", None


def cmd_audit_verify(args) -> int:
    import sqlite3

    from bot.durable import anchors, audit

    given = None
    if args.anchor:
        try:
            given = anchors.Anchor.parse(args.anchor)
        except anchors.AnchorError as error:
            raise SystemExit(f"amibot: --anchor: {error}") from None
    store = _store()
    try:
        verdict = audit.verify(store)
        if not verdict.ok:
            print(verdict, file=sys.stderr)
            return 1
        if given is not None:
            stored, source, missing = [anchors.Stored("--anchor", given)], "--anchor", None
        else:
            stored, source, missing = _anchors_in_bucket()
        if missing:
            print(f"{verdict}; not checked against an anchor ({missing})")
            return 0
        problems = anchors.check_all(store, stored)
    except sqlite3.DatabaseError as error:
        raise _not_a_database(error) from None
    if problems:  # one line per anchor the trail does not match, each naming the anchor
        print("\n".join(problems), file=sys.stderr)
        return 1
    newest = stored[-1].anchor
    if len(stored) == 1:
        print(f"{verdict}; contains the {newest.describe()} from {source}")
    else:
        print(f"{verdict}; contains every one of the {len(stored)} anchors in {source}, the newest the "
              f"{newest.describe()}")
    return 0


def _since(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value).strftime("%Y-%m-%dT%H:%M:%S")
    except ValueError:
        raise SystemExit(f"amibot: --since expects a date such as 2026-01-31, got {value!r}") from None


def cmd_audit_export(args) -> int:
    import sqlite3

    from bot.durable import audit

    store = _store()
    try:
        sys.stdout.write(audit.export(store, args.format, _since(args.since)))
    except sqlite3.DatabaseError as error:
        raise _not_a_database(error) from None
    return 0


def cmd_backup(args) -> int:
    """An online copy of AMIBOT_DB to a file or s3://bucket/key, while amibot runs; the database is only read."""
    import sqlite3

    from bot.durable import backup

    destination = args.destination
    store = _store()

    def aws():
        from bot.aws.clients import Aws

        return Aws(_policy_or_exit().aws.regions)

    try:
        done = backup.run(store, destination, aws)
    except backup.BackupError as error:
        raise SystemExit(f"amibot: backup: {error}") from None
    except sqlite3.DatabaseError as error:
        raise _not_a_database(error) from None
    except Exception as error:  # S3 refused or unreachable: AwsError says which, in one sentence
        raise SystemExit(f"amibot: backup to {destination} failed: {getattr(error, 'message', None) or error}") \
            from None
    finally:
        store.close()
    print(done.line())
    print(f"after restoring it: amibot audit verify --anchor {done.anchor.count}:{done.anchor.head}")
    return 0


def cmd_migrate(args) -> int:
    """Apply the migrations the database lacks (a start does this itself); --check only says which."""
    from bot.durable.store import MIGRATIONS, Store, StoreMissing, pending_migrations

    path = Settings.from_env().db_path
    try:
        pending = pending_migrations(path)
    except StoreMissing as error:
        if args.check:
            raise SystemExit(f"amibot: {error} (a first start creates it with all {len(MIGRATIONS)} migrations)") \
                from None
        pending = list(MIGRATIONS)
    if args.check:
        if not pending:
            print(f"{path} is up to date: all {len(MIGRATIONS)} migrations applied, nothing to do")
            return 0
        print(f"{path} lacks {len(pending)} migration(s); the next start (or `amibot migrate`) applies them:")
        for migration in pending:
            print(f"  {migration.name}: {migration.title}")
        return 1
    Store(path).close()  # opening it for writing applies what it lacks, in one transaction, as a start does
    for migration in pending:
        print(f"applied {migration.name}")
    print(f"{path} is up to date: all {len(MIGRATIONS)} migrations applied")
    return 0


def _refuse_a_lost_database(settings, policy, new_database: bool) -> None:
    """`serve`/`socket`: a missing database while the anchor bucket shows a history is a lost database, not a
    first start; refuse (one line, exit 2) unless --new-database says to begin a new one."""
    from bot.aws.clients import Aws
    from bot.durable import anchors

    problem = anchors.history_without_database(settings.db_path, policy, lambda: Aws(policy.aws.regions))
    if problem and not new_database:
        raise Fatal(f"amibot: {problem}", 2)
    if problem:
        log.warning("starting a new database as --new-database asks, although %s", problem.split(";")[0])


def cmd_iam_policy(args) -> int:
    """The bot's own policy (the committed iam-policy.json); --member: the policy of the role in each member
    account; --trust PRINCIPAL: that role's trust policy; --cloudformation: the role(s) as a template. With a
    policy file, its anchor bucket and the roles it assumes narrow the resources; without, placeholders."""
    from bot import iam_policy as policies

    if args.trust:
        if args.cloudformation:
            raise SystemExit("amibot: --cloudformation goes with no option or --member, not --trust")
        print(json.dumps(policies.trust_policy(_trusted_principal(args.trust), _external_id(args)), indent=2))
        return 0
    if args.external_id or args.account:
        raise SystemExit("amibot: --external-id and --account go with --trust")
    policy = _policy_if_any()
    if args.cloudformation:
        sys.stdout.write(policies.cloudformation(member=args.member, policy=policy))
    elif args.member:
        print(json.dumps(policies.member_policy(policy), indent=2))
    else:
        print(json.dumps(policies.iam_policy(policy), indent=2))
    return 0


def _policy_if_any():
    """The policy file when there is one (its problems, one a line, and exit 2 when it is wrong); None without."""
    from pathlib import Path

    path = Settings.from_env().config_path
    if path is None or not Path(path).exists():
        return None
    return _policy_or_exit()


TRUSTED_ARN = r"^arn:aws[a-z-]*:iam::\d{12}:(root|(role|user)/[\w+=,.@/-]{1,512})$"


def _trusted_principal(value: str) -> str:
    import re

    value = value.strip()
    if re.fullmatch(r"\d{12}", value) or re.fullmatch(TRUSTED_ARN, value):
        return value
    raise SystemExit(f"amibot: --trust expects the bot's 12-digit account id or its role ARN "
                     f"(arn:aws:iam::<id>:role/<name>), got {value!r}")


def _policy_or_exit():
    """The policy file alone (no secrets needed), or its problems, one a line, and exit 2."""
    try:
        return load_policy(Settings.from_env().config_path)
    except ConfigError as error:
        for problem in error.problems:
            print(f"amibot: {problem}", file=sys.stderr)
        raise SystemExit(2) from None


def _external_id(args) -> str | None:
    """--external-id, else the external_id of the configured account --account names."""
    if args.external_id or not args.account:
        return args.external_id
    from bot.core.accounts import find

    policy = _policy_or_exit()
    account = find(policy.accounts, args.account)
    if account is None:
        known = ", ".join(a.label for a in policy.accounts) or "none"
        raise SystemExit(f"amibot: --account {args.account}: not in [[accounts]] (configured: {known})")
    return account.external_id


def cmd_config_reference(args) -> int:
    """Print the policy schema as Markdown (docs/configuration.md holds the same tables)."""
    from bot.devtools.docs import config_reference

    sys.stdout.write(config_reference())
    return 0


def cmd_docs(args) -> int:
    """Regenerate docs/commands.md, docs/configuration.md, the README's summaries and the IAM documents
    (iam-policy.json, deploy/*.yaml) from the code (`make docs`)."""
    from pathlib import Path

    from bot.devtools import docs
    from bot.wiring import subcommand_registry

    root = Path(args.root)
    if not (root / "README.md").is_file():
        raise SystemExit(f"amibot: {root / 'README.md'} not found: run `amibot docs` in a checkout of amibot")
    try:
        files = docs.expected(root, subcommand_registry(), build_parser())
    except ValueError as problem:
        raise SystemExit(f"amibot: {problem}") from None
    written = list(docs.write(files))
    for path in written:
        print(f"wrote {path}")
    if not written:
        print("the generated docs are up to date")
    return 0


def fewer_malloc_arenas(environ: dict[str, str] | None = None) -> bool:
    """One glibc malloc arena for every thread (unless MALLOC_ARENA_MAX says otherwise). glibc gives each thread
    that allocates its own arena, up to 8 per core; with 16 threads parsing AWS's answers under one GIL that buys
    no speed and keeps each arena's freed memory resident: measured (bench/org_bench.py, 10 accounts) 174 MiB peak
    with glibc's default, 170 with two arenas, 123 with one, at the same CPU. Feature-detected: anything but
    glibc is left alone."""
    import ctypes
    import os
    import platform

    environ = os.environ if environ is None else environ
    if "MALLOC_ARENA_MAX" in environ or platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        return ctypes.CDLL(None).mallopt(-8, 1) == 1  # M_ARENA_MAX
    except (OSError, AttributeError):
        return False


def cmd_digest(args) -> int:
    """Compute the digest from the terminal; --dry-run prints it, otherwise it is posted to [digest].channel."""
    import contextlib
    import gc

    fewer_malloc_arenas()
    from datetime import UTC
    from pathlib import Path

    from bot.aws.clients import Aws, AwsAccounts
    from bot.aws.lean_botocore import client_classes_shared
    from bot.core.errors import AwsError
    from bot.render import digest as render
    from bot.services import digest, organization
    from bot.services.drift import retired_names
    from bot.services.inventory import CallCounter, counting_session
    from bot.slack import post_digest

    settings = Settings.from_env()
    try:
        policy = load_policy(settings.config_path)
    except ConfigError as error:
        for problem in error.problems:
            print(f"amibot: {problem}", file=sys.stderr)
        return 2
    if not args.dry_run and not (settings.bot_token and policy.digest.channel):
        print("amibot: posting needs SLACK_BOT_TOKEN and [digest].channel; use --dry-run to print instead",
              file=sys.stderr)
        return 2
    counter = CallCounter()
    aws = AwsAccounts(Aws(policy.aws.regions, session=counting_session(counter)),
                      max_concurrency=policy.aws.max_concurrency)
    listed = organization.refresh(aws, policy)  # the configured accounts, or the organisation's members
    if isinstance(listed, AwsError):
        print(f"amibot: cannot list the organisation's accounts: {listed.message}", file=sys.stderr)
        return 1
    _count_calls_per_account(aws, counter)
    now = datetime.now(UTC)
    store = _store() if Path(settings.db_path).exists() else None
    snoozed = digest.snoozed_ids(store, now) if store else set()
    names = retired_names(store) if store else None  # gone images amibot retired keep their family (drift)

    def progress(where: str, text: str) -> None:
        print(f"amibot: {where}: {text}", file=sys.stderr, flush=True)

    unit = "account-regions" if aws.accounts else "regions"

    def done(count: int, total: int, target) -> None:
        print(f"digest: {count}/{total} {unit}", file=sys.stderr, flush=True)
        if aws.accounts:  # this run is done with that account-region: its clients would only hold memory
            aws.of(target.account).release(target.region)
            if count % aws.max_concurrency == 0:  # (after each one: twice the CPU, no less memory)
                gc.collect()  # clients hold reference cycles, and the collector is off while scanning

    # A short batch run that allocates millions of short-lived, acyclic objects parsing AWS's answers: the
    # cyclic garbage collector would only re-scan them (about a fifth of the CPU time). Off while scanning.
    # Many accounts: one client class per service for all of them, or the peak memory doubles (bench/README.md)
    shared = client_classes_shared() if aws.many else contextlib.nullcontext()
    with shared:
        aws.home.prepare(digest.SERVICES)  # their models are parsed before the freeze: no collection re-scans them
        gc.freeze()
        gc.disable()
        try:
            findings = digest.compute(aws, policy, now, snoozed, progress=progress, names=names, done=done)
        except AwsError as error:
            print(f"amibot: {error.message}", file=sys.stderr)
            return 1
        finally:
            gc.enable()
    calls = counter.by_region()
    for region in sorted(calls):
        print(f"amibot: {region}: {calls[region]} AWS calls {json.dumps(counter.operations(region))}", file=sys.stderr)
    day = digest.local_day(policy, now)
    if args.dry_run:
        writers = {"json": lambda out: render.write_json(findings, day, out, calls),
                   "csv": lambda out: render.write_csv(findings, out),
                   "table": lambda out: render.write_table(findings, day, out)}
        writers[args.format](sys.stdout)
    else:
        from slack_sdk import WebClient

        slack = WebClient(token=settings.bot_token, base_url=settings.slack_api_url)
        post_digest.post(slack, policy.digest.channel, findings, day)
        print(f"amibot: posted the digest for {day} to {policy.digest.channel}", file=sys.stderr)
    for region in findings.failures:
        print(f"amibot: {region.label} was not checked: {region.error}", file=sys.stderr)
    return 1 if findings.failures else 0


def _count_calls_per_account(aws, counter) -> None:
    """With many accounts, count each account's calls apart ("prod (111111111111), us-east-1"). An assumed
    account's handle has its own session (bot.aws.clients.assumed_session); its clients are made later, so registering
    on that session now counts all of them."""
    if not aws.many:
        return
    counter.account_label = aws.home.account.label  # the bot's own session already counts with `counter`
    for handle in aws.handles():
        if handle is not aws.home:
            handle._session.events.register("before-call", counter.in_account(handle.account.label))


def cmd_demo(args) -> int:
    """A local playground: the real app, a fake Slack and AWS in moto; imported here so `serve` never loads moto."""
    from bot.devtools import demo

    return demo.run(script=args.script, port=args.port)


NEW_DATABASE_HELP = ("start with a new, empty database even though [audit].anchor_bucket shows an earlier "
                     "history (default: refuse to start when the database is missing)")


class _HelpWithDefaults(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends with its default, unless the text already says it; flags that are off unless
    given, and options without a default value, explain themselves in their own text."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text.lower() or action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


def _explain(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Give every parser, subcommands' included (whoever added them), the defaults formatter, and each
    subcommand's --help the one-line description its parent lists."""
    parser.formatter_class = _HelpWithDefaults
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            listed = {choice.dest: choice.help for choice in action._choices_actions}
            for name, subparser in action.choices.items():
                if subparser.description is None:
                    subparser.description = listed.get(name)
                _explain(subparser)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="amibot", description="Run the life of your AMIs from Slack.")
    parser.add_argument("--log-level", default="INFO", type=str.upper, choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                        help="how much to log (stderr); DEBUG also shows botocore's, boto3's and urllib3's INFO "
                             "lines; AMIBOT_LOG_FORMAT=json logs one JSON object per line")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="HTTP mode: POST /slack/events, GET /healthz")
    serve.add_argument("--port", type=int, default=3000, help="TCP port for POST /slack/events and GET /healthz")
    serve.add_argument("--host", default="0.0.0.0",
                       help="address to listen on: 0.0.0.0 is every interface, 127.0.0.1 this machine only")
    serve.add_argument("--threads", type=int, default=16, help="HTTP worker threads (default 16)")
    serve.add_argument("--new-database", action="store_true", help=NEW_DATABASE_HELP)
    serve.set_defaults(run=cmd_serve)

    socket = commands.add_parser("socket", help="Socket Mode (needs SLACK_APP_TOKEN)")
    socket.add_argument("--metrics-port", type=int, default=None, metavar="PORT",
                        help="serve GET /metrics and /healthz on this port (default: off)")
    socket.add_argument("--metrics-host", default="127.0.0.1", metavar="HOST",
                        help="address for --metrics-port (default 127.0.0.1; 0.0.0.0 for every interface)")
    socket.add_argument("--new-database", action="store_true", help=NEW_DATABASE_HELP)
    socket.set_defaults(run=cmd_socket)

    check = commands.add_parser("check-config", help="validate environment and policy file, print them masked")
    check.add_argument("--mode", choices=["http", "socket", "any"], default="any",
                       help="the mode whose secrets must be set: http (SLACK_SIGNING_SECRET), socket "
                            "(SLACK_APP_TOKEN) or any")
    check.add_argument("--aws", action="store_true",
                       help="also check AWS credentials (sts:GetCallerIdentity) and, with [[accounts]] or "
                            "[organization], assume each account's role once: one line per account, non-zero "
                            "if any fails")
    check.set_defaults(run=cmd_check_config)

    audit_parser = commands.add_parser("audit", help="verify or export the audit trail")
    audit_commands = audit_parser.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    verify = audit_commands.add_parser("verify", help="recompute the hash chain; non-zero if it is broken")
    verify.add_argument("--anchor", metavar="HASH|COUNT:HASH",
                        help="check against this anchor instead of the newest in [audit].anchor_bucket")
    verify.set_defaults(run=cmd_audit_verify)
    export = audit_commands.add_parser("export", help="write the trail as CSV or JSON")
    export.add_argument("--format", choices=["csv", "json"], default="csv", help="output format")
    export.add_argument("--since", help="only rows from this date (YYYY-MM-DD or ISO time; default: every row)")
    export.set_defaults(run=cmd_audit_export)

    backup_parser = commands.add_parser("backup", help="copy the database (online, consistent) to a file or "
                                                       "s3://bucket/key while amibot runs")
    backup_parser.add_argument("destination", metavar="DEST",
                               help="a file path (replaced if it exists) or s3://bucket/key")
    backup_parser.set_defaults(run=cmd_backup)

    migrate = commands.add_parser("migrate", help="apply the database migrations an upgrade brings (a start also "
                                                  "does); --check only lists them")
    migrate.add_argument("--check", action="store_true",
                         help="list the migrations that would be applied and change nothing; non-zero if any")
    migrate.set_defaults(run=cmd_migrate)

    iam = commands.add_parser("iam-policy", help="print the IAM policy the bot needs (or, for many accounts, the "
                                                 "member roles' policy and trust policy; or the roles as "
                                                 "CloudFormation)")
    which = iam.add_mutually_exclusive_group()
    which.add_argument("--member", action="store_true",
                       help="the policy of the role amibot assumes in each member account (the same EC2/SSM/Auto "
                            "Scaling actions, without sts:AssumeRole, organizations and the S3 audit anchors)")
    which.add_argument("--trust", metavar="PRINCIPAL",
                       help="the trust policy of each member account's role, trusting PRINCIPAL: the bot's "
                            "12-digit account id or its role ARN")
    iam.add_argument("--cloudformation", action="store_true",
                     help="the bot's role (with --member: the member accounts' role, for a service-managed "
                          "StackSet) as a CloudFormation template; docs/iam.md")
    iam.add_argument("--external-id", metavar="ID", help="with --trust: require this sts:ExternalId")
    iam.add_argument("--account", metavar="NAME|ID",
                     help="with --trust: require the external_id configured for this [[accounts]] entry")
    iam.set_defaults(run=cmd_iam_policy)

    digest = commands.add_parser("digest", help="stale images and orphaned snapshots with their cost")
    digest.add_argument("--dry-run", action="store_true", help="print instead of posting to [digest].channel")
    digest.add_argument("--format", choices=["table", "json", "csv"], default="table",
                        help="output format with --dry-run")
    digest.set_defaults(run=cmd_digest)

    demo = commands.add_parser("demo", help="try it without Slack or AWS: a local playground with a console")
    demo.add_argument("--script", metavar="FILE",
                      help="run console lines from FILE, or from a script shipped with amibot by its name "
                           "(lifecycle); non-zero if a step fails (default: the interactive console)")
    demo.add_argument("--port", type=int, default=0, help="the app's HTTP port on 127.0.0.1 (default: a free one)")
    demo.set_defaults(run=cmd_demo)

    reference = commands.add_parser("config-reference", help="print the policy file reference (Markdown)")
    reference.set_defaults(run=cmd_config_reference)

    docs = commands.add_parser("docs", help="regenerate docs/commands.md, docs/configuration.md, the README's "
                                            "command summaries and the IAM documents from the code (a checkout's "
                                            "`make docs`)")
    docs.add_argument("--root", default=".", metavar="DIR", help="the checkout to write into (default: .)")
    docs.set_defaults(run=cmd_docs)
    return _explain(parser)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.log_level)
    try:
        return args.run(args) or 0
    except SystemExit as stop:
        if not isinstance(stop.code, str):
            raise
        if _json_logs():  # a fatal one-liner is a JSON record like every other line
            log.error("%s", stop.code.removeprefix("amibot: "))
        else:
            print(stop.code, file=sys.stderr)
        return getattr(stop, "status", 1)
    except BrokenPipeError:  # `amibot iam-policy | head`: the reader left; no traceback for that
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the final flush at exit is quiet too
        return 1


def _json_logs() -> bool:
    from bot.core import logs

    try:
        return logs.log_format() == "json"
    except logs.ConfigurationError:
        return False


if __name__ == "__main__":
    sys.exit(main())
