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
# # Understanding batch normalization
#
# Batch normalization {cite}`ioffe2015batch` makes deep networks train faster and generalize
# better. Bjorck, Gomes, Selman and Weinberger {cite}`bjorck2018` ask *why*, and answer in three
# steps, which this chapter reproduces on the CIFAR ResNets of He et al. {cite}`he2016deep`:
#
# 1. **BN's benefits come from the larger learning rate it allows** (their Figure 1): an
#    unnormalized ResNet-110 must be trained at 10⁻⁴, where it needs about 2400 epochs; with BN it
#    trains at 0.1, and at a matched small rate the two reach about the same accuracy.
# 2. **Without BN, large steps diverge because activations explode with depth** (Figures 2–7,
#    Table 1): at initialization the unnormalized network's channel moments grow layer by layer, its
#    output is dominated by one input-independent class, its gradients are large, heavy-tailed and
#    of one sign across the batch, and one modest step sends the loss above 10³.
# 3. **Random initialization is to blame** (Figures 8, 9, Theorem 1): products of random Gaussian
#    matrices are ill-conditioned, and more so with every factor.
#
# :::{admonition} This page
# :class: tip
# Checks Figures 1–9, Table 1, Theorem 1 and Appendices E, H and K of {cite}`bjorck2018` on the
# paper's 110-layer ResNet, every measurement at initialization over {glue:text}`init_seeds` weight
# seeds; Figure 1's learning rates with short runs at full depth, its accuracies only at the paper's
# scale.
# Run at {glue:text}`scale` scale in {glue:text}`wall` on {glue:text}`device`; results:
# {glue:text}`summary`.
# Re-run it with `python -m gradprobe.book run --only bjorck2018`; at the paper's scale on a GPU:
# `python -m gradprobe.book run --only bjorck2018 --scale paper --device cuda`. Estimated from this
# run's seconds per floating-point operation on the same device: smoke {glue:text}`estimate_smoke`,
# book {glue:text}`estimate_book`, paper {glue:text}`estimate_paper` (almost all of it the paper's
# five training runs of 165–2400 epochs; a GPU is far faster).
# :::

# %% tags=["parameters"]
scale = "book"
seed = 0
device = "auto"

# %%
from gradprobe.book import plots
from gradprobe.book.page import Page
from gradprobe.chapters import bjorck2018 as ch

page = Page("bjorck2018", scale, seed, device, threads=1)
page.glue("device", f"one {page.device.type.upper()} thread")
S = ch.settings(scale)
S

# %% [markdown]
# The table lists the chapter's settings at each scale; the bold column is the one this page was run
# with. The network is He et al.'s CIFAR ResNet: depth $6n+2$, three stages of $n$ basic blocks
# with 16, 32 and 64 channels, parameter-free shortcuts, global average pooling and a linear
# classifier, BN after every convolution; the unnormalized network removes every BN and keeps
# nothing in its place (the convolutions have no biases). Layer $k$ is the $k$-th weight layer from
# the input, so that the paper's layers 8, 44 and 80 have 16, 32 and 64 channels. Every setting the
# paper does not give, and why we chose it, is listed on the {doc}`methods page </book/methods>`.
#
# (bjorck2018-calibration)=
# ## Which unnormalized network? A calibration
#
# The paper's unnormalized network must start below its own divergence threshold (a mini-batch loss
# of 10³), since it trains. Our first edition measured a single draw of the weights, whose initial
# loss was close to that threshold and whose gradients, loss jumps and output were all several times
# larger than the paper's. So before any figure we ask which choices make an unnormalized ResNet-110
# "hot", and measure every quantity at initialization over {glue:text}`init_seeds` weight seeds
# (each with its own mini-batch of 128 images; the BN and unnormalized networks of a seed share
# their convolution weights).

# %%
data = ch.load_data(S, page.seed, page.device)
init = ch.measure_at_init(S, data, page.device)      # one pass per network and seed
first = ch.first_edition(S, data, page.device)
variants = ch.measure_variants(S, data, page.device, init)
ch.variants_table(variants)

