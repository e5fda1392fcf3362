"""Philipp et al.'s Figure 2: a network as a function of one layer's weights, drawn on a disc.

Three weight matrices W_A, W_B, W_C for one linear layer span a sphere of configurations
W(c) = c_A W_A + c_B W_B + c_C W_C, c on the unit sphere. Every point of the sphere gives a network;
an input image is propagated and the normalized 3-dimensional output is drawn as a colour. The
sphere is shown as an azimuthal equidistant projection centred on W_A (the rim is -W_A).

Shared products. Everything below the chosen layer does not depend on c, and the layer's output is
W(c) h = Σ_j c_j (W_j h): three products computed once, then a 3-term combination per pixel. The
layers above run once for all pixels as one batched pass (``torch.func.vmap``), so the weights of
every layer are shared across pixels instead of building one network per pixel
(:func:`disc_outputs_naive`, kept for tests and the benchmark).
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn
from torch.func import replace_all_batch_norm_modules_, vmap

from ..checks import int_at_least
from .hooks import hooks, record, weight_layers

__all__ = ["sphere_grid", "layer_weight_samples", "disc_outputs", "disc_outputs_naive", "colours", "to_image",
           "roughness", "legend_disc"]


def sphere_grid(resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Azimuthal equidistant projection of the unit sphere onto a ``resolution``² disc.

    Returns ``coefficients`` [P, 3], the points c of the sphere for the P pixels inside the disc
    (row-major order), and ``mask`` [resolution, resolution], True inside. A pixel at distance ρ
    (0 … π) from the centre and azimuth α is c = (cos ρ, sin ρ cos α, sin ρ sin α).
    """
    int_at_least("resolution", resolution, 2)
    centres = (torch.arange(resolution, dtype=torch.float64) + 0.5) / resolution * 2 - 1
    v, u = torch.meshgrid(-centres, centres, indexing="ij")  # rows top to bottom, columns left to right
    rho, alpha = math.pi * torch.sqrt(u ** 2 + v ** 2), torch.atan2(v, u)
    mask = rho <= math.pi
    c = torch.stack([torch.cos(rho), torch.sin(rho) * torch.cos(alpha), torch.sin(rho) * torch.sin(alpha)], -1)
    return c[mask].float(), mask


def layer_weight_samples(build, layer_index: int, generators) -> torch.Tensor:
    """The weights of linear layer ``layer_index`` (of :func:`gradprobe.measure.hooks.weight_layers`) in
    networks ``build(g)`` for each generator g: independent draws from the network's own init."""
    weights = []
    for g in generators:
        layers = weight_layers(build(g))
        if not -len(layers) <= layer_index < len(layers):
            raise ValueError(f"layer_index {layer_index} out of range for {len(layers)} linear layers")
        weights.append(layers[layer_index].weight.detach().clone())
    return torch.stack(weights)


def _prepare(model, layer_index, weights):
    layers = weight_layers(model)
    if not -len(layers) <= layer_index < len(layers):
        raise ValueError(f"layer_index {layer_index} out of range for {len(layers)} linear layers")
    if weights.dim() != 3 or weights.shape[1:] != layers[layer_index].weight.shape:
        raise ValueError(f"weights must be [n, {', '.join(map(str, layers[layer_index].weight.shape))}] "
                         f"(the layer's weight shape), got {tuple(weights.shape)}")
    return layers[layer_index]


