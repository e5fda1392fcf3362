"""Training:

- :mod:`gradprobe.train.loop`       ``fit`` (records every step, survives divergence) and ``evaluate``
- :mod:`gradprobe.train.optim`      layer-wise rules LARS, LARC, LAMB and LALC (reconstructed)
- :mod:`gradprobe.train.schedules`  learning-rate schedules: linear warm-up, step decay
"""
