"""The autograd graph of one forward pass: which weight layer feeds which, and the residual stream.

:func:`_analyze_graph` walks the graph backward from the loss without passing a weight layer's
output, and finds the *residual additions*: ``add`` nodes whose operands come from disjoint,
non-empty sets of weight layers (or the input data). :func:`_links` finds, per weight layer,
the single layer feeding it through a normalization and/or an activation only (the pairs of the
per-layer rate); :func:`_stream` orders the residual additions into chains and counts each
point's *effective depth*, the residual branches between it and the output.
"""
from __future__ import annotations

import collections
from dataclasses import dataclass

from torch import nn

from .kinds import _ACT_NODES, _NORM_NODES, _POOL_NODES, _act_of_module, _norm_of_module
from .watch import _Layer


def _analyze_graph(stops: dict, roots) -> tuple[dict, dict]:
    """Walk the autograd graph backward from ``roots`` without passing a weight layer's output
    (``stops``: node -> layer index). Returns, per node, the set of weight layers reached
    (``preds``), and, per residual addition (an ``AddBackward`` whose operands reach disjoint,
    non-empty sets of layers), the nearest additions below it (``merges``, every addition listed
    after those below it)."""
    preds, near, merges = {}, {}, {}
    empty = frozenset()
    for root in roots:
        if root is None or root in preds:
            continue
        stack = [(root, False)]
        while stack:
            node, expanded = stack.pop()
            if node in preds:
                continue
            if node in stops:
                preds[node], near[node] = frozenset([stops[node]]), empty
                continue
            kids = [n for n, _ in node.next_functions if n is not None]
            if not expanded:
                stack.append((node, True))
                stack.extend((k, False) for k in kids if k not in preds)
                continue
            sets = [preds[k] for k in kids]
            below = empty.union(*(near[k] for k in kids))
            nonempty = [s for s in sets if s]
            residual = (node.name().startswith("AddBackward") and len(nonempty) >= 2
                        and all(a.isdisjoint(b) for i, a in enumerate(nonempty) for b in nonempty[i + 1:]))
            if residual:
                merges[node] = below
                near[node] = frozenset([node])
            else:
                near[node] = below
            preds[node] = empty.union(*sets)
    return preds, merges


def _path_events(start, source: int | None, preds: dict, spans: dict, stops: dict, merges: dict,
                 most: int = 8) -> list:
    """What lies on the way back from a weight layer's input node ``start`` toward the weight layer
    ``source`` (``None``: toward any), nearest first, at most ``most`` events: ('norm', kind),
    ('act', activation), ('pool', what), ('dropout', p), ('add', None) for a residual addition
    (not passed). Modules seen by hooks are taken whole (their inner operations skipped)."""
    events, frontier, seen = [], collections.deque([start]), set()
    while frontier and len(events) < most:
        node = frontier.popleft()
        if node is None or node in seen or node in stops:
            continue
        seen.add(node)
        if node in merges:
            events.append(("add", None))
            continue
        if node in spans:
            m, in_node = spans[node]
            norm, act = _norm_of_module(m), _act_of_module(m)
            if norm:
                events.append(("norm", norm))
            elif act is not None:
                events.append(("act", act))
            elif isinstance(m, nn.Dropout):
                if m.p > 0 and m.training:
                    events.append(("dropout", m.p))
            else:
                events.append(("pool", type(m).__name__))
            frontier.append(in_node)
            continue
        name = node.name()
        if name in _ACT_NODES:
            events.append(("act", _ACT_NODES[name]))
        elif any(key in name for key, _ in _NORM_NODES):
            events.append(("norm", next(kind for key, kind in _NORM_NODES if key in name)))
        elif any(key in name for key in _POOL_NODES):
            events.append(("pool", name))
        elif "Dropout" in name:
            events.append(("dropout", None))
        for k, _ in node.next_functions:
            reach = preds.get(k, ()) if k is not None else ()
            if reach and (source is None or source in reach):
                frontier.append(k)
    return events


@dataclass
class _Links:
    """Per layer j fed by exactly one weight layer i through a normalization and/or an activation
    only: ``link[j] = (i, norm, act, norm_last)``, ``norm_last`` for norm(φ(h_i)) (else φ(norm(h_i)),
    φ(h_i) or norm(h_i)); ``normalized`` the layers whose input is φ(norm(·)), ``normed`` those whose
    input is norm(·) itself."""

    link: dict
    normalized: dict      # layer -> norm kind of its input φ(norm(·))
    normed: dict          # layer -> norm kind of its input norm(·)


def _links(layers: list[_Layer], spans: dict, preds: dict, stops: dict, merges: dict) -> _Links:
    link, normalized, normed = {}, {}, {}
    for j, layer in enumerate(layers):
        start = layer.in_node
        if layer.calls != 1 or start is None or layer.kind == "embedding":
            continue
        source = preds.get(start, frozenset())
        if not source:
            continue
        events = [e for e in _path_events(start, None, preds, spans, stops, merges, most=3) if e[0] != "dropout"]
        if len(events) >= 2 and events[0][0] == "act" and events[1][0] == "norm":
            normalized[j] = events[1][1]
        elif events and events[0][0] == "norm":
            normed[j] = events[0][1]
        if len(source) != 1:
            continue
        (i,) = source
        if i >= len(layers) or layers[i].kind == "embedding" or layers[i].calls != 1:   # fed by the data
            continue
        events = _path_events(start, i, preds, spans, stops, merges)
        kinds = [e[0] for e in events]
        if any(k in ("pool", "add", "dropout") for k in kinds) or kinds.count("act") > 1 or kinds.count("norm") > 1:
            continue
        # nearest first: φ(norm(h_i)), φ(h_i), norm(h_i), norm(φ(h_i))
        if kinds not in (["act"], ["norm"], ["act", "norm"], ["norm", "act"]):
            continue
        act = next((e[1] for e in events if e[0] == "act"), None)
        norm = next((e[1] for e in events if e[0] == "norm"), None)
        link[j] = (i, norm, act, kinds == ["norm", "act"])
    return _Links(link, normalized, normed)


@dataclass
class _Stream:
    """The residual additions of one forward pass, input to output: for each, its effective depth
    (0, 1, …: branches added before it along its chain), its chain (segment) and the weight layers
    it brings into the stream."""

    nodes: list
    depth: list
    segment: list
    writes: list


def _stream(preds: dict, merges: dict, embedding: set) -> _Stream:
    level, segment, out = {}, {}, _Stream([], [], [], [])
    for node, below in merges.items():      # every addition comes after those below it
        new = preds[node].difference(*(preds[b] for b in below)) if below else preds[node]
        counts = bool(new - embedding)      # embeddings summed (token + position) are no branch
        base = max(below, key=lambda b: level[b]) if below else None
        level[node] = (level[base] if base is not None else -1) + (1 if counts else 0)
        segment[node] = segment[base] if base is not None else len(segment)
        if counts:
            out.nodes.append(node)
            out.depth.append(level[node])
            out.segment.append(segment[node])
            out.writes.append(sorted(new - embedding))
    first = {}
    out.segment = [first.setdefault(seg, len(first)) for seg in out.segment]
    return out
