"""The `amibot` command line: run the bot, check its configuration, read the audit trail."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from datetime import datetime

from bot.config import SCHEMA, Settings, load_policy
from bot.errors import ConfigError

# Everything else is imported inside the command that needs it: `amibot digest` and `check-config` stay small.

log = logging.getLogger("amibot")


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # botocore logs request bodies at DEBUG; keep it (and urllib3) quieter than the bot itself.
    for noisy in ("botocore", "boto3", "urllib3", "slack_bolt.App"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, logging.getLogger().level))


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
    from bot import scheduler
    from bot.app import create_app
    from bot.server import create_server, serve_forever

    settings, policy = _load("http")
    amibot = create_app(settings, policy)
    scheduler.enable(amibot.ctx)
    server = create_server(amibot, host=args.host, port=args.port, threads=args.threads)
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
        amibot.stop()
    return 0


def cmd_socket(args) -> int:
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    from bot import scheduler
    from bot.app import create_app

    settings, policy = _load("socket")
    amibot = create_app(settings, policy, socket_mode=True)
    scheduler.enable(amibot.ctx)
    amibot.start_background()
    handler = SocketModeHandler(amibot.app, settings.app_token)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        handler.connect()
        log.info("amibot connected in Socket Mode")
        done.wait()
    except KeyboardInterrupt:
        pass
    finally:
        handler.close()
        amibot.stop()
    return 0


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
                print(f"  [{section}].{key} = {json.dumps(value)}")
    if args.aws and not problems:
        problems += _check_aws(policy)
    if problems:
        print(f"\n{len(problems)} problem(s):", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    print("\nconfiguration OK")
    return 0


def _check_aws(policy) -> list[str]:
    from bot.aws import Aws
    from bot.errors import AwsError

    try:
        aws = Aws(policy.aws.regions)
        print(f"AWS: account {aws.account_id()}, regions {', '.join(aws.regions)}")
    except AwsError as error:
        return [f"AWS: {error.message}"]
    return []


def _store():
    from bot.store import Store

    return Store(Settings.from_env().db_path)


def cmd_audit_verify(args) -> int:
    from bot import audit

    verdict = audit.verify(_store())
    print(verdict, file=sys.stdout if verdict.ok else sys.stderr)
    return 0 if verdict.ok else 1


def _since(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value).strftime("%Y-%m-%dT%H:%M:%S")
    except ValueError:
        raise SystemExit(f"amibot: --since expects a date such as 2026-01-31, got {value!r}") from None


def cmd_audit_export(args) -> int:
    from bot import audit

    sys.stdout.write(audit.export(_store(), args.format, _since(args.since)))
    return 0


def cmd_iam_policy(args) -> int:
    from bot.aws import iam_policy

    print(json.dumps(iam_policy(), indent=2))
    return 0


def cmd_config_reference(args) -> int:
    """Print the policy schema as Markdown (the README's configuration reference comes from this)."""
    for section, keys in SCHEMA.items():
        print(f"\n**[{section}]**\n\n| key | type | default | meaning |\n|---|---|---|---|")
        for name, key in keys.items():
            print(f"| `{name}` | {key.type} | `{json.dumps(key.default)}` | {key.doc} |")
    return 0


def cmd_digest(args) -> int:
    """Compute the digest from the terminal; --dry-run prints it, otherwise it is posted to [digest].channel."""
    import gc
    from datetime import UTC
    from pathlib import Path

    from bot.aws import Aws
    from bot.errors import AwsError
    from bot.render import digest as render
    from bot.services import digest
    from bot.services.inventory import CallCounter, counting_session

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
    aws = Aws(policy.aws.regions, session=counting_session(counter))
    now = datetime.now(UTC)
    snoozed = digest.snoozed_ids(_store(), now) if Path(settings.db_path).exists() else set()

    def progress(region: str, text: str) -> None:
        print(f"amibot: {region}: {text}", file=sys.stderr, flush=True)

    # A short batch run that allocates millions of short-lived, acyclic objects parsing AWS's answers: the
    # cyclic garbage collector would only re-scan them (about a fifth of the CPU time). Off while scanning.
    gc.freeze()
    gc.disable()
    try:
        findings = digest.compute(aws, policy, now, snoozed, progress=progress)
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
        digest.post(slack, policy.digest.channel, findings, day)
        print(f"amibot: posted the digest for {day} to {policy.digest.channel}", file=sys.stderr)
    for region in findings.failures:
        print(f"amibot: {region.region} was not checked: {region.error}", file=sys.stderr)
    return 1 if findings.failures else 0


def cmd_demo(args) -> int:
    """A local playground: the real app, a fake Slack and AWS in moto; imported here so `serve` never loads moto."""
    from bot.devtools import demo

    return demo.run(script=args.script, port=args.port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="amibot", description="Run the life of your AMIs from Slack.")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="HTTP mode: POST /slack/events, GET /healthz")
    serve.add_argument("--port", type=int, default=3000)
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--threads", type=int, default=16, help="HTTP worker threads (default 16)")
    serve.set_defaults(run=cmd_serve)

    socket = commands.add_parser("socket", help="Socket Mode (needs SLACK_APP_TOKEN)")
    socket.set_defaults(run=cmd_socket)

    check = commands.add_parser("check-config", help="validate environment and policy file, print them masked")
    check.add_argument("--mode", choices=["http", "socket", "any"], default="any")
    check.add_argument("--aws", action="store_true", help="also check AWS credentials (sts:GetCallerIdentity)")
    check.set_defaults(run=cmd_check_config)

    audit_parser = commands.add_parser("audit", help="verify or export the audit trail")
    audit_commands = audit_parser.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    verify = audit_commands.add_parser("verify", help="recompute the hash chain; non-zero if it is broken")
    verify.set_defaults(run=cmd_audit_verify)
    export = audit_commands.add_parser("export", help="write the trail as CSV or JSON")
    export.add_argument("--format", choices=["csv", "json"], default="csv")
    export.add_argument("--since", help="only rows from this date (YYYY-MM-DD or ISO time)")
    export.set_defaults(run=cmd_audit_export)

    iam = commands.add_parser("iam-policy", help="print the IAM policy the bot needs")
    iam.set_defaults(run=cmd_iam_policy)

    digest = commands.add_parser("digest", help="stale images and orphaned snapshots with their cost")
    digest.add_argument("--dry-run", action="store_true", help="print instead of posting to [digest].channel")
    digest.add_argument("--format", choices=["table", "json", "csv"], default="table", help="with --dry-run")
    digest.set_defaults(run=cmd_digest)

    demo = commands.add_parser("demo", help="try it without Slack or AWS: a local playground with a console")
    demo.add_argument("--script", metavar="FILE", help="run console lines from FILE; non-zero if a step fails")
    demo.add_argument("--port", type=int, default=0, help="the app's HTTP port on 127.0.0.1 (default: a free one)")
    demo.set_defaults(run=cmd_demo)

    reference = commands.add_parser("config-reference", help="print the policy file reference (Markdown)")
    reference.set_defaults(run=cmd_config_reference)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.log_level)
    return args.run(args) or 0


if __name__ == "__main__":
    sys.exit(main())
