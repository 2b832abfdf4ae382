"""Sphinx configuration for zenmon's documentation site.

Build (from the repository root, with ``pip install '.[docs]'``)::

    python -m sphinx -W --keep-going -n -b html docs docs/_build/html

Why Sphinx with furo, autodoc and MyST rather than mkdocs-material with mkdocstrings:

- autodoc imports the *installed* package, so the reference documents exactly what
  users get, the compiled Cython core included (its signatures come from Cython's
  ``embedsignature``; mkdocstrings reads source files statically and cannot see
  inside a ``.so``);
- ``-W`` plus nitpicky mode turns every unresolved cross-reference (a misspelt
  class, a page that does not exist, a heading anchor that moved) into an error, so
  "internal links are checked" is a property of every build, offline;
- MyST lets the pages stay Markdown, as the repository's existing docs are, and
  renders on GitHub as well; furo is a clean, readable theme with no JavaScript
  build step.
"""

from __future__ import annotations

import zenmon

project = "zenmon"
author = "the zenmon authors"
copyright = "zenmon authors"  # noqa: A001  (Sphinx's name)
release = version = zenmon.__version__

extensions = [
    "sphinx.ext.autodoc",
    "myst_parser",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "README.md"]

# Every page must be reachable and every link must resolve: warnings are errors
# (-W), and nitpicky mode makes an unresolved Python cross-reference a warning.
nitpicky = True
nitpick_ignore_regex = [
    # Names from the standard library and dependencies: no intersphinx (CI builds
    # offline), so references to them cannot resolve and are not ours to check.
    ("py:class", r"(typing\.|collections\.abc\.|asyncio\.|concurrent\.|zmq\.).*"),
    ("py:class", r"(Any|Callable|Iterable|Iterator|NamedTuple|Socket|Context|deque)"),
    ("py:class", r"(int|str|bytes|float|bool|object|tuple|dict|list|None|BaseException)"),
    ("py:class", r"(Exception|ValueError|TypeError|TimeoutError|ImportError)"),
    ("py:class", r"(uint64_t|optional|type)"),
    ("py:(func|mod|exc|obj|data)", r"(traceback|pickle|queue|prometheus_client)(\..*)?"),
    ("py:(class|exc)", r"(BaseException|Exception|ValueError|TypeError|TimeoutError)"),
]

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3          # [text](page.md#a-heading) links are checked too
suppress_warnings: list[str] = []

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "show-inheritance": True}
add_module_names = True

html_theme = "furo"
html_title = f"zenmon {release}"
html_static_path: list[str] = []


# ---------------------------------------------------------------------------
# ``zenmon-remaining-names``: documents every name in ``zenmon.__all__`` that the
# page it is used on does not document explicitly, so a public name added later is
# in the reference from its first build (from its docstring; tests/test_docs.py
# checks that every public name has one).

import re  # noqa: E402

from docutils import nodes  # noqa: E402
from docutils.statemachine import StringList  # noqa: E402
from sphinx.util.docutils import SphinxDirective  # noqa: E402
from sphinx.util.nodes import nested_parse_with_titles  # noqa: E402

_EXPLICIT = re.compile(
    r"\.\. (?:auto(?:class|function|data|exception)|py:data)::\s+(?:zenmon\.)?(\w+)")


class RemainingNames(SphinxDirective):
    """Autodoc directives for the names of ``zenmon.__all__`` not yet on the page."""

    def run(self) -> list:
        with open(self.env.doc2path(self.env.docname), encoding="utf-8") as page:
            documented = set(_EXPLICIT.findall(page.read()))
        lines = []
        for name in zenmon.__all__:
            if name in documented:
                continue
            obj = getattr(zenmon, name)
            if isinstance(obj, type):
                kind = "exception" if issubclass(obj, BaseException) else "class"
            else:
                kind = "function" if callable(obj) else "data"
            lines += [f".. auto{kind}:: zenmon.{name}", ""]
        if not lines:
            lines = ["(none: every public name is documented above)"]
        container = nodes.container()
        nested_parse_with_titles(self.state, StringList(lines, source="remaining"), container)
        return container.children


def setup(app):  # noqa: ANN001, ANN201  (Sphinx's extension hook)
    app.add_directive("zenmon-remaining-names", RemainingNames)
    return {"parallel_read_safe": True}
