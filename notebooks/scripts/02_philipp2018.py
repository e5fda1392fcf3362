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
# # The exploding gradient problem demystified
#
# Philipp, Song & Carbonell {cite}`philipp2018` argue that Adam, batch normalization
# {cite}`ioffe2015batch` and SELU {cite}`klambauer2017selu` do not "solve" exploding gradients: many
# popular MLP architectures have gradients that explode at initialization although their forward
# activations are perfectly scaled, and the architectures that do not explode tend to suffer a
# *collapsing domain* instead. ResNets {cite}`he2016deep` escape both, which the authors trace to the
# Pythagorean equation: a skip connection *dilutes* the explosion of its residual branch. And since any
# network is its initial function plus a residual, the same lens applies to trained networks: the
# *residual trick*.
#
# :::{admonition} This page
# :class: tip
# Reproduces Figures 1, 2, 3 and 5 of {cite}`philipp2018` and the point of its Proposition 1, and
# tests its Pythagorean equation and residual trick as statistics. Run at {glue:text}`scale` scale in
# {glue:text}`wall` on one CPU core; results: {glue:text}`summary`.
# Re-run it with `python -m gradprobe.book run --only philipp2018` (about {glue:text}`estimate_book`
# at book scale on this machine, {glue:text}`estimate_smoke` at smoke scale); at the paper's scale on a GPU:
# `python -m gradprobe.book run --only philipp2018 --scale paper --device cuda`. At this run's speed
# that scale is {glue:text}`estimate_paper` of work: the estimates scale this run's time by the
# chapter's work, counted in passes of one input through one layer of width 100 plus a fixed part
# for loading data and drawing figures, and say nothing about how much faster a GPU is.
# :::
#
# :::{admonition} What follows the paper, and what is ours
# :class: warning
# Only the paper's abstract, a summary and the captions of its first five figures are available to
# this book, not its full text. The definitions follow the paper's published definitions as far as
# we know them; wherever the captions are silent, the settings are ours, and each section says which.
# A row of the claims tables whose test rests on a choice of ours is marked *reconstruction*, and
# each row's note names the thresholds we chose. {doc}`../book/methods` collects every choice.
# :::

# %% tags=["parameters"]
scale = "book"
seed = 0
device = "auto"

# %%
from gradprobe.book import plots
from gradprobe.book.page import Page
from gradprobe.chapters import philipp2018 as ch

page = Page("philipp2018", scale, seed, device, threads=1)  # many small matrices: one thread
S = ch.settings(scale)
ch.glue_settings(page, S)
S

# %% [markdown]
# The bold column is this page. `smoke` is what CI runs; `paper` is the paper's figure sizes and
# full CIFAR-10 training runs (for a GPU). Figure 1 costs seconds, so `book` runs it at the paper's
# size; what `book` reduces is the resolution of Figure 2's discs and the training of Figure 3.
#
# (philipp2018-definitions)=
# ## The definitions
#
# Write the network as a composition of layers, $f_0$ the loss (or the output) and $f_l$ the output
# of layer $l$; with BatchNorm in training mode the samples of a batch interact, so we treat the whole
# batch as one vector. Let $J_l^k = \partial f_l/\partial f_k$ and
#
# $$
# \lVert A\rVert_{qm} = \frac{\lVert A\rVert_F}{\sqrt{n}}\quad(A\text{ with }n\text{ columns}),
# \qquad
# \mathrm{GSC}(k, l) = \lVert J_l^k\rVert_{qm}\,\frac{\lVert f_k\rVert}{\lVert f_l\rVert}.
# $$
#
# The **gradient scale coefficient** is the factor by which a small *relative* change of $f_k$, in a
# random direction, changes $f_l$ relatively. Gradients *explode* with rate $r$ when
# $\mathrm{GSC}(k, l) \approx c\,r^{k-l}$. The **collapsing domain**: when, deep in a network, all
# inputs land on nearly the same part of each nonlinearity, the nonlinearity acts linearly on them and
# depth is wasted (pseudo-linearity). We measure it per unit across the inputs of a batch, averaged
# over units: the pre-activation's standard deviation, and its **sign diversity** $\min(P, N)/(P+N)$
# ($P$, $N$: inputs with positive and negative pre-activation; {glue:text}`sd_first` on average at
# the first nonlinearity of our networks, 0 when a ReLU never switches). A residual block
# $f = s + r$ is **k-diluted** when $\lVert s\rVert/\lVert r\rVert = k$.
#
# We use the GSC as a ratio of norms, as the paper and {doc}`01_one_number` do (squaring it squares
# every rate), and measure it against the network's output rather than a loss:
# $\mathrm{GSC}(k, 0) \approx \mathrm{GSC}(k, L)\,\mathrm{GSC}(L, 0)$ only adds a constant factor, so
# rates are unchanged. `gsc.gsc_exact` builds the Jacobian with `torch.func.jacrev` (small networks);
# `gsc.gsc_profile` estimates $\lVert J\rVert_F^2 = \mathbb E_u \lVert J^\top u\rVert^2$ with Gaussian
# probes $u$, one backward pass for all layers at once. One check of the estimate against the exact
# Jacobian, on a small BatchNorm ResNet:

