"""bench/results.png: per suite, each runner's median wall time as a ratio to plain pytest."""

from __future__ import annotations

from pathlib import Path


def draw(path: Path, suites: list[tuple[str, list[tuple[str, float | None, float | None]]]],
         trace: list[tuple[str, float]] | None) -> bool:
    """suites: (title, [(runner label, median ratio, min ratio)]). False if matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    panels = len(suites) + (1 if trace else 0)
    fig, axes = plt.subplots(panels, 1, figsize=(9, 2.2 + 2.1 * panels), squeeze=False)
    for ax, (title, rows) in zip(axes[:, 0], suites):
        labels = [r[0] for r in rows][::-1]
        med = [r[1] or 0 for r in rows][::-1]
        mins = [r[2] or 0 for r in rows][::-1]
        colors = ["#999999" if not r[0].startswith("isod") else "#2b7bba" for r in rows][::-1]
        y = range(len(labels))
        ax.barh(y, med, color=colors, height=0.6, label="median")
        ax.scatter(mins, y, color="black", marker="|", s=120, zorder=3, label="min")
        for yi, m in enumerate(med):
            ax.text(m + 0.03, yi, f"{m:.2f}x" if m else "n/a", va="center", fontsize=8)
        ax.set_yticks(list(y), labels, fontsize=8)
        ax.axvline(1.0, color="red", lw=0.8, ls="--")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("wall time / plain pytest (lower is better)", fontsize=8)
        ax.set_xlim(0, max([*med, *mins, 1.0]) * 1.18)
    if trace:
        ax = axes[-1, 0]
        labels = [t[0] for t in trace][::-1]
        vals = [t[1] for t in trace][::-1]
        y = range(len(labels))
        ax.barh(y, vals, color=["#2b7bba" if lab.startswith("isod") else "#999999" for lab in labels], height=0.6)
        for yi, v in enumerate(vals):
            ax.text(v + 0.03, yi, f"{v:.2f}x", va="center", fontsize=8)
        ax.set_yticks(list(y), labels, fontsize=8)
        ax.axvline(1.2, color="red", lw=0.8, ls="--")
        ax.set_title("tracing `sh -c 'for i in $(seq 500); do /bin/true; done'` (goal: isod <= 1.2x native)",
                     fontsize=10)
        ax.set_xlabel("wall time / native", fontsize=8)
        ax.set_xlim(0, max(vals) * 1.18)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
