"""``nnchain promote`` and ``nnchain predict``: a trial into the MLflow Model Registry, and
a model's predictions on a file."""

from __future__ import annotations

import csv
import json
import sys

import click

from nnchain.cli import options


@click.command()
@click.argument("sweep_ref", metavar="SWEEP")
@click.option("--trial", "trial_index", type=click.IntRange(min=0), default=None,
              metavar="INDEX", help="The trial's index in the sweep [default: the best trial].")
@click.option("--name", required=True, metavar="MODEL",
              help="The registered model's name (made if new; each promote adds a version).")
@click.option("--alias", default=None, metavar="ALIAS",
              help="Point this alias (letters, digits, _ and -) at the new version, "
                   "e.g. champion.")
@options.output_format
@options.tracking_uri
@options.ledger_url
def promote(sweep_ref: str, trial_index: int | None, name: str, alias: str | None,
            output_format: str, tracking_uri: str | None, ledger_url: str | None) -> None:
    """Register a trial of SWEEP (default: its best) in the MLflow Model Registry, logging
    it as an MLflow model first if it has none.

    \b
    nnchain promote xor-grid --name xor --alias champion
    nnchain promote xor-grid --trial 3 --name xor
    nnchain predict models:/xor@champion points.csv
    """
    from nnchain.tracking.models import promote as promote_trial

    result = promote_trial(sweep_ref, name=name, trial_index=trial_index, alias=alias,
                           tracking_uri=tracking_uri, ledger_url=ledger_url)
    if output_format == "json":
        click.echo(json.dumps(result, indent=1))
        return
    alias_text = f", alias {result['alias']}" if result["alias"] else ""
    click.echo(f"{result['name']} version {result['version']}{alias_text}: trial "
               f"{result['trial']} of {result['sweep']} (run {result['run_id']})\n"
               f"{result['uri']}")


@click.command()
@click.argument("model_uri", metavar="MODEL_URI")
@click.argument("input_path", metavar="INPUT.csv|.npz",
                type=click.Path(dir_okay=False))
@click.option("--format", "output_format", type=click.Choice(["csv", "json"]),
              default="csv", show_default=True,
              help="csv: a header of the output columns, one row per input row; json: "
                   '{"columns": [...], "predictions": [[...], ...]}.')
@options.tracking_uri
def predict(model_uri: str, input_path: str, output_format: str,
            tracking_uri: str | None) -> None:
    """Print the predictions of an nnchain model on the rows of a CSV (with a header) or
    NPZ (array x) file: class probabilities, or values for regression.

    MODEL_URI is any MLflow model URI: runs:/RUN_ID/model, models:/NAME@ALIAS,
    models:/NAME/VERSION, models:/MODEL_ID.
    """
    from nnchain.tracking.models import predict_file

    columns, values = predict_file(model_uri, input_path, tracking_uri)
    if output_format == "json":
        click.echo(json.dumps({"columns": columns, "predictions": values.tolist()}))
        return
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([repr(float(v)) for v in row] for row in values)
