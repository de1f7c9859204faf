"""`/ami bake <family>`, `/ami bake cancel <bake-id>` and `/ami bakes [family]`; the durable jobs that watch a bake
to its end (``bake.watch``) and start a scheduled one (``bake.scheduled``), registered by bot/wiring.py.

One message per bake, posted when it starts and updated in place as AWS reports each stage; the steps behind it
(bot/services/bake.py) make a replay, a double click or a restart resume the same run, never start a second.
"""

from __future__ import annotations

import logging
import re
import time
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bot.core import authority, metrics
from bot.core.errors import AmibotError, NotFound, UsageError
from bot.durable import audit, jobs
from bot.durable.steps import DONE, FAILED, Steps, owners_with_open
from bot.render.bake import bake_message, bakes_list
from bot.services import bake as baking
from bot.services.bake import JOIN, OWNER, POST, PROPOSE, SCAN, START, WATCH, Source
from bot.services.images import Image
from bot.slack.reply import Reply
from bot.slack.subcommands import Arg, Subcommand

log = logging.getLogger(__name__)

WATCH_JOB = "bake.watch"
FOUND_JOB = "bake.found"  # a version built elsewhere, proposed once (claimed by its image id)
PIPELINE_JOB = "bake.pipeline"  # a pipeline's own output, joined and proposed once (claimed by its image id too)
SCHEDULE_JOB = "bake.scheduled"
BAKE_ID = re.compile(r"^bake-[0-9a-f]{10}$")

BAKE = Subcommand(
    name="bake", stage="create & bake",
    summary="bake the family's next version as [[bakes]] configures it (Image Builder, SSM Automation or a builder "
            "instance), then propose it for promotion; `cancel <bake-id>` stops one",
    usage="/ami bake <family> [--account A] [--region R] | /ami bake cancel <bake-id>",
    example="/ami bake web",
    args=(Arg("family", hint="a family with a [[bakes]] entry, or `cancel`"),
          Arg("bake", required=False, pattern=BAKE_ID, hint="a bake id like bake-0123456789")),
    flags={"--account": "A", "--region": "R"}, changing=True, resumable=True)

BAKES = Subcommand(
    name="bakes", stage="create & bake",
    summary="running and recent bakes, and when each configured bake runs next",
    usage="/ami bakes [family]", example="/ami bakes web",
    args=(Arg("family", required=False, rest=True),))


# --- the commands -------------------------------------------------------------------------------------

def run_bake(call):
    ctx = call.ctx
    if call.args["family"] == "cancel":
        return run_cancel(call)
    if call.args["bake"]:
        raise UsageError(f"`/ami bake` takes one family; `/ami bake cancel {call.args['bake']}` stops a bake.")
    bake = baking.configured(ctx, call.args["family"], call.flags["account"], call.flags["region"])
    handle = call.acting_in(bake.account)  # the operators of the account it bakes in, before any AWS call
    bake_id = baking.bake_id_for(f"command:{call.trigger_id}")  # the delivery's: a re-run is the same bake
    call.audit_detail = {"bake": bake_id, "family": bake.family, "mechanism": bake.mechanism,
                         "region": baking.region_of(ctx, bake), "account": handle.account.id}
    begin(ctx, bake, handle, bake_id, call.user, call.channel, call.reply.response_url)


def run_cancel(call):
    ctx = call.ctx
    bake_id = call.args["bake"]
    if not bake_id:
        raise UsageError("Say which bake: `/ami bake cancel <bake-id>` (`/ami bakes` lists them).")
    run = baking.load(ctx.store, bake_id)
    if run is None:
        raise NotFound(f"No bake `{bake_id}`; `/ami bakes` lists them.")
    record = run.record
    handle = call.acting_in(record["account"] or None)  # that account's operators
    call.audit_detail = {"bake": bake_id, "family": record["family"], "account": handle.account.id}
    if run.state not in ("starting", "running"):
        raise AmibotError(f"`{bake_id}` is {run.state}; there is nothing to cancel.")
    start_step = run.steps[START]
    if not start_step.data.get("run_id"):  # AWS has not answered the start yet: nothing to stop, nothing to mark
        raise AmibotError(f"`{bake_id}` is still starting; cancel it again in a moment, once AWS has started it.")
    stopped = baking.cancel_run(handle, {**record, "run_id": start_step.data.get("run_id")})
    steps = Steps(ctx.store, OWNER + bake_id)
    steps.annotate(WATCH, cancel=True, cancelled_by=call.user, stopped=stopped)
    audit.record(ctx.store, actor=call.user, action="bake.cancelled", channel=call.channel, target=bake_id,
                 outcome=f"cancelled: {stopped}", detail={"family": record["family"]})
    call.reply.ephemeral({"text": f"Stopped {stopped} (`{bake_id}`); its message says so once AWS confirms."})


