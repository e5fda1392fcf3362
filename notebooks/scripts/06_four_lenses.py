# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Your network through four lenses
#
# The four papers of this book measure one phenomenon four ways: Philipp et al. with the gradient
# scale coefficient {cite}`philipp2018`, Bjorck et al. with the magnitudes and cancellations of
# gradients {cite}`bjorck2018`, Paik & Choi with the growth of the gradient's variance per layer
# {cite}`paik2023`, the ghost paper with backward and forward scaling ratios {cite}`ghost2024`. Each
# chapter so far reproduced one of them on the paper's own networks. This chapter asks the reader's
# question: *does my network have it?* It turns one tool, `gradprobe.diagnose`, which computes all
# four measures for any PyTorch model, on seven standard architectures at initialization, and then
# changes one design choice at a time to see which of them relieve the explosion, each prediction of
# the theory beside its measurement.
#
# :::{admonition} This page
# :class: tip
# Puts Paik & Choi's Figure 1 statements (vanilla BatchNorm networks, residual networks, layer
# normalization, activations) {cite}`paik2023`, the ghost paper's Eq. (1) rates and its Appendix B.2
# (zero-γ, 1/√L) {cite}`ghost2024`, Bjorck et al.'s Table 1 contrast {cite}`bjorck2018` and
# Philipp et al.'s GSC {cite}`philipp2018` to seven standard architectures and ten controlled
# variants. Run at {glue:text}`scale` scale in {glue:text}`wall` on this machine's CPU; results:
# {glue:text}`summary`.
# Re-run it with `python -m gradprobe.book run --only four_lenses`; at the paper's scale on a GPU:
# `python -m gradprobe.book run --only four_lenses --scale paper --device cuda` (about
# {glue:text}`estimate_paper` at this run's speed; a GPU is much faster). The estimates scale this
# run's seconds per pixel-layer pass (batch × pixels × weight layers, summed over the diagnoses, plus
# a fixed part for loading the data and drawing the figures) to the other scales: smoke
# {glue:text}`estimate_smoke`, book {glue:text}`estimate_book`.
# :::
#
# **Small inputs.** To fit two CPU cores, the images are CIFAR-10's (so the ImageNet
# networks, ResNet-50 and ConvNeXt-T, end on 1 × 1 and 2 × 2 maps), the decoder reads short random
# token sequences and the controlled stack sees small images (sizes per scale in the table below);
# the `paper` scale feeds the ImageNet networks 224 × 224 images and GPT-2 its own width and length.

# %% tags=["parameters"]
scale = "book"
seed = 0
device = "auto"

# %%
from gradprobe.book import plots
from gradprobe.book.page import Page
from gradprobe.chapters import four_lenses as ch

page = Page("four_lenses", scale, seed, device, threads=1)
S = ch.settings(scale)
ch.glue_settings(page, S)
S

# %% [markdown]
# ## Diagnose your own model
#
# One call measures a model at its current weights, in training mode (BatchNorm on the batch's
# statistics, as at the start of training), and leaves it exactly as it was:
#
# ```python
# import torch, gradprobe
# from gradprobe.networks.imagenet_resnet import resnet50  # or any nn.Module
# d = gradprobe.diagnose(resnet50(), torch.randn(32, 3, 224, 224))
# print(d.verdict)     # growth per layer and per residual branch
# d.plot(); d.to_frame(); d.save("resnet50.json")  # per layer
# ```
#
# or, from a shell, `python -m gradprobe.diagnose gradprobe.networks.imagenet_resnet:resnet50
# --input-shape 32,3,224,224` (any `package.module:factory` that returns the model).
# Per weight layer it reports the weight-gradient norm and Bjorck et al.'s a/b (convolutions), the
# gradient's variance Var[∂ℓ/∂h] (Paik & Choi), GSC (Philipp et al.), R_f and R_b (the ghost paper);
# it fits the explosion rate per layer, between layers joined by a normalization and an activation,
# beside the rate the theory predicts for what it finds between them, and per *effective depth*:
# here, one unit per residual branch added to the residual stream between a point and the output
# (a plain network's effective depth is its depth). The {doc}`opening chapter </executed/01_one_number>`
# derives the one number behind all of them, r(φ) = E[φ'(z)²]/Var[φ(z)], π/(π−1) ≈
# {glue:text}`relu_rate` for ReLU, {glue:text}`relu_norm` per layer for norms.
#
# (four_lenses-zoo)=
# ## Seven networks at initialization
#
# **The question.** Paik & Choi's Figure 1 caption {cite}`paik2023`: "The explosion rate is
# approximately π/(π −1) in vanilla networks with batch normalization; but it is lower in
# architectures with residual connections (He et al., 2016), which reduces the effective depth.
# Moreover, gradient explosion does not occur in architectures with layer normalization (Ba et al.,
# 2016), including transformer-based architectures". Their introduction: "The exploding rate is
# approximately π/(π −1) ∼ 1.21 per effective depth" (1.21 is the rate for norms).
#
# The zoo: VGG-19 with BatchNorm {cite}`simonyan2015very`; ResNet-50 in torchvision's layout
# {cite}`he2016deep`; its pre-activation variant (He et al.'s "identity mappings"); He et al.'s CIFAR
# ResNet-56; a ViT {cite}`dosovitskiy2021image` of 12 blocks on 4 × 4 patches; a GPT-2-style
# decoder (Radford et al.'s layout, nanoGPT's code) of 12 pre-LayerNorm blocks; ConvNeXt-T (Liu et
# al. 2022) with its LayerNorm, GELU and layer scale. Each is built with its own library's
# initialization, fed a batch of CIFAR-10 images (random tokens for the decoder) and diagnosed with
# the cross-entropy against the labels (the next tokens), {glue:text}`seeds` times with fresh weights
# and a fresh batch.