# %% mystnb={"figure": {"caption": "The initial loss (left) and the largest output-channel mean (right) of the unnormalized ResNet-110 at initialization, one dot per weight seed, for this chapter's network and five variants, beside the paper's divergence threshold and its output scale, at {glue:text}`scale` scale.", "name": "fig-bjorck2018-calibration"}, "image": {"alt": "Two dot plots with one row per network variant on a log axis; the chapter's network lies below the threshold, spread over seeds, the 0\u2013255 pixel scale and He initialization lie far to the right of the 10\u00b3 threshold line, and the first edition's network is a square near the upper end of the chapter's dots."}}
plots.show(ch.figure_calibration(variants, first), "bjorck2018-calibration")

# %% [markdown]
# **The cause is mostly the draw, not a setting.** Over {glue:text}`init_seeds` seeds the
# unnormalized network's initial loss has a median of {glue:text}`loss_median`, but ranges from
# {glue:text}`loss_min` to {glue:text}`loss_max` ({glue:text}`loss_above` of them above 10³): the
# output of a 54-block residual network is a product of 54 random factors, and its scale is spread
# over a decade between weight draws. The first edition's one network starts at
# {glue:text}`first_loss`, hotter than {glue:text}`first_rank` of our {glue:text}`init_seeds` seeds.
# A single draw cannot stand for the paper's network; the median over seeds can.
#
# The settings shift that distribution by factors that are easy to name (medians over the first
# {glue:text}`variant_seeds` seeds, same weights): unit-variance inputs multiply the output scale by
# {glue:text}`x_standardized`, pixels on the 0–255 scale by exactly 255 (the network has no biases,
# so its output is proportional to its input), PyTorch's default initialization of the classifier
# by {glue:text}`x_classifier`, PyTorch's default convolution biases by {glue:text}`x_bias`, and He
# et al.'s initialization instead of Xavier's by {glue:text}`x_he`. The paper names Xavier
# initialization and He et al.'s preprocessing (the per-pixel mean subtracted); a pixel scale of
# 0–255 or He initialization would start its network far above the divergence threshold, so they
# are excluded, and we use pixels on the [0, 1] scale minus the mean training image, Xavier for every
# layer and no biases. The five numbers that calibrate the network against the paper, before and
# after:

# %%
ch.five_numbers(init, first)

# %%
ch.check_calibration(page, init, first, variants)
page.claims.table()

# %% [markdown]
# Table 1's values are ours per summand (each sum divided by its number of terms, $B\cdot H\cdot W$):
# read that way, ours are {glue:text}`t1_ratio` times the paper's absolute values (geometric mean
# over the table, median over seeds); read as whole sums, as the first edition did, they are
# {glue:text}`t1_whole` times the paper's. Figure 3's loss jump varies over many orders of magnitude
# between seeds; a loss that overflows float32 is shown as "overflow".
#
# (bjorck2018-fig1)=
# ## Figure 1: the learning rates each network survives
#
# The paper trains ResNet-110 with BN at 0.1, 0.003 and 10⁻⁴ and without BN at 10⁻⁴, "the largest
# rate at which the unnormalized network converges" (about 2400 epochs), and reports the final
# accuracies; with BN only at the end (Appendix E) rates up to 0.03 work. Training a ResNet-110 for
# even one epoch takes minutes on a CPU, but the paper also observes that divergence "typically
# happens in the first few mini-batches". So the window of usable rates can be tested at full depth
# with short runs: each network at every rate of the paper's grid (and Appendix E's 0.03), from
# {glue:text}`window_seeds` seeds, for {glue:text}`window_steps` mini-batches. A run is
# **diverged** when a mini-batch loss passes 10³ or stops being finite (the paper's definition),
# **collapsed** when at its last mini-batch its loss is within a quarter of a nat of a uniform guess
# (ln 10) and its logits vary across the images by less than 1 % of what they did at the start (the
# output no longer depends on the input), and **training** otherwise.

