"""Live implementations of the tools that can run safely inside a sandbox folder.

Only `record` mode uses them, to build fixtures. Nothing here executes code, touches the network
or reads outside the sandbox: `code.execute`, `web.*` and `http.get` are replay-only.
"""

from __future__ import annotations

import ast
import fnmatch
import math
import operator
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kimi_student.errors import ArgumentError

_BIN: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type, Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt,
    "abs": abs,
    "round": round,
    "min": min,
    "max": max,
    "floor": math.floor,
    "ceil": math.ceil,
    "log": math.log,
    "exp": math.exp,
}
_CONSTS = {"pi": math.pi, "e": math.e}
_MAX_EXPONENT = 1000
_MAX_INT_BITS = 4096  # an integer result past this is refused (a chain of powers would exhaust memory)


def _int_bits(op: ast.operator, left: int, right: int) -> int:
    """An upper bound on the bits of `left op right`, known before computing it: a power or a product
    of big integers is what would exhaust time and memory."""
    if isinstance(op, ast.Pow):
        return left.bit_length() * right
    if isinstance(op, ast.Mult):
        return left.bit_length() + right.bit_length()
    return 0  # + - / // % give at most one bit more than their operands, which are checked already


def safe_eval(expression: str) -> int | float:
    """Arithmetic only: numbers, + - * / // % **, parentheses, a few math functions. No names, no attributes.

    Raises ArgumentError for anything it refuses or cannot compute (a domain error such as sqrt(-1), an
    overflow, a complex or non-finite result, an integer over 4096 bits), ZeroDivisionError for a division
    by zero, nothing else."""

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _BIN:
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Pow) and abs(right) > _MAX_EXPONENT:
                raise ArgumentError("expression", "exponent too large")
            if (
                isinstance(left, int)
                and isinstance(right, int)
                and _int_bits(node.op, left, right) > _MAX_INT_BITS
            ):
                raise ArgumentError("expression", "number too large")  # refused before it is computed
            return checked(_BIN[type(node.op)](left, right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return checked(_UNARY[type(node.op)](ev(node.operand)))
        if isinstance(node, ast.Name) and node.id in _CONSTS:
            return _CONSTS[node.id]
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in _FUNCS
            and not node.keywords
        ):
            args = [ev(a) for a in node.args]
            if node.func.id == "round" and len(args) == 2 and abs(args[1]) > _MAX_EXPONENT:
                raise ArgumentError("expression", "round: ndigits too large")  # round(1, -10**9) never ends
            return checked(_FUNCS[node.func.id](*args))
        raise ArgumentError("expression", f"unsupported syntax: {type(node).__name__}")

    def checked(value: Any) -> int | float:
        if isinstance(value, int) and value.bit_length() > _MAX_INT_BITS:
            raise ArgumentError("expression", "number too large")
        if not isinstance(value, (int, float)) or (isinstance(value, float) and not math.isfinite(value)):
            raise ArgumentError("expression", "the result is not a finite real number")
        return value

    if len(expression) > 500:
        raise ArgumentError("expression", "expression longer than 500 characters")
    try:
        tree = ast.parse(expression.replace("^", "**"), mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError) as e:  # ValueError: a NUL character
        raise ArgumentError("expression", f"syntax error: {getattr(e, 'msg', None) or e}") from None
    try:
        return checked(ev(tree))
    except ZeroDivisionError:
        raise
    except (ValueError, OverflowError, TypeError, RecursionError) as e:  # ArgumentError is a ValueError
        if isinstance(e, ArgumentError):
            raise
        raise ArgumentError("expression", f"cannot compute: {e}") from None


def math_eval(args: dict[str, Any], sandbox: Path) -> dict[str, Any]:
    try:
        value = safe_eval(args["expression"])
    except ZeroDivisionError:
        return {"ok": False, "error": "division by zero"}
    except ArgumentError as e:
        return {"ok": False, "error": str(e)}
    if isinstance(value, float):
        value = round(value, args.get("precision", 6))
        if value.is_integer():
            value = int(value)
    return {"ok": True, "expression": args["expression"], "value": value}


def _inside(sandbox: Path, rel: str) -> Path:
    root = sandbox.resolve()
    target = (root / rel).resolve()
    if target != root and root not in target.parents:  # symlinks pointing out are refused too
        raise ArgumentError("path", f"{rel!r} resolves outside the sandbox")
    return target


def _fs_error(e: OSError | ValueError, path: str) -> dict[str, Any]:
    """A file-system fault as the tool's error result (the model sees it; nothing raises)."""
    if isinstance(e, IsADirectoryError):
        why = "the path is a folder"
    elif isinstance(e, NotADirectoryError):
        why = "a parent of the path is a file"
    elif isinstance(e, OSError):
        why = e.strerror or type(e).__name__  # ENAMETOOLONG: "File name too long"
    else:
        why = f"invalid path: {e}"  # an embedded NUL
    return {"ok": False, "error": why, "path": path}


def read_file(args: dict[str, Any], sandbox: Path) -> dict[str, Any]:
    encoding = args.get("encoding", "utf-8")
    try:
        target = _inside(sandbox, args["path"])
        if target.is_dir():
            raise IsADirectoryError(args["path"])
        if not target.is_file():
            return {"ok": False, "error": "file not found", "path": args["path"]}
        text = target.read_text(encoding=encoding)
    except ArgumentError:
        raise  # outside the sandbox: refused as bad input, never answered
    except UnicodeDecodeError as e:
        return {"ok": False, "error": f"not {encoding} text (byte {e.start})", "path": args["path"]}
    except LookupError:
        return {"ok": False, "error": f"unknown encoding {encoding!r}", "path": args["path"]}
    except (OSError, ValueError) as e:
        return _fs_error(e, args["path"])
    return file_window(args, text.splitlines())


def file_window(args: dict[str, Any], lines: list[str]) -> dict[str, Any]:
    """The read_file result for `lines`: the window the arguments ask for (shared with the generator's world)."""
    start = args.get("start_line", 1)
    chunk = lines[start - 1 : start - 1 + args.get("max_lines", 200)]
    return {
        "ok": True,
        "path": args["path"],
        "start_line": start,
        "line_count": len(chunk),
        "content": "\n".join(chunk),
    }


def file_write(args: dict[str, Any], sandbox: Path) -> dict[str, Any]:
    mode = args.get("mode", "create")
    if mode not in ("create", "overwrite", "append"):
        return {"ok": False, "error": f"unknown mode {mode!r}", "path": args["path"]}
    opts = args.get("options", {})
    data = args["content"].replace("\n", "\r\n") if opts.get("newline") == "crlf" else args["content"]
    try:
        raw = data.encode("utf-8")
        target = _inside(sandbox, args["path"])
        if mode == "create" and target.exists():
            return {"ok": False, "error": "file exists", "path": args["path"]}
        if not target.parent.exists():
            if not opts.get("make_dirs", True):
                return {"ok": False, "error": "directory missing", "path": args["path"]}
            target.parent.mkdir(parents=True)
        with open(target, "ab" if mode == "append" else "wb") as fh:
            fh.write(raw)
    except ArgumentError:
        raise  # outside the sandbox: refused as bad input, never answered
    except UnicodeEncodeError:
        return {"ok": False, "error": "content is not valid Unicode (a lone surrogate)", "path": args["path"]}
    except (OSError, ValueError) as e:
        return _fs_error(e, args["path"])
    return {"ok": True, "path": args["path"], "bytes_written": len(raw)}


def repo_search(args: dict[str, Any], sandbox: Path) -> dict[str, Any]:
    flags = 0 if args.get("case_sensitive") else re.IGNORECASE
    try:
        rx = re.compile(re.escape(args["pattern"]), flags)
    except re.error as e:
        return {"ok": False, "error": f"bad pattern: {e}"}
    root = sandbox.resolve()
    globs = args.get("paths") or ["*"]
    matches: list[dict[str, Any]] = []
    for f in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        rel = f.relative_to(root).as_posix()
        if not any(fnmatch.fnmatch(rel, g) or rel.startswith(g.rstrip("/") + "/") for g in globs):
            continue
        try:
            text = f.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for n, line in enumerate(text.splitlines(), start=1):
            if rx.search(line):
                matches.append({"path": rel, "line": n, "text": line.strip()})
    total = len(matches)
    return {"ok": True, "total": total, "matches": matches[: args.get("max_results", 20)]}


LIVE: dict[str, Callable[[dict[str, Any], Path], dict[str, Any]]] = {
    "math.eval": math_eval,
    "read_file": read_file,
    "file.write": file_write,
    "repo.search": repo_search,
}