# %%
zoo = ch.diagnose_zoo(S, seed, page.device)
ch.glue_zoo(page, zoo)
ch.lens_table(zoo)

# %% [markdown]
# The table puts the four papers side by side; mean ± standard error over seeds where a ± is shown.
# *Rate per layer*: Var[∂ℓ/∂h] grows by this factor per layer toward the input, fitted between
# layers joined by a normalization and an activation only, beside the theory's prediction for what
# lies between them. *Rate per effective depth*: the same for the residual stream's gradient, per
# branch. *Growth (norm)*: the gradient norm's growth from the last to the first point of that fit.
# *GSC(first layer)* {cite}`philipp2018`, *R_b/R_f* of the rest of the network seen from the first
# weight layer {cite}`ghost2024`, the *RMS weight gradient* of the first weight layer over that of
# the head (the ghost paper's Figure 1 quantity), and Bjorck et al.'s *a/b*, the median over
# convolutions of Σ|d| over |Σ d| for the summands d of a kernel's gradient {cite}`bjorck2018`.
# In the LayerNorm networks the only layers so joined are an MLP's two, with GELU alone between them
# (the LayerNorm sits before the first): no normalization divides the small weights' gain out, and
# the gradient's variance shrinks across the pair as the second layer's gain times E[GELU'(z)²]
# predicts: {glue:text}`vit_layer` in the ViT against {glue:text}`vit_layer_pred`. Their growth is the
# stream's, per branch.

# %% mystnb={"figure": {"caption": "Growth of the gradient norm per effective depth (circles) and, inside the residual branches, per normalized layer (squares) beside the theory (plus signs), mean \u00b1 2 SE over seeds, for the seven architectures at initialization; the dashed line is Paik & Choi's 1.21 (their Figure 1), at {glue:text}`scale` scale.", "name": "fig-four_lenses-zoo-rates"}, "image": {"alt": "Horizontal dot chart: VGG-19 above 1 per layer, the three ResNets above 1 per residual branch, the three LayerNorm networks at 1."}}
plots.show(ch.figure_zoo_rates(zoo), "four_lenses-zoo-rates")

# %% [markdown]
# {numref}`fig-four_lenses-zoo-rates` answers the question in three groups. The **plain BatchNorm
# network** explodes at the predicted rate: VGG-19's gradient variance grows by
# {glue:text}`vgg_rate` per layer ({glue:text}`vgg_norm` in norm) against π/(π−1) =
# {glue:text}`relu_rate`, a few percent low on this CIFAR-size input, where its last stages run on
# 4 × 4 and 2 × 2 maps. Over the whole network the gradient norm grows only
# {glue:text}`vgg_growth`×: each max-pool hands the gradient to one of four pixels and each width
# doubling spreads it, which undoes most of the growth between them (the ghost paper's remark on
# max-pooling). The **LayerNorm networks** do not explode: per residual branch the ViT's stream
# gradient variance grows by {glue:text}`vit_depth`, the decoder's by {glue:text}`gpt_depth`,
# ConvNeXt's by {glue:text}`convnext_depth` (its layer scale of 10⁻⁶ switches every branch off at
# initialization), all below {glue:text}`no_explosion`, the line we draw for "does not occur": a
# quarter of BatchNorm–ReLU's excess over 1. The **residual networks** explode per branch, by {glue:text}`r50_depth_norm`
# (ResNet-50), {glue:text}`pre50_depth_norm` (pre-activation) and {glue:text}`r56_depth_norm`
# (ResNet-56) in norm: not Paik & Choi's 1.21 per effective depth, but rates that depend on what a
# branch holds (three BatchNorm–ReLU layers in a bottleneck, two in a CIFAR basic block) and on how
# much the stream has accumulated. Spread over the network's convolutions, each is below π/(π−1),
# Paik & Choi's "lower in architectures with residual connections".
#
# Inside the branches the BatchNorm–ReLU prediction holds where the branch is a plain stack, the
# pre-activation bottleneck ({glue:text}`pre50_layer`), and misses in the post-activation ones:
# ResNet-50's {glue:text}`r50_layer`, and {glue:text}`r56_layer` for the single pair of ResNet-56
# whose first layer is fed by a BatchNorm–ReLU (every other block's first convolution reads the
# ReLU of a sum, which is not normalized, so the fit leaves it out). There the ReLU after the
# addition couples each branch's output to the gradient that comes back through it, which the
# theory's independence assumption leaves out.

