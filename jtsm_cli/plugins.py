"""``jtsm plugins``: list installed plugins and what they register."""

from __future__ import annotations

import click

from jtsm_cli.common import echo_json


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON: [{name, hooks, version}].")
def plugins(as_json: bool) -> None:
    """List installed plugins, their hooks, proposal methods and evidence methods.

    \b
    JTSM_LOAD_PLUGINS=a,b restricts loading to the named plugins.
    Example:
        jtsm plugins --json
    """
    from jtsm.plugins import evidence_methods, list_plugins, proposal_generators

    listing = list_plugins()
    gens = proposal_generators()
    evid = evidence_methods()
    for p in listing:
        p["proposal_methods"] = sorted(g.name for g in gens.values() if g.plugin == p["name"])
        p["evidence_methods"] = sorted(e.name for e in evid.values() if e.plugin == p["name"])
        p["descriptions"] = {m.name: m.description for m in [*gens.values(), *evid.values()]
                             if m.plugin == p["name"]}
    if as_json:
        echo_json(listing)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="jtsm plugins")
    for col in ("plugin", "version", "hooks", "provides"):
        table.add_column(col)
    for p in listing:
        provides = ", ".join(p["proposal_methods"] + p["evidence_methods"])
        table.add_row(p["name"] + (" (built-in)" if p["builtin"] else ""), p["version"],
                      ", ".join(p["hooks"]), provides)
    Console().print(table)
    for p in listing:  # what each method is (and, e.g., what supervision it brings in)
        for name, description in p["descriptions"].items():
            click.echo(f"{name}: {description}" if description else name)
