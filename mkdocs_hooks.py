"""mkdocs hooks (mkdocs.yml ``hooks:``): nothing here runs outside the documentation build.

Generated pages (rule pages, the changelog) name the file they come from as ``edit_url``
in their front matter, so "Edit" opens the rule's docstring, not the generated copy.
"""

from __future__ import annotations

from typing import Any


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    edit_url = page.meta.get("edit_url")
    if isinstance(edit_url, str) and edit_url.startswith("https://"):
        page.edit_url = edit_url
    return markdown
