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
# # One number behind four papers
#
# Careful initialization {cite}`he2015delving` keeps the *forward* signal of a deep ReLU network at a
# constant scale, and batch normalization {cite}`ioffe2015batch` enforces it outright. Yet the
# gradients of such a network still explode toward the input. The four papers of this book measure
# that explosion in four different ways {cite}`philipp2018,bjorck2018,paik2023,ghost2024`. This
# chapter fixes the notation they share and computes the one number behind them,
#
# $$
# r(\phi) \;=\; \frac{\mathbb{E}\!\left[\phi'(z)^2\right]}{\operatorname{Var}\!\left[\phi(z)\right]},
# \qquad z \sim \mathcal{N}(0, 1),
# \qquad r(\mathrm{ReLU}) = \frac{\pi}{\pi - 1} \approx 1.467 ,
# $$
#
# and shows where it applies and where it does not.
#
# :::{admonition} This page
# :class: tip
# Computes the explosion rate of every activation, checks the three rates the ghost paper quotes after
# its Equation (1) {cite}`ghost2024` and Paik & Choi's ∼1.21 {cite}`paik2023`, and measures three
# 50-layer networks. Run at {glue:text}`scale` scale in {glue:text}`wall` on {glue:text}`device`;
# results: {glue:text}`summary`.
# Re-run it with `python -m gradprobe.book run --only one_number`; at the paper's scale on a GPU:
# `python -m gradprobe.book run --only one_number --scale paper --device cuda`. Times at each scale,
# estimated from this run's speed and each scale's amount of work, on the same device: smoke
# {glue:text}`estimate_smoke`, book {glue:text}`estimate_book`, paper {glue:text}`estimate_paper`
# (a GPU is much faster).
# :::
#
# **The claim and its conditions.** In a network of layers *linear → BatchNorm → φ* with equal
# widths, **at initialization**, with BatchNorm **in training mode** (normalizing by the batch's own
# statistics), the variance of the gradient grows by $r(\phi)$ per layer from the output toward the
# input, and its norm by $\sqrt{r(\phi)}$ (≈ 1.211 for ReLU), in the limit of **large width and batch**
# ({cite}`ghost2024`, Appendices B and C; {cite}`paik2023`, Section 1 and Figure 1). Each condition
# matters: without BatchNorm the same ReLU network does not explode at all, a smoother activation
# explodes less, and at finite width and batch the rates move by a fraction of a percent.

# %% tags=["parameters"]
scale = "book"
seed = 0
device = "auto"

# %%
from gradprobe.book import plots
from gradprobe.book.page import Page
from gradprobe.chapters import one_number as ch

page = Page("one_number", scale, seed, device, threads=1)
page.glue("device", "a GPU" if page.device.type == "cuda" else "a CPU")
S = ch.settings(scale)
S