def run_bakes(call):
    ctx = call.ctx
    family = call.args["family"]
    runs = [{**run.record, "state": run.state, "result": run.result} for run in baking.runs(ctx.store, family)]
    scheduled = [{"family": b.family, "mechanism": b.mechanism, "region": baking.region_of(ctx, b),
                  "next": when.strftime("%a %Y-%m-%d %H:%M %Z") if when else None}
                 for b, when in baking.next_scheduled(ctx.policy, ctx.clock()) if not family or b.family == family]
    call.reply.ephemeral(bakes_list(runs, scheduled, ctx.clock(), family))


RUNNERS = [(BAKE, run_bake), (BAKES, run_bakes)]


# --- starting, watching, finishing ------------------------------------------------------------------------

def begin(ctx, bake, handle, bake_id: str, user: str, channel: str | None, response_url: str | None,
          scheduled: bool = False) -> str:
    """Start the bake (once: a bake id seen before only gets its watch back) and hand it to the watch job."""
    steps = Steps(ctx.store, OWNER + bake_id)
    if steps.all():  # a replay, a double click or a re-run after a restart: the same bake, not a second run
        _ensure_watch(ctx, bake_id)
        return bake_id
    source = baking.source_of(ctx, handle, bake)
    record = baking.new_record(ctx, bake, bake_id, user, channel, response_url, source, handle, scheduled)
    planned = steps.plan(baking.plan_steps(record))
    ts = None
    if channel:
        ts = _reply(ctx, record).post(bake_message(_view(ctx, bake_id)))
    steps.mark(planned[0], DONE, "posted", ts=ts)
    audit.record(ctx.store, actor=user, action="bake.started", channel=channel, target=bake_id, outcome="started",
                 detail={"family": bake.family, "mechanism": bake.mechanism, "what": record["what"],
                         "region": record["region"], "account": record["account"], "scheduled": scheduled})
    _count(ctx, "started")
    _start_run(ctx, handle, bake, record, source, steps)
    _ensure_watch(ctx, bake_id)
    return bake_id


def _start_run(ctx, handle, bake, record: dict, source: Source, steps: Steps) -> None:
    start_step = next(step for step in steps.all() if step.action == START)
    try:
        run_id = baking.start(ctx, handle, bake, record, source)
    except AmibotError as error:
        steps.mark(start_step, FAILED, error.message[:500])
        for step in steps.all():
            if step.open:
                steps.mark(step, FAILED, "the run did not start")
        _update(ctx, record["id"])
        _finished(ctx, record, "failed", f"could not start: {error.message}")
        raise
    steps.mark(start_step, DONE, "started", run_id=run_id)  # the moment AWS returns it
    _update(ctx, record["id"])


def _ensure_watch(ctx, bake_id: str) -> None:
    payload = {"bake": bake_id}
    if not jobs.is_active(ctx.store, WATCH_JOB, payload):
        ctx.jobs.submit(WATCH_JOB, payload)


