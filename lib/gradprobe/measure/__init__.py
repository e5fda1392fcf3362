"""Measurements on networks, read top to bottom:

- :mod:`gradprobe.measure.stats`        Var[x], scaling ratios (R_f, R_b), per-channel moments
- :mod:`gradprobe.measure.hooks`        layers to watch, the hook helper, recordings, ``preserved_state``
- :mod:`gradprobe.measure.correlation`  the correlation ρ of a layer's inputs (Paik & Choi)
- :mod:`gradprobe.measure.rates`        per-layer gradients, the rate fitter, a network's explosion rate
- :mod:`gradprobe.measure.gsc`          gradient scale coefficient, collapsing domain, dilution (Philipp et al.)
- :mod:`gradprobe.measure.batchnorm`    BatchNorm's running statistics
- :mod:`gradprobe.measure.kernels`      channel moments and kernel gradients at numbered ResNet layers (Bjorck et al.)
- :mod:`gradprobe.measure.steps`        the loss along a gradient step or an update (Bjorck et al.)
- :mod:`gradprobe.measure.discs`        the network as a function of one layer's weights (azimuthal discs)
- :mod:`gradprobe.measure.linearize`    effective depth by linearizing the top layers
- :mod:`gradprobe.measure.repeats`      many repeated gradient measurements batched into large products
"""
