"""``nnchain train`` and ``nnchain gradcheck``: one spec, one network."""

from __future__ import annotations

import json

import click

from nnchain.cli import options
from nnchain.cli.main import EXIT_FAILED, EXIT_OK
from nnchain.nn.gradcheck import DEFAULT_TOLERANCE


def _load_config(spec: str, overrides: tuple[str, ...], *, sweep_ok: bool = False) -> dict:
    """The resolved config of a training spec. A sweep spec is refused with a pointer to
    ``nnchain sweep run``, or with ``sweep_ok`` its first cell is taken."""
    from nnchain.config import apply_overrides, resolve_config
    from nnchain.errors import SpecError
    from nnchain.sweep import spec_kind
    from nnchain.yamlio import load_yaml_mapping

    raw = load_yaml_mapping(spec)
    if spec_kind(raw) == "training":
        return resolve_config(apply_overrides(raw, overrides))
    if not sweep_ok:
        raise SpecError(spec, f"is a sweep spec (it has `name`, `parameters`, ...); run it "
                              f"with `nnchain sweep run {spec}`")
    from nnchain.sweep import describe_cell, expand, load_sweep_spec
    from nnchain.sweep.expansion import bayes_template

    sweep = load_sweep_spec(spec, overrides)
    trials = expand(sweep)
    if not trials:  # method: bayes proposes its trials as it runs
        click.echo(f"{spec} is a sweep spec: checking its first cell (a random draw; "
                   f"method: bayes proposes the others as it runs); "
                   f"`nnchain sweep run {spec}` runs them all", err=True)
        return bayes_template(sweep)
    first = trials[0]
    click.echo(f"{spec} is a sweep spec: checking its first cell ("
               f"{describe_cell(first.overrides) or 'no parameters'}); "
               f"`nnchain sweep run {spec}` runs them all", err=True)
    return first.config


@click.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@options.overrides
@options.tracking_uri
@click.option("--experiment", default="nnchain-train", show_default=True,
              help="MLflow experiment the run goes into.")
@click.option("--run-name", default=None, help="MLflow run name.")
@click.option("--init-weights", type=click.Path(dir_okay=False), default=None,
              help="Start from these weights (.npz with W1, b1, W2, b2, ...).")
@click.option("--save-weights", type=click.Path(dir_okay=False), default=None,
              help="Write the final weights to this .npz file.")
@options.output_format
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.pass_context
def train(ctx: click.Context, spec: str, overrides: tuple[str, ...], tracking_uri: str | None,
          experiment: str, run_name: str | None, init_weights: str | None,
          save_weights: str | None, output_format: str, quiet: bool) -> None:
    """Train one network from SPEC (YAML) and record the run in MLflow.

    Exit 0 when the run finished, 1 when it failed (e.g. diverged), 2 on bad input.
    """
    from nnchain.cli.progress import epoch_progress
    from nnchain.runner.local import prepare_training, train_recorded
    from nnchain.tracking.store import check_name

    config = _load_config(spec, overrides)
    check_name("--experiment", experiment)
    job = prepare_training(config, init_weights)
    with epoch_progress(config["train"]["epochs"], enabled=not quiet) as on_epoch:
        result = train_recorded(job, tracking_uri=tracking_uri, experiment=experiment,
                                run_name=run_name, save_path=save_weights, on_epoch=on_epoch)
    if output_format == "json":
        click.echo(json.dumps(result.as_dict(), sort_keys=True))
    else:
        click.echo(f"run_id   {result.run_id}\nstatus   {result.status}"
                   + (f" ({result.reason})" if result.reason else "")
                   + f"\nepochs   {result.epochs_run}")
        for key in sorted(k for k in result.final if "/" not in k):
            click.echo(f"{key:<16} {result.final[key]:.6g}")
    ctx.exit(EXIT_OK if result.status == "FINISHED" else EXIT_FAILED)


@click.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@options.overrides
@click.option("--samples", default=8, show_default=True, type=click.IntRange(min=1),
              help="How many training samples the check uses.")
@click.option("--tolerance", default=DEFAULT_TOLERANCE, show_default=True,
              type=click.FloatRange(min=0, min_open=True),
              help="Largest relative error that passes.")
@options.output_format
@click.pass_context
def gradcheck(ctx: click.Context, spec: str, overrides: tuple[str, ...], samples: int,
              tolerance: float, output_format: str) -> None:
    """Check every parameter's gradient of SPEC's network against central differences.

    The network is built in float64 on a few samples of the spec's data. The relative
    error |a - n| / max(|a|, |n|, floor) has a floor below which central differences are
    noise (shown as `floor`). A sweep spec's first cell is checked. Exit 0 when every
    worst relative error is under the tolerance, 1 otherwise, 2 on bad input.
    """
    from nnchain.gradients import check_spec

    config = _load_config(spec, overrides, sweep_ok=True)
    reports = check_spec(config, samples=samples, tolerance=tolerance)
    passed = all(r.rel_error <= tolerance for r in reports.values())
    if output_format == "json":
        click.echo(json.dumps({
            "passed": passed, "tolerance": tolerance,
            "floor": next(iter(reports.values())).floor if reports else None,
            "parameters": {name: {"rel_error": r.rel_error, "index": list(r.index),
                                  "analytic": r.analytic, "numeric": r.numeric}
                           for name, r in reports.items()}}, sort_keys=True))
    else:
        click.echo(f"{'param':<8}{'rel_error':>12}  {'worst index':<14}{'analytic':>14}"
                   f"{'numeric':>14}  ok")
        for name, r in reports.items():
            ok = "yes" if r.rel_error <= tolerance else "NO"
            click.echo(f"{name:<8}{r.rel_error:>12.3e}  {str(tuple(r.index)):<14}"
                       f"{r.analytic:>14.6g}{r.numeric:>14.6g}  {ok}")
        if reports:
            click.echo(f"floor {next(iter(reports.values())).floor:.3g}: smaller gradients "
                       f"are judged by their absolute error (numerical noise)", err=True)
    ctx.exit(EXIT_OK if passed else EXIT_FAILED)