def follow(ctx, payload: dict) -> None:
    """The watch job: finish whatever the bake's steps have open, in order (a restart resumes here)."""
    bake_id = payload["bake"]
    steps = Steps(ctx.store, OWNER + bake_id)
    found = {step.action: step for step in steps.all()}
    if START not in found:
        return
    record = dict(found[START].data)
    handle = ctx.aws.of(record["account"] or None)
    if found[POST].open and record.get("channel"):  # a crash before Slack's answer: the message, (again)
        _post_again(ctx, steps, found[POST], bake_id)
    if found[START].open:  # a crash between asking AWS and hearing its answer: the same token, the same run
        bake = baking.configured(ctx, record["family"], record["account"] or None, record["region"])
        image = Image.stand_in(record["source_image"], "", record["region"]) if record.get("source_image") else None
        _start_run(ctx, handle, bake, record, Source(record["what"], image=image), steps)
        found = {step.action: step for step in steps.all()}
    if found[START].state != DONE:
        return
    record["run_id"] = found[START].data["run_id"]
    watching = found[WATCH]
    if watching.open:
        status = _watch(ctx, handle, record, steps, watching)
        if status is None or status.state != "succeeded":
            return
        found = {step.action: step for step in steps.all()}
    if found[WATCH].result != "succeeded":
        return
    outputs = [tuple(pair) for pair in found[WATCH].data.get("outputs") or []]
    joining = found[JOIN]
    if joining.open:
        done = dict(joining.data.get("images") or {})

        def remember(region: str, image_id: str) -> None:
            done[region] = image_id
            steps.annotate(JOIN, images=done)

        try:
            joined = baking.join_family(ctx, handle, record, outputs, done, remember)
        except AmibotError as error:
            steps.mark(joining, FAILED, error.message[:500])
            _update(ctx, bake_id)
            _finished(ctx, record, "failed", f"joining the family failed: {error.message}")
            return
        steps.mark(joining, DONE, "joined", images=joined.images, version=joined.version, notes=joined.notes)
        _update(ctx, bake_id)
    else:
        data = joining.data
        joined = baking.Joined(record["family"], data.get("version") or record["version"], data.get("images") or {},
                               data.get("notes") or [])
    proposing = found[PROPOSE]
    if proposing.open:
        if record.get("promote") == "manual":
            steps.mark(proposing, DONE, "manual", manual=True)
        elif not record.get("channel"):
            steps.mark(proposing, DONE, "no channel to ask in", request=None)
        else:
            request_id = baking.propose(ctx, handle, record, joined)
            steps.mark(proposing, DONE, "proposed", request=request_id)
        _update(ctx, bake_id)
        _finished(ctx, record, "succeeded", f"{joined.version}: " + ", ".join(
            f"{image} ({region})" for region, image in sorted(joined.images.items())))
    found = {step.action: step for step in steps.all()}
    if SCAN in found and found[SCAN].open:
        _await_scan(ctx, steps, found[SCAN], found[PROPOSE].data.get("request"))


def _await_scan(ctx, steps: Steps, scanning, request_id: str | None) -> None:
    """Until Inspector has scanned the new version (bounded), then its counts replace "scan pending" in the
    promotion request's message."""
    if not request_id:
        steps.mark(scanning, DONE, "no request")
        return
    until = scanning.data.get("until") or time.time() + ctx.waits.bake_scan_wait_seconds
    steps.annotate(SCAN, until=until)
    while not baking.rescan(ctx, request_id):
        if time.time() >= until:
            steps.mark(scanning, DONE, "still pending", until=until)
            return
        time.sleep(min(ctx.waits.bake_scan_poll_seconds, max(0.0, until - time.time())))
    steps.mark(scanning, DONE, "scanned", until=until)


def _post_again(ctx, steps: Steps, posting, bake_id: str) -> None:
    run = baking.load(ctx.store, bake_id)
    try:
        ts = _reply(ctx, run.record).post(bake_message(_view(ctx, bake_id)))
    except Exception as error:  # the bake goes on; its outcome is audited
        log.warning("could not post the message of %s: %s", bake_id, error)
        steps.mark(posting, FAILED, f"could not post: {type(error).__name__}")
        return
    steps.mark(posting, DONE, "posted after a restart", ts=ts)


def _watch(ctx, handle, record: dict, steps: Steps, watching):
    history = list(watching.data.get("history") or [])

    def changed(status, elapsed: float) -> None:
        if not history or history[-1] != status.status:
            history.append(status.status)
        steps.annotate(WATCH, history=history, status=status.status, steps=status.steps, elapsed=elapsed)
        _update(ctx, record["id"])

    def cancelled() -> bool:
        stored = next((s for s in steps.all() if s.action == WATCH), None)
        return bool(stored and stored.data.get("cancel"))

    try:
        status = baking.watch(ctx, handle, record, changed, cancelled)
    except AmibotError as error:  # AWS could not be asked: said, and left for the next start to resume
        log.warning("watching %s failed: %s", record["id"], error.message)
        raise
    elapsed = time.time() - datetime.fromisoformat(record["started_at"]).timestamp()
    if status is None:
        steps.mark(watching, DONE, "overdue", elapsed=elapsed, history=history)
        _update(ctx, record["id"])
        _finished(ctx, record, "overdue", "still running when amibot stopped watching it")
        return None
    partial = [image for _region, image in status.outputs] if status.state == "failed" else []
    steps.mark(watching, DONE, status.state, outputs=status.outputs, failure=status.failure,
               failed_step=status.failed_step, partial=partial, elapsed=elapsed, status=status.status,
               steps=status.steps, history=history)  # this step's data as loaded is older than its annotations
    for step in steps.all():
        if status.state != "succeeded" and step.open:
            steps.mark(step, FAILED, f"the run {status.state}")
    _update(ctx, record["id"])
    if status.state != "succeeded":
        outcome = (f"failed at {status.failed_step or status.status}: {status.failure}" if status.state == "failed"
                   else status.state)
        _finished(ctx, record, status.state, outcome)
    return status


