"""From the numbers of each repeat to a :class:`Diagnosis`: means per layer, the rate fits, the notes.

:func:`_repeat_rows` turns one repeat's hooks into numbers per layer; :func:`_summarize` averages
them over repeats, fits the rate per layer (on the pairs of :func:`._links`, each value divided
by its gain ratios) and per effective depth (on the residual stream's gradient at each addition),
each with its standard error over repeats, and writes the per-layer table.
"""
from __future__ import annotations

import collections
import math
import warnings

import numpy as np
import torch

from ..measure.rates import fit_rate
from .graph import _Links
from .kinds import _pair_label
from .predict import _gains, _pair_prediction
from .report import Diagnosis, _verdict
from .watch import _feature_variance, _output_channel_dim


def _repeat_rows(layers, grad_of, f, g_out, value, user_loss: bool) -> list[dict]:
    """This repeat's numbers per layer (floats)."""
    f_var = float(_feature_variance(f, _output_channel_dim(f))) if f is not None else math.nan
    g_var = float(_feature_variance(g_out, _output_channel_dim(g_out))) if g_out is not None else math.nan
    ref = abs(float(value.detach())) if user_loss else (float(f.detach().float().norm()) if f is not None else math.nan)
    rows = []
    for layer in layers:
        grad = grad_of.get(id(layer.weight))
        row = {"weight_grad_norm": float(grad.float().norm()) if grad is not None else math.nan,
               "grad_variance": math.nan, "forward_variance": math.nan, "gsc": math.nan,
               "bjorck_a": math.nan, "bjorck_b": math.nan}
        if layer.fwd_var:
            row["forward_variance"] = float(torch.stack(layer.fwd_var).mean())
        if layer.grad_var:
            row["grad_variance"] = float(torch.stack(list(layer.grad_var.values())).mean())
            gsc = [math.sqrt(float(layer.grad_sq[c]) / layer.out_numel[c]) * float(layer.out_norm[c]) / ref
                   for c in sorted(layer.grad_sq)]
            row["gsc"] = float(np.mean(gsc)) if ref > 0 else math.nan
        if layer.bjorck_a is not None and grad is not None:
            row["bjorck_a"] = float(layer.bjorck_a.float().mean())
            row["bjorck_b"] = float(grad.float().abs().mean())
        row["R_f"] = f_var / row["forward_variance"] if row["forward_variance"] > 0 else math.nan
        row["R_b"] = row["grad_variance"] / g_var if g_var > 0 else math.nan
        rows.append(row)
    return rows


def _fit(values, depths, segments):
    """(rate, points used) of :func:`fit_rate` (reverse) on the finite positive values, NaN when
    no segment keeps two of them."""
    v, d, s = (np.asarray(a, dtype=float) for a in (values, depths, segments))
    ok = np.isfinite(v) & (v > 0)
    v, d, s = v[ok], d[ok], s[ok]
    labels, counts = np.unique(s, return_counts=True)
    if not np.any(counts >= 2):
        return math.nan
    try:
        return fit_rate(v, depths=d, segments=s, reverse=True).rate
    except ValueError:
        return math.nan