# %%
page.claims.section("philipp2018-definitions", "Definitions")
gsc_table = ch.gsc_check(page.gen.weights, page.gen.data)
ch.check_definitions(page, gsc_table)
gsc_table

# %%
page.claims.table()

# %% [markdown]
# (philipp2018-prop1)=
# ## Proposition 1: why a scale-free measure
#
# Proposition 1 of the paper begins: "Consider any $r > 1$ and any neural network $f$ which can be
# trained to some error level in a certain number of steps by some gradient-based algorithm. There
# exists a network $f'$ with the same nominal and compositional depth as $f$ that can also be trained
# to the same error level as $f$ and to make …" (our copy of the statement stops there). Its point:
# raw gradients can be made to explode at any rate $r$ without changing anything that matters, so
# they cannot be the measure of explosion. The construction below is ours. ReLU is positively
# homogeneous, so multiplying linear layer 1 of a plain ReLU network by $r^{-(L-1)}$ and every later
# layer by $r$ leaves the function unchanged, while each layer's output $f_l$ is scaled by $r^{l-L}$,
# so that its gradient $\lVert\partial\ell/\partial f_l\rVert$ grows by $r$ per layer toward the
# input. The GSC measures relative changes and does not see the rescaling.

# %% mystnb={"figure": {"caption": "Proposition 1's point: a plain ReLU network f (10 linear layers, width 100) and its rescaled copy f\u2032, which computes the same function. A: raw gradient per layer; B: GSC per layer. At {glue:text}`scale` scale.", "name": "fig-philipp2018-prop1"}, "image": {"alt": "Two log-scale panels: the raw gradients of the rescaled network rise steeply toward the input while the original's are flat; the GSC curves of both networks lie on top of each other."}}
page.claims.section("philipp2018-prop1", "Proposition 1")
prop1 = ch.proposition1(page.gen)
plots.show(ch.figure_proposition1(prop1), "philipp2018-prop1")

# %% [markdown]
# With $r$ = {glue:text}`prop1_rate`, the raw gradient of $f'$ grows by {glue:text}`prop1_raw_g` per
# layer toward the input (that of $f$ by {glue:text}`prop1_raw_f`), a factor
# {glue:text}`prop1_raw_total` over the network, while its GSC stays that of $f$ (largest relative
# difference {glue:text}`prop1_gsc_change`: scaling by powers of two is exact in floating point).

# %%
ch.check_proposition1(page, prop1)
page.claims.table()

# %% [markdown]
# (philipp2018-fig1)=
# ## Figure 1: fifteen architectures at initialization
#
# The caption: "Key metrics for architectures in their randomly initialized state evaluated on
# Gaussian noise. The x axis in A shows depth in terms of the number of linear layers counted from
# the input. The x axis in B-F counts nonlinearity layers, starting from the input."
#
# **Setting.** {glue:text}`S_linear_layers` linear layers (the depth of Figure 2's caption) of width
# {glue:text}`S_width` (the paper's workshop version), a batch of {glue:text}`S_batch` Gaussian
# inputs, {glue:text}`S_seeds` networks per architecture. **Ours:** the architectures are
# *linear → norm → nonlinearity* layers ("layer-"/"batch-": LayerNorm/BatchNorm, none otherwise),
# with He initialization for ReLU and LeCun for tanh and SELU; looks-linear ReLU
# {cite}`balduzzi2017shattered` mirrors its units ($z = [u, -u]$, weights $[[A, -A], [-A, A]]$ with
# $A$ orthogonal), so that the network is exactly linear at initialization; a ResNet is a linear
# stem, pre-activation blocks $x + W_2\,\phi(N(W_1\,\phi(N(x))))$ and a linear head. The last linear
# layer is the output; GSC is measured at every linear layer (for ResNets on the residual stream).
# The caption does not say what panels B–F show, only which curves overlap in them: we show the
# pre-activations' spread across inputs (B), their scale, the forward pass (C), sign diversity (D),
# pseudo-linearity (E, the measure of Figure 5 below: how far the nonlinearity is from its best
# linear fit on the batch) and the cosine between the inputs' pre-activations (F), in two figures.

# %%
page.claims.section("philipp2018-fig1", "Figure 1: architectures at initialization")
survey = ch.survey_figure1(S, page.gen, page.device)
ch.figure1_table(survey)

