"""The browser tests' ``page``: headless Debian chromium through playwright (see viewer_page.py)."""

from .viewer_page import page  # noqa: F401 (a fixture)