# %% [markdown]
# The table lists the chapter's settings at each scale; the bold column is the one this page was run
# with (`smoke` is what CI runs, `paper` the ghost paper's 4096 repeats).
#
# ## Notation
#
# The chapters use one notation. For a vector-valued quantity $x$ (a layer's output, or a gradient),
#
# - $\operatorname{Var}[x]$ is the **mean over features of the per-feature variance**, the variance
#   taken over the inputs (and, for a batch-normalized network, over the batch).
# - The **forward scaling ratio** of an operator $y = \pi(x)$ is
#   $R_f(\pi) = \operatorname{Var}[y]/\operatorname{Var}[x]$ and its **backward scaling ratio** is
#   $R_b(\pi) = \operatorname{Var}[\partial\ell/\partial x]\,/\,\operatorname{Var}[\partial\ell/\partial y]$
#   {cite}`ghost2024`. For an activation fed $z\sim\mathcal N(0,1)$:
#   $R_f(\phi) = \operatorname{Var}[\phi(z)]$ and $R_b(\phi) = \mathbb E[\phi'(z)^2]$.
# - The **gradient scale coefficient** of Philipp et al. {cite}`philipp2018` compares the relative
#   change of the loss to a relative change of layer $l$'s output:
#   $\mathrm{GSC}(l, 0) = \lVert J_l\rVert_{qm}\,\lVert f_l\rVert / \lVert f_0\rVert$, a ratio of *norms*.
# - The **explosion rate per layer** is the factor by which the gradient grows per layer toward the
#   input: in variance $r = \operatorname{Var}[g_k]/\operatorname{Var}[g_{k+1}]$ {cite}`paik2023`, in
#   norm $\sqrt r$. We fit it as the slope of $\log$ (value) against depth, one fit per network.
#
# Why $r = R_b/R_f$: BatchNorm divides its input by its standard deviation, so the next layer's
# forward variance is restored to 1 whatever φ did to it, and the gradient passing back through BN is
# multiplied by the same $1/\operatorname{Var}$. Per layer the gradient's variance is multiplied by
# $R_b(\phi)\cdot 1/R_f(\phi)$. He initialization assumes ReLU halves the second moment,
# $\mathbb E[\mathrm{relu}(z)^2] = \tfrac12$, but BatchNorm subtracts the batch mean and sees the
# *variance*, $\operatorname{Var}[\mathrm{relu}(z)] = \tfrac12 - \tfrac1{2\pi}$:
# $r = \tfrac12 / (\tfrac12 - \tfrac1{2\pi}) = \pi/(\pi-1)$.
#
# (one_number-rates)=
# ## The rate of every activation
#
# `gaussian.explosion_rate` computes $r(\phi)$ by quadrature for any activation. The ghost paper
# quotes three of these numbers after its Equation (1) (Appendix C); they are drawn beside ours.

# %%
rates = ch.rate_table()
ch.check_rates(page, rates)
rates.round(4)

# %% mystnb={"figure": {"caption": "The explosion rate r(\u03c6) = E[\u03c6'(z)\u00b2]/Var[\u03c6(z)] of every activation, by quadrature, beside the three values quoted after Equation (1) of the ghost paper and the closed form \u03c0/(\u03c0\u22121).", "name": "fig-one_number-rates"}, "image": {"alt": "Horizontal bars of r per activation, ReLU the longest, at \u03c0/(\u03c0\u22121), and the identity and DropOut at exactly 1; three crosses for the ghost paper's quoted values sit at the ends of the SELU, tanh and ReLU bars."}}
plots.show(ch.figure_rates(rates), "one_number-rates")

# %% [markdown]
# ReLU explodes the most; the smooth variants (GELU, SiLU, Mish) explode less, ELU and SELU barely,
# the identity not at all. DropOut in place of an activation has rate exactly 1: its mask does not
# depend on the input, so it scales forward and backward variance alike (here with $p = 0.5$).
#
# Two texts, as transcribed in our copies, print this number wrongly; both errata are checked below.
# The ghost paper's Equation (1) prints $\mathbb E[\sigma'(X)]^2$, with the square outside the
# expectation, which gives ReLU {glue:text}`relu_printed` rather than the quoted 1.467; its numbers
# are $\mathbb E[\sigma'(X)^2]/\operatorname{Var}[\sigma(X)]$. Paik & Choi write "π/(π−1) ∼ 1.21":
# $\pi/(\pi-1) =$ {glue:text}`relu_rate` is the rate of variances (their Figure 1 plots
# $\operatorname{Var}(g_n)/\operatorname{Var}(g_N)$), and 1.21 is its square root
# {glue:text}`relu_norm_rate`, the rate of norms.

# %%
page.claims.table()

# %% [markdown]
# (one_number-curves)=
# ## Three measured curves
#
# Three 50-layer MLPs at initialization, He-initialized, all layers of width 256: *linear → BatchNorm
# → ReLU*, the same without BatchNorm, and *linear → BatchNorm → GELU*. The input is a batch of 128
# standard Gaussian vectors and the backward pass starts from a Gaussian output gradient of variance
# $1/d$, as in the ghost paper's Figure 1; each of the {glue:text}`curve_repeats` networks per curve
# draws fresh weights, inputs and output gradients. We record the norm of every weight gradient
# $\lVert\partial\ell/\partial W_k\rVert_F$ and the variance of the gradient at every linear layer's
# output. The theory lines are $\sqrt{r(\phi)}^{L-k}$ with BatchNorm and, without it, mean-field
# theory (He initialization of ReLU is critical: $\chi = 2\,\mathbb E[\mathrm{relu}'(z)^2] = 1$),
# each anchored at its curve's last layer.

