"""``python -m jtsm_cli``: the ``jtsm`` command."""

from jtsm_cli.main import cli

if __name__ == "__main__":
    cli()
