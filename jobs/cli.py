"""The `seqrec` command: one subcommand per stage, each also runnable with spark-submit (jobs/<stage>.py)."""

import typer

from jobs import champion, evaluate, featurize, gate, generate, ingest, publish, score, train

app = typer.Typer(help="seqrec: nightly sequential recommendations on Spark, Delta Lake and PyTorch.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
app.command("ingest")(ingest.command)
app.command("featurize")(featurize.command)
app.command("generate")(generate.command)
app.command("convert-sasrec")(generate.convert_sasrec_command)
app.command("convert-events")(generate.convert_events_command)
app.command("evaluate")(evaluate.command)
app.command("gate")(gate.command)
app.command("train")(train.command)
app.command("score")(score.command)
app.command("publish")(publish.command)
app.command("champion")(champion.command)


@app.callback()
def main() -> None:
    """Run one stage of the nightly job for a logical date --ds. Configuration: lake/defaults.yaml and
    each stage's defaults.yaml, overridden by --config FILE, then SEQREC__SECTION__KEY variables."""
