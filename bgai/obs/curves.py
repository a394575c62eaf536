"""PNG training curves for a run: losses against training step, eval win rate against model version.

Drawn with matplotlib's Agg backend (no display) from the run's MLflow metric history, so a
restarted trainer redraws the whole run, not only what it saw itself.
"""

from __future__ import annotations

from pathlib import Path

LOSSES = ("loss", "policy_loss", "value_loss")


def plot_curves(
    losses: dict[str, list[tuple[int, float]]], evals: dict[str, list[tuple[int, float]]], path: Path
) -> Path:
    """Two panels in one PNG at `path`; empty series are left out."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), dpi=100)
    ax_loss, ax_eval = fig.subplots(1, 2)
    for name, points in sorted(losses.items()):
        if points:
            steps, values = zip(*sorted(points), strict=True)
            ax_loss.plot(steps, values, label=name)
    ax_loss.set(title="Training loss", xlabel="training step", ylabel="loss")
    for name, points in sorted(evals.items()):
        if points:
            versions, values = zip(*sorted(points), strict=True)
            ax_eval.plot(versions, values, marker="o", label=name)
    ax_eval.set(title="Eval win rate", xlabel="model version", ylabel="win rate", ylim=(0, 1))
    for ax in (ax_loss, ax_eval):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path
