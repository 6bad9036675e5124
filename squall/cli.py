"""The ``squall`` command: thin wrappers that load the spec, call one layer and report."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from squall import spec as spec_mod
from squall.errors import SquallError
from squall.state import State, default_root

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Minimal, upstream Kubernetes on AWS.",
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

ConfigArg = Annotated[Path, typer.Argument(help="The cluster file (TOML).", show_default=False)]


def load(config: Path) -> tuple[spec_mod.Spec, State]:
    """Load the cluster file, show its warnings and open its state directory."""
    spec = spec_mod.load(config)
    for warning in spec_mod.warnings(spec):
        err.print(f"[yellow]warning:[/] {warning}")
    return spec, State(default_root(config, spec.cluster_name))


@app.command()
def init(
    name: Annotated[str, typer.Argument(help="Cluster name.")] = "tempest",
    path: Annotated[
        Path | None, typer.Option("--file", "-f", help="Where to write (default NAME.toml).")
    ] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented starter cluster file."""
    target = path or Path(f"{name}.toml")
    if target.exists() and not force:
        raise SquallError(f"{target}: already exists; pass --force to overwrite it")
    key = _default_ssh_key()
    text = (Path(__file__).parent / "data" / "starter.toml").read_text()
    text = text.replace("@NAME@", name).replace("@SSH_KEY@", key or "ssh-ed25519 AAAA… you@host")
    try:
        target.write_text(text)
    except OSError as e:
        raise SquallError(f"{target}: cannot write it ({e.strerror})") from None
    out.print(f"wrote {target}")
    if key is None:
        out.print("set ssh_authorized_key: no ~/.ssh/*.pub key was found")
    out.print(f"set dns_zone and dns_zone_id to a Route53 zone you own, then: squall plan {target}")


def _default_ssh_key() -> str | None:
    for name in ("id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub"):
        p = Path.home() / ".ssh" / name
        if p.is_file():
            return p.read_text().strip()
    return None


@app.command()
def render(
    config: ConfigArg,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("out"),
) -> None:
    """Write the cluster's assets and node configs into a folder."""
    from squall import render as render_mod

    spec, state = load(config)
    rendered = render_mod.render(spec, state)
    written = render_mod.write(rendered, out_dir)
    for p in written:
        out.print(f"  {p.relative_to(out_dir)}  [dim]{p.stat().st_size} B[/]")
    out.print(f"rendered {len(written)} files into {out_dir}/")


JsonOpt = Annotated[bool, typer.Option("--json", help="Print stable, machine-readable JSON.")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


@app.command()
def plan(config: ConfigArg, as_json: JsonOpt = False) -> None:
    """Show what apply would change in AWS."""
    from squall.aws import commands

    spec, state = load(config)
    commands.plan(spec, state, out, err, as_json=as_json)


@app.command()
def apply(
    config: ConfigArg,
    yes: YesOpt = False,
    bootstrap: Annotated[
        bool, typer.Option("--bootstrap/--no-bootstrap", help="Run the SSH bootstrap after AWS.")
    ] = True,
) -> None:
    """Create or update the cluster's AWS resources, then bootstrap Kubernetes over SSH."""
    from squall.aws import commands

    spec, state = load(config)
    cluster = commands.apply(spec, state, out, err, yes=yes)
    if not bootstrap:
        out.print(
            "Skipped the SSH bootstrap (--no-bootstrap); run 'squall apply' without it to "
            "start Kubernetes."
        )
        return
    from squall.bootstrap.after_apply import finish

    kubeconfig = commands.interruptible(finish)(spec, state, config, cluster, out)
    out.print(f"[green]Cluster {spec.cluster_name} is ready.[/] Admin kubeconfig: {kubeconfig}")
    out.print(f"  export KUBECONFIG={kubeconfig}; kubectl get nodes")


@app.command()
def kubeconfig(
    config: ConfigArg,
    merge: Annotated[
        bool, typer.Option("--merge", help="Merge into ~/.kube/config as context NAME.")
    ] = False,
    path: Annotated[
        Path | None, typer.Option("--out", "-o", help="Where to write (default NAME.kubeconfig).")
    ] = None,
) -> None:
    """Write the cluster's admin kubeconfig (0600), or merge it into ~/.kube/config."""
    from squall.bootstrap import kubeconfig_command

    spec, state = load(config)
    written = kubeconfig_command(spec, state, config, out=path, merge=merge)
    out.print(f"wrote {written}" + (f" (context {spec.cluster_name})" if merge else ""))


@app.command()
def outputs(
    config: ConfigArg,
    as_json: JsonOpt = False,
    show_sensitive: Annotated[
        bool, typer.Option("--show-sensitive", help="Include the kubeconfigs (credentials).")
    ] = False,
) -> None:
    """Print the cluster's outputs (ids, DNS names, keys), read from AWS."""
    from squall.aws import commands

    spec, state = load(config)
    commands.outputs(spec, state, out, err, as_json=as_json, sensitive=show_sensitive)


@app.command()
def destroy(config: ConfigArg, yes: YesOpt = False) -> None:
    """Delete every AWS resource the cluster owns, and nothing else."""
    from squall.aws import commands

    spec, state = load(config)
    commands.destroy(spec, state, out, err, yes=yes)


def main() -> None:
    # Click handles usage errors itself (exit 2); squall's own errors become one line, exit 1.
    try:
        app()
    except SquallError as e:
        err.print(f"[red]error:[/] {escape(str(e))}", soft_wrap=True)
        sys.exit(1)