# %% mystnb={"figure": {"caption": "Figure 1 A\u2013C of the paper, plain networks: A GSC(l, L) per linear layer with the batch-ReLU theory (dotted), B pre-activation standard deviation, C pre-activation root mean square per nonlinearity layer; median and min\u2013max band over networks. At {glue:text}`scale` scale.", "name": "fig-philipp2018-fig1-scale"}, "image": {"alt": "Three panels with eight coloured curves each: in A four curves rise steeply toward the input, batch-ReLU the steepest along the dotted theory line; in B the tanh curve falls by a factor ten; in C most curves are flat at one."}}
plots.show(ch.figure1_scale(survey, S), "philipp2018-fig1-scale")

# %% mystnb={"figure": {"caption": "Figure 1 D\u2013F of the paper as reconstructed here, plain networks against the nonlinearity layer: D sign diversity, E pseudo-linearity, F mean cosine similarity between inputs; median and min\u2013max band over networks. At {glue:text}`scale` scale.", "name": "fig-philipp2018-fig1-domain"}, "image": {"alt": "Three panels: in D the ReLU and layer-ReLU curves fall from their starting value to near zero; in E the same two fall toward zero and tanh as well; in F ReLU and layer-ReLU rise to one while the others stay near zero."}}
plots.show(ch.figure1_domain(survey), "philipp2018-fig1-domain")

# %% [markdown]
# **What the figures show.** Four plain architectures explode ({numref}`fig-philipp2018-fig1-scale`
# A): per linear layer batch-ReLU's GSC grows by {glue:text}`rate_batch_ReLU`, a factor
# {glue:text}`gsc_total` over its {glue:text}`layers` layers, batch-tanh's by
# {glue:text}`rate_batch_tanh`, layer-tanh's by {glue:text}`rate_layer_tanh` and SELU's by
# {glue:text}`rate_SELU`, while their forward scale stays constant (C). ReLU, layer-ReLU and tanh do
# not explode (rates {glue:text}`rate_ReLU`, {glue:text}`rate_layer_ReLU`, {glue:text}`rate_tanh`)
# but pay with a collapsing domain ({numref}`fig-philipp2018-fig1-domain`): ReLU and layer-ReLU units
# stop switching (D: sign diversity {glue:text}`sd_ReLU` and {glue:text}`sd_layer_ReLU` at the last
# layer), every input is mapped to nearly the same direction (F: cosine {glue:text}`cos_ReLU`), and
# the nonlinearity acts almost linearly on what it sees (E: {glue:text}`pl_ReLU`, against
# {glue:text}`pl_batch_ReLU` for batch-ReLU); tanh's pre-activations shrink to
# {glue:text}`tanh_std_ratio` of the first layer's spread (B) into tanh's linear part (E:
# {glue:text}`pl_tanh`). Looks-linear ReLU does neither: it is linear at initialization.
#
# The caption's notes on overlapping curves check our choice of panels: layer-ReLU lies on tanh in A,
# on SELU in C and on ReLU in E and F, on average within {glue:text}`overlap_A`,
# {glue:text}`overlap_C`, {glue:text}`overlap_E` and {glue:text}`overlap_F` of the panel's range,
# while in B, for which the caption notes no overlap, it stays {glue:text}`overlap_B` away from ReLU.

# %%
ch.check_figure1(page, survey)
page.claims.table()

# %% [markdown]
# (philipp2018-resnets)=
# ## ResNets: lower gradients, and a trade-off
#
# The abstract: "ResNets have significantly lower gradients and thus can circumvent the exploding
# gradient problem". {numref}`fig-philipp2018-resnets` puts each ResNet of Figure 1 beside its plain
# version.

# %% mystnb={"figure": {"caption": "The ResNets of Figure 1: A GSC(l, L) of each ResNet (dashed, its plain version's colour); B GSC rate per linear layer, plain (\u25cf) and ResNet (\u25a1), mean \u00b1 2 SE over networks; C pseudo-linearity of the last nonlinearity, plain and ResNet. At {glue:text}`scale` scale.", "name": "fig-philipp2018-resnets"}, "image": {"alt": "Panel A: seven dashed curves rising gently toward the input. Panel B: for batch-ReLU, batch-tanh, layer-tanh and SELU the square lies left of the circle, for tanh right of it. Panel C: for ReLU, layer-ReLU and tanh the square lies right of the circle."}}
page.claims.section("philipp2018-resnets", "ResNets and the explosion/collapse trade-off")
plots.show(ch.figure_resnets(survey), "philipp2018-resnets")

# %%
ch.resnet_table(survey)