def _summarize(model, layers, per_repeat, links: _Links, stream_repeats, loss_text, repeats, train, device,
               notes) -> Diagnosis:
    with warnings.catch_warnings():   # a column that is NaN in every repeat stays NaN, silently
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = {col: np.nanmean(np.array([[row[col] for row in rows] for rows in per_repeat], dtype=float), axis=0)
                for col in per_repeat[0][0]}
    gains = [_gains(l) if l.calls >= 1 else (math.nan, math.nan) for l in layers]
    # ---- per layer: pairs i -> j through norm/activation; φ(norm(h_i)) needs i's input to be φ(norm(·))
    # too, norm(h_i) (no activation: a linear or identity one) needs it to be norm(·)
    link = {j: (i, norm, act, last) for j, (i, norm, act, last) in links.link.items()
            if (norm is None and act is not None) or (norm is not None and act is not None and last)
            or (norm is not None and act is not None and links.normalized.get(i) == norm)
            or (norm is not None and act is None and links.normed.get(i) == norm)}
    gain_ratio = {j: gains[j][1] / gains[i][0] for j, (i, *_) in link.items()}
    parent = {j: v[0] for j, v in link.items()}
    fit_layers = sorted(set(parent) | set(parent.values()), key=lambda k: layers[k].first_call)

    def root_and_depth(k):
        depth = 0
        while k in parent:
            k, depth = parent[k], depth + 1
        return k, depth

    def corrected(k):
        """Var[g_k] times the gain ratios B_j/A_i of the links from its run's root down to k, so that
        consecutive corrected values differ by the pair's width-free rate."""
        w = 1.0
        while k in parent:
            w *= gain_ratio[k]
            k = parent[k]
        return w

    pair_pred = {j: _pair_prediction(norm, act, gain_ratio[j], gains[j][1], mean["forward_variance"][i], last)
                 / gain_ratio[j] for j, (i, norm, act, last) in link.items()}
    labels = collections.Counter(_pair_label(*v[1:]) for v in link.values())
    kinds = ", ".join(k if len(labels) == 1 else f"{k} ×{n}" for k, n in labels.most_common())
    predicted = [p for p in pair_pred.values() if math.isfinite(p) and p > 0]
    predicted_per_layer = (float(np.exp(np.mean(np.log(predicted)))) if predicted and len(predicted) == len(pair_pred)
                           else math.nan)
    if pair_pred and len(predicted) < len(pair_pred):
        notes.append(f"no prediction per layer: no theory for some of {kinds}")

    def layer_rate(rows):
        if not fit_layers:
            return math.nan
        return _fit([rows[k]["grad_variance"] * corrected(k) for k in fit_layers],
                    [root_and_depth(k)[1] for k in fit_layers], [root_and_depth(k)[0] for k in fit_layers])

    def spread(values):
        ok = np.array([v for v in values if math.isfinite(v)])
        return (float(np.mean(ok)) if len(ok) else math.nan,
                float(np.std(ok, ddof=1) / math.sqrt(len(ok))) if len(ok) >= 2 else math.nan)

    rate_layer, se_layer = spread([layer_rate(rows) for rows in per_repeat])
    # ---- per effective depth: the residual stream's gradient at each addition
    stream, _ = stream_repeats[0]
    residual = bool(stream.depth)
    if residual:
        depth_rates = [_fit(v, st.depth, st.segment) for st, v in stream_repeats]
        rate_depth, se_depth = spread(depth_rates)
        effective = sum(len(set(d for d, s in zip(stream.depth, stream.segment) if s == seg))
                        for seg in set(stream.segment))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            same = [v for st, v in stream_repeats if st.depth == stream.depth]
            stream_var = np.nanmean(np.array(same, dtype=float), axis=0)
        points = [v for v in stream_var if math.isfinite(v) and v > 0]
        predicted_depth = math.nan
    else:
        rate_depth, se_depth, predicted_depth = rate_layer, se_layer, predicted_per_layer
        effective = len([l for l in layers if l.kind != "embedding" and l.calls >= 1 and l.observable])
        stream_var = np.array([])
        points = [mean["grad_variance"][k] for k in fit_layers if math.isfinite(mean["grad_variance"][k])]
    overall = math.sqrt(points[0] / points[-1]) if len(points) >= 2 and points[-1] > 0 else math.nan
    writes = {k: (d, s) for d, s, ks in zip(stream.depth, stream.segment, stream.writes) for k in ks}
    # ---- the table
    functional = [l.name for k, l in enumerate(layers) if (not l.observable or l.calls == 0)
                  and math.isfinite(mean["weight_grad_norm"][k])]
    unused = [l.name for k, l in enumerate(layers) if l.calls == 0 and l.name not in functional]
    shared = [f"{l.name} ({l.calls} calls)" for l in layers if l.calls > 1 and l.observable]
    tied = collections.defaultdict(list)
    for l in layers:
        tied[id(l.weight)].append(l.name)
    notes += [f"{', '.join(group)} share one weight: each row shows its total gradient"
              for group in tied.values() if len(group) > 1]
    if shared:
        notes.append("weights called several times: variances and GSC are means over calls, the weight-gradient norm "
                     "and a/b the total; left out of the rate fits")
    order = sorted(range(len(layers)), key=lambda k: (layers[k].first_call < 0, layers[k].first_call, k))
    position = {k: p for p, k in enumerate(order)}
    rows = []
    for k in order:
        l = layers[k]
        row = {"index": position[k], "name": l.name, "kind": l.kind, "calls": l.calls,
               "out_shape": list(l.out_shape), "in_shape": list(l.in_shape)}
        row.update({col: float(mean[col][k]) for col in mean})
        row["width_ratio"] = float(l.width_ratio)
        row["stream"] = k in writes
        row["effective_depth"] = int(writes[k][0]) + 1 if k in writes else None
        row["in_fit"] = k in fit_layers
        nxt = [j for j, v in link.items() if v[0] == k]
        row["between"] = _pair_label(*link[nxt[0]][1:]) if nxt else ""
        below = float(mean["grad_variance"][nxt[0]] * gain_ratio[nxt[0]]) if nxt else math.nan
        row["pair_ratio"] = float(mean["grad_variance"][k]) / below if below > 0 else math.nan   # 0: a branch switched off
        row["pair_predicted"] = float(pair_pred[nxt[0]]) if nxt else math.nan
        rows.append(row)
    stream_rows = [{"effective_depth": int(d) + 1, "segment": int(s), "grad_variance": float(v),
                    "after": layers[max(ks, key=lambda k: layers[k].first_call)].name if ks else "",
                    "after_index": position[max(ks, key=lambda k: layers[k].first_call)] if ks else -1}
                   for d, s, ks, v in zip(stream.depth, stream.segment, stream.writes, stream_var)]
    d = Diagnosis(model=type(model).__name__, loss=loss_text, repeats=repeats, train=train, device=str(device),
                  layers=rows, stream=stream_rows, rate_per_layer=rate_layer, rate_per_layer_se=se_layer,
                  predicted_per_layer=predicted_per_layer, layers_in_fit=len(fit_layers), rate_per_depth=rate_depth,
                  rate_per_depth_se=se_depth, predicted_per_depth=predicted_depth, effective_depth=int(effective),
                  residual=residual, overall_growth=overall, kinds=kinds, unused=unused, functional=functional,
                  shared=shared, notes=notes)
    d.verdict = _verdict(d)
    return d