# %% mystnb={"figure": {"caption": "Along each network (input left, output right; first seed): the gradient variance relative to the head's (left, Paik & Choi's measure) and the gradient scale coefficient (right, Philipp et al.'s), at {glue:text}`scale` scale.", "name": "fig-four_lenses-zoo-profiles"}, "image": {"alt": "Two panels of seven curves on log scales: the ResNets rise toward the input by orders of magnitude, VGG-19 saw-tooths, the LayerNorm networks stay flat or fall."}}
plots.show(ch.figure_zoo_profiles(zoo), "four_lenses-zoo-profiles")

# %% [markdown]
# The same gradients along each network ({numref}`fig-four_lenses-zoo-profiles`), through Paik &
# Choi's lens and Philipp et al.'s: the residual stream's gradient of the three ResNets rises steadily
# toward the input (the gradient norm by {glue:text}`r50_growth`× in
# ResNet-50, {glue:text}`pre50_growth`× pre-activation, {glue:text}`r56_growth`× in ResNet-56, whose
# parameter-free shortcuts leave a jump where a stage halves the resolution), and so does the GSC;
# VGG-19's gradient dips and recovers (pools and widths against the runs between them); the decoder's
# stream gradient rises slowly, by {glue:text}`gpt_growth`× in norm, the ViT's and ConvNeXt's stay
# flat, and the GSC of ConvNeXt's branches sits orders of magnitude below 1, its layer scale
# of 10⁻⁶ at work. ResNet-50's first
# layer receives a weight gradient {glue:text}`r50_gradw` times its head's per weight (the ghost
# paper's measure).
#
# ### One number, four lenses
#
# On VGG-19's runs of BatchNorm–ReLU layers each paper's measure can be fitted the same way: Paik &
# Choi's Var[∂ℓ/∂h], Philipp et al.'s GSC², the ghost paper's R_b/R_f, and the mean squared weight
# gradient (the ghost paper's Figure 1, Bjorck et al.'s Figure 2). The theory says they are one
# exponential: GSC² = ‖J‖²_qm ‖h‖²/‖f‖² and R_b/R_f are both Var[∂ℓ/∂h] times the forward scale of h,
# which BatchNorm holds fixed; a weight gradient is Var[∂ℓ/∂h] times its input's scale, also fixed.

# %%
ch.one_number_table(zoo).drop(columns="samples")

# %% mystnb={"figure": {"caption": "The four papers' measures on VGG-19's runs of BatchNorm\u2013ReLU layers (first seed), each relative to its value at the run's last layer, against the number of layers toward the input, beside (\u03c0/(\u03c0\u22121))\u207f, at {glue:text}`scale` scale.", "name": "fig-four_lenses-one-number"}, "image": {"alt": "Four families of short rising lines, one per paper's measure, lying on top of one another and near the dotted theory line."}}
plots.show(ch.figure_one_number(zoo), "four_lenses-one-number")

# %% [markdown]
# They grow by {glue:text}`lens_low` to {glue:text}`lens_high` per layer
# ({numref}`fig-four_lenses-one-number`): one number seen through four papers, a few percent below
# π/(π−1) on this small input.
#
# **What `gradprobe.diagnose` shows for your network.** The tool's own figure for ResNet-50 (the
# first seed's draw), the four lenses per layer:

# %% mystnb={"figure": {"caption": "`gradprobe.diagnose(model, x).plot()` for torchvision's ResNet-50 layout at initialization on CIFAR-10 images: gradient variance with the fits (Paik & Choi), GSC (Philipp et al.), R_f and R_b (ghost 2024), weight-gradient norms and a/b (Bjorck et al.), per weight layer, at {glue:text}`scale` scale.", "name": "fig-four_lenses-diagnosis"}, "image": {"alt": "Four panels over the 54 weight layers: the gradient variance, GSC and R_b fall from input to output, R_f rises, weight-gradient norms fall."}}
resnet, fig = ch.figure_diagnosis(S, seed, page.device)
print(resnet.verdict)
plots.show(fig, "four_lenses-diagnosis")

# %%
ch.check_zoo(page.claims.section("four_lenses-zoo", "Seven networks at initialization"), zoo)
page.claims.table()

# %% [markdown]
# (four_lenses-designs)=
# ## One design choice at a time
#
# **The question.** Which design choices relieve the explosion, and does the theory predict by how
# much? A plain VGG-like stack of {glue:text}`stack_depth` 3 × 3 convolutions of
# {glue:text}`stack_width` channels (He's initialization; Paik & Choi's Figure 1(b) uses a 51-layer
# VGG-like network, whose width and inputs their text does not give) is varied in one thing at a
# time: the activation after BatchNorm; the normalization's type (BatchNorm, LayerNorm over a
# sample's channels and pixels, none); and its position (before or after the activation). The
# theory's prediction per layer (`gradprobe.diagnose` computes it from what it finds between the
# layers): r(φ) = E[φ'(z)²]/Var[φ(z)] for BatchNorm before φ {cite}`ghost2024,paik2023`;
# E[φ'(z)²]/E[φ(z)²] for LayerNorm before φ, whose mean over one sample's features does not remove
# the mean E[φ] that a random weight spreads over them (1 for ReLU); for either normalization right
# after φ the same r(φ) as BatchNorm, since both then remove φ's mean and divide by its variance;
# without normalization He's fan_in·E[W²]·E[φ'²] = 1, less the zero-padded border.

# %%
designs = ch.diagnose_designs(S, seed, page.device)
ch.glue_designs(page, designs)
ch.design_table(designs)

# %% mystnb={"figure": {"caption": "Variance rate per layer of the plain stack, measured (mean \u00b1 2 SE over seeds) and predicted (crosses), for six activations after BatchNorm (left) and five normalization types and positions with ReLU (right), at {glue:text}`scale` scale.", "name": "fig-four_lenses-designs"}, "image": {"alt": "Two panels of dots with error bars beside crosses: most dots sit on their crosses; BN\u2013SiLU and BN\u2013SELU sit above theirs."}}
plots.show(ch.figure_designs(designs), "four_lenses-designs")

# %% [markdown]
# {numref}`fig-four_lenses-designs` and the table. **The activation** sets the rate: ReLU
# {glue:text}`rate_bn_relu` (predicted {glue:text}`pred_bn_relu`), GELU {glue:text}`rate_bn_gelu`
# ({glue:text}`pred_bn_gelu`), tanh {glue:text}`rate_bn_tanh` ({glue:text}`pred_bn_tanh`), SELU
# {glue:text}`rate_bn_selu` ({glue:text}`pred_bn_selu`), and without an activation
# {glue:text}`rate_bn_no_activation`: the smoother the activation near zero, the less it explodes, as
# Paik & Choi's Figure 1(b) shows (the {doc}`Paik & Choi chapter </executed/04_paik2023>` reproduces
# it). The quadrature's r(φ) is a few percent low for SELU and tanh and misses SiLU
# ({glue:text}`rate_bn_silu` against {glue:text}`pred_bn_silu`). Why is not settled here; the theory
# assumes the backward signal independent of φ'(z) and the activation's input exactly Gaussian, and a
# finite network meets neither exactly.
#
# **The normalization's type and position** decide whether the activation's mean is divided out.
# LayerNorm before ReLU does not explode ({glue:text}`rate_ln_relu`, predicted 1): Paik & Choi's
# LayerNorm statement. But the same LayerNorm placed *after* the ReLU explodes like BatchNorm
# ({glue:text}`rate_relu_ln`, predicted {glue:text}`pred_relu_ln`), and BatchNorm after the ReLU
# explodes as it does before it ({glue:text}`rate_relu_bn`): LayerNorm prevents the explosion only
# where it sits before the activation. Without normalization He's initialization keeps the gradient
# ({glue:text}`rate_relu_no_normalization`; the first-order border count predicts
# {glue:text}`pred_relu_no_normalization`, more loss at the zero-padded border than a deep stack
# shows). That contradicts the ghost paper's Figure 3 claim that ReLU networks explode without
# BatchNorm too; the {doc}`ghost chapter </executed/05_ghost2024>` examines it at the paper's width.
#
# **Bjorck et al.'s lens** here: with BatchNorm the summands of a kernel's gradient mostly cancel,
# a/b = {glue:text}`ab_bn`; without normalization a/b = {glue:text}`ab_none`, still far from
# their "within a factor 2": this stack's output is not dominated by an input-independent part as
# their unnormalized ResNet-110's is (the {doc}`Bjorck chapter </executed/03_bjorck2018>` has that
# network).

