"""The unified-diff reader as a table: each row a diff as git or diff -u writes it, and the files it holds."""

from __future__ import annotations

import pytest

from kimi_student.arbiter.diff import FileChange, parse_diff, unquote
from kimi_student.errors import InputError

MODIFIED = """\
diff --git a/src/app.py b/src/app.py
index 3b18e51..a1b2c3d 100644
--- a/src/app.py
+++ b/src/app.py
@@ -1,3 +1,4 @@
 import os
-x = 1
+x = 2
+y = 3
 print(x)
"""

# content lines that look like headers: a removed "-- a" and an added "++ b" print as "--- a" and "+++ b"
HEADER_LOOKALIKES = """\
diff --git a/notes.md b/notes.md
--- a/notes.md
+++ b/notes.md
@@ -1,2 +1,2 @@
--- a
+++ b
 diff --git a/x b/x
"""

ADDED_DELETED = """\
diff --git a/new.txt b/new.txt
new file mode 100644
index 0000000..ce01362
--- /dev/null
+++ b/new.txt
@@ -0,0 +1,2 @@
+hello
+world
diff --git a/old.txt b/old.txt
deleted file mode 100644
index ce01362..0000000
--- a/old.txt
+++ /dev/null
@@ -1 +0,0 @@
-bye
"""

RENAME_COPY_MODE_EMPTY = """\
diff --git a/docs/a.md b/docs/b.md
similarity index 80%
rename from docs/a.md
rename to docs/b.md
index 1111111..2222222 100644
--- a/docs/a.md
+++ b/docs/b.md
@@ -1,2 +1,2 @@
 keep
-old
+new
diff --git a/lib/x.py b/lib/y.py
similarity index 100%
copy from lib/x.py
copy to lib/y.py
diff --git a/run.sh b/run.sh
old mode 100644
new mode 100755
diff --git a/empty.txt b/empty.txt
new file mode 100644
index 0000000..e69de29
"""

QUOTED_AND_BINARY = """\
diff --git "a/caf\\303\\251 menu.txt" "b/caf\\303\\251 menu.txt"
index 1..2 100644
--- "a/caf\\303\\251 menu.txt"\t
+++ "b/caf\\303\\251 menu.txt"\t
@@ -1 +1 @@
-tea
+coffee
\\ No newline at end of file
diff --git a/img/logo.png b/img/logo.png
index 3..4 100644
Binary files a/img/logo.png and b/img/logo.png differ
diff --git a/read me.txt b/read me.txt
new file mode 100644
index 0000000..e69de29
diff --git a/my notes.txt b/my notes.txt
index 5..6 100644
--- a/my notes.txt\t
+++ b/my notes.txt\t
@@ -1 +1,2 @@
 x
+y
"""

PLAIN_DIFF_U = """\
--- old/a.c\t2026-01-01 10:00:00.000000000 +0000
+++ new/a.c\t2026-01-02 10:00:00.000000000 +0000
@@ -1,2 +1,2 @@
-int x;
+long x;
 int y;
--- old/b.c\t2026-01-01 10:00:00.000000000 +0000
+++ new/b.c\t2026-01-02 10:00:00.000000000 +0000
@@ -3 +3,2 @@
 z
+w
"""

GIT_SHOW = (
    """\
commit 0123456789abcdef0123456789abcdef01234567
Author: A <a@b>
Date:   Tue Dec 1 00:00:00 2026 +0000

    --- this message line is not a header
    +++ nor is this

"""
    + MODIFIED
)