# %%
window = ch.run_window(S, page.seed, page.device)      # a sweep: networks × rates × seeds

# %% mystnb={"figure": {"caption": "The learning-rate window of ResNet-110 with BN, with BN only at the end and without BN: each run classified after its last mini-batch, one mark per seed, beside the largest rate the paper trains each network at, at {glue:text}`scale` scale.", "name": "fig-bjorck2018-window"}, "image": {"alt": "Three rows of marks against the learning rate on a log axis; the BN and final-BN rows are dots at every rate up to 0.1, the unnormalized row has dots at the small rates and red crosses at the larger ones; triangles mark the paper's rates 0.1, 0.03 and 10\u207b\u2074."}}
plots.show(ch.figure_window(window), "bjorck2018-window")

# %%
ch.window_table(window)

# %% [markdown]
# The evidence of every run, above: the loss at the first and last mini-batch (or where it passed
# 10³) and the logits' spread across images. Without BN the network diverges at the paper's larger
# rates within its first updates; at the smaller ones it first sheds most of its large initial
# output (the loss falls to a few nats), which is all that a few steps can show of it.
# Per seed, the largest rate below which the unnormalized network never diverged is
# {glue:text}`nobn_largest`. What a short run **cannot** decide is a failure that comes later: the
# paper's "needs to be decreased to 10⁻⁴ for convergence" and Appendix E's "up to 0.03" say that
# the next larger rates fail over hundreds of epochs, which is left to the paper scale.
#
# **A matched rate.** The paper's central comparison, BN and no BN at the same small rate, needs
# 2400 epochs at 10⁻⁴. A short run can compare the two networks at a rate at which both train and
# leave chance quickly: shallower unnormalized ResNets tolerate far larger steps (Appendix H, below),
# so we train ResNet-20 with and without BN at {glue:text}`matched_lr` for
# {glue:text}`matched_steps` steps from {glue:text}`train_seeds` seeds, and test on 2000 images.

# %%
training = ch.run_training(S, page.seed, page.device)
ch.training_table(training)

# %% mystnb={"figure": {"caption": "Training loss and final test accuracy of ResNet-20 with and without BN at one matched learning rate, over seeds: Figure 1's comparison in a short run, at {glue:text}`scale` scale.", "name": "fig-bjorck2018-fig1"}, "image": {"alt": "Left: two falling training-loss curves with shaded ranges, the BN curve lower; right: one row of dots per network giving each seed's test accuracy, BN's to the right of the unnormalized network's."}}
plots.show(ch.figure1(training), "bjorck2018-fig1")

# %% [markdown]
# At the matched rate the BN network reaches {glue:text}`acc_bn` test accuracy and the unnormalized
# one {glue:text}`acc_nobn` after {glue:text}`matched_steps` steps. That is a statement about how
# fast they start, not about where they end: the paper's comparison is at the end of training, and
# its accuracies (93 %, 90.5 %, 81 %, 82 % and Appendix E's 90.1 %) are rows that only the paper
# scale can test.

# %%
ch.check_figure1(page, S, window, training)
page.claims.table()

# %% [markdown]
# (bjorck2018-fig2)=
# ## Figure 2: gradients at initialization
#
# The gradients of the midpoint kernel (layer 55, 32→32 channels) at initialization. The paper:
# without BN they are heavy-tailed and "almost two orders of magnitude larger".

# %% mystnb={"figure": {"caption": "Histograms of the layer-55 kernel gradients of one seed with and without BN, and the ratio of their standard deviations for every seed beside the paper's \u2248 10\u00b2 (Figure 2), at {glue:text}`scale` scale.", "name": "fig-bjorck2018-fig2"}, "image": {"alt": "Two histograms with log counts, the unnormalized one wider and heavy-tailed; a third panel with one dot per seed scattered around a dashed line at 100 on a log axis."}}
plots.show(ch.figure2(init), "bjorck2018-fig2")

