"""Text that came from outside the app (query parameters, folder, file and step names, JSON), made inert.

Streamlit renders markdown in st.markdown, st.error, st.info, captions, labels and
headers: a folder named ``[Sign in](https://evil.example)`` would become a link, and
``![p](https://host/p.png)`` would load an outside image. Every page shows such text
through :func:`escape_markdown` (or in st.code / st.text, which render nothing).
"""

from __future__ import annotations

import re

# Every character markdown, GitHub-flavoured markdown or Streamlit's own directives
# (:red[...], :material/icon:, $latex$) give a meaning to, plus HTML's angle brackets.
_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~:$&])")
MAX_SHOWN = 300  # longer outside text is cut (a person cannot read more in a message anyway)


def escape_markdown(text: object, limit: int = MAX_SHOWN) -> str:
    """``text`` as literal markdown: every special character backslash-escaped, line breaks as spaces.

    Longer than ``limit`` characters, it is cut with an ellipsis, so a huge query
    parameter cannot flood a page.
    """
    value = str(text)
    if len(value) > limit:
        value = value[:limit] + "…"
    value = " ".join(value.splitlines())
    return _SPECIAL.sub(r"\\\1", value)
