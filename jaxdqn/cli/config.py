"""``jaxdqn config``: every DQNConfig field of a resolved config with its value, type, allowed
values and description; ``--markdown`` prints the field table of docs/cli.md."""

from __future__ import annotations

import textwrap

from jaxdqn.cli.options import add_config_options, resolve_config
from jaxdqn.cli.parser import PROG


def presets_epilog() -> str:
    """``presets:`` then one line per preset, for the epilogs of the commands that take one."""
    from jaxdqn.config import preset_descriptions

    names = preset_descriptions()
    width = max(map(len, names))
    indent = " " * (width + 4)
    return "presets:\n" + "\n".join(
        textwrap.fill(text, 78, initial_indent=f"  {name:<{width}}  ", subsequent_indent=indent,
                      break_on_hyphens=False)
        for name, text in names.items())


def wrap(text: str) -> str:
    """A paragraph wrapped for an epilog printed as it is (RawDescriptionHelpFormatter)."""
    return textwrap.fill(text, 78)


def add_parser(sub) -> None:
    import argparse

    p = sub.add_parser(
        "config", help="show every config field: value, type, allowed values and description",
        description="Resolve a config as train does (--preset, then --config FILE, then each "
                    "--set, then --env) and print every DQNConfig field with its value, type, "
                    "allowed values and description.",
        epilog=wrap(f"Example: {PROG} config --preset cartpole --set gamma=0.98") + "\n\n"
        + presets_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_options(p)
    p.add_argument("--markdown", action="store_true",
                   help="print the field table of docs/cli.md (defaults of DQNConfig) instead")
    p.set_defaults(handler=run)


def run(args, argv) -> int:
    if args.markdown:
        print(markdown_field_table())
        return 0
    import shutil

    config, _ = resolve_config(args.preset, args.config, args.sets, args.env)
    print(field_table(config, shutil.get_terminal_size(fallback=(100, 24)).columns))
    return 0


def _value(v) -> str:
    if isinstance(v, tuple):
        return "(" + ", ".join(map(str, v)) + ")" if len(v) != 1 else f"({v[0]},)"
    return repr(v) if isinstance(v, str) else str(v)


def field_table(config, width: int | None = None) -> str:
    """One row per field: name, value, type, allowed values, description; with ``width``, the
    allowed and description columns wrap (each under itself) so that rows fit in ``width``."""
    import dataclasses

    from jaxdqn.config import field_allowed, field_descriptions, field_types

    types, allowed, desc = field_types(), field_allowed(), field_descriptions()
    rows = [[f.name, _value(getattr(config, f.name)), types[f.name], allowed[f.name],
             desc[f.name]] for f in dataclasses.fields(config)]
    return wrapped_table(["field", "value", "type", "allowed", "description"], rows, width,
                         wrap=(3, 4))


def wrapped_table(head: list[str], rows: list[list[str]], width: int | None,
                  wrap: tuple[int, ...]) -> str:
    """Left-aligned columns under a rule, as ``plain_table``; when a row would be wider than
    ``width``, the columns ``wrap`` share what the others leave, each wrapped under itself (at
    least 12 columns each, so a very narrow terminal gets longer lines rather than none)."""
    widths = [max(len(c) for c in col) for col in zip(head, *rows)]
    total = sum(widths) + 2 * (len(widths) - 1)
    if width is not None and total > width:
        # Water-filling: the narrowest wrapped column keeps its width if under an equal share.
        left = width - (total - sum(widths[i] for i in wrap))
        for n, i in enumerate(sorted(wrap, key=widths.__getitem__)):
            widths[i] = max(12, min(widths[i], left // (len(wrap) - n)))
            left -= widths[i]

    def lines(row):
        cells = [textwrap.wrap(c, widths[i]) or [""] if i in wrap else [c]
                 for i, c in enumerate(row)]
        for k in range(max(map(len, cells))):
            yield "  ".join((cell[k] if k < len(cell) else "").ljust(w)
                            for cell, w in zip(cells, widths)).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([*lines(head), rule, *(line for row in rows for line in lines(row))])


def markdown_field_table() -> str:
    """The field table of docs/cli.md: every field's default, type, allowed values, description."""
    import dataclasses

    from jaxdqn.config import DQNConfig, field_allowed, field_descriptions, field_types

    types, allowed, desc = field_types(), field_allowed(), field_descriptions()
    lines = ["| field | default | type | allowed | description |", "|---|---|---|---|---|"]
    for f in dataclasses.fields(DQNConfig):
        cells = [f"`{f.name}`", f"`{_value(f.default)}`", f"`{types[f.name]}`", allowed[f.name],
                 desc[f.name]]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)