# %% [markdown]
# For the four exploding architectures the abstract's statement holds: batch-ReLU's rate falls from
# {glue:text}`rate_batch_ReLU` to {glue:text}`res_rate_batch_ReLU`, batch-tanh's from
# {glue:text}`rate_batch_tanh` to {glue:text}`res_rate_batch_tanh`, layer-tanh's from
# {glue:text}`rate_layer_tanh` to {glue:text}`res_rate_layer_tanh`, SELU's from
# {glue:text}`rate_SELU` to {glue:text}`res_rate_SELU`. For the three that collapse instead of
# exploding it does not: tanh's ResNet has the *higher* rate ({glue:text}`res_rate_tanh` against
# {glue:text}`rate_tanh`), and the ReLU and layer-ReLU ResNets cannot be told apart from their plain
# versions ({glue:text}`res_rate_ReLU` and {glue:text}`res_rate_layer_ReLU`). What the skip
# connections buy there is a domain that collapses less (C: the last layer's pseudo-linearity rises
# from {glue:text}`pl_tanh` to {glue:text}`res_pl_tanh` for tanh, from {glue:text}`pl_ReLU` to
# {glue:text}`res_pl_ReLU` for ReLU): the trade-off between explosion and collapse that the paper
# describes, with the explosion rising where the collapse recedes. The ReLU and SELU ResNets, which
# have no normalization, pay a third price: their forward scale grows by orders of magnitude (the
# table's last column).

# %%
ch.check_resnets(page, survey)
page.claims.table()

# %% [markdown]
# (philipp2018-pythagoras)=
# ## The residual trick and the Pythagorean equation
#
# If the skip $s$ and the branch $r$ of a block are orthogonal, the **Pythagorean equation**
# $\lVert s + r\rVert^2 = \lVert s\rVert^2 + \lVert r\rVert^2$ holds, and likewise for the Jacobians,
# $\lVert J_s + J_r\rVert_{qm}^2 = 1 + \lVert J_r\rVert_{qm}^2$. Together they give, for a
# $k$-diluted block,
#
# $$\mathrm{GSC}(\text{block})^2 \approx \frac{k^2 + \mathrm{GSC}(r)^2}{k^2 + 1},$$
#
# so a branch that explodes by $\mathrm{GSC}(r)$ adds only about
# $(\mathrm{GSC}(r)^2 - 1)/(2(k^2 + 1))$ to the block's log-GSC: the skip dilutes the explosion, the
# more so the deeper the block, since $\lVert s\rVert$ grows along the network.
#
# How exactly does the equation hold? The **Pythagorean error**
# $\lVert s+r\rVert^2/(\lVert s\rVert^2+\lVert r\rVert^2) - 1 = 2\cos(s, r)\,k/(k^2+1)$ is set by the
# cosine between skip and branch. At initialization the branch ends in a Gaussian weight matrix $W$
# (variance $\sigma^2$) that the skip does not depend on, so, given everything else,
# $\langle s, r\rangle = \langle W, s^\top h\rangle$ ($h$: the input of $W$, one row per input of the
# batch) is Gaussian with mean 0 and variance $\sigma^2\lVert s^\top h\rVert_F^2$. The error is
# therefore unbiased, and $\cos(s, r)$ has spread $1/\sqrt{d_\text{eff}}$ with the **effective
# dimension** $d_\text{eff} = n\,\lVert s\rVert^2\lVert h\rVert^2/\lVert s^\top h\rVert_F^2$ ($n$: the
# width): at least the width (every input of the batch mapped to one direction, a collapsed domain)
# and at most width × batch (unrelated inputs). So the equation holds on average in every block, and
# in each block up to a fluctuation that vanishes with width. Panel A of
# {numref}`fig-philipp2018-pythagoras` checks the standardized cross term against the standard
# normal; panel B compares, for every ResNet and width, the error's root mean square with the one
# predicted from each block's $k$ and $d_\text{eff}$. Large errors are where the prediction is
# large, in blocks with a small $d_\text{eff}$ and $k \approx 1$: the largest,
# {glue:text}`pyth_max_ReLU` in the ReLU ResNet, sits where the domain has collapsed (median
# $d_\text{eff}$ {glue:text}`pyth_deff_ReLU`) and the blocks are hardly diluted (median $k$
# {glue:text}`pyth_k_ReLU`); the batch-ReLU ResNet's largest, {glue:text}`pyth_max_batch_ReLU`, is
# the largest of its {glue:text}`pyth_blocks` blocks (median $d_\text{eff}$
# {glue:text}`pyth_deff_batch_ReLU`): a tail, not a collapse. Panel C repeats the measurement at the
# widths {glue:text}`S_pythagorean_widths`: the error's spread falls like $w^{-s}$ with $s$ between
# {glue:text}`pyth_s_low` and {glue:text}`pyth_s_high`, faster than $w^{-1/2}$ where $d_\text{eff}$
# grows faster than the width (a wider network resolves more of the batch).

# %% mystnb={"figure": {"caption": "The Pythagorean equation in every ResNet block at initialization: A the standardized cross term of every block against the standard normal density; B each block's |error| against its predicted spread (solid: equal, dotted: twice); C the error's root mean square against the width. At {glue:text}`scale` scale.", "name": "fig-philipp2018-pythagoras"}, "image": {"alt": "Panel A: a histogram that follows the normal curve. Panel B: a cloud of points along the diagonal, the ReLU ResNet's at the top right. Panel C: seven falling lines beside a line of slope minus one half."}}
page.claims.section("philipp2018-pythagoras", "The Pythagorean equation and dilution")
pyth = ch.pythagorean_sweep(S, page.gen, page.device)
plots.show(ch.figure_pythagoras(survey, pyth), "philipp2018-pythagoras")