# %%
curves = ch.measure_curves(S, page.gen, page.device)
ch.check_curves(page, curves)
curves.table().round(4)

# %% mystnb={"figure": {"caption": "The weight-gradient norm per layer of three 50-layer MLPs at initialization (BatchNorm\u2013ReLU, ReLU without BatchNorm, BatchNorm\u2013GELU), mean over networks \u00b12 standard errors, beside theory, at {glue:text}`scale` scale.", "name": "fig-one_number-curves"}, "image": {"alt": "Three curves on a log axis against layer index: BatchNorm\u2013ReLU falls by four orders of magnitude from input to output on its dotted line, BatchNorm\u2013GELU falls less steeply, and ReLU without BatchNorm is flat."}}
plots.show(ch.figure_curves(curves), "one_number-curves")

# %% [markdown]
# With BatchNorm the ReLU network's gradient norm grows by {glue:text}`curve_relu_rate` per layer
# (theory {glue:text}`curve_relu_theory`), its variance by {glue:text}`curve_relu_var_rate`, while the
# forward variance stays put (last over second layer {glue:text}`curve_relu_drift`): the first layer's
# gradient is {glue:text}`curve_relu_growth` times the last one's. GELU grows by
# {glue:text}`curve_gelu_rate` against its {glue:text}`curve_gelu_theory`: less than ReLU, as Paik &
# Choi report for smoother activations, though above its own theory line (at this width and batch the
# smooth activations sit a little above $\sqrt r$; the ghost chapter measures that deviation). Without
# BatchNorm the ReLU network does not explode ({glue:text}`curve_nobn_rate` per layer): He
# initialization keeps the second moment of every layer, and so the gradient's, exactly as designed.
# Its forward pass does change in another way: the *variance over the batch* falls to
# {glue:text}`curve_nobn_drift` of its second layer's value by the last layer, as the inputs' images
# draw together (the collapsing domain of Philipp et al. {cite}`philipp2018`). The "one number"
# belongs to BatchNorm and ReLU together, not to ReLU alone.
#
# ## Four papers, one number
#
# | paper | what it measures | per BN–ReLU layer | chapter |
# |---|---|---|---|
# | Philipp et al. 2018 {cite}`philipp2018` | gradient scale coefficient GSC(l, 0), a ratio of norms | grows by $\sqrt r \approx 1.21$ | {doc}`The exploding gradient problem demystified </executed/02_philipp2018>` |
# | Bjorck et al. 2018 {cite}`bjorck2018` | gradient and activation magnitudes through depth; the largest stable learning rate | BN bounds the forward pass; the backward pass is left to explode | {doc}`Understanding batch normalization </executed/03_bjorck2018>` |
# | Paik & Choi 2023 {cite}`paik2023` | $\operatorname{Var}(g_n)/\operatorname{Var}(g_N)$ per effective layer | $r = \pi/(\pi-1) \approx 1.467$ (the text's "∼1.21" is $\sqrt r$) | {doc}`Disharmony between ReLU and BN </executed/04_paik2023>` |
# | Ghost 2024 {cite}`ghost2024` | backward over forward scaling ratio $R_b/R_f$; weight-gradient norms | $r$ in variance, $\sqrt r$ in norm | {doc}`A ghost that never leaves </executed/05_ghost2024>` |
#
# How to read a claims table: each row is a statement of a paper with the paper's own number or words
# and their place, the number computed on this page with its standard error over networks, and the
# criterion; ✓ when the criterion holds by more than two standard errors, ✗ when it fails by more, ?
# in between. A row that fails stays in the table.

# %%
page.claims.table()

# %% [markdown]
# ## Paper against this book
#
# Every claim of the page, then the checks of the book's own machinery (not counted as claims).

# %%
page.finish(S, ch.cost)
page.claims

# %%
page.claims.machinery_table()
