"""A message is never cut short: the CLI's tables fold long cells instead of
ending them with "…", in a terminal or piped, narrow or wide."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from clirun import imager
from rich.console import Console

from imager.cli.render import add_row, new_table

# 300 characters: words, a path longer than any column can be, and brackets that
# rich would read as markup.
LONG_WHY = (
    "support fissuré après déploiement, relecture impossible au secteur 1953525168 / "
    "cracked medium after deployment, read-back failed at sector 1953525168 [/dev/sdb]; "
    "/srv/atelier/photos/2024-03-15/don-mairie-de-gap/"
    "disque-WD-WCC3F1234567-face-avant.jpg; "
    "[photo] à détruire devant témoin / to destroy: ok")
assert len(LONG_WHY) == 300, len(LONG_WHY)


def cell_text(output: str, column: int) -> str:
    """Column `column` of a rich table's rows, its wrapped lines joined, without spaces."""
    cells = [line.split("│")[column + 1] for line in output.splitlines()
             if line.startswith("│") and line.count("│") > column + 1]
    return "".join("".join(cells).split())


def squeezed(text: str) -> str:
    return "".join(text.split())


@pytest.mark.parametrize("columns", ["80", ""], ids=["narrow", "pipe-default"])
def test_history_reason_is_whole_when_piped(tmp_path: Path, columns: str) -> None:
    data = tmp_path / "data"
    imager(data, "donors", "add", "Mairie de Gap", "--kind", "mairie")
    imager(data, "donations", "add", "DON-1", "--donor", "Mairie de Gap")
    imager(data, "technicians", "add", "Zoé")
    imager(data, "intake", "DON-1", "WD-WCC3F1234567")
    imager(data, "drives", "move", "1", "to_destroy", "--why", LONG_WHY, "--technician", "Zoé")
    shown = imager(data, "drives", "show", "1", COLUMNS=columns).stdout
    assert "…" not in shown
    # the history table: when, who, what, why (column 3)
    assert squeezed(LONG_WHY) in cell_text(shown, 3)


def test_every_column_folds_at_any_width() -> None:
    for width in (40, 80, 120):
        table = new_table("Historique / History", ("Quand / When", "Qui / Who",
                                                   "Quoi / What", "Pourquoi / Why"))
        add_row(table, "2024-03-15T10:00:00", "Zoé", "received → to_destroy", LONG_WHY)
        out = io.StringIO()
        Console(file=out, width=width, color_system=None).print(table)
        assert "…" not in out.getvalue()
        assert squeezed(LONG_WHY) in cell_text(out.getvalue(), 3)
