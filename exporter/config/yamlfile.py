"""Reading the config file: strict YAML (a key given twice is an error), one-line errors that
never quote the file's text (it may hold the API key).
"""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path

import yaml

from exporter.config import values
from exporter.config.model import ConfigError


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key given twice in one mapping.

    Plain YAML keeps the last one silently: a second `targets:` block would drop the first.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[object] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` merges are meant to repeat keys
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, Hashable):
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"duplicate key {values.show(str(key))}",
                        key_node.start_mark,
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(name: str) -> object:
    """The YAML document in the file `name`, as plain Python values."""
    try:
        text = Path(name).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(name, "cannot read: not UTF-8 text") from None
    except (OSError, ValueError) as exc:  # ValueError: a path with a NUL byte
        raise ConfigError(name, f"cannot read: {values.reason(exc)}") from None
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        place = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
        # Not str(exc): it adds a snippet of the line, which may hold the API key.
        problem = values.one_line(
            ", ".join(filter(None, (exc.context, exc.problem))) or "syntax error"
        )
        raise ConfigError(place, f"invalid YAML: {problem}") from None
    except yaml.reader.ReaderError as exc:
        # Found before any parsing, so it comes with an offset rather than a line and column.
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - text.rfind("\n", 0, exc.position)
        raise ConfigError(
            f"{name}:{line}:{column}",
            f"invalid YAML: character U+{exc.character:04X} is not allowed",
        ) from None
    except ValueError:
        # A tagged or date-like scalar that cannot be built; the exception's text may quote
        # the scalar, which could be the API key, so it is not passed on.
        raise ConfigError(
            name, "invalid YAML: a value does not fit its type (e.g. a date like 2023-02-30)"
        ) from None
    except RecursionError:
        raise ConfigError(name, "invalid YAML: nested too deeply") from None