# %% [markdown]
# Over seeds the ratio of gradient scales has a median of {glue:text}`fig2_ratio` and ranges from
# {glue:text}`fig2_min` to {glue:text}`fig2_max`: a single network says little about the typical
# one. The paper's own Table 1 implies a larger ratio at the neighbouring layer 54: its mean
# gradients $b$ are $8.4\cdot10^{-5}$ without BN and $1.7\cdot10^{-7}$ with it, a factor of about 500.

# %%
ch.check_figure2(page, init)
page.claims.table()

# %% [markdown]
# (bjorck2018-fig3)=
# ## Figure 3 and Appendix H: how large a step can be
#
# For mini-batches 1, 4 and 7 of normal training, the loss on the same mini-batch after a step of
# size α along its negative gradient, relative to the loss before. The paper trains BN at 0.1 and
# the unnormalized network at 10⁻⁴. Our first edition's unnormalized probe at 10⁻⁴ had collapsed by
# mini-batch 4 (its loss pinned at ln 10, its output independent of the input), so its flat curves
# at mini-batches 4 and 7 showed a dead network, not robustness. The probe now runs inside the
# learning-rate window, at 10⁻⁴ and at 3·10⁻⁵, with the collapse test above applied at every
# mini-batch; Figure 3 uses the paper's 10⁻⁴ unless some seed diverged or collapsed there, and then
# the next smaller rate of the grid. Here it uses {glue:text}`probe_rate`: {glue:text}`probe_why`.

# %%
probe = ch.probe(window, S)

# %% mystnb={"figure": {"caption": "The probe runs step by step: the loss of each mini-batch before its update and the spread of the logits across its images, one line per seed, for BN at 0.1 and the unnormalized network at the two probed rates, at {glue:text}`scale` scale.", "name": "fig-bjorck2018-fig3-probe"}, "image": {"alt": "Two panels of short lines over seven mini-batches on log axes; the unnormalized runs start far above the BN runs and fall within one or two steps towards the ln 10 line, and their logit spread falls with them."}}
plots.show(ch.figure3_trajectory(probe), "bjorck2018-fig3-probe")

# %% mystnb={"figure": {"caption": "Figure 3: new loss over old loss against the step size at mini-batches 1, 4 and 7, one line per seed, for BN at 0.1 and the unnormalized network at the probed rates, at {glue:text}`scale` scale.", "name": "fig-bjorck2018-fig3"}, "image": {"alt": "Three panels of loss-ratio curves on log-log axes; the BN curves stay below 1 up to large steps, the unnormalized curves rise above 1 at far smaller steps and climb by many orders of magnitude."}}
plots.show(ch.figure3(probe), "bjorck2018-fig3")

# %% [markdown]
# Appendix H: shallower unnormalized networks tolerate larger steps. The same scan at
# initialization, on each seed's first mini-batch, for unnormalized ResNets of several depths (at
# depth 110 it is Figure 3's first panel).

# %% mystnb={"figure": {"caption": "Appendix H: the largest step along the gradient that lowers the loss at initialization against the depth of the unnormalized ResNet, median and range over seeds, beside the BN ResNet-110, at {glue:text}`scale` scale.", "name": "fig-bjorck2018-appH"}, "image": {"alt": "A falling line with a shaded band from ResNet-20 to ResNet-110 on a log axis; square markers for the BN network at depth 110 lie well above the line's end."}}
depth_steps = ch.scan_appendix_h(S, probe, page.seed, page.device)
plots.show(ch.appendix_h(depth_steps, S), "bjorck2018-appH")

# %%
ch.check_figure3(page, probe, depth_steps)
page.claims.table()

# %% [markdown]
# (bjorck2018-fig4)=
# ## Figure 4: anatomy of a diverging update
#
# The paper finds the update that first sends a mini-batch loss above 10³ in an unnormalized run at
# too large a rate, and applies a fraction of it at a time, recording the channel means and variances
# of layers 8, 44 and 80. The paper does not say at which rate; we take {glue:text}`diverge_lr`, the
# smallest rate of its grid at which every seed of the window diverges, and dissect the diverging
# update of each of {glue:text}`fig4_seeds` seeds. Each panel has its own colour scale, as in the
# paper.