# %% [markdown]
# Two predictions follow from the equation that the measurements could have contradicted
# ({numref}`fig-philipp2018-dilution`). With a normalized branch $\lVert r\rVert$ is fixed, so each
# block adds $\lVert r\rVert^2$ to $\lVert s\rVert^2$: $k_b^2 = k_1^2 + (b - 1)$, where $k_1^2$ follows
# from the initialization's scales (panel A, dotted). And the dilution formula, applied block by
# block from the branches' own GSC and dilution, predicts the GSC of the whole network (panel B),
# within a few percent for the normalized ResNets; in the ReLU ResNet, whose collapsed, undiluted
# blocks have the largest Pythagorean errors, the prediction scatters from network to network
# (measured over predicted {glue:text}`pyth_ratio_ReLU` on average).

# %% mystnb={"figure": {"caption": "Dilution in the ResNets of Figure 1: A k_b\u00b2 per block with the prediction k\u2081\u00b2 + (b \u2212 1) for the normalized ResNets (dotted); B GSC(stem, output) measured against its prediction from the blocks' dilution formula, every network. At {glue:text}`scale` scale.", "name": "fig-philipp2018-dilution"}, "image": {"alt": "Panel A: four curves rising linearly on top of dotted lines, three flat ones near one. Panel B: points on the diagonal, a few ReLU ResNet points above it."}}
plots.show(ch.figure_dilution(survey), "philipp2018-dilution")

# %%
ch.pythagorean_table(survey, pyth)

# %%
ch.check_pythagoras(page, survey, pyth)
page.claims.table()

# %% [markdown]
# (philipp2018-crossref)=
# ## Cross-reference: one number, three papers
#
# {doc}`01_one_number` derived that the gradient *variance* of a BatchNorm–ReLU network grows by
# $\pi/(\pi-1)$ per layer, so its norm by $\sqrt{\pi/(\pi-1)}$ = {glue:text}`xref_theory`; Paik &
# Choi {cite}`paik2023` and the ghost paper {cite}`ghost2024` measure the same number. The GSC is a
# ratio of norms in which BatchNorm keeps $\lVert f_l\rVert$ constant, so its rate must be the norm
# rate: batch-ReLU's measured rate is {glue:text}`xref_rate`, its square {glue:text}`xref_rate2`
# against $\pi/(\pi-1)$ = {glue:text}`xref_variance`.

# %%
page.claims.section("philipp2018-crossref", "Cross-reference")
ch.check_cross_reference(page, survey)
page.claims.table()

# %% [markdown]
# (philipp2018-fig5)=
# ## Figure 5: pseudo-linearity
#
# The caption: "The phenomenon of pseudo-linearity in ReLU and tanh nonlinearities. The nonlinearity
# function is shown in blue, the nonlinearity applied to 50 individual pre-activations drawn from a
# Gaussian with mean μ and standard deviation σ are shown as red dots. The closest linear fit to the
# 50 post-activations is shown as a red line, and it approximates these post-activations very
# closely. A: ReLU, μ=−0.3, σ=0.2. B: ReLU, μ=0.3, σ=0.2. C: tanh, μ=0, σ=0.2". The caption gives
# every setting, so we redraw the figure as it is, and put a number on "very closely": the root mean
# square residual of the best line relative to the pre-activations' root mean square (the measure of
# Figure 1E). Over {glue:text}`S_fig5_repeats` draws of 50 points it is {glue:text}`fig5_A`,
# {glue:text}`fig5_B` and {glue:text}`fig5_C` in A–C, against {glue:text}`fig5_ref_relu` for ReLU
# and {glue:text}`fig5_ref_tanh` for tanh on unit Gaussian pre-activations. A collapsed domain makes
# the layers of the ReLU, layer-ReLU and tanh networks of Figure 1 pseudo-linear in this sense: this
# is how they avoid explosion, and why their depth buys little.

# %% mystnb={"figure": {"caption": "Figure 5 of the paper, redrawn from its caption: the nonlinearity (blue), its values at 50 pre-activations from N(\u03bc, \u03c3\u00b2) (red dots) and their closest linear fit (red line). At {glue:text}`scale` scale.", "name": "fig-philipp2018-fig5"}, "image": {"alt": "Three panels: a ReLU with red dots clustered near zero output left of the kink, a ReLU with dots on its rising branch, and a tanh with dots on its linear middle part; in each the red line passes through the dots."}}
page.claims.section("philipp2018-fig5", "Figure 5: pseudo-linearity")
fig5 = ch.pseudo_linearity_fig5(S, page.gen)
plots.show(ch.figure5(fig5), "philipp2018-fig5")

# %%
ch.fig5_table(fig5)

# %%
ch.check_figure5(page, fig5)
page.claims.table()

