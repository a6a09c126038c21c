#!/usr/bin/python3
"""asrd's lint step (make lint): what the compiler does not catch.

1. Banned calls: strcpy, strcat, sprintf, vsprintf, gets, strtok, atoi,
   atol, atof (unbounded writes, no error reporting, hidden state): use
   snprintf, buf_* (base/util.h), memcpy with a checked length, strtol/strtod
   with an end pointer.
2. Unchecked allocation: a malloc/calloc/realloc/strdup/strndup whose result
   is assigned to a variable that the next few lines never test for NULL.
   xmalloc/xcalloc/xstrdup (abort on failure, base/util.h) are the
   fixed-size alternative (docs/internals/architecture.md, "Allocation").
3. Comments that cite documents a reader of the repository cannot open.

Files: src/, tools/asrd-load/, tests/unit/, tests/fuzz/ (C). A line may
opt out with a trailing `/* lint: ok <why> */` comment.
"""
import os
import re
import sys

ROOTS = ["src", "tools/asrd-load", "tests/unit", "tests/fuzz"]
BANNED = re.compile(r"(?<![\w.>])(strcpy|strcat|sprintf|vsprintf|gets|strtok|atoi|atol|atof)\s*\(")
ALLOC = re.compile(r"(?:^|[;{(,]\s*|\s)([A-Za-z_][\w.\->\[\]]*)\s*=\s*(?:\([^()]*\)\s*)?(malloc|calloc|realloc|strdup|strndup)\s*\(")
CITE = re.compile(r"PROTOCOL\.md|STYLE\.md|[Ii]ssue [0-9]+")
LOOKAHEAD = 4


def strip_strings(line):
    return re.sub(r'"(?:\\.|[^"\\])*"', '""', line)


def checked(var, lines, i):
    v = re.escape(var)
    pat = re.compile(r"!\s*\(?\s*%s\b|\b%s\s*[!=]=\s*NULL|NULL\s*[!=]=\s*%s\b|if\s*\(\s*%s\s*\)|\b%s\s*\?|\b%s\s*&&|&&\s*%s\b|return\s+%s\s*;"
                     % ((v,) * 8))
    if re.search(r"\)\s*(!=|==)\s*NULL", lines[i]):
        return True
    for k in range(i, min(len(lines), i + 1 + LOOKAHEAD)):
        if pat.search(lines[k]):
            return True
    return False


def lint_file(path):
    problems = []
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.read().split("\n")
    in_comment = False
    for i, raw in enumerate(lines):
        if "lint: ok" in raw:
            continue
        if CITE.search(raw):
            problems.append((i + 1, "cites a document outside the repository (cite docs/API.md or docs/internals/)"))
        line = strip_strings(raw)
        # drop comments (good enough for this code base: no comment markers in strings after stripping)
        code = ""
        j = 0
        while j < len(line):
            if in_comment:
                e = line.find("*/", j)
                if e < 0:
                    j = len(line)
                else:
                    in_comment = False
                    j = e + 2
            else:
                s = line.find("/*", j)
                d = line.find("//", j)
                if d >= 0 and (s < 0 or d < s):
                    code += line[j:d]
                    break
                if s < 0:
                    code += line[j:]
                    break
                code += line[j:s]
                in_comment = True
                j = s + 2
        if BANNED.search(code):
            problems.append((i + 1, "banned call %s (see scripts/lint.py)" % BANNED.search(code).group(1)))
        m = ALLOC.search(code)
        if m:
            var = m.group(1)
            if not checked(var, lines, i):
                problems.append((i + 1, "%s of %s is not checked for NULL within %d lines" % (m.group(2), var, LOOKAHEAD)))
    return problems


def main():
    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    bad = 0
    for root in ROOTS:
        for dp, _, fns in os.walk(root):
            if "corpus" in dp or "node_modules" in dp:
                continue
            for fn in sorted(fns):
                if not fn.endswith((".c", ".h")):
                    continue
                p = os.path.join(dp, fn)
                for ln, msg in lint_file(p):
                    print("%s:%d: %s" % (p, ln, msg))
                    bad += 1
    if bad:
        print("lint: %d problem(s)" % bad)
        return 1
    print("lint: clean")
    return 0


if __name__ == "__main__":
    sys.exit(main())