# %%
anatomy = ch.find_figure4_updates(S, data, page.device)

# %% mystnb={"figure": {"caption": "Figure 4: channel means (top) and variances (bottom) of layers 8, 44 and 80 of the unnormalized ResNet-110 along its first diverging update, for the first seed, at {glue:text}`scale` scale.", "name": "fig-bjorck2018-fig4"}, "image": {"alt": "Six heat maps, channel against the percentage of the update applied; the colour scales grow by many orders of magnitude from layer 8 to layer 80, where the moments blow up towards the end of the update."}}
plots.show(ch.figure4(anatomy), "bjorck2018-fig4")

# %%
ch.figure4_table(anatomy)

# %% [markdown]
# The table gives, seed by seed, the loss before and after the update and the largest channel
# variance of each layer before and after it, beside the paper's colour bars. How far a diverging
# update throws the network depends on the draw. In {glue:text}`fig4_grew` of the
# {glue:text}`fig4_seeds` seeds the variance of layer 80 grows by three orders of magnitude or more
# along the update, the paper's picture; in the others the deep moments do not grow along the update
# (it first removes part of the large initial output), and the loss passes 10³ all the same. The
# claims below are decided over the seeds.

# %%
ch.check_figure4(page, anatomy)
page.claims.table()

# %% [markdown]
# (bjorck2018-fig5)=
# ## Figure 5: the moments grow with depth at initialization
#
# Channel means (absolute values) and standard deviations, each averaged over the channels, at layers
# 6, 18, …, 102 and the output layer 110, median and range over seeds.

# %% mystnb={"figure": {"caption": "Figure 5: the mean over channels of the absolute channel means and of the channel standard deviations against depth at initialization, with and without BN, median and range over seeds, at {glue:text}`scale` scale.", "name": "fig-bjorck2018-fig5"}, "image": {"alt": "Two panels; the unnormalized curves climb roughly linearly on the log axis by orders of magnitude, the BN curves stay near 1; a cross marks the paper's output scale of 10\u00b2 at layer 110."}}
plots.show(ch.figure5(init), "bjorck2018-fig5")

# %% [markdown]
# Without BN the moments grow roughly exponentially with depth; the largest output channel reaches a
# median of {glue:text}`out_nobn` over seeds (from {glue:text}`out_nobn_min` to
# {glue:text}`out_nobn_max`; the paper: "scales of up to 10²"), against {glue:text}`out_bn` with BN.
# With BN they stay within a small factor of 1, growing slowly along each stage as every block adds
# its normalized branch to the identity path.

# %%
ch.check_figure5(page, init)
page.claims.table()

# %% [markdown]
# (bjorck2018-fig6)=
# ## Figure 6: the unnormalized network predicts one class for every input
#
# $\partial L_b/\partial O_{b,j} = \mathrm{softmax}(O_b)_j - [j = y_b]$ at initialization: one row
# per image, one column per class; each row's one negative entry is the true class, a positive
# entry is the probability given to a wrong class. An argmax count ignores how strongly a class
# dominates, so the verdicts use two magnitude-aware statistics over seeds: the mean probability of
# the dominant class on images of other classes (1: every image is put in that class), and the
# agreement in sign of a class's gradient across the batch, $|\sum_b g_{bj}|/\sum_b |g_{bj}|$
# (Table 1's $b/a$ for the output layer).

# %% mystnb={"figure": {"caption": "Figure 6: the output gradients of one seed's mini-batch without and with BN, and every seed's dominant-class probability, at {glue:text}`scale` scale.", "name": "fig-bjorck2018-fig6"}, "image": {"alt": "Two heat maps with one row per image and ten columns; the unnormalized one has a single bright column, the BN one a softer bright column; a third panel of dots per seed, the unnormalized network's at 1."}}
plots.show(ch.figure6(init), "bjorck2018-fig6")

