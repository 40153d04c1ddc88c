"""A small deterministic world behind the replay-only tools, used to generate gold transcripts.

Every result is a pure function of the tool name and its normalised arguments, so one fixture key
always maps to one result, whichever item produced it. `math.eval` uses the live safe evaluator,
so recorded and generated fixtures agree.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache, lru_cache
from pathlib import Path
from typing import Any, TypeVar

from kimi_student.fingerprint import canonical_json
from kimi_student.tools.live import file_window, math_eval
from kimi_student.tools.normalize import normalize_arguments

T = TypeVar("T")

SUBJECTS = (
    "json schema validation",
    "python asyncio timeouts",
    "http caching headers",
    "rust borrow checker",
    "sqlite wal mode",
    "unicode normalization",
    "tls certificate pinning",
    "git rebase autosquash",
    "css grid layout",
    "numpy broadcasting",
    "kubernetes readiness probes",
    "postgres vacuum tuning",
    "webassembly memory limits",
    "oauth device flow",
    "regex catastrophic backtracking",
    "utf-8 byte order marks",
    "rate limiting token bucket",
    "bloom filter false positives",
    "b-tree page splits",
    "coreml enumerated shapes",
)
ASPECTS = ("best practices", "tutorial", "error handling", "performance", "reference")
HOSTS = ("docs.python.org", "developer.mozilla.org", "en.wikipedia.org", "github.com", "example.com")
EMPTY_QUERY_WORDS = ("zyxqv", "quuxbar", "flarnish")  # queries built from these find nothing

PACKAGES = (
    "fastjson",
    "tinyhttp",
    "corelog",
    "netpool",
    "pixelkit",
    "datebox",
    "quickcsv",
    "shellcraft",
    "vectormath",
    "tokenforge",
    "ziparchive",
    "cachetier",
    "mailroute",
    "graphlite",
    "streamdeck",
)
DIRS = ("src/app", "src/core", "services/billing", "lib/net", "tools/cli", "pkg/storage")
FILES = ("config.py", "settings.toml", "limits.yaml", "constants.py", "defaults.ini", "retry.py")
SETTINGS = (
    "MAX_RETRIES",
    "TIMEOUT_SECONDS",
    "POOL_SIZE",
    "CACHE_TTL",
    "BATCH_SIZE",
    "PORT",
    "WORKERS",
    "QUEUE_DEPTH",
    "BACKOFF_MS",
    "PAGE_SIZE",
)


EMAILS = ("ana.silva@example.com", "team-ops@example.org", "raj.patel@example.com")

# ---- the train / held-out split (DESIGN.md "Held-out split") -----------------------------------------
SPLITS = ("train", "heldout")
HELDOUT_SHARE = 3  # one value in three of each pool, and of every open-ended value, is held out
_split = "train"


def _rank(value: Any) -> bytes:
    return hashlib.sha256(f"split\x1f{value}".encode()).digest()


def value_split(value: Any) -> str:
    """The split an open-ended value (a drawn number, a version, a date) belongs to, by its text's hash."""
    return "heldout" if _rank(value)[0] % HELDOUT_SHARE == 0 else "train"


