"""Only what pyproject.toml cannot say: the optional C helper.

``scr_core._textjoin`` speeds up ``hostlist.expand_joined`` (see its source). It is
optional: without a C compiler and the Python headers the build prints a warning and
installs pure Python, which does the same a little slower.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "scr_core._textjoin",
            sources=["src/scr_core/_textjoin.c"],
            optional=True,
        )
    ]
)
