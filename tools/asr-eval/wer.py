#!/usr/bin/python3
"""Word error rate of hypotheses against references (standard library only).

    /usr/bin/python3 tools/asr-eval/wer.py REFERENCE HYPOTHESES [--json] [--align]

REFERENCE is a transcription in the format of pocketsphinx-testdata
(librivox/transcription, cards/cards.transcription): one utterance per line,
"text (fileid)", where the parenthesis may also carry a score,
"text (fileid -3466)". Lines "fileid<TAB>text" are accepted too.

HYPOTHESES is any of:
  - "fileid<TAB>text" lines (what ps_decode prints; lines starting with '#'
    are comments),
  - "text (fileid)" lines, like the reference (e.g. cards.hyp),
  - JSON: an object {"fileid": "text", ...}, a list of objects with "fileid"
    (or "id") and "text" (or "hypothesis"/"hyp"), or JSON lines of such objects.
"-" reads standard input.

Fileids are compared by basename without extension, so "cards/001.wav",
"001.wav" and "001" are the same utterance.

Normalisation, applied to both sides before alignment: lower case; fillers
removed (tokens of the form <...>, [...], ++...++, such as <s>, </s>, <sil>,
[NOISE], ++UH++); pronunciation variants "word(2)" become "word"; hyphens
become spaces; other punctuation is removed, except an apostrophe inside a
word ("don't" stays "don't").

WER = (S + D + I) / N, where N is the number of reference words and S, D, I
come from one minimum edit distance alignment (Levenshtein over words). When
several alignments have the same distance, the backtrace prefers a match or
substitution, then a deletion, then an insertion, so the split is
deterministic. A reference with no hypothesis counts as all deletions and is
listed as missing; a hypothesis with no reference is ignored with a warning.

Exit status: 0, or 2 on unreadable input.
"""

import argparse
import json
import os
import re
import sys

_FILLER = re.compile(r"^(<[^<>]*>|\[[^\[\]]*\]|\+\+.*\+\+)$")
_VARIANT = re.compile(r"^(.+?)\(\d+\)$")
_REF_LINE = re.compile(r"^(.*?)\s*\(\s*(\S+?)(?:\s+-?[0-9.]+)?\s*\)\s*$")


def normalise(text):
    """The list of words of text after the normalisation described above."""
    words = []
    for tok in text.split():
        if _FILLER.match(tok):
            continue
        m = _VARIANT.match(tok)
        if m:
            tok = m.group(1)
        tok = tok.lower().replace("-", " ")
        for part in tok.split():
            part = "".join(c for c in part if c.isalnum() or c == "'")
            part = part.strip("'")
            if part:
                words.append(part)
    return words


def align(ref, hyp):
    """Minimum edit distance alignment of two word lists.

    Returns (S, D, I, ops) where ops is a list of (op, ref_word, hyp_word)
    with op one of '=', 'S', 'D', 'I' (None for the missing side)."""
    n, m = len(ref), len(hyp)
    # d[i][j]: distance between ref[:i] and hyp[:j]
    d = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        d[i][0] = i
    for j in range(1, m + 1):
        d[0][j] = j
    for i in range(1, n + 1):
        ri = ref[i - 1]
        row, prev = d[i], d[i - 1]
        for j in range(1, m + 1):
            sub = prev[j - 1] + (0 if ri == hyp[j - 1] else 1)
            row[j] = min(sub, prev[j] + 1, row[j - 1] + 1)
    ops = []
    s = dl = ins = 0
    i, j = n, m
    while i > 0 or j > 0:
        if i > 0 and j > 0:
            same = ref[i - 1] == hyp[j - 1]
            if d[i][j] == d[i - 1][j - 1] + (0 if same else 1):
                ops.append(("=" if same else "S", ref[i - 1], hyp[j - 1]))
                s += 0 if same else 1
                i, j = i - 1, j - 1
                continue
        if i > 0 and d[i][j] == d[i - 1][j] + 1:
            ops.append(("D", ref[i - 1], None))
            dl += 1
            i -= 1
            continue
        ops.append(("I", None, hyp[j - 1]))
        ins += 1
        j -= 1
    ops.reverse()
    return s, dl, ins, ops


def utt_id(fileid):
    """The key two fileids are matched by: basename without extension."""
    base = os.path.basename(fileid)
    root, ext = os.path.splitext(base)
    return root if ext else base


def parse_transcription(lines):
    """{id: text} from "text (fileid)" or "fileid<TAB>text" lines."""
    out = {}
    for raw in lines:
        line = raw.rstrip("\n")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if "\t" in line:
            fid, _, text = line.partition("\t")
            out[utt_id(fid.strip())] = text.strip()
            continue
        m = _REF_LINE.match(line)
        if not m:
            raise ValueError("cannot parse line: %r" % line)
        out[utt_id(m.group(2))] = m.group(1)
    return out