# %% [markdown]
# (philipp2018-fig2)=
# ## Figure 2: the network as a function of one layer's weights
#
# The caption: three random weight configurations that "differ only at a single linear layer", the
# sphere through them, a CIFAR-10 image propagated through the network at every point of the sphere,
# the 3-dimensional output normalized and coloured (class 1/2/3 red/green/blue, disc B), the discs
# drawn as azimuthal projections. **Ours:** the sphere is $W(c) = c_A W_A + c_B W_B + c_C W_C$,
# $\lVert c\rVert = 1$, drawn as an azimuthal equidistant projection centred on $W_A$ (the rim is
# $-W_A$); the layer is the first linear layer; the input is the whole image, 3072 standardized
# values; the head has 3 outputs; colour $= (o/\lVert o\rVert + 1)/2$; BatchNorm networks normalize
# over a batch of {glue:text}`S_disc_bn_batch` images (the shown one and others) at every point;
# which nine architectures to draw; {glue:text}`S_disc_seeds` discs per architecture, each from three
# fresh weight matrices. Every pixel's network differs only in one layer, so the layers below it are
# computed once and $W(c)h = \sum_j c_j (W_j h)$: three products, then one batched pass of the layers
# above for all pixels (`discs.disc_outputs`).

# %%
page.claims.section("philipp2018-fig2", "Figure 2: networks as functions of one layer's weights")
discs = ch.discs_figure2(S, page.gen, page.device)

# %% mystnb={"figure": {"caption": "Figure 2 A\u2013F of the paper: A the input image, B the colour of each output direction, C\u2013F the output as a function of the first layer's weights for ReLU, layer-ReLU, batch-ReLU and tanh networks, each titled with its roughness and its network's GSC. At {glue:text}`scale` scale.", "name": "fig-philipp2018-fig2-a"}, "image": {"alt": "Six panels: a cat image, a smooth colour wheel, smooth discs of a few large colour regions for ReLU, layer-ReLU and tanh, and a disc of random coloured speckles for batch-ReLU."}}
plots.show(ch.figure2_discs(discs, S, 1), "philipp2018-fig2-a")

# %% mystnb={"figure": {"caption": "Figure 2 G\u2013K of the paper: the discs of layer-tanh, batch-tanh, SELU, looks-linear ReLU and the batch-ReLU ResNet. At {glue:text}`scale` scale.", "name": "fig-philipp2018-fig2-b"}, "image": {"alt": "Five discs: layer-tanh and batch-tanh speckled, SELU and looks-linear ReLU smooth, the ResNet smooth with fine structure."}}
plots.show(ch.figure2_discs(discs, S, 2), "philipp2018-fig2-b")

# %% [markdown]
# Exploding architectures draw confetti: a small relative change of the first layer's weights,
# multiplied by the network's GSC, moves the output to an unrelated direction. The networks that do
# not explode draw smooth fields, looks-linear ReLU because its output is linear in the weights, the
# collapsed ReLU and tanh networks because their output hardly depends on the input's details; the
# ResNet's disc is far smoother than its plain version's. {numref}`fig-philipp2018-fig2-roughness`
# measures this with the **roughness** of a disc, the mean colour distance between neighbouring
# pixels (0 for a uniform disc, 2/3 on average for random colours), and with the GSC of each disc's
# own network and batch (GSC(layer 1, output), geometric mean over four points of the sphere).
# Across architectures roughness follows that GSC (Spearman's rank correlation
# {glue:text}`disc_spearman` on average over seeds). A pixel step moves the first layer's weights by
# 2π/R relatively ({glue:text}`disc_step` here), and the output by about the GSC times that. Where
# this is far above one, neighbouring pixels are unrelated and the disc is equally rough at every
# resolution; where it stays below one even at the coarsest step, the picture is smooth and its
# roughness falls in proportion to the pixel spacing. So it is: batch-ReLU's discs (GSC
# {glue:text}`disc_gsc_batch_ReLU` with its batch) have roughness {glue:text}`disc_rough_batch_ReLU`
# at every resolution (exponent {glue:text}`disc_alpha_batch_ReLU`), ReLU's (GSC
# {glue:text}`disc_gsc_ReLU`) {glue:text}`disc_rough_ReLU`, falling with the pixel spacing (exponent
# {glue:text}`disc_alpha_ReLU`), and layer-tanh (GSC {glue:text}`disc_gsc_layer_tanh`) lies in
# between (exponent {glue:text}`disc_alpha_layer_tanh`). Confetti by this criterion:
# {glue:text}`disc_confetti`; smooth: {glue:text}`disc_smooth`.
#
# Is the confetti a picture of the function or of rounding errors? Computing a point of the
# {glue:text}`disc_f32_worst` disc one network at a time instead of with shared products changes its
# colour by up to {glue:text}`disc_f32_change` in float32: two equally exact float32 computations disagree, because
# the GSC amplifies their rounding differences. In float64 the two agree to
# {glue:text}`disc_f64_change`, and the float64 discs are as rough as the float32 ones (ratio
# {glue:text}`disc_f64_ratio`, panel C): the confetti is the function itself.