def _finished(ctx, record: dict, state: str, outcome: str) -> None:
    audit.record(ctx.store, actor="amibot", action=f"bake.{state}", channel=record.get("channel"),
                 target=record["id"], outcome=f"{state}: {outcome}"[:500],
                 detail={"family": record["family"], "mechanism": record["mechanism"], "region": record["region"],
                         "run": record.get("run_id"), "account": record.get("account"),
                         "link": baking.console_link(record["mechanism"], record["region"], record.get("run_id"))})
    _count(ctx, state)
    if state in ("succeeded", "failed"):
        seconds = time.time() - datetime.fromisoformat(record["started_at"]).timestamp()
        metrics.bake_finished(ctx, state, seconds)


def _count(ctx, outcome: str) -> None:
    metrics.bake_counted(ctx, outcome)


# --- the message ---------------------------------------------------------------------------------------------

def _view(ctx, bake_id: str) -> dict[str, Any]:
    run = baking.load(ctx.store, bake_id)
    record, steps = run.record, run.steps
    start_step, watching = steps[START], steps.get(WATCH)
    join_step, propose_step = steps.get(JOIN), steps.get(PROPOSE)
    run_id = start_step.data.get("run_id")
    data = watching.data if watching else {}
    view = {**record, "state": run.state if run.state != "proposed" else "succeeded", "history": data.get("history"),
            "steps": data.get("steps"), "status": data.get("status"), "elapsed": data.get("elapsed"),
            "link": baking.console_link(record["mechanism"], record["region"], run_id),
            "failure": data.get("failure") or (start_step.result if start_step.state == FAILED else ""),
            "failed_step": data.get("failed_step") or ("start" if start_step.state == FAILED else ""),
            "partial": data.get("partial"), "cancelled_by": data.get("cancelled_by"), "stopped": data.get("stopped")}
    if watching and watching.result == "overdue":
        view["state"] = "overdue"
    if run.state == "failed" and join_step and join_step.state == FAILED and not data.get("failure"):
        view["failed_step"], view["failure"] = "joining the family", join_step.result
    if join_step and join_step.state == DONE:
        view["images"], view["notes"] = join_step.data.get("images"), join_step.data.get("notes")
    if propose_step and propose_step.state == DONE:
        view["request"] = propose_step.data.get("request")
        view["manual"] = bool(propose_step.data.get("manual"))
    return view


def _reply(ctx, record: dict) -> Reply:
    user = record["user"] if not record.get("scheduled") else None
    return Reply(ctx.slack, record.get("channel"), user, record.get("response_url"))


def _update(ctx, bake_id: str) -> None:
    """Update the bake's message in place (a Slack hiccup is logged: the next update carries everything)."""
    steps = {step.action: step for step in Steps(ctx.store, OWNER + bake_id).all()}
    ts = steps[POST].data.get("ts") if POST in steps else None
    if not ts:
        return
    run = baking.load(ctx.store, bake_id)
    try:
        _reply(ctx, run.record).update(ts, bake_message(_view(ctx, bake_id)))
    except Exception:
        log.exception("could not update the message of %s", bake_id)


# --- after a restart, and on a schedule ---------------------------------------------------------------------

def resume(ctx) -> None:
    """At start: a bake with open steps and no watch job (a crash between recording and starting it) gets one."""
    for action in (START, WATCH, JOIN, PROPOSE):
        for owner in owners_with_open(ctx.store, action, OWNER):
            _ensure_watch(ctx, owner[len(OWNER):])


def scheduled(ctx, bake) -> int | None:
    """A scheduled bake fired: claimed in SQLite (the job's dedupe key, the same in every process sharing the
    database), so it runs once however many processes fire it. Returns the job id (None: claimed elsewhere)."""
    from apscheduler.triggers.cron import CronTrigger

    now = ctx.clock()
    zone = ZoneInfo(ctx.policy.digest.timezone)
    trigger = CronTrigger.from_crontab(bake.schedule, timezone=zone)
    fired = trigger.get_next_fire_time(None, (now - timedelta(minutes=1)).astimezone(zone))
    fired = fired if fired is not None and fired <= now else now.replace(second=0, microsecond=0)
    key = baking.schedule_key(bake, fired.astimezone(ZoneInfo("UTC")))
    payload = {"family": bake.family, "account": bake.account, "region": bake.region, "key": key}
    return ctx.jobs.submit(SCHEDULE_JOB, payload, dedupe_key=key)


