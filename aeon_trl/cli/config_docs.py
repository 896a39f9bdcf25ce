"""Generate the config reference in docs/config.md from the config dataclasses (aeon_trl/config.py).

    python -m aeon_trl.cli.config_docs            # rewrite the generated block of docs/config.md
    python -m aeon_trl.cli.config_docs --check    # exit 1 if it is out of date (what tests/test_config_docs.py checks)

Everything comes from the source: the sections (``SECTIONS``), each dataclass's docstring, each field's name,
annotation and default, the comment on the field's line and the comment lines right above it, the seed/SB3/CleanRL
aliases (``ALIASES``) and old names (``DEPRECATED``), the allowed values (``CHOICES``) and the range checks in
``Config.validate`` (``_check(ok, "key", value, "rule")``). No field name is written here. Only the block between the two markers is
generated; the prose around it is edited by hand.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import io
import re
import sys
import tokenize
from pathlib import Path

BEGIN = "<!-- BEGIN GENERATED: config reference (python -m aeon_trl.cli.config_docs) -->"
END = "<!-- END GENERATED: config reference -->"
DOC = Path(__file__).resolve().parents[2] / "docs" / "config.md"
FIX = "python -m aeon_trl.cli.config_docs"


def _comments(source: str) -> dict[int, str]:
    """Line number -> the text of the comment on that line."""
    return {tok.start[0]: tok.string.lstrip("#").strip()
            for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT}


def _comment_only_lines(source: str) -> set[int]:
    return {i for i, line in enumerate(source.splitlines(), 1) if line.strip().startswith("#")}


def _rule_text(node: ast.expr) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):  # f-string: the literal text; a run-time value shown as "N"
        text = "".join(v.value if isinstance(v, ast.Constant) else "\0" for v in node.values)
        text = re.sub(r" = \[[^\]]*\0[^\]]*\]| = \0", "", text)  # "[a, b] = [{a}, {b}]" -> "[a, b]"
        return text.replace("\0", "N")
    return None


def _checks(tree: ast.Module) -> dict[str, list[str]]:
    """Field name -> the rules ``Config.validate`` checks it with."""
    rules: dict[str, list[str]] = {}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "_check"
                and len(node.args) >= 4 and isinstance(node.args[1], ast.Constant)):
            text = _rule_text(node.args[3])
            if text and text not in rules.setdefault(node.args[1].value, []):
                rules[node.args[1].value].append(text)
    return rules


def _format_default(value) -> str:
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, str):
        return f"`{value}`" if value else '`""`'
    if isinstance(value, list):
        return "`[" + ", ".join(str(v) for v in value) + "]`"
    return f"`{value}`"


def _format_type(annotation: str, default) -> str:
    if annotation == "list" and isinstance(default, list) and default:
        return f"list[{type(default[0]).__name__}]"
    return annotation


def _sentence(text: str) -> str:
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def field_docs(config_module=None) -> list[dict]:
    """One entry per config field, in source order: section, name, type, default, comment, aliases, choices, rules."""
    if config_module is None:
        from aeon_trl import config as config_module
    source = inspect.getsource(config_module)
    tree = ast.parse(source)
    comments, comment_lines = _comments(source), _comment_only_lines(source)
    aliases: dict[str, list[str]] = {}  # target -> other names: ALIASES' values name the target, DEPRECATED's
    deprecated: dict[str, list[str]] = {}  # values are (target, why)
    for table, names in (("ALIASES", aliases), ("DEPRECATED", deprecated)):
        for alias, target in getattr(config_module, table, {}).items():
            names.setdefault(target[0] if isinstance(target, tuple) else target, []).append(alias)
    choices = getattr(config_module, "CHOICES", {})
    rules = _checks(tree)
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    entries = []
    for section, cls in config_module.SECTIONS.items():
        defaults = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
                    for f in dataclasses.fields(cls)}
        for stmt in classes[cls.__name__].body:
            if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
                continue
            name = stmt.target.id
            above, line = [], stmt.lineno - 1
            while line in comment_lines:  # the comment block right above the field
                above.insert(0, comments[line])
                line -= 1
            trailing = [comments[n] for n in range(stmt.lineno, stmt.end_lineno + 1) if n in comments
                        and n not in comment_lines]
            entries.append({"section": section, "name": name, "class": cls.__name__,
                            "type": _format_type(ast.unparse(stmt.annotation), defaults[name]),
                            "default": defaults[name], "comment": " ".join(above + trailing),
                            "aliases": aliases.get(name, []), "deprecated": deprecated.get(name, []),
                            "choices": list(choices.get(name, ())),
                            "rules": rules.get(name, [])})
    return entries


def render_reference(config_module=None) -> str:
    """The generated Markdown block (without the markers)."""
    if config_module is None:
        from aeon_trl import config as config_module
    entries = field_docs(config_module)
    out = []
    for section, cls in config_module.SECTIONS.items():
        doc = inspect.getdoc(cls)
        doc = doc if doc and not doc.startswith(cls.__name__ + "(") else ""  # dataclasses invent a signature doc
        out.append(f"### `{section}`\n")
        if doc:
            out.append(doc.replace("\n", " ") + "\n")
        out.append("| key | type | default | meaning |\n|---|---|---|---|")
        for e in (e for e in entries if e["section"] == section):
            parts = [_sentence(e["comment"])] if e["comment"] else []
            if e["choices"]:
                parts.append("One of " + ", ".join(f"`{c}`" for c in e["choices"]) + ".")
            if e["rules"]:
                parts.append("Checked: " + "; ".join(e["rules"]) + ".")
            if e["aliases"]:
                parts.append("Also accepted as " + ", ".join(f"`{a}`" for a in e["aliases"]) + ".")
            if e["deprecated"]:
                parts.append("Old name " + ", ".join(f"`{a}`" for a in e["deprecated"]) + " (deprecated, still read).")
            out.append(f"| `{e['name']}` | `{e['type']}` | {_format_default(e['default'])} | "
                       f"{_cell(' '.join(parts))} |")
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def update(text: str, block: str) -> str:
    """``text`` with the generated block replaced (appended with its markers when there is none yet)."""
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        return f"{head}{BEGIN}\n{block}{END}{rest.split(END, 1)[1]}"
    return f"{text.rstrip()}\n\n{BEGIN}\n{block}{END}\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aeon_trl.cli.config_docs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--path", type=Path, default=DOC, help=f"the Markdown file (default {DOC})")
    parser.add_argument("--check", action="store_true", help="do not write; exit 1 if the file is out of date")
    args = parser.parse_args(argv)
    current = args.path.read_text() if args.path.is_file() else "# Configuration\n"
    wanted = update(current, render_reference())
    if args.check:
        if wanted != current:
            print(f"{args.path} is out of date with aeon_trl/config.py: run `{FIX}`", file=sys.stderr)
            return 1
        return 0
    args.path.parent.mkdir(parents=True, exist_ok=True)
    args.path.write_text(wanted)
    print(f"wrote {args.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