TABLE = [
    (MODIFIED, [FileChange("src/app.py", "src/app.py", "modified", 2, 1)]),
    (HEADER_LOOKALIKES, [FileChange("notes.md", "notes.md", "modified", 1, 1)]),
    (
        ADDED_DELETED,
        [FileChange("new.txt", None, "added", 2, 0), FileChange("old.txt", "old.txt", "deleted", 0, 1)],
    ),
    (
        RENAME_COPY_MODE_EMPTY,
        [
            FileChange("docs/b.md", "docs/a.md", "renamed", 1, 1),
            FileChange("lib/y.py", "lib/x.py", "copied", 0, 0),
            FileChange("run.sh", "run.sh", "modified", 0, 0),
            FileChange("empty.txt", None, "added", 0, 0),
        ],
    ),
    (
        QUOTED_AND_BINARY,
        [
            FileChange("café menu.txt", "café menu.txt", "modified", 1, 1),
            FileChange("img/logo.png", "img/logo.png", "modified", 0, 0, binary=True),
            FileChange("read me.txt", None, "added", 0, 0),
            FileChange("my notes.txt", "my notes.txt", "modified", 1, 0),
        ],
    ),
    (
        PLAIN_DIFF_U,
        [
            FileChange("new/a.c", "old/a.c", "modified", 1, 1),
            FileChange("new/b.c", "old/b.c", "modified", 1, 0),
        ],
    ),
    (GIT_SHOW, [FileChange("src/app.py", "src/app.py", "modified", 2, 1)]),
    (MODIFIED.replace("\n", "\r\n"), [FileChange("src/app.py", "src/app.py", "modified", 2, 1)]),
    ("", []),
]


@pytest.mark.parametrize(
    "text,want",
    TABLE,
    ids=[
        "modified",
        "header-lookalikes",
        "added-deleted",
        "rename-copy-mode-empty",
        "quoted-binary-space",
        "diff-u",
        "git-show",
        "crlf",
        "empty",
    ],
)
def test_files_of_a_diff(text: str, want: list[FileChange]) -> None:
    assert list(parse_diff(text).files) == want


def test_totals_touched_paths_and_stat() -> None:
    d = parse_diff(ADDED_DELETED + RENAME_COPY_MODE_EMPTY)
    assert (d.files_changed, d.lines_added, d.lines_removed) == (6, 3, 2)
    # a rename writes both paths; a copy only its new one
    assert d.paths == ("new.txt", "old.txt", "docs/a.md", "docs/b.md", "lib/y.py", "run.sh", "empty.txt")
    assert d.stat().splitlines()[2] == " docs/a.md => docs/b.md | 2 +-"
    assert d.stat().splitlines()[-1] == " 6 files changed, 3 insertions(+), 2 deletions(-)"


@pytest.mark.parametrize(
    "text,line,words",
    [
        (MODIFIED[: MODIFIED.index("+y = 3")], 8, "cut short"),
        (MODIFIED.replace("@@ -1,3 +1,4 @@", "@@ -1,3 +1,x @@"), 5, "malformed hunk header"),
        (MODIFIED.replace(" print(x)", "?print(x)"), 10, "not context"),
        ("diff --cc merged.py\nindex 1,2..3\n", 1, "combined diff"),
    ],
)
def test_a_broken_diff_names_its_line(text: str, line: int, words: str) -> None:
    with pytest.raises(InputError) as e:
        parse_diff(text, "change.diff")
    assert (e.value.path, e.value.line, e.value.field) == ("change.diff", line, "diff")
    assert words in e.value.message


def test_a_hunk_longer_than_its_header_is_refused() -> None:
    text = MODIFIED.replace("@@ -1,3 +1,4 @@", "@@ -1,2 +1,3 @@")
    with pytest.raises(InputError, match="longer than its @@ header"):
        parse_diff(text)


@pytest.mark.parametrize(
    "token,text",
    [
        ('"a\\tb"', "a\tb"),
        ('"q\\"uote"', 'q"uote'),
        ('"\\346\\227\\245"', "日"),
        ("plain", "plain"),
        ('"x\\\\y"', "x\\y"),
    ],
)
def test_unquote(token: str, text: str) -> None:
    assert unquote(token) == text


def test_a_hunk_line_past_one_side_of_its_header_is_refused() -> None:
    # the header counts 1 old line; the hunk removes 2 while adding its 2
    text = MODIFIED.replace(
        "@@ -1,3 +1,4 @@\n import os\n-x = 1\n+x = 2\n+y = 3\n print(x)\n",
        "@@ -1,1 +1,2 @@\n-x = 1\n-z = 0\n+x = 2\n+y = 3\n",
    )
    with pytest.raises(InputError, match="past what its @@ header counts") as e:
        parse_diff(text)
    assert e.value.line == 7
