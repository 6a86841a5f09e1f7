"""Paper Fig. 5: the kept ratio at each navigation point (block) with a cubic trend line."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from afnet._imports import require


def plot_kept_ratio(kept: list, path, *, title: str = "") -> Path:
    """Write the kept-ratio-per-block plot as PNG (matplotlib: a Figure of its own on the Agg
    canvas; pyplot and the user's backend are left alone)."""
    require("matplotlib", "plotting the kept ratio")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    blocks = np.arange(1, len(kept) + 1)
    fig = Figure(figsize=(5, 3.2), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(blocks, kept, "o-", label="kept ratio")
    if len(kept) >= 2:
        deg = min(3, len(kept) - 1)  # cubic as in the paper; lower with fewer than 4 points
        coef = np.polyfit(blocks, kept, deg=deg)
        fine = np.linspace(1, len(kept), 100)
        ax.plot(fine, np.polyval(coef, fine), "--", label="cubic trend" if deg == 3 else f"degree-{deg} trend")
    ax.set(xlabel="block (navigation point)", ylabel="ratio of frames kept", ylim=(0, 1.05), title=title)
    ax.set_xticks(blocks)
    ax.legend(loc="lower left")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
