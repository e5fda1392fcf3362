"""One module per chapter notebook, with the same name: the experiment drivers and figure
functions particular to that chapter. Only this package may be paper-specific; everything it
uses is in the core packages.

- :mod:`gradprobe.chapters.one_number`   *One number behind four papers*
- :mod:`gradprobe.chapters.philipp2018`  Philipp et al.'s architectures and their survey at init
- :mod:`gradprobe.chapters.bjorck2018`   Bjorck et al.'s Figure 5 layers, dominant class, step probe
- :mod:`gradprobe.chapters.paik2023`     Paik & Choi's MLP rates and optimizer trials
- :mod:`gradprobe.chapters.ghost2024`    the ghost paper's Appendix B tables and sweeps
- :mod:`gradprobe.chapters.four_lenses`  ``gradprobe.diagnose`` on a zoo of standard architectures
"""
