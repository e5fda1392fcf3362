"""What the papers predict, computed without training a network:

- :mod:`gradprobe.theory.gaussian`         Gaussian expectations: R_f, R_b and the explosion rate r(φ)
- :mod:`gradprobe.theory.operators`        the ghost paper's (R_f, R_b) of single operators
- :mod:`gradprobe.theory.distributions`    Monte-Carlo (R_f, R_b) on Gaussian, Laplace, uniform inputs
- :mod:`gradprobe.theory.random_matrices`  singular values of products of Gaussian matrices (Fuss–Catalan)
"""