# %% [markdown]
# Without BN the dominant class takes a median probability of {glue:text}`dominant_nobn` on images
# of other classes, and the sign agreement is {glue:text}`agreement_nobn`: every image pushes every
# class the same way, the paper's picture. With BN the median dominant probability is
# {glue:text}`dominant_bn` and the agreement {glue:text}`agreement_bn`. Our BN network, too, prefers
# one class at initialization: after the last ReLU the pooled features are positive and share a large
# common mean across images, and the Xavier classifier turns that mean into the same offset of every
# image's logits. The paper's BN heatmap shows the wrong-class gradients spread over the classes; the
# rows below record where ours differs.

# %%
ch.check_figure6(page, init)
page.claims.table()

# %% [markdown]
# (bjorck2018-table1)=
# ## Table 1: the summands of the kernel gradient agree in sign without BN
#
# A kernel's gradient is a sum over the batch and the positions,
# $\partial L/\partial K = \sum_{b,x,y} d^{bxy}$ with
# $d^{bxy}_{o,i,x',y'} = \frac{\partial L}{\partial O_{b,o,x,y}} I_{b,i,x+x',y+y'}$ (Eq. 4). The
# paper compares $a = \sum|d|$ with $b = |\sum d|$ (both averaged over the kernel's entries): if the
# summands cancel, $a/b$ is large; if they share a sign, it is near 1. We report $a$ and $b$ per
# summand, divided by the number $B\cdot H\cdot W$ of terms, which the paper's absolute values match.

# %%
ch.table1(init)

# %% [markdown]
# Without BN $a/b$ stays small at every depth; with BN it is one to two orders of magnitude larger
# and falls with depth, as in the paper. With BN our $b$ per summand rises with depth while the
# paper's is flat: summands of
# cancelling signs add up like a random walk, so $b$ grows like $\sqrt{B H W}$, not like $B H W$,
# and dividing by $B H W$ (which falls fourfold per stage) leaves $b \propto 1/\sqrt{BHW}$. Indeed
# $b$ per summand times $\sqrt{BHW}$ is {glue:text}`t1_bn_sqrt` at layers 18, 54, 90. The paper does
# not say how it normalized $a$ and $b$, so we cannot tell which convention makes its column flat.

# %%
ch.check_table1(page, init)
page.claims.table()

# %% [markdown]
# (bjorck2018-fig7)=
# ## Figure 7: a low-rank gradient structure across channels
#
# $M_{i,o} = \sum_{x',y'}|\partial L/\partial K_{o,i,x',y'}|$ at layer 45 (32→32) at initialization.
# Without BN a few input and output channels carry most of the gradient. We measure this by the share
# of $\lVert M\rVert_F^2$ in the top singular value (≈ 0.64 for a large matrix of independent
# positive entries): over seeds its median is {glue:text}`share_nobn` without BN and
# {glue:text}`share_bn` with BN.

# %% mystnb={"figure": {"caption": "Figure 7: the channel-gradient map M of layer 45 of one seed, without and with BN, at {glue:text}`scale` scale.", "name": "fig-bjorck2018-fig7"}, "image": {"alt": "Two 32-by-32 heat maps; the unnormalized one is dominated by a few bright rows and columns, the BN one is more evenly textured."}}
plots.show(ch.figure7(init), "bjorck2018-fig7")

# %%
ch.check_figure7(page, init)
page.claims.table()

# %% [markdown]
# (bjorck2018-fig9)=
# ## Figures 8, 9 and Appendix K: products of random matrices
#
# **Theorem 1.** For $X = X_1X_2\cdots X_M$ with $N\times N$ factors of iid $\mathcal N(0, 1/N)$
# entries, as $N\to\infty$ the squared singular values $x$ of $X$ have the density
#
# $$\rho_M(x) = \frac{\sin\varphi\,\sin((M+1)\varphi)}{\pi x\,\sin(M\varphi)},\qquad
# x = \frac{\sin^{M+1}((M+1)\varphi)}{\sin\varphi\,\sin^M(M\varphi)},\quad 0<\varphi<\frac{\pi}{M+1},$$
#
# the Fuss–Catalan distribution on $(0, (M+1)^{M+1}/M^M)$ {cite}`penson2011product`; for $M = 1$
# it is the Marchenko–Pastur law {cite}`marchenko1967distribution`. It has mean 1 for every $M$, yet
# its support stretches and its mass piles up at 0 as $x^{-M/(M+1)}$.

