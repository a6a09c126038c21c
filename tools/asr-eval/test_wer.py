"""Tests of wer.py: pytest-3 tools/asr-eval/test_wer.py (Debian's python3-pytest)."""
import functools
import json
import os
import random
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wer  # noqa: E402

TESTDATA = "/usr/share/pocketsphinx/test/data"


def counts(ref, hyp):
    s, d, i, _ = wer.align(ref.split(), hyp.split())
    return s, d, i


@pytest.mark.parametrize("ref,hyp,expect", [
    ("a b c", "a b c", (0, 0, 0)),
    ("a b c", "a x c", (1, 0, 0)),
    ("a b c d", "a c d", (0, 1, 0)),
    ("a b", "a b c", (0, 0, 1)),
    ("a b c", "", (0, 3, 0)),
    ("", "a b", (0, 0, 2)),
    # a shift: one deletion and one insertion, not five substitutions
    ("a b c d e", "b c d e f", (0, 1, 1)),
    # kitten -> sitting over letters-as-words: 2 substitutions, 1 insertion
    ("k i t t e n", "s i t t i n g", (2, 0, 1)),
    # swapped words cost 2
    ("a b", "b a", (2, 0, 0)),
    # repeated words: only the extra copy is an insertion
    ("go forward ten meters", "go go forward ten meters", (0, 0, 1)),
    # librivox 0880 against pocketsphinx's own test-lm.match
    ("he was not an ill disposed young man",
     "he was not an illness those young man", (2, 0, 0)),
])
def test_wer_align_known_counts(ref, hyp, expect):
    assert counts(ref, hyp) == expect


@functools.lru_cache(maxsize=None)
def _dist(ref, hyp):
    """Plain recursive edit distance, independent of wer.align's table."""
    if not ref:
        return len(hyp)
    if not hyp:
        return len(ref)
    return min(_dist(ref[1:], hyp[1:]) + (ref[0] != hyp[0]),
               _dist(ref[1:], hyp) + 1, _dist(ref, hyp[1:]) + 1)


def test_wer_align_random_against_recursive_distance():
    rnd = random.Random(7)
    for _ in range(300):
        ref = tuple(rnd.choice("abcd") for _ in range(rnd.randint(0, 7)))
        hyp = tuple(rnd.choice("abcd") for _ in range(rnd.randint(0, 7)))
        s, d, i, ops = wer.align(list(ref), list(hyp))
        assert s + d + i == _dist(ref, hyp)
        # the alignment accounts for every word on both sides
        assert len(ref) - d + i == len(hyp)
        assert [r for _, r, _ in ops if r is not None] == list(ref)
        assert [h for _, _, h in ops if h is not None] == list(hyp)


@pytest.mark.parametrize("text,words", [
    ("<s> Hello, World! [NOISE] </s>", ["hello", "world"]),
    ("<sil> go forward(2) ten meters <sil>", ["go", "forward", "ten", "meters"]),
    ("++UH++ cold-hearted and rather selfish.", ["cold", "hearted", "and",
                                                 "rather", "selfish"]),
    ("Don't 'quote' me", ["don't", "quote", "me"]),
    ("[SPEECH] <sil>  ", []),
])
def test_wer_normalise(text, words):
    assert wer.normalise(text) == words


def test_wer_parse_transcription_formats():
    refs = wer.parse_transcription([
        "<s> ten of clubs  </s> (001)",
        "four queen of clubs (002 -3714)",
        "cards/003.wav\tseven of clubs",
        "",
        "# comment",
    ])
    assert refs == {"001": "<s> ten of clubs  </s>",
                    "002": "four queen of clubs",
                    "003": "seven of clubs"}
    with pytest.raises(ValueError):
        wer.parse_transcription(["no fileid here"])


@pytest.mark.parametrize("text", [
    '{"001": "ten of clubs", "002": ""}',
    '[{"fileid": "001.wav", "text": "ten of clubs"}, {"id": "002", "hyp": ""}]',
    '{"fileid": "001", "hypothesis": "ten of clubs"}\n{"fileid": "002", "text": ""}\n',
    "001\tten of clubs\n002\t\n",
])
def test_wer_parse_hypotheses_formats(text):
    assert wer.parse_hypotheses(text) == {"001": "ten of clubs", "002": ""}


def test_wer_score_totals_and_missing():
    refs = {"a": "<s> one two three four </s>", "b": "five six"}
    hyps = {"a": "one too three four four", "x": "stray"}
    res = wer.score(refs, hyps)
    fa, fb = res["files"]
    assert (fa["sub"], fa["del"], fa["ins"], fa["ref_words"]) == (1, 0, 1, 4)
    assert fb["missing"] and (fb["del"], fb["ref_words"]) == (2, 2)
    t = res["total"]
    assert (t["sub"], t["del"], t["ins"], t["ref_words"]) == (1, 2, 1, 6)
    assert t["wer"] == pytest.approx(4 / 6)
    assert res["unmatched_hypotheses"] == ["x"]


def test_wer_main_json(tmp_path, capsys):
    ref = tmp_path / "ref"
    hyp = tmp_path / "hyp"
    ref.write_text("<s> he was not an ill disposed young man </s> (0880)\n")
    hyp.write_text("0880.wav\the was not an illness those young man\n")
    assert wer.main([str(ref), str(hyp), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["total"]["sub"] == 2 and out["total"]["ref_words"] == 8
    assert out["total"]["wer"] == pytest.approx(0.25)


@pytest.mark.skipif(not os.path.isdir(TESTDATA + "/librivox"),
                    reason="pocketsphinx-testdata not installed")
def test_wer_librivox_reference_match():
    """pocketsphinx's own expected output (test-lm.match) against the
    transcription, counted by hand from the two files: 20 errors in 71 words."""
    refs = wer.parse_transcription(open(TESTDATA + "/librivox/transcription"))
    hyps = wer.parse_hypotheses(open(TESTDATA + "/librivox/test-lm.match").read())
    res = wer.score(refs, hyps)
    per = {f["fileid"][-4:]: (f["sub"], f["del"], f["ins"], f["ref_words"])
           for f in res["files"]}
    # and->but mister->mr dashwood had then->guess would have [been at]
    # prudently->prickly, them deleted
    assert per["0870"] == (6, 1, 2, 22)
    # ill->illness, disposed->those
    assert per["0880"] == (2, 0, 0, 8)
    # unless->homeless, ill->oldest, disposed->those
    assert per["0890"] == (3, 0, 0, 14)
    # "a more a amiable" loses one "a"; "than he was" -> "many watts"
    assert per["0920"] == (2, 2, 0, 19)
    # made [the] amiable, himself->itself
    assert per["0930"] == (1, 0, 1, 8)
    t = res["total"]
    assert (t["sub"] + t["del"] + t["ins"], t["ref_words"]) == (20, 71)