def _from_json_obj(obj, out):
    if isinstance(obj, dict) and ("fileid" in obj or "id" in obj):
        fid = obj.get("fileid", obj.get("id"))
        text = obj.get("text", obj.get("hypothesis", obj.get("hyp", "")))
        out[utt_id(str(fid))] = text or ""
    elif isinstance(obj, dict):
        for fid, text in obj.items():
            out[utt_id(str(fid))] = text or ""
    elif isinstance(obj, list):
        for item in obj:
            _from_json_obj(item, out)
    else:
        raise ValueError("unexpected JSON value: %r" % (obj,))


def parse_hypotheses(text):
    """{id: text} from any of the hypothesis formats (see module doc)."""
    stripped = text.lstrip()
    out = {}
    if stripped.startswith("{") or stripped.startswith("["):
        try:
            _from_json_obj(json.loads(text), out)
            return out
        except json.JSONDecodeError:
            # JSON lines: one object per line.
            for line in text.splitlines():
                if line.strip():
                    _from_json_obj(json.loads(line), out)
            return out
    return parse_transcription(text.splitlines())


def score(refs, hyps):
    """Per-utterance and total counts. refs, hyps: {id: text}.

    Returns a dict with "files" (list, in reference order) and "total"."""
    files = []
    tot = {"ref_words": 0, "sub": 0, "del": 0, "ins": 0}
    for fid, rtext in refs.items():
        ref = normalise(rtext)
        missing = fid not in hyps
        hyp = [] if missing else normalise(hyps[fid])
        s, dl, ins, ops = align(ref, hyp)
        entry = {"fileid": fid, "ref_words": len(ref), "sub": s, "del": dl,
                 "ins": ins, "wer": _wer(s, dl, ins, len(ref)),
                 "ref": " ".join(ref), "hyp": " ".join(hyp),
                 "missing": missing, "ops": ops}
        files.append(entry)
        tot["ref_words"] += len(ref)
        tot["sub"] += s
        tot["del"] += dl
        tot["ins"] += ins
    tot["wer"] = _wer(tot["sub"], tot["del"], tot["ins"], tot["ref_words"])
    tot["files"] = len(files)
    tot["missing"] = sum(1 for f in files if f["missing"])
    return {"files": files, "total": tot,
            "unmatched_hypotheses": sorted(set(hyps) - set(refs))}


def _wer(s, d, i, n):
    if n == 0:
        return 0.0 if s + d + i == 0 else float("inf")
    return (s + d + i) / n


def _pct(x):
    return "inf" if x == float("inf") else "%.1f%%" % (100.0 * x)


def _read(path):
    if path == "-":
        return sys.stdin.read()
    with open(path, encoding="utf-8") as f:
        return f.read()


def main(argv=None):
    ap = argparse.ArgumentParser(description="word error rate")
    ap.add_argument("reference")
    ap.add_argument("hypotheses")
    ap.add_argument("--json", action="store_true", help="print JSON")
    ap.add_argument("--align", action="store_true",
                    help="print the word alignment of each utterance")
    a = ap.parse_args(argv)
    try:
        refs = parse_transcription(_read(a.reference).splitlines())
        hyps = parse_hypotheses(_read(a.hypotheses))
    except (OSError, ValueError) as e:
        print("wer.py: %s" % e, file=sys.stderr)
        return 2
    res = score(refs, hyps)
    for fid in res["unmatched_hypotheses"]:
        print("wer.py: hypothesis %s has no reference, ignored" % fid,
              file=sys.stderr)
    if a.json:
        for f in res["files"]:
            if a.align:
                f["ops"] = [list(op) for op in f["ops"]]
            else:
                del f["ops"]
        json.dump(res, sys.stdout, indent=1)
        print()
        return 0
    print("%-44s %5s %4s %4s %4s %7s" % ("fileid", "words", "sub", "del",
                                         "ins", "WER"))
    for f in res["files"]:
        print("%-44s %5d %4d %4d %4d %7s%s" % (
            f["fileid"], f["ref_words"], f["sub"], f["del"], f["ins"],
            _pct(f["wer"]), "  (missing)" if f["missing"] else ""))
        if a.align:
            print("    REF: " + " ".join(r.upper() if op != "=" else r
                                      for op, r, h in f["ops"] if r))
            print("    HYP: " + " ".join(h.upper() if op != "=" else h
                                      for op, r, h in f["ops"] if h))
    t = res["total"]
    print("%-44s %5d %4d %4d %4d %7s" % (
        "TOTAL (%d files)" % t["files"], t["ref_words"], t["sub"], t["del"],
        t["ins"], _pct(t["wer"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