# %% mystnb={"figure": {"caption": "Figure 8: Theorem 1's densities of the squared singular values for M = 1, 3, 5, and the closed-form Marchenko\u2013Pastur law, at {glue:text}`scale` scale.", "name": "fig-bjorck2018-fig8"}, "image": {"alt": "Three densities on log-log axes that blow up towards zero more steeply and reach further right as M grows; the dotted Marchenko\u2013Pastur curve lies on the M = 1 curve."}}
plots.show(ch.figure8(), "bjorck2018-fig8")
theorem1 = ch.theorem1_moments()
print(theorem1)

# %% [markdown]
# Figure 9 draws the singular values of products of $M$ = 1, 3, 5 Gaussian matrices of size
# {glue:text}`rm_N` (ten repeats pooled, as in the paper), overlaid as in the paper's left panel and
# one by one against the theory. A sample of $N$ eigenvalues of one matrix sits within a few
# eigenvalue spacings of its quantiles, so its Kolmogorov–Smirnov distance to the right law is of
# order $1/N$; the tolerance is $5/N$ = {glue:text}`ks_tolerance` per repeat (the worst mean here:
# {glue:text}`ks_max`), and the distance of the same samples to the law of one more factor shows
# that the test can fail.

# %% mystnb={"figure": {"caption": "Figure 9: histograms of the singular values of products of M = 1, 3, 5 Gaussian matrices, overlaid (top left, as in the paper) and each beside Theorem 1's density, at {glue:text}`scale` scale.", "name": "fig-bjorck2018-fig9"}, "image": {"alt": "Four panels; the overlay shows three histograms, the M = 5 one piled up near zero with the longest tail; in the three single panels the dotted theory curve follows the bars."}}
fig9 = ch.sample_figure9(S.rm_N, S.rm_repeats, page.gen.weights)
plots.show(ch.figure9(fig9), "bjorck2018-fig9")

# %% [markdown]
# Appendix K: the condition number $s_{\max}/s_{\min}$ of a chain of products grows exponentially
# with the number of factors. For many factors, the singular values of a product of real Gaussian
# matrices separate into Lyapunov exponents $\lambda_j = \frac12(\ln 2 + \psi(\frac{N-j+1}{2}))$
# (Newman, 1986), so the condition number grows by $e^{\lambda_1-\lambda_N} =
# e^{(\psi(N/2) - \psi(1/2))/2}$ per factor, {glue:text}`k_theory` at $N$ = {glue:text}`cond_N`; the
# chains grow by {glue:text}`k_measured` (float64, reliable while κ stays well below 10¹⁶).

# %% mystnb={"figure": {"caption": "Appendix K: the condition number of chains of products of Gaussian matrices against the number of factors, each chain and their geometric mean, beside the theory's growth per factor, at {glue:text}`scale` scale.", "name": "fig-bjorck2018-appK"}, "image": {"alt": "Many thin grey lines rising straight on a log axis, their geometric mean and the dotted theory line almost on top of each other."}}
cond = ch.measure_appendix_k(S.cond_Ms, S.cond_N, S.cond_repeats, page.gen.weights)
plots.show(ch.appendix_k(cond), "bjorck2018-appK")

# %%
ch.check_random_matrices(page, theorem1, fig9, cond)
page.claims.table()

# %% [markdown]
# ## Paper against this book
#
# Every claim of the page, then the checks of the book's own machinery (not counted as claims).
# Verdicts are decided over seeds (or repeats) with a margin of two standard errors: ✓ holds, ✗
# fails, ? inconclusive (more seeds or a larger scale would decide it), – not testable at this scale.

# %%
page.finish(S, ch.cost)
page.claims

# %%
page.claims.machinery_table()