@cache
def _part(values: tuple[str, ...], split: str) -> tuple[str, ...]:
    ranked = sorted(values, key=_rank)
    held = set(ranked[: max(1, len(values) // HELDOUT_SHARE)])
    return tuple(v for v in values if (v in held) == (split == "heldout"))


def pool(values: tuple[str, ...]) -> tuple[str, ...]:
    """The part of a value pool the current split draws from: the len // HELDOUT_SHARE values (at least
    one) of lowest hash are held out, the rest are training values, in the pool's order."""
    return _part(values, _split)


def current_split() -> str:
    return _split


@contextmanager
def split_world(split: str) -> Iterator[None]:
    """Inside the block every pool and every drawn value is the `split` part's: the world of that split."""
    global _split
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}")
    outer, _split = _split, split
    try:
        yield
    finally:
        _split = outer


def draw(
    r: random.Random, make: Callable[[random.Random], T], derived: Callable[[T], Any] | None = None
) -> T:
    """`make(r)` again until its value's text belongs to the current split (value_split), and so does
    `derived(value)` where given (what a drawn input makes: a program's output, a subtotal)."""
    for _ in range(10_000):
        v = make(r)
        if value_split(v) == _split and (derived is None or value_split(derived(v)) == _split):
            return v
    raise RuntimeError("no value of this split in the range drawn from")


def rng_for(*parts: Any) -> random.Random:
    h = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return random.Random(int.from_bytes(h[:8], "big"))


def title_case(s: str) -> str:
    return " ".join(w if w.isupper() else w[:1].upper() + w[1:] for w in s.split())


def slug(s: str) -> str:
    return "-".join(s.lower().split())


def world_file(path: str) -> list[str] | None:
    """Lines of a file in the simulated repo, or None if it does not exist."""
    lines = _world_file(path, _split)
    return None if lines is None else list(lines)


@lru_cache(maxsize=4096)  # a pure function of the path, asked for again by every repo.search
def _world_file(path: str, split: str) -> tuple[str, ...] | None:
    p = Path(path)
    if p.name not in _part(FILES, split) or str(p.parent) not in _part(DIRS, split):
        return None
    r = rng_for("file", path)
    keys = r.sample(_part(SETTINGS, split), 3)
    return tuple(f"{k} = {draw(r, lambda r: r.randint(2, 900))}" for k in keys)


_LONG_FILLER = (
    "{t} INFO worker-{w} heartbeat ok latency_ms={l}",
    "{t} DEBUG cache hit ratio={l}% shard={w}",
    "{t} WARN slow request id=req-{l}{w} took {l}ms",
)


def service_log(r: random.Random, needle: str) -> str:
    """A long service log (60 to 120 lines) with `needle` in one line: the long-context items' context.

    Draws what `r.randint(a, b)` and `r.choice(seq)` compute (`a + r._randbelow(b - a + 1)`,
    `seq[r._randbelow(len(seq))]`); each line's six draws have fixed ranges, so `_line_draws` does
    `_randbelow`'s rejection sampling itself: the same numbers, without a call per draw."""
    below = r._randbelow
    lines = []
    n = 60 + below(61)
    at = below(n)
    draws = _line_draws(r) if type(r)._randbelow is random.Random._randbelow_with_getrandbits else None
    for i in range(n):
        day, hour, minute, kind, w, num = next(draws) if draws else (below(m) for m, _ in _LINE_RANGES)
        t = f"2026-11-{1 + day:02d}T{hour:02d}:{minute:02d}:00Z"
        lines.append(_LONG_FILLER[kind].format(t=t, w=1 + w, l=1 + num))
        if i == at:
            lines.append(f"{t} NOTE on-call says: {needle}")
    return "\n".join(lines)


# A log line's draws: day, hour, minute, filler, worker, number; each (n, n.bit_length()).
_LINE_RANGES = tuple((m, m.bit_length()) for m in (28, 24, 60, len(_LONG_FILLER), 16, 999))


def _line_draws(r: random.Random) -> Iterator[list[int]]:
    """Each line's draws, as `r._randbelow(n)` makes them (random.Random's `_randbelow_with_getrandbits`:
    k = n.bit_length() random bits, drawn again until below n)."""
    bits = r.getrandbits
    while True:
        out = []
        for m, k in _LINE_RANGES:
            x = bits(k)
            while x >= m:
                x = bits(k)
            out.append(x)
        yield out


def _web_search(a: dict[str, Any]) -> dict[str, Any]:
    q = a["query"]
    if any(w in q for w in EMPTY_QUERY_WORDS):
        return {"ok": True, "total": 0, "results": []}
    r = rng_for("search", q)
    site = a.get("filters", {}).get("site")
    n = min(a.get("top_k", 5), 3)
    results = []
    for i in range(n):
        host = site or r.choice(pool(HOSTS))
        words = q.split()
        title = f"{title_case(' '.join(words[:4]))}: {r.choice(('A Practical Guide', 'Notes', 'Deep Dive', 'FAQ', 'Cookbook'))}"
        if i:
            title += f" (Part {i + 1})"
        url = f"https://{host}/{slug(' '.join(words[:3]))}/{r.randint(10, 999)}"
        snippet = f"{title_case(words[0])} covers {r.randint(3, 40)} cases and {r.choice(('pitfalls', 'examples', 'benchmarks'))}"
        results.append({"title": title, "url": url, "snippet": snippet, "rank": i + 1})
    return {"ok": True, "total": r.randint(n, 5000), "results": results}


def _web_crawl(a: dict[str, Any]) -> dict[str, Any]:
    url = a["url"]
    if url.rstrip("/").endswith("/missing"):  # a moved page: the site says where it went
        moved = url.rstrip("/").removesuffix("/missing")
        return {"ok": False, "error": "HTTP 404", "url": url, "hint": f"moved to {moved}"}
    r = rng_for("crawl", url)
    topic = url.split("/")[3].replace("-", " ") if url.count("/") > 2 else "home"
    title = f"{title_case(topic)} | {r.choice(('Docs', 'Wiki', 'Handbook'))}"
    facts = [
        f"The recommended limit is {draw(r, lambda r: r.randint(2, 64))} per worker",
        f"Version {draw(r, lambda r: f'{r.randint(1, 9)}.{r.randint(0, 20)}')} changed the default behaviour",
    ]
    out: dict[str, Any] = {"ok": True, "url": url, "title": title, "text": "\n".join(facts)}
    if "links" in a.get("include", []):
        out["links"] = [f"{url.rstrip('/')}/{k}" for k in ("intro", "faq")]
    return out


# The programs the sandbox knows: (what a request asks, what it prints for n, its source).
PROGRAMS: tuple[tuple[str, Callable[[int], str], str], ...] = (
    ("the sum of 1 to {n}", lambda n: str(n * (n + 1) // 2), "print(sum(range(1, {n} + 1)))"),
    ("{n} squared", lambda n: str(n * n), "print({n} ** 2)"),
    ("the number of bits in {n}", lambda n: str(n.bit_length()), "print(({n}).bit_length())"),
    ("{n} in hexadecimal", lambda n: hex(n), "print(hex({n}))"),
)
_PROGRAM_RES = tuple(
    (re.compile(re.escape(src).replace(re.escape("{n}"), r"(\d+)")), fn) for _, fn, src in PROGRAMS
)


def _code_execute(a: dict[str, Any]) -> dict[str, Any]:
    code = a["code"].strip()
    if "SyntaxError" in code or code.endswith(":"):
        return {"ok": False, "exit_code": 1, "stdout": "", "stderr": "SyntaxError: invalid syntax"}
    # A program of PROGRAMS prints what it computes; any other prints nothing.
    out = next((fn(int(m[1])) for pat, fn in _PROGRAM_RES if (m := pat.fullmatch(code))), "")
    return {"ok": True, "exit_code": 0, "stdout": out, "stderr": ""}


def _read_file(a: dict[str, Any]) -> dict[str, Any]:
    lines = world_file(a["path"])
    if lines is None:
        out = {"ok": False, "error": "file not found", "path": a["path"]}
        renamed = a["path"].replace("_old.", ".", 1)  # an old name: the repo says what it is called now
        if renamed != a["path"] and world_file(renamed) is not None:
            out["hint"] = f"renamed to {renamed}"
        return out
    return file_window(a, lines)


def _file_write(a: dict[str, Any]) -> dict[str, Any]:
    if a.get("mode", "create") == "create" and Path(a["path"]).name.startswith("existing"):
        return {"ok": False, "error": "file exists (mode overwrite replaces it)", "path": a["path"]}
    data = a["content"]
    if a.get("options", {}).get("newline") == "crlf":
        data = data.replace("\n", "\r\n")
    return {"ok": True, "path": a["path"], "bytes_written": len(data.encode("utf-8"))}


def _repo_search(a: dict[str, Any]) -> dict[str, Any]:
    pat = a["pattern"].upper()
    paths = a.get("paths") or []
    matches = []
    for d in pool(DIRS):
        if paths and not any(d.startswith(p.rstrip("/*")) or p in ("*", "**") for p in paths):
            continue
        for f in pool(FILES):
            for n, line in enumerate(_world_file(f"{d}/{f}", _split) or (), start=1):
                if line.startswith(pat + " "):
                    matches.append({"path": f"{d}/{f}", "line": n, "text": line})
    return {"ok": True, "total": len(matches), "matches": matches[: a.get("max_results", 20)]}


def _http_get(a: dict[str, Any]) -> dict[str, Any]:
    url = a["url"]
    if a.get("timeout_s", 10) < 2:
        return {"ok": False, "error": "timeout", "status_code": None}
    name = url.rstrip("/").rsplit("/", 1)[-1]
    if name not in pool(PACKAGES):
        return {"ok": True, "status_code": 404, "body": {"error": "not found"}}
    r = rng_for("pkg", name)
    body = {
        "name": name,
        "version": draw(r, lambda r: f"{r.randint(0, 9)}.{r.randint(0, 30)}.{r.randint(0, 20)}"),
        "released": draw(r, lambda r: f"2026-{r.randint(1, 10):02d}-{r.randint(1, 28):02d}"),
        "weekly_downloads": draw(r, lambda r: r.randint(1200, 9_800_000)),
    }
    return {"ok": True, "status_code": 200, "body": body}


SIMULATORS = {
    "web.search": _web_search,
    "web.crawl": _web_crawl,
    "code.execute": _code_execute,
    "read_file": _read_file,
    "file.write": _file_write,
    "repo.search": _repo_search,
    "http.get": _http_get,
    "math.eval": lambda a: math_eval(a, Path(".")),
}


def simulate(name: str, normalized_args: dict[str, Any]) -> dict[str, Any]:
    return SIMULATORS[name](normalized_args)


_memo: dict[tuple[Any, ...], Any] | None = None
_UNSEEN = object()


@contextmanager
def calls_remembered() -> Iterator[None]:
    """Inside the block `run_call` answers a call it has run before (same tool, same canonical arguments)
    from memory: half the calls of a 10k dataset repeat an earlier one; `remembered` does the same for
    other pure functions of a call. Such calls share one result object: read it, do not change it."""
    global _memo
    outer, _memo = _memo, {}
    try:
        yield
    finally:
        _memo = outer


def remembered(key: tuple[Any, ...], make: Callable[[], T]) -> T:
    """`make()`; inside `calls_remembered`, what it gave for the same `key` before (a key that starts with
    something other than a tool name: run_call's keys are (tool, canonical arguments))."""
    if _memo is None:
        return make()
    known = _memo.get(key, _UNSEEN)
    if known is _UNSEEN:
        known = _memo[key] = make()
    return known


def run_call(name: str, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(fixture key, result) of a call: the canonical JSON of its normalised arguments (`fixture_key`,
    normalised once) and what the world answers to them."""
    if _memo is None:
        return _run_call(name, args)
    try:
        seen = (name, canonical_json(args))
    except (TypeError, ValueError):  # no canonical form (NaN, a set): the normaliser says what is wrong
        return _run_call(name, args)
    known = _memo.get(seen)
    if known is None:
        known = _memo[seen] = _run_call(name, args)
    return known


def _run_call(name: str, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    norm = normalize_arguments(name, args)
    return canonical_json(norm), simulate(name, norm)