def run_scheduled(ctx, payload: dict) -> None:
    channel = ctx.policy.approvals.channel or ctx.policy.digest.channel
    try:
        bake = baking.configured(ctx, payload["family"], payload.get("account"), payload.get("region"))
        handle = ctx.aws.of(bake.account or None)
        bake_id = baking.bake_id_for(payload["key"])
        with authority.acting(baking.SCHEDULER, f"scheduled bake of {bake.family}", authorized=[handle.account.id]):
            begin(ctx, bake, handle, bake_id, baking.SCHEDULER, channel, None, scheduled=True)
    except AmibotError as error:
        audit.record(ctx.store, actor="amibot", action="bake.failed", channel=channel, target=payload["family"],
                     outcome=f"failed: scheduled bake could not start: {error.message}"[:500], detail=payload)
        if channel:
            try:
                Reply(ctx.slack, channel, None).post({"text": f":x: The scheduled bake of {payload['family']} could "
                                                              f"not start: {error.message}"})
            except Exception:
                log.exception("could not report the scheduled bake of %s", payload["family"])


def discover(ctx) -> int:
    """Hourly and at start: versions of baked families that amibot did not bake (pipelines on their own schedule,
    Packer in CI) are proposed like a bake's, one request per version. Each is claimed by its image id (the job's
    dedupe key), so two processes propose it once; a request that exists already is never made again."""
    channel = ctx.policy.approvals.channel or ctx.policy.digest.channel
    if not channel:
        return 0
    claimed = 0
    for entry in ctx.policy.bakes:
        claimed += _discover_pipeline(ctx, entry)  # first: its outputs join with their lineage, not as "found"
        try:
            found = baking.built_elsewhere(ctx, entry)
        except AmibotError as error:
            log.warning("bakes: new versions of %s could not be looked for: %s", entry.family, error.message)
            continue
        for image in found:
            payload = {"family": entry.family, "account": entry.account, "region": entry.region, "image": image.id}
            if ctx.jobs.submit(FOUND_JOB, payload, dedupe_key=f"bake-found:{image.id}") is not None:
                claimed += 1
    return claimed


def _discover_pipeline(ctx, entry) -> int:
    """A pipeline's outputs that amibot did not bake, each claimed by its image id (the same claim as the
    family-tag half's, so an output carrying the family tag is proposed once, by whichever half claims it)."""
    if entry.mechanism != "pipeline":
        return 0
    try:
        outputs = baking.pipeline_outputs(ctx, entry)
    except AmibotError as error:  # Unsupported (no Image Builder here), denied…: not checked, which is not "none"
        log.warning("bakes: the outputs of pipeline %s (%s) were not checked: %s", entry.pipeline_name,
                    entry.family, error.message)
        return 0
    claimed = 0
    for output in outputs:
        payload = {"family": entry.family, "account": entry.account, "region": entry.region, "build": output.build,
                   "image": output.image}
        if ctx.jobs.submit(PIPELINE_JOB, payload, dedupe_key=f"bake-found:{output.image}") is not None:
            claimed += 1
    return claimed


def propose_pipeline(ctx, payload: dict) -> None:
    channel = ctx.policy.approvals.channel or ctx.policy.digest.channel
    entry = baking.configured(ctx, payload["family"], payload.get("account"), payload.get("region"))
    output = next((output for output in baking.pipeline_outputs(ctx, entry) if output.build == payload["build"]),
                  None)
    if output is None or not channel:
        return
    request_id = baking.propose_pipeline_output(ctx, entry, output, channel)
    if request_id:
        audit.record(ctx.store, actor="amibot", action="bake.found", channel=channel, target=output.image,
                     outcome=f"proposed: {request_id}",
                     detail={"family": entry.family, "pipeline": entry.pipeline_name, "build": output.build})


def propose_found(ctx, payload: dict) -> None:
    channel = ctx.policy.approvals.channel or ctx.policy.digest.channel
    entry = baking.configured(ctx, payload["family"], payload.get("account"), payload.get("region"))
    image = next((image for image in baking.built_elsewhere(ctx, entry) if image.id == payload["image"]), None)
    if image is None or not channel:
        return
    request_id = baking.propose_found(ctx, entry, image, channel)
    if request_id:
        audit.record(ctx.store, actor="amibot", action="bake.found", channel=channel, target=image.id,
                     outcome=f"proposed: {request_id}", detail={"family": entry.family, "region": image.region})


def discover_at_start(ctx) -> None:
    if ctx.policy.bakes:
        discover(ctx)