# %%
ch.check_designs(page.claims.section("four_lenses-designs", "One design choice at a time"), designs)
page.claims.table()

# %% [markdown]
# (four_lenses-residual)=
# ## Residual branches: zero-γ and 1/√L
#
# **The question.** The ghost paper's Appendix B.2 {cite}`ghost2024`: "A zero-gamma initialization
# (Goyal et al., 2017) or a 1/√L initialization (Balduzzi et al., 2017) are used solve the problem
# stated by Zhang et al. (2019). Interestingly, this method also solve the problem stated in this
# paper", and, for a block y = x + F(x)/√L (Prop. B.17), "When considering the entire network, the
# two ratios are both O((1+1/L)^L) order which is independent with the network depth"
# {cite}`goyal2017accurate,balduzzi2017shattered`. Tested on torchvision's ResNet with each branch's
# last γ at 1 and 0, and on pre-activation ResNets of L = {glue:text}`l_shallow` to
# {glue:text}`l_deep` branches whose branches are multiplied by 1 or 1/√L (their last convolution
# scaled: a pre-activation branch ends in a convolution, where the paper scales a BatchNorm's γ).
# The {doc}`ghost chapter </executed/05_ghost2024>` tests the same on the paper's fully connected
# ResNets.

# %%
res = ch.diagnose_residual(S, seed, page.device)
ch.glue_residual(page, res)
ch.residual_table(res)

# %% mystnb={"figure": {"caption": "Left: the residual stream's gradient variance along the shallowest ResNets (first seed) for each branch scaling. Right: its total growth within stages against the number of branches L for pre-activation ResNets with branches \u00d71 and \u00d71/\u221aL (mean \u00b1 2 SE over seeds), at {glue:text}`scale` scale.", "name": "fig-four_lenses-residual"}, "image": {"alt": "Left: the zero-\u03b3 curve is flat, the others rise toward the input. Right: the \u00d71 line climbs by orders of magnitude with L, the \u00d71/\u221aL line stays nearly level."}}
plots.show(ch.figure_residual(res), "four_lenses-residual")

# %% [markdown]
# With zero-γ the stream's gradient keeps its size, rate {glue:text}`zero_rate` per branch against
# {glue:text}`post_rate` with γ = 1 ({numref}`fig-four_lenses-residual`). With unscaled branches the
# stream's gradient variance grows {glue:text}`growth_one_shallow`× within the stages of L =
# {glue:text}`l_shallow` branches and {glue:text}`growth_one_deep`× at L = {glue:text}`l_deep`; with
# branches × 1/√L, {glue:text}`growth_sqrt_shallow`× and {glue:text}`growth_sqrt_deep`×: bounded, as
# Proposition B.17 says.

# %%
ch.check_residual(page.claims.section("four_lenses-residual", "Residual branches"), res)
page.claims.table()

# %% [markdown]
# ## The same number through four papers
#
# At initialization one number governs all four papers' measures: r(φ) per layer joined by a
# normalization before its activation, which Philipp et al. see as a GSC growing by
# √r {cite}`philipp2018`, Bjorck et al. as weight gradients whose summands cancel and grow toward
# the input {cite}`bjorck2018`, Paik & Choi as the variance rate {cite}`paik2023`, and the ghost
# paper as R_b/R_f {cite}`ghost2024`. What relieves it, measured here: an activation closer to
# linear; LayerNorm placed before the activation (not after it); no normalization with He's
# initialization; and, in residual networks, branches scaled to zero or by 1/√L. Residual
# connections alone slow the growth per weight layer but do not stop it. The
# {doc}`opening chapter </executed/01_one_number>` derives r(φ); the
# {doc}`Philipp </executed/02_philipp2018>`, {doc}`Bjorck </executed/03_bjorck2018>`,
# {doc}`Paik & Choi </executed/04_paik2023>` and {doc}`ghost </executed/05_ghost2024>` chapters
# reproduce each paper on its own networks. The settings this chapter chose are in
# {doc}`Methods and reconstructions </book/methods>`.
#
# ## Paper vs this book

# %%
ch.machinery_checks(page.claims, zoo, designs)
page.finish(S, ch.cost)
page.claims

# %%
page.claims.machinery_table()