# %% mystnb={"figure": {"caption": "What the discs show, measured: A roughness against the number of pixels across the disc (mean over seeds) beside the slopes of confetti and of a smooth picture; B roughness against the GSC of each disc's own network and batch; C roughness of the same pixels computed in float64 against float32. At {glue:text}`scale` scale.", "name": "fig-philipp2018-fig2-roughness"}, "image": {"alt": "Panel A: some lines flat, others falling with resolution. Panel B: points rising from bottom left to top right. Panel C: points on the diagonal."}}
plots.show(ch.figure2_roughness(discs, S), "philipp2018-fig2-roughness")

# %%
ch.roughness_table(discs)

# %%
ch.check_figure2(page, discs)
page.claims.table()

# %% [markdown]
# (philipp2018-fig3)=
# ## Figure 3: training exploding architectures
#
# The caption says only "Key metrics for exploding architectures trained on CIFAR10"; the abstract,
# that exploding gradients "limit the depth to which networks can be effectively trained, both in
# theory and in practice", and that Adam does not change this. **Ours, all of it:** the architectures
# {glue:text}`S_train_archs` at {glue:text}`S_train_depths` linear layers of width
# {glue:text}`S_train_width` (narrower than Figure 1's, for time); CIFAR-10 images averaged over
# {glue:text}`S_train_pool`×{glue:text}`S_train_pool` pixel blocks and flattened (smaller inputs, for
# time), {glue:text}`S_train_images` training images, mini-batches of {glue:text}`S_train_batch`,
# {glue:text}`S_train_steps` Adam steps at the learning rates {glue:text}`S_learning_rates`, the one
# with the lower final training error kept for each architecture and depth, {glue:text}`S_train_seeds`
# seeds each. Each run is a trial of `gradprobe.sweep`, stored under its configuration, so a re-run
# resumes.
#
# **Effective depth** (ours: the paper's procedure is not in our text). Replace the top $m$ linear
# layers of a trained network by their first-order Taylor expansion in the weights around the initial
# weights θ⁰ (`linearize.linearized_top`), keep the layers below exact, and measure the training
# error. As long as the network keeps its improvement over chance, the training changes of those top
# layers act like a linear model's and add no compositional depth. The effective depth is the number
# of linear layers left when linearizing first keeps less than {glue:text}`f3_keep` of the
# improvement over chance (error {glue:text}`f3_chance`), interpolated between the numbers of layers
# linearized (every one up to 20, about 20 evenly spaced beyond). A network that has not improved on
# chance by {glue:text}`f3_min_improvement` has no effective depth to measure.

# %%
page.claims.section("philipp2018-fig3", "Figure 3: training exploding architectures")
fig3 = ch.train_figure3(S, seed, page.device)
ch.figure3_table(fig3)

# %% mystnb={"figure": {"caption": "Figure 3 against depth, at the best learning rate of each architecture and depth (mean \u00b1 2 SE over seeds): A final training error, B effective depth (where the network left chance), C GSC(1, output) at initialization (open) and after training (filled). At {glue:text}`scale` scale.", "name": "fig-philipp2018-fig3-depth"}, "image": {"alt": "Panel A: error curves falling with depth, then rising again for the exploding architectures, most for batch-ReLU, which ends near chance; the ResNet and looks-linear ReLU stay low. Panel B: effective depth rising with depth below the diagonal. Panel C: GSC rising with depth for the exploding architectures."}}
plots.show(ch.figure3_depth(fig3), "philipp2018-fig3-depth")

# %% mystnb={"figure": {"caption": "Figure 3 through training, networks of {glue:text}`f3_focus` linear layers: D effective depth at each checkpoint (the paper's panel D; mean \u00b1 2 SE over seeds), E share of the improvement over chance kept when the top layers are linearized, F the residual trick after training: each layer's change of function relative to its initial function. At {glue:text}`scale` scale.", "name": "fig-philipp2018-fig3-training"}, "image": {"alt": "Panel D: effective depth rising over training for looks-linear ReLU and the ResNet, flatter for the others. Panel E: falling curves, batch-ReLU's the steepest. Panel F: relative changes per layer, largest at the first and last layers."}}
plots.show(ch.figure3_training(fig3, S.focus_depth), "philipp2018-fig3-training")

