"""Chapter *One number behind four papers*: the explosion rate r(φ) = E[φ'²]/Var[φ] and the
BN–ReLU network that shows it. Everything it measures is core (:mod:`gradprobe.theory.gaussian`,
:mod:`gradprobe.measure.hooks`, :mod:`gradprobe.measure.rates`); the chapter's own drivers and
figure functions go here."""
