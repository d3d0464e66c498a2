"""``bnlint hook``: the pre-commit entry, where a file name is never an option.

pre-commit runs ``entry + args + file names`` (``pre_commit/lang_base.py``: ``hook_cmd``
then ``xargs`` appends the files, split over several runs when the command line grows too
long), so no ``--`` can separate the user's ``args`` from the files, and a committed file
named ``--config=c.pt`` would otherwise be read as an option and override the hook's own
``--config``. pre-commit passes only names that exist (``os.path.lexists``), so here:

- a token that names an existing path is a file to lint, never an option — unless it is
  the value of the option just before it (``--config bnlint.toml`` from ``args``);
- every other token is parsed as ``bnlint check`` parses it.

The split is handed to ``bnlint check OPTIONS -- FILES``. A planted file that mimics an
option is then linted as what it is (and refused if it is not a model); a planted file
named like one of the user's own ``args`` (``--fail-on``) turns that option into a file
and fails the hook loudly instead of changing the gate. Discovered configuration files
cannot import code either way (:func:`bnlint.config.check_discovered`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import click


def _value_options(command: click.Command) -> tuple[set[str], set[str]]:
    """(option names that take a value, option names that are flags)."""
    takes_value, flags = set(), set()
    for param in command.params:
        if not isinstance(param, click.Option):
            continue
        names = {*param.opts, *param.secondary_opts}
        (flags if param.is_flag or param.count else takes_value).update(names)
    return takes_value, flags


def split_argv(argv: Sequence[str], command: click.Command) -> tuple[list[str], list[str]]:
    """(options, files): see the module docstring."""
    takes_value, _ = _value_options(command)
    options: list[str] = []
    files: list[str] = []
    expecting_value = False
    for token in argv:
        if expecting_value:
            options.append(token)
            expecting_value = False
        elif os.path.lexists(token):
            files.append(token)
        elif token == "--":
            continue  # pre-commit never sends one; a user's "--" separates nothing here
        elif token.startswith("-") and token != "-":
            options.append(token)
            name = token.split("=", 1)[0]
            expecting_value = "=" not in token and name in takes_value
            if not expecting_value and not token.startswith("--") and len(token) > 2:
                # short options grouped (-qj2, -qo FILE): the last may take the next token
                expecting_value = f"-{token[-1]}" in takes_value and not any(
                    f"-{letter}" in takes_value for letter in token[1:-1]
                )
        else:
            files.append(token)  # a path that does not exist: bnlint says so
    return options, files
