"""The result of a diagnosis: :class:`Diagnosis`, its verdict in words, report, HTML, figure and JSON."""
from __future__ import annotations

import contextlib
import dataclasses
import html
import json
import math
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_NUMBER_COLUMNS = ("weight_grad_norm", "grad_variance", "forward_variance", "R_f", "R_b", "gsc", "bjorck_a",
                   "bjorck_b", "width_ratio", "pair_ratio", "pair_predicted")


def _fmt_growth(x: float) -> str:
    if not math.isfinite(x):
        return "n/a"
    if x >= 100 or x < 0.01:
        mantissa, exponent = f"{x:.1e}".split("e")
        return f"{mantissa}e{int(exponent)}"
    return f"{x:.3g}"


def _runs(fit) -> list[list[int]]:
    """The runs of the per-layer fit in a :meth:`Diagnosis.to_frame` restricted to ``in_fit`` rows:
    consecutive layers, each joined to the next by a normalization and/or activation."""
    runs = []
    for idx in fit.index:
        if runs and runs[-1][-1] == idx - 1 and fit.loc[runs[-1][-1], "between"]:
            runs[-1].append(idx)
        else:
            runs.append([idx])
    return runs


@dataclass
class Diagnosis:
    """The result of :func:`diagnose`. ``layers``: one dict per weight layer, input to output (see
    :meth:`to_frame` for the columns and the module docstring for their definitions).

    Rates are growths of the gradient *variance* toward the input, per layer or per effective depth
    (their square roots, the growth of the gradient's norm, are what the verdict quotes):
    ``rate_per_layer`` ± ``rate_per_layer_se`` (standard error over repeats) beside
    ``predicted_per_layer`` for the normalization–activation pairs ``kinds``; ``rate_per_depth`` ±
    ``rate_per_depth_se`` per residual branch along the residual stream (``effective_depth``
    branches; for a plain network the same as per layer, and ``predicted_per_depth`` then too);
    ``stream``: one dict per residual addition, input to output: its effective depth, its chain
    (``segment``), Var of the stream's gradient just after it, and the last layer of its branch;
    ``overall_growth``: the gradient norm's growth from the last to the first layer of the fit.
    """

    model: str
    loss: str
    repeats: int
    train: bool
    device: str
    layers: list
    stream: list
    rate_per_layer: float
    rate_per_layer_se: float
    predicted_per_layer: float
    layers_in_fit: int
    rate_per_depth: float
    rate_per_depth_se: float
    predicted_per_depth: float
    effective_depth: int
    residual: bool
    overall_growth: float
    kinds: str
    unused: list
    functional: list
    shared: list
    notes: list
    verdict: str = ""

    # ----------------------------------------------------------------- views
    def to_frame(self):
        """One row per weight layer, input to output: name, kind, calls, the quantities of the module
        docstring, and ``stream`` (a residual-stream layer), ``effective_depth`` (its branch count),
        ``in_fit`` (used by the per-layer fit), ``between`` (the norm–activation to the next layer)."""
        import pandas as pd

        return pd.DataFrame(self.layers).set_index("index")

    def summary(self) -> dict:
        """The headline numbers as a dict (the per-layer table left out)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "layers"}

    def report(self) -> str:
        """A plain-text report: the verdict, the rates side by side, notes, and the per-layer table."""
        lines = [f"gradprobe diagnosis of {self.model} ({self.device}, {'training' if self.train else 'as-is'} mode, "
                 f"{self.repeats} repeat{'s' if self.repeats != 1 else ''})", "", self.verdict, "",
                 f"loss: {self.loss}",
                 f"rate per layer (Var[g], toward the input): measured {self._pm(self.rate_per_layer, self.rate_per_layer_se)}"
                 f" on {self.layers_in_fit} layers, predicted {self.predicted_per_layer:.4g} ({self.kinds or 'none found'})",
                 f"rate per effective depth: measured {self._pm(self.rate_per_depth, self.rate_per_depth_se)}, "
                 f"predicted {self._predicted(self.predicted_per_depth)}; effective depth {self.effective_depth}"
                 f"{' residual branches' if self.residual else ' (plain network: its depth)'}"]
        for title, items in (("never called", self.unused), ("used functionally (weight-gradient norm only)",
                                                             self.functional), ("called several times", self.shared)):
            if items:
                lines.append(f"{title}: {', '.join(items)}")
        lines += [f"note: {n}" for n in self.notes]
        frame = self.to_frame()
        cols = ["name", "kind", "calls", "weight_grad_norm", "grad_variance", "forward_variance", "R_f", "R_b", "gsc",
                "bjorck_a", "bjorck_b", "stream", "between"]
        with _pandas_options():
            lines += ["", frame[cols].to_string(float_format=lambda v: f"{v:.3g}")]
        return "\n".join(lines)

    __str__ = report

    @staticmethod
    def _pm(value, se) -> str:
        if not math.isfinite(value):
            return "n/a"
        return f"{value:.4g}" + (f" ± {se:.2g}" if math.isfinite(se) else "")

    def _predicted(self, value) -> str:
        """A prediction, or why there is none."""
        if math.isfinite(value):
            return f"{value:.4g}"
        return "none (no theory for a residual branch's growth)" if self.residual else "none (no layers to predict)"

    def _repr_html_(self) -> str:
        frame = self.to_frame()
        head = (f"<p><b>{html.escape(self.model)}</b>: {html.escape(self.verdict)}</p>"
                f"<table><tr><th></th><th>measured</th><th>predicted</th></tr>"
                f"<tr><td>rate per layer (Var[g])</td><td>{html.escape(self._pm(self.rate_per_layer, self.rate_per_layer_se))}"
                f"</td><td>{self.predicted_per_layer:.4g} ({html.escape(self.kinds or 'none')})</td></tr>"
                f"<tr><td>rate per effective depth</td><td>{html.escape(self._pm(self.rate_per_depth, self.rate_per_depth_se))}"
                f"</td><td>{html.escape(self._predicted(self.predicted_per_depth))}</td></tr>"
                f"<tr><td>effective depth</td><td colspan=2>{self.effective_depth}</td></tr></table>"
                f"<p>loss: {html.escape(self.loss)}</p>")
        notes = "".join(f"<p>note: {html.escape(n)}</p>" for n in self.notes)
        with _pandas_options():
            table = frame.to_html(float_format=lambda v: f"{v:.3g}", max_rows=60)
        return head + notes + table

    # ----------------------------------------------------------------- figure
    def plot(self, fig=None):
        """The four papers' measures per layer (layer index on x, input to output), in the book's
        style: Var[∂ℓ/∂h_k] with the layers of the per-layer fit, the residual stream and the
        theory's rate drawn along each run of the fit (Paik & Choi), GSC (Philipp et al.), R_f and
        R_b (ghost 2024), ‖∂ℓ/∂W_k‖ and a/b for convolutions (Bjorck et al.). Legends sit below
        their panels. Returns the figure."""
        import matplotlib.pyplot as plt

        from ..book.plots import OURS, THEORY

        frame = self.to_frame()
        k = frame.index.to_numpy()
        if fig is None:
            fig = plt.figure(figsize=(10, 8.5))
        axes = np.array(fig.subplots(2, 2, sharex=True))
        a, b, c, d = axes.ravel()
        a.plot(k, frame["grad_variance"], label="all weight layers", **OURS)
        fit = frame[frame["in_fit"]]
        if len(fit):
            a.plot(fit.index, fit["grad_variance"], "s", color="tab:green", markersize=5,
                   label=f"per-layer fit: ×{math.sqrt(self.rate_per_layer):.3g} per layer (norm)")
        if self.residual and self.stream:
            a.plot([s["after_index"] for s in self.stream], [s["grad_variance"] for s in self.stream], "D-",
                   color="tab:purple", markersize=4, linewidth=1,
                   label=f"residual stream: ×{math.sqrt(self.rate_per_depth):.3g} per branch (norm)")
        if math.isfinite(self.predicted_per_layer) and len(fit):
            for n, run in enumerate(_runs(fit)):     # the theory along each run, from its last layer
                xs = np.array(run)
                a.plot(xs, fit.loc[run[-1], "grad_variance"] * self.predicted_per_layer ** (run[-1] - xs),
                       label=f"theory: ×{math.sqrt(self.predicted_per_layer):.3g} per {self.kinds} layer"
                       if n == 0 else None, **THEORY)
        a.set(yscale="log", ylabel="Var[∂ℓ/∂h_k]", title="gradient variance (Paik & Choi)")
        b.plot(k, frame["gsc"], label="GSC(k, output)", **OURS)
        b.set(yscale="log", ylabel="GSC(k, output)", title="gradient scale coefficient (Philipp et al.)")
        c.plot(k, frame["R_b"], label="R_b = Var[∂ℓ/∂h_k] / Var[∂ℓ/∂f]", **OURS)
        c.plot(k, frame["R_f"], label="R_f = Var[f] / Var[h_k]", **OURS)
        c.set(yscale="log", ylabel="scaling ratio, layer k → output", title="scaling ratios (ghost 2024)")
        d.plot(k, frame["weight_grad_norm"], label="‖∂ℓ/∂W_k‖_F", **OURS)
        d.set(yscale="log", ylabel="‖∂ℓ/∂W_k‖_F", title="weight gradients (Bjorck et al.)")
        handles, labels = d.get_legend_handles_labels()
        convs = frame[np.isfinite(frame["bjorck_a"].astype(float))]
        if len(convs):
            twin = d.twinx()
            twin.plot(convs.index, convs["bjorck_a"] / convs["bjorck_b"], "x", color="tab:orange",
                      label="a/b = Σ|d| / |Σd| (Table 1)")
            twin.set(yscale="log", ylabel="a/b")
            twin.grid(False)
            more = twin.get_legend_handles_labels()
            handles, labels = handles + more[0], labels + more[1]
        for ax in (c, d):
            ax.set_xlabel("weight layer k (input → output)")
        for ax in (a, b, c):
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08 if ax is not c else -0.25), fontsize="x-small",
                      frameon=False, ncol=1)
        d.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.25), fontsize="x-small", frameon=False)
        fig.suptitle("\n".join(textwrap.wrap(f"{self.model}: {self.verdict}", 110)), fontsize="small")
        fig.tight_layout()
        return fig

    # ----------------------------------------------------------------- persistence
    def save(self, path) -> Path:
        """Write the diagnosis as JSON (NaN as null); :meth:`load` reads it back."""
        def clean(v):
            if isinstance(v, float) and not math.isfinite(v):
                return None
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items()}
            if isinstance(v, (list, tuple)):
                return [clean(x) for x in v]
            if isinstance(v, (np.floating, np.integer)):
                return clean(v.item())
            return v

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(clean(dataclasses.asdict(self)), indent=1, allow_nan=False))
        return path

    @classmethod
    def load(cls, path) -> "Diagnosis":
        """Read a diagnosis written by :meth:`save`."""
        data = json.loads(Path(path).read_text())
        floats = {f.name for f in dataclasses.fields(cls) if f.type in ("float", float)}
        for name in floats:
            if data.get(name) is None:
                data[name] = math.nan
        for row in data["layers"]:
            for col in _NUMBER_COLUMNS:
                if row.get(col) is None:
                    row[col] = math.nan
        return cls(**data)


@contextlib.contextmanager
def _pandas_options():
    import pandas as pd

    with pd.option_context("display.max_rows", 500, "display.max_columns", 30, "display.width", 250):
        yield


def _agrees(measured, se, predicted) -> bool:
    return abs(measured / predicted - 1) <= max(0.05, 2 * se / predicted if math.isfinite(se) else 0.0)


def _growth_phrase(rate: float, unit: str) -> str:
    """'grows ×1.21 per BN–ReLU layer toward the input' for a variance rate of 1.467."""
    norm = math.sqrt(rate)
    if abs(norm - 1) < 0.005:
        return f"keeps its size (×{norm:.3f} per {unit} toward the input)"
    shown = f"{norm:.2f}" if 0.1 <= norm < 10 else f"{norm:.3g}"
    return f"{'grows' if norm > 1 else 'shrinks'} ×{shown} per {unit} toward the input"


def _verdict(d: Diagnosis) -> str:
    """The diagnosis in words: growth of the gradient's norm per layer (or residual branch) toward
    the input, over the network, and against the theory's prediction."""
    kinds = d.kinds if d.kinds and "×" not in d.kinds else ("mixed layers" if d.kinds else "")
    overall = f", {_fmt_growth(d.overall_growth)}× over the network" if math.isfinite(d.overall_growth) else ""

    def against(measured, se, predicted, label):
        if not math.isfinite(predicted):
            return ""
        if _agrees(measured, se, predicted):
            return f", as predicted for {label}"
        side = "more" if measured > predicted else "less"
        return f", {side} than the ×{math.sqrt(predicted):.3g} predicted for {label}"

    if d.residual and math.isfinite(d.rate_per_depth):
        text = (f"the gradient {_growth_phrase(d.rate_per_depth, 'residual branch')} along the residual stream "
                f"(effective depth {d.effective_depth} branches){overall}")
        if math.isfinite(d.rate_per_layer):
            text += (f"; within the branches it {_growth_phrase(d.rate_per_layer, (kinds + ' layer').strip())}"
                     f"{against(d.rate_per_layer, d.rate_per_layer_se, d.predicted_per_layer, kinds)}")
        return text
    if math.isfinite(d.rate_per_layer):
        return ("the gradient " + _growth_phrase(d.rate_per_layer, (kinds + " layer").strip()) + overall
                + against(d.rate_per_layer, d.rate_per_layer_se, d.predicted_per_layer, kinds))
    return ("no rate: no two consecutive weight layers joined by a normalization or activation alone, and no "
            "residual stream, were found")