@torch.no_grad()
def disc_outputs(model: nn.Module, x: torch.Tensor, layer_index: int, weights: torch.Tensor,
                 coefficients: torch.Tensor, sample: int = 0, chunk: int = 2048) -> torch.Tensor:
    """The model's output for input ``sample`` of the batch ``x`` when linear layer
    ``layer_index`` has weights Σ_j c_j weights[j], for every row c of ``coefficients`` [P, n].

    In training mode BatchNorm normalizes over the batch ``x`` separately for every c (so ``x``
    must hold several inputs); the model is not modified. Returns [P, output dim].
    """
    layer = _prepare(model, layer_index, weights)
    if coefficients.dim() != 2 or coefficients.shape[1] != weights.shape[0]:
        raise ValueError(f"coefficients must be [P, {weights.shape[0]}], got {tuple(coefficients.shape)}")
    work = copy.deepcopy(model)
    if work.training:
        replace_all_batch_norm_modules_(work)       # batch statistics per pixel, no running statistics
    target = weight_layers(work)[weight_layers(model).index(layer)]
    with record(work, [target], inputs=True, gradients=False) as rec:
        work(x)                                    # the input of the chosen layer, shared by all pixels
    products = torch.einsum("joi,bi->jbo", weights.to(x.device), rec.inputs[0])   # W_j h, once
    bias = target.bias

    def rest(z):                                   # the network above the chosen layer, for one pixel
        with hooks([target], lambda i, inputs, output: z):
            return work(x)[sample]

    outs = []
    for start in range(0, len(coefficients), chunk):
        c = coefficients[start:start + chunk].to(products)
        z = torch.einsum("pj,jbo->pbo", c, products)
        if bias is not None:
            z = z + bias
        outs.append(vmap(rest)(z))
    return torch.cat(outs)


@torch.no_grad()
def disc_outputs_naive(model: nn.Module, x: torch.Tensor, layer_index: int, weights: torch.Tensor,
                       coefficients: torch.Tensor, sample: int = 0) -> torch.Tensor:
    """:func:`disc_outputs` the slow way: set the layer's weights and run the whole network once
    per point c. For tests and the benchmark."""
    _prepare(model, layer_index, weights)
    work = copy.deepcopy(model)
    if work.training:
        replace_all_batch_norm_modules_(work)
    layer = weight_layers(work)[layer_index]
    outs = []
    for c in coefficients:
        layer.weight.copy_(torch.einsum("j,joi->oi", c.to(weights), weights))
        outs.append(work(x)[sample])
    return torch.stack(outs)


def colours(outputs: torch.Tensor) -> torch.Tensor:
    """RGB colours in [0, 1] for 3-dimensional outputs: the output is normalized to unit length
    and mapped by (o/‖o‖ + 1)/2, so output class 1/2/3 (the largest coordinate) is mostly
    red/green/blue; nearby directions get nearby colours."""
    if outputs.shape[-1] != 3:
        raise ValueError(f"colours needs 3-dimensional outputs, got last dimension {outputs.shape[-1]}")
    return (outputs / outputs.norm(dim=-1, keepdim=True).clamp_min(1e-30) + 1) / 2


def to_image(values: torch.Tensor, mask: torch.Tensor, background: float = 1.0) -> torch.Tensor:
    """Place per-pixel ``values`` [P, C] (pixels inside ``mask``, row-major) into an image
    [H, W, C]; pixels outside the disc get ``background``."""
    image = torch.full((*mask.shape, values.shape[-1]), float(background), dtype=values.dtype)
    image[mask] = values.cpu()
    return image


def roughness(image: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean Euclidean colour difference between horizontally and vertically neighbouring pixels
    that are both inside the disc: near 0 for a smooth field, ~0.6 for random colours."""
    if image.shape[:2] != mask.shape:
        raise ValueError(f"image {tuple(image.shape)} and mask {tuple(mask.shape)} differ in size")
    diffs = []
    for dim in (0, 1):
        a, b = image.narrow(dim, 0, image.shape[dim] - 1), image.narrow(dim, 1, image.shape[dim] - 1)
        both = mask.narrow(dim, 0, mask.shape[dim] - 1) & mask.narrow(dim, 1, mask.shape[dim] - 1)
        diffs.append((a - b).norm(dim=-1)[both])
    return float(torch.cat(diffs).mean())


def legend_disc(resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Figure 2B: the output sphere itself in the same projection (centred on class 1), coloured
    by :func:`colours`; returns (image [H, W, 3], mask)."""
    c, mask = sphere_grid(resolution)
    return to_image(colours(c), mask), mask