# %% [markdown]
# **Depth.** The exploding architectures train best at a moderate depth and worse beyond it
# ({numref}`fig-philipp2018-fig3-depth` A): batch-ReLU reaches {glue:text}`f3_err_best_batch_ReLU`
# training error at {glue:text}`f3_best_depth_batch_ReLU` layers and {glue:text}`f3_err_deep_batch_ReLU`
# (chance is {glue:text}`f3_chance`) at {glue:text}`f3_deepest`; layer-tanh {glue:text}`f3_err_best_layer_tanh` and
# {glue:text}`f3_err_deep_layer_tanh`, SELU {glue:text}`f3_err_best_SELU` and
# {glue:text}`f3_err_deep_SELU`. Looks-linear ReLU ({glue:text}`f3_err_deep_looks_linear_ReLU`) and
# the batch-ReLU ResNet ({glue:text}`f3_err_deep_batch_ReLU_ResNet`) train at {glue:text}`f3_deepest`
# layers. Adam, used throughout, does not remove the limit: it rescales each parameter's step, not the
# growth of relative sensitivities from layer to layer. Training lowers the GSC of the exploding
# networks (C) without removing it. The trained ResNet still obeys the Pythagorean equation: its
# blocks' error has a root mean square of {glue:text}`f3_pyth_rms` (the mean standardized cross term,
# 0 at initialization, is {glue:text}`f3_pyth_z` after training).
#
# **Effective depth.** By our measure, the exploding architectures do *not* have a smaller effective
# depth than looks-linear ReLU at {glue:text}`f3_focus` layers ({glue:text}`f3_eff_batch_ReLU` for
# batch-ReLU, {glue:text}`f3_eff_layer_tanh` for layer-tanh, {glue:text}`f3_eff_SELU` for SELU,
# against {glue:text}`f3_eff_looks_linear_ReLU`; the ResNet {glue:text}`f3_eff_batch_ReLU_ResNet`):
# linearizing their top layers loses the improvement sooner ({numref}`fig-philipp2018-fig3-training`
# E). Their function is further from linear in its weights, which is what a large GSC means, so this
# measure counts the explosion itself as depth. Whether the paper's own measure of effective depth,
# which our text does not give, behaves otherwise we cannot tell; the row below is shown failing and
# marked as ours. Over training (D), the effective depth of looks-linear ReLU and of the ResNet grows
# steadily; the exploding networks reach theirs early, once they leave chance at all.
#
# **The residual trick, trained** (F). Any network is a residual network: each trained layer is its
# initial function plus a residual, $g(h; θ) = g(h; θ^0) + r(h)$. After training, the residuals of the
# middle layers are about {glue:text}`f3_resid_batch_ReLU` of the initial functions in batch-ReLU,
# {glue:text}`f3_resid_looks_linear_ReLU` in looks-linear ReLU and {glue:text}`f3_resid_SELU` in
# SELU: a trained plain network is a ResNet whose "skip connections" are its initial layers, diluted
# by $k \approx$ {glue:text}`f3_k_batch_ReLU`, {glue:text}`f3_k_looks_linear_ReLU` and
# {glue:text}`f3_k_SELU`. That is what the trick reveals about real skip connections: they replace the
# initial layer, for an exploding architecture a function that scrambles relative changes, by the
# identity.

# %%
ch.check_figure3(page, fig3, S.focus_depth)
page.claims.table()

# %% [markdown]
# (philipp2018-coverage)=
# ## What this chapter covers of the paper
#
# | the paper's | here | status at book scale |
# |---|---|---|
# | definitions: GSC, collapsing domain, dilution | {ref}`philipp2018-definitions` | faithful as far as the published definitions are known |
# | Proposition 1 | {ref}`philipp2018-prop1` | partial: its point, with a construction of ours; the statement is cut off in our copy and its proof is not here |
# | Figure 1 | {ref}`philipp2018-fig1`, {ref}`philipp2018-resnets` | partial: the caption's depth, width and noise inputs; the initializations, the ResNet block and what panels D–F show are ours (the caption's overlaps are reproduced) |
# | the Pythagorean equation, dilution, residual trick | {ref}`philipp2018-pythagoras`, {ref}`philipp2018-fig3` | partial: tested as statistics at initialization and after training; the paper's own derivations are not in our text |
# | Figure 2 | {ref}`philipp2018-fig2` | partial: the caption's construction; the layer, projection, colour map, input, architectures and resolution are ours |
# | Figure 3 | {ref}`philipp2018-fig3` | partial: the whole training setup and the effective-depth measure are ours; the depth limit reproduces, our effective depth does not separate the architectures as the paper's claim would |
# | Figure 4 ("Illustration of theorem …") | — | missing: the theorem it illustrates is not in our text |
# | Figure 5 | {ref}`philipp2018-fig5` | faithful: every setting is in the caption; "very closely" quantified by us |
# | Figures 6–13, Tables 1–3, Algorithms 1–2 | — | missing: not even their captions are in our text |
# | Propositions 2–7, Theorems 1–2, Corollary 1 and the other results | — | missing: not in our text |
# | the paper's numbers | — | none quoted in our text: every comparison is with the paper's words |
#
# ## Paper vs this book
#
# Every claim, erratum and reconstruction of this chapter, with the section it was checked in; the
# checks of this book's own machinery follow in a separate table.

# %%
page.finish(S, ch.cost)

# %%
page.claims

# %%
page.claims.machinery_table()
