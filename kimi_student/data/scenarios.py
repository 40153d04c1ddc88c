"""The scenario builders of the contextual dataset: each writes an item's request, makes its calls against
the simulated world (`data/world.py`) and states what it integrated. Every call a builder makes follows
from the request and the responses before it (DESIGN.md "Derivable gold calls"); every value it draws is
its split's (`world.pool`, `world.draw`).

An answer writes a path a tool returned in backticks: the path then follows the same token as in the
tool's JSON (`"pkg/...`), and a model copies its tokens; after a blank the tokenizer spells the first
word another way (` pkg`), and a teacher wrote "defined inpkg/storage/..." on a folder it never saw."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kimi_student.data import world
from kimi_student.numbers import format_number


@dataclass
class Draft:
    """What a scenario builder produces for one item."""

    request: str
    calls: list[tuple[str, dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)  # each call's fixture key
    lead: str = ""
    integrations: list[str] = field(default_factory=list)


class Builder:
    """Runs calls against the simulated world while a scenario writes its item."""

    def __init__(self, r: random.Random, locale: str, structure: str):
        self.r, self.locale, self.structure = r, locale, structure
        self.draft = Draft("")

    def call(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        key, result = world.run_call(name, args)
        self.draft.keys.append(key)  # fixture_key(name, args)
        self.draft.calls.append((name, args, result))
        return result

    def num(self, value: float | int, decimals: int | None = None) -> str:
        return format_number(value, self.locale, decimals)

    def s(self, *names: str) -> bool:
        return self.structure in names


# ---- scenarios: each writes the request, makes its calls and states what it integrated ------------------


def _arithmetic(b: Builder, complexity: str) -> None:
    r = b.r
    # The price and the subtotal are the split's values (the subtotal is stated, and totalled again).
    price, qty = world.draw(
        r, lambda r: (round(r.uniform(100, 9999), 2), r.randint(2, 40)), lambda pq: round(pq[0] * pq[1], 2)
    )
    rate = r.choice((5, 7, 12.5, 19, 20))
    # The price as the request writes it, without the locale's grouping ("5,066.30" -> 5066.30, never
    # the float's 5066.3): a call copies the request's digits.
    expr = f"{price:.2f} * {qty}"
    args: dict[str, Any] = {"expression": expr}
    if b.s("numeric_ranges", "optional_keys"):
        args["precision"] = 2
    # The total with tax needs cents the calculator's default precision does not round to, so the request
    # asks for them: a gold precision no request asks for would teach a student to add it everywhere.
    cents = "" if "precision" in args else ", to the cent"
    b.draft.request = f"An order has {qty} units at {b.num(price, 2)} each. What is the subtotal" + (
        f", and the total with {b.num(rate)}% tax{cents}?" if complexity == "multi_call" else "?"
    )
    if "precision" in args:
        b.draft.request += " Round to 2 decimals."
    if complexity == "branching_error_recovery":  # the order sheet's own spelling, asked for, fails first
        # (asked for: a student that writes `*` at once would otherwise be wrong for knowing better)
        b.draft.request += f" The order sheet writes it as {price:.2f} x {qty}; try it as written first."
        bad = b.call("math.eval", {**args, "expression": f"{price:.2f} x {qty}"})
        assert not bad["ok"]
    sub = b.call("math.eval", args)["value"]
    b.draft.lead = "I computed it with the calculator."
    b.draft.integrations.append(f"The subtotal is {b.num(sub, 2)}.")
    if complexity == "multi_call":  # the subtotal as the tool's response writes it
        tot = b.call("math.eval", {"expression": f"{sub} * (1 + {rate}/100)", "precision": 2})["value"]
        b.draft.integrations.append(f"With {b.num(rate)}% tax the total is {b.num(tot, 2)}.")


def _query(r: random.Random) -> str:
    return f"{r.choice(world.pool(world.SUBJECTS))} {r.choice(world.ASPECTS)}"


def _web_research(b: Builder, complexity: str, negative: bool = False, top_k: int | None = None) -> None:
    r = b.r
    q = (
        _query(r)
        if not negative
        else f"{r.choice(world.EMPTY_QUERY_WORDS)} {r.choice(world.pool(world.SUBJECTS))}"
    )
    args: dict[str, Any] = {"query": q}
    b.draft.request = f"Find sources about {q}."
    if b.s("nested_args"):
        site, recency = r.choice(world.pool(world.HOSTS)), r.choice(("week", "month", "year"))
        args["filters"] = {"site": site, "recency": recency}
        b.draft.request += f" Only pages on {site} from the past {recency}."
    if b.s("enums"):
        args["lang"] = "en"
        args["filters"] = {"recency": r.choice(("day", "week", "any"))}
        b.draft.request += f" English pages, recency {args['filters']['recency']}."
    if b.s("numeric_ranges", "optional_keys") or top_k:
        args["top_k"] = top_k or r.randint(2, 10)
    if "top_k" in args and not top_k:  # a range violation asks for its own number
        b.draft.request += f" Give me the top {args['top_k']}."
    if complexity == "branching_error_recovery":  # the page the user names is gone: then search
        url = f"https://{r.choice(world.pool(world.HOSTS))}/{world.slug(q)}/missing"
        b.draft.request += f" Start with {url}, and search the web if it is gone."
        b.call("web.crawl", {"url": url})
    res = b.call("web.search", args)
    if negative:
        b.draft.lead = "The search returned no results, so I have nothing to report from the tools."
        return
    top = res["results"][0]
    b.draft.lead = f"I searched for {q}."
    b.draft.integrations.append(f'The top result is "{top["title"]}" at {top["url"]}.')
    if complexity == "multi_call":  # asked for: whether to read the top page must follow from the request
        b.draft.request += " Then read the top result and tell me what it says."
        page = b.call("web.crawl", {"url": top["url"]})
        b.draft.integrations.append(f"That page states: {page['text'].splitlines()[0]}.")
    elif len(res["results"]) > 1:
        b.draft.integrations.append(f'Another source is "{res["results"][1]["title"]}".')


def _page_reading(b: Builder, complexity: str, max_pages: int | None = None) -> None:
    r = b.r
    topic = r.choice(world.pool(world.SUBJECTS))
    url = f"https://{r.choice(world.pool(world.HOSTS))}/{world.slug(topic)}"
    args: dict[str, Any] = {"url": url}
    if b.s("arrays", "enums"):
        args["include"] = ["text", "links"] if b.s("arrays") else ["text"]
    if b.s("numeric_ranges", "optional_keys") or max_pages:
        args["max_pages"] = max_pages or r.randint(1, 5)
    moved = complexity == "branching_error_recovery"  # the user's link has moved: the 404 says where
    b.draft.request = f"Open {url}{'/missing' if moved else ''} and tell me what it recommends."
    if "include" in args:
        b.draft.request += " Read its text and links." if b.s("arrays") else " Read its text only."
    if "max_pages" in args and not max_pages:  # a range violation asks for its own number
        b.draft.request += f" Read up to {args['max_pages']} pages."
    if moved:
        b.call("web.crawl", {"url": url + "/missing"})
    page = b.call("web.crawl", args)
    lines = page["text"].splitlines()
    b.draft.lead = f"I read the page at {url}."
    b.draft.integrations.append(f'The page "{page["title"]}" says: {lines[0]}.')
    if complexity == "multi_call":
        note, path = f"{page['title']}\n{lines[0]}\n", f"notes/{world.slug(topic)}.md"
        b.draft.request += f" Save a note of it to {path}."
        w = b.call("file.write", {"path": path, "content": note, "mode": "overwrite"})
        b.draft.integrations.append(f"I saved the note to `{w['path']}` ({b.num(w['bytes_written'])} bytes).")
    else:
        b.draft.integrations.append(f"It also notes: {lines[1]}.")


def _code_run(b: Builder, complexity: str) -> None:
    r = b.r
    what, fn, src = r.choice(world.PROGRAMS)
    n = world.draw(r, lambda r: r.randint(12, 5000), fn)  # n and what the program prints: the split's
    args: dict[str, Any] = {"language": "python", "code": src.format(n=n)}
    if b.s("numeric_ranges", "optional_keys"):
        args["timeout_s"] = r.choice((2, 5, 10.5))
    if b.s("optional_keys"):
        args["stdin"] = ""
    b.draft.request = f"Run a quick Python check: compute {what.format(n=n)}."
    if "timeout_s" in args:
        b.draft.request += f" Give it {args['timeout_s']} seconds at most."
    if complexity == "branching_error_recovery":  # the user's own first try does not compile
        b.draft.request += f" My first try was `for i in range({n}):`, run that first."
        b.call("code.execute", {**args, "code": f"for i in range({n}):"})
    out = b.call("code.execute", args)
    b.draft.lead = "I ran the snippet in the sandbox."
    b.draft.integrations.append(f"The program printed {out['stdout']}.")
    if complexity == "multi_call":
        b.draft.request += f" Save the output to out/result-{n}.txt."
        w = b.call(
            "file.write",
            {"path": f"out/result-{n}.txt", "content": out["stdout"] + "\n", "mode": "overwrite"},
        )
        b.draft.integrations.append(f"The output is saved in `{w['path']}`.")


def _pick_file(r: random.Random) -> str:
    return f"{r.choice(world.pool(world.DIRS))}/{r.choice(world.pool(world.FILES))}"


def _file_ops(b: Builder, complexity: str) -> None:
    r = b.r
    path = _pick_file(r)
    args: dict[str, Any] = {"path": path}
    if b.s("numeric_ranges"):
        args.update(start_line=1, max_lines=r.choice((10, 50, 200)))
    limit = f" Read at most {args['max_lines']} lines." if "max_lines" in args else ""
    if b.s("enums", "optional_keys"):
        args["encoding"] = "utf-8"
    b.draft.request = f"What does {path} configure?{limit}"
    if complexity == "branching_error_recovery":  # the user names the old file: the error names the new
        typo = path.rsplit("/", 1)[0] + "/" + path.rsplit("/", 1)[1].replace(".", "_old.", 1)
        b.draft.request = f"What does {typo} configure? It may have been renamed.{limit}"
        b.call("read_file", {**args, "path": typo})
    res = b.call("read_file", args)
    lines = res["content"].splitlines()
    b.draft.lead = f"I read {path}."
    b.draft.integrations.append(f"`{res['path']}` sets {lines[0]}.")
    key, _, val = lines[1].partition(" = ")
    if complexity == "multi_call":
        dbl = b.call("math.eval", {"expression": f"{val} * 2"})["value"]
        b.draft.request += f" Also, what would {key} be if doubled?"
        b.draft.integrations.append(f"Doubling {key} ({val}) gives {b.num(dbl)}.")
    else:
        b.draft.integrations.append(f"It also sets {lines[1]}.")


def _report_write(b: Builder, complexity: str, email: str | None = None) -> None:
    r = b.r
    name = world.slug(r.choice(world.pool(world.SUBJECTS)))
    who = email or r.choice(world.pool(world.EMAILS))
    amount = world.draw(r, lambda r: round(r.uniform(1000, 990000), 2))
    body = f"Summary for {who}\nQuarterly spend: {b.num(amount, 2)}\n"
    path = f"reports/{name}.md" if complexity != "branching_error_recovery" else f"reports/existing-{name}.md"
    args: dict[str, Any] = {"path": path, "content": body}
    if b.s("nested_args"):
        args["options"] = {"newline": r.choice(("lf", "crlf")), "make_dirs": True}
    newline = f" Use {args['options']['newline']} line endings." if "options" in args else ""
    if b.s("enums", "optional_keys"):
        args["mode"] = (
            "overwrite" if complexity == "branching_error_recovery" else r.choice(("create", "overwrite"))
        )
    b.draft.request = f"Write a short spend summary ({b.num(amount, 2)}) for {who} to {path}.{newline}"
    if complexity == "branching_error_recovery":
        b.call("file.write", {**args, "mode": "create"})
        args["mode"] = "overwrite"
    if complexity == "multi_call":
        # the amount's digits as the request writes them; a quarter's cents times 4 need no rounding
        total = b.call("math.eval", {"expression": f"{amount:.2f} * 4"})["value"]
        b.draft.request += " Include the annualised figure."
        args["content"] = body + f"Annualised: {b.num(total, 2)}\n"
    w = b.call("file.write", args)
    b.draft.lead = "The summary is written."
    b.draft.integrations.append(f"I wrote {b.num(w['bytes_written'])} bytes to `{w['path']}`.")
    if complexity == "multi_call":
        b.draft.integrations.append(f"The annualised spend is {b.num(total, 2)}.")


def _repo_nav(b: Builder, complexity: str, negative: bool = False, max_results: int | None = None) -> None:
    r = b.r
    settings = world.pool(world.SETTINGS)
    key = r.choice(settings) if not negative else f"LEGACY_{r.choice(settings)}"
    args: dict[str, Any] = {"pattern": key}
    dirs = world.pool(world.DIRS)
    if b.s("arrays"):
        args["paths"] = sorted(r.sample(dirs, min(3, len(dirs) - 1)))
    if b.s("numeric_ranges") or max_results:
        args["max_results"] = max_results or r.randint(3, 50)
    scope = f" Search only under {', '.join(args['paths'])}." if "paths" in args else ""
    if "max_results" in args and not max_results:  # a range violation asks for its own number
        scope += f" Show at most {args['max_results']} matches."
    if b.s("optional_keys"):  # stated: a search the request does not ask to match case matches any case
        args["case_sensitive"] = True
        scope += " Match case exactly."
    b.draft.request = f"Where is {key} defined in the repository?{scope}"
    if complexity == "branching_error_recovery":  # the user's old name finds nothing; the new one is given
        b.draft.request = (
            f"Where is {key}_OLD defined in the repository? It may have been renamed to {key}.{scope}"
        )
        b.call("repo.search", {**args, "pattern": f"{key}_OLD"})
    res = b.call("repo.search", args)
    if not res["matches"]:
        if negative:
            b.draft.lead = f"{key} is not defined anywhere in the repository."
            return
        res = b.call("repo.search", {"pattern": key})
    m = res["matches"][0]
    b.draft.lead = f"I searched the repository for {key}."
    b.draft.integrations.append(f"{key} is defined in `{m['path']}` as {m['text']}.")
    if complexity == "multi_call":  # asked for, as the web and API follow-ups are
        b.draft.request += " Then open that file and tell me what else it sets."
        f = b.call("read_file", {"path": m["path"]})
        other = next(ln for ln in f["content"].splitlines() if not ln.startswith(key))
        b.draft.integrations.append(f"The same file also sets {other}.")


def _api_lookup(b: Builder, complexity: str, negative: bool = False) -> None:
    r = b.r
    pkgs = world.pool(world.PACKAGES)
    pkg = r.choice(pkgs) if not negative else f"{r.choice(pkgs)}-ng"
    url = f"https://api.example.com/v1/packages/{pkg}"
    args: dict[str, Any] = {"url": url}
    fields = ""
    if b.s("nested_args"):
        args["params"] = {"fields": "version,released", "cache": False}
        args["headers"] = {"Accept": "application/json"}
        fields = " Ask for the version,released fields as application/json."
    if b.s("numeric_ranges", "optional_keys"):  # stated, as every optional argument a call sets
        args["timeout_s"] = r.choice((3, 5, 15))
    b.draft.request = (
        f"What is the latest release of the {pkg} package? The registry answers at {url}.{fields}"
    )
    then = f"{args['timeout_s']} seconds" if "timeout_s" in args else "the default timeout"
    if complexity == "branching_error_recovery":  # the user's short timeout first, then the one named
        b.draft.request += f" Try a 1 second timeout first, and {then} if that times out."
        b.call("http.get", {**args, "timeout_s": 1})
    elif "timeout_s" in args:
        b.draft.request += f" Give it {then}."
    res = b.call("http.get", args)
    if res["status_code"] != 200:
        b.draft.lead = f"The registry has no package called {pkg}."
        return
    body = res["body"]
    b.draft.lead = "I queried the package registry."
    b.draft.integrations.append(
        f"{body['name']} is at version {body['version']}, released {body['released']}."
    )
    if complexity == "multi_call":
        b.draft.request += " Also, how many downloads is that a day, to one decimal?"
        per_day = b.call("math.eval", {"expression": f"{body['weekly_downloads']} / 7", "precision": 1})[
            "value"
        ]
        b.draft.integrations.append(
            f"It has {b.num(body['weekly_downloads'])} weekly downloads, about {b.num(per_day, 1)} a day."
        )


BUILDERS: dict[str, Callable[..., None]] = {
    "arithmetic": _arithmetic,
    "web_research": _web_research,
    "page_reading": _page_reading,
    "code_run": _code_run,
    "file_ops": _file_ops,
    "report_write": _report_write,
    "repo_nav": _repo_nav,
    "api_lookup": _api_lookup,
}
