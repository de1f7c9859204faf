"""`/ami audit [ami-id|request-id]`: the history of an image or a request, newest first."""

from bot.durable import audit
from bot.render.approvals import audit_history
from bot.slack.subcommands import Arg, Subcommand

SPEC = Subcommand(name="audit", stage="audit", summary="the history of an image or a request, newest first",
                  usage="/ami audit [ami-id|request-id]", example="/ami audit ami-0abc1234def567890",
                  args=(Arg("subject", required=False),), aliases=("history",), aws=False)


def run(call):
    subject = call.args["subject"]
    return audit_history(subject, audit.rows(call.ctx.store, target=subject, limit=30, newest_first=True))
