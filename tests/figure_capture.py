"""The matplotlib figures a picture function saves, caught for the tests to inspect."""

from __future__ import annotations

from matplotlib.figure import Figure


def catch_saved_figures(monkeypatch) -> list[Figure]:
    """From now on (until ``monkeypatch`` undoes it) every figure saved is also appended to
    the returned list, after it is drawn and written as usual."""
    saved: list[Figure] = []
    original = Figure.savefig

    def catch(fig, *args, **kwargs):
        saved.append(fig)
        return original(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", catch)
    return saved
