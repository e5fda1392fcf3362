"""Sphinx extension for this book (loaded through ``sphinx: local_extensions`` in _config.yml).

* MathJax from the book itself: copies MathJax 3 (the ``mathjax`` package of the PyPI
  distribution ``django-static-mathjax``, which ships MathJax's npm build) into ``_static/mathjax/``
  of the HTML output; ``mathjax_path: mathjax/tex-mml-chtml.js`` in _config.yml points there.
  No page then asks a CDN for anything, and formulas render without a network.
* Code folded for the reader (``book_fold_code: true``): every code cell's source goes behind a
  "Show code cell source" toggle, as MyST-NB's ``hide-input`` tag would put it, unless the cell is
  tagged ``show-input`` (or already ``hide-*``/``remove-*``); its outputs stay visible. Cells with a
  tag listed in ``book_remove_cell_tags`` (papermill's ``parameters`` and ``injected-parameters``)
  are left out of the page. Notebooks need no tags for this; the tags still work per cell.
* One copy of each inline script: Sphinx 7.4 adds scripts that extensions register after the
  builder starts (sphinx-thebe's ``const THEBE_JS_URL = ...``) twice, which a browser reports as
  "Identifier 'THEBE_JS_URL' has already been declared".
"""
from __future__ import annotations

import shutil
from pathlib import Path

from docutils import nodes
from sphinx.errors import ExtensionError
from sphinx.transforms.post_transforms import SphinxPostTransform

# What of MathJax's es5/ build the pages need: the TeX+MathML -> CommonHTML component, the TeX
# extensions it loads on demand, the CHTML fonts, the menu and its accessibility helpers.
MATHJAX_KEEP = ("tex-mml-chtml.js", "input", "output", "ui", "a11y", "adaptors", "sre")
MATHJAX_SKIP = ("svg", "*.map", "mml", "asciimath")  # other inputs and outputs than ours


def mathjax_source() -> Path:
    """MathJax's es5/ folder as installed by pip (django-static-mathjax)."""
    try:
        import mathjax  # django-static-mathjax's package
    except ImportError as err:
        raise ExtensionError("MathJax is not installed: pip install django-static-mathjax "
                             "(it ships MathJax 3 for the book to serve itself)") from err
    es5 = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"
    if not (es5 / "tex-mml-chtml.js").is_file():
        raise ExtensionError(f"no MathJax build at {es5}")
    return es5


def copy_mathjax(app) -> None:
    if app.builder.format != "html" or "://" in app.config.mathjax_path:
        return
    source = mathjax_source()
    target = Path(app.outdir) / "_static" / "mathjax"
    stamp = target / ".source"
    if stamp.is_file() and stamp.read_text() == str(source):
        return
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for name in MATHJAX_KEEP:
        path = source / name
        if path.is_dir():
            shutil.copytree(path, target / name, ignore=shutil.ignore_patterns(*MATHJAX_SKIP))
        else:
            shutil.copy2(path, target / name)
    shutil.copy2(source.parent / "LICENSE", target / "LICENSE")
    stamp.write_text(str(source))


def one_copy_of_each_script(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not isinstance(scripts, list):
        return
    seen, unique = set(), []
    for script in scripts:
        attributes = getattr(script, "attributes", {})
        key = (str(getattr(script, "filename", script) or ""), getattr(script, "priority", 0),
               tuple(sorted((k, str(v)) for k, v in attributes.items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    scripts[:] = unique


class FoldCodeCells(SphinxPostTransform):
    """Before MyST-NB's HideInputCells (priority 199) turns ``hide_mode`` into toggles."""

    default_priority = 198
    formats = ("html",)

    def run(self, **kwargs):
        config = self.app.config
        removed = {f"tag_{tag}" for tag in config.book_remove_cell_tags}
        keep_open = {"tag_show-input", "tag_show_input"}
        nb_config = getattr(self.env, "mystnb_config", None)
        for node in list(self.document.findall(nodes.container)):
            if node.get("nb_element") != "cell_code":
                continue
            classes = set(node.get("classes", []))
            if classes & removed:
                node.parent.remove(node)
                continue
            if (not config.book_fold_code or node.get("hide_mode") or classes & keep_open
                    or not node.children or node.children[0].get("nb_element") != "cell_code_source"):
                continue
            node["hide_mode"] = "input"
            node["prompt_show"] = getattr(nb_config, "code_prompt_show", "Show code cell {type}")
            node["prompt_hide"] = getattr(nb_config, "code_prompt_hide", "Hide code cell {type}")


def setup(app):
    app.add_config_value("book_fold_code", False, "env", [bool])
    app.add_config_value("book_remove_cell_tags", [], "env", [list])
    app.add_post_transform(FoldCodeCells)
    app.connect("builder-inited", copy_mathjax)
    app.connect("html-page-context", one_copy_of_each_script, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
