"""Commands that describe rather than compute: models, layers, fetch-weights."""

from __future__ import annotations

import click

from cnnvis_tasks.cli.common import command, warn
from cnnvis_tasks.cli.group import cli
from cnnvis_tasks.models.names import DEFAULT_MODEL, EMBEDDED_MODEL


@command(cli, "models")
@click.option("--debug", is_flag=True, help="Show Python tracebacks for errors.")
def models_command(debug: bool) -> None:
    """List model names, where their default weights come from, and whether they
    are available offline right now."""
    from cnnvis_tasks.models.names import known_models
    from cnnvis_tasks.models.standard_weights import cached_weights_path, weights_source

    rows = []
    for name in known_models():
        available = name == EMBEDDED_MODEL or cached_weights_path(name).is_file()
        rows.append((name, "yes" if available else "no", weights_source(name)))
    width = max(len(name) for name, _, _ in rows)
    click.echo(f"{'model':<{width}}  offline  default weights")
    for name, available, source in rows:
        click.echo(f"{name:<{width}}  {available:<7}  {source}")
    click.echo(f"\nweights cache: {cached_weights_path('resnet18').parent} (set TORCH_HOME to move it)")
    click.echo(
        "Also: timm:NAME (any timm architecture), hf:FOLDER (a transformers save_pretrained folder), "
        "module:package.module:function (your own code), torchscript (a torch.jit archive); see docs/models.md."
    )


@command(cli, "layers")
@click.option(
    "--model",
    default=DEFAULT_MODEL,
    metavar="ARCH",
    help="The architecture: a torchvision name, efficientnet_lite0, timm:NAME, hf:FOLDER or "
    "module:package.module:function (see docs/models.md).",
)
@click.option("--arch-args", default=None, metavar="JSON", help="Keyword arguments for building it (JSON object).")
@click.option(
    "--size",
    type=click.IntRange(min=1),
    help="Input size for the output shapes [default: 224; a model of fixed input size: that size].",
)
@click.option("--debug", is_flag=True, help="Show Python tracebacks for errors.")
def layers_command(model: str, arch_args: str | None, size: int | None, debug: bool) -> None:
    """Every addressable module path of a model with its type and output shape
    (channels x height x width for a SIZE x SIZE input). Paths are what --layer takes.
    Modules that do not run in the forward pass show '-'."""
    from cnnvis_tasks.mechanisms.tokens import required_input_size
    from cnnvis_tasks.models.layers import layer_table
    from cnnvis_tasks.models.loading import build_on_meta, load_model

    size_given = size is not None
    size = size or 224

    from cnnvis_tasks.models.spec import spec_from_options

    spec = spec_from_options(model, "random", arch_args=arch_args)
    module = build_on_meta(spec)
    side = required_input_size(module)
    if side and side != size:
        if size_given:
            warn(f"{model} takes {side} x {side} inputs only: shapes are for that size, not --size {size}")
        size = side
    try:
        table = layer_table(module, size)
    except (NotImplementedError, RuntimeError):  # an op without meta support: compute for real
        module = load_model(spec).module
        table = layer_table(module, size)
    width = max(len(name) for name, _, _ in table)
    type_width = max(len(kind) for _, kind, _ in table)
    click.echo(f"{'layer':<{width}}  {'type':<{type_width}}  output")
    for name, kind, shape in table:
        shown = " x ".join(str(d) for d in shape) if shape is not None else "-"
        click.echo(f"{name:<{width}}  {kind:<{type_width}}  {shown}")


@command(cli, "fetch-weights")
@click.argument("model_names", nargs=-1, required=True, metavar="MODEL...")
@click.option("--debug", is_flag=True, help="Show Python tracebacks for errors.")
def fetch_weights_command(model_names: tuple[str, ...], debug: bool) -> None:
    """Download the standard pretrained weights of each MODEL into the torch hub
    cache ($TORCH_HOME, default ~/.cache/torch). Run it once on a machine with
    internet (a cluster's login node) before running on machines without."""
    from cnnvis_tasks.models.standard_weights import fetch_weights

    for name in model_names:
        path, downloaded = fetch_weights(name)
        if name == EMBEDDED_MODEL:
            click.echo(f"{name}: embedded in the installed package ({path}), nothing to fetch")
        elif downloaded:
            click.echo(f"{name}: downloaded to {path}")
        else:
            click.echo(f"{name}: already cached at {path}")


@command(cli, "config-schema")
@click.option(
    "--technique",
    "technique_name",
    default=None,
    metavar="NAME",
    help="Only this technique's block (under techniques:).",
)
@click.option("--debug", is_flag=True, help="Show Python tracebacks for errors.")
def config_schema_command(technique_name: str | None, debug: bool) -> None:
    """Print the workflow's config schema as YAML: every key of config.yaml with its
    description, default and allowed values; each technique's block is made from
    its description in the package."""
    import yaml

    from cnnvis_tasks.techniques import get_technique
    from cnnvis_tasks.workflow.config import full_schema, technique_schema

    schema = technique_schema(get_technique(technique_name)) if technique_name else full_schema()
    click.echo(yaml.safe_dump(schema, sort_keys=False, width=100), nl=False)
