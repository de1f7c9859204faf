"""`/ami versions [family] [--region R] [--account A]`: a family's versions across the managed accounts, newest
first, with state and use; without a family, the families."""

from bot.render.lifecycle import families, versions
from bot.services.findings import findings_of_many
from bot.services.images import account_labels, accounts_named
from bot.services.versions import families as all_families
from bot.services.versions import family_versions
from bot.slack.subcommands import Arg, Subcommand

SHOWN = 25  # versions listed (and looked up in Amazon Inspector); older ones are counted

SPEC = Subcommand(
    name="versions", stage="find",
    summary="a family's versions, newest first: current, previous, deprecated, disabled, use (without one: the "
            "families)",
    usage="/ami versions [family] [--region R] [--account A]", example="/ami versions web",
    args=(Arg("family", required=False, rest=True),), flags={"--region": "R", "--account": "A"})


def run(call):
    ctx, region = call.ctx, call.flags["region"]
    accounts = accounts_named(ctx.aws, call.flags["account"])
    if not call.args["family"]:  # which families there are, rather than a usage error
        return families(all_families(ctx, region, accounts), ctx.clock())
    family = family_versions(ctx, call.args["family"], region, accounts, elsewhere_for=SHOWN)
    shown = [version.image for version in family.versions[:SHOWN]]
    findings = {}
    for account in dict.fromkeys(image.account for image in shown):  # each image's findings in its own account
        findings.update(findings_of_many(ctx.aws.of(account), [image for image in shown if image.account == account]))
    return versions(family, ctx.clock(), shown=SHOWN, findings=findings, accounts=account_labels(ctx.aws))
