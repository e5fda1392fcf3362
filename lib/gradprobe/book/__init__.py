"""The book machinery (``python -m gradprobe.book run|build``):

- :mod:`gradprobe.book.runner`  execute the notebooks with papermill, build the HTML book
- :mod:`gradprobe.book.scales`  the smoke / book / paper settings of a notebook
- :mod:`gradprobe.book.claims`  "paper vs this book" tables
- :mod:`gradprobe.book.plots`   the house plot style, saving figures
"""
