"""certbound's parameter rule checked against the real decoders (issue 19, part 3).

`make decoders` installs and builds what this needs (npm qs from the lockfile,
the Java decoder, the oracle example) and runs it; `make fuzz` runs the same
comparison long (run.py). DIFF_SEED and DIFF_TEST_CASES change the seed and
the number of cases here.
"""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gen  # noqa: E402
import harness  # noqa: E402

SEED = int(os.environ.get("DIFF_SEED", "19"))
CASES = int(os.environ.get("DIFF_TEST_CASES", "4000"))


@pytest.fixture(scope="module", autouse=True)
def built():
    gone = harness.missing()
    if gone:
        pytest.fail("missing, run `make decoders`: " + "; ".join(gone))


def read(data, where="form", content_type=None):
    """Every decoder's readings of one case, and certbound's verdict."""
    case = {
        "id": 0,
        "where": where,
        "content_type": content_type,
        "charsets": gen.declared_charsets(content_type),
        "data": data,
    }
    verdicts, readings, _ = harness.Batch([case]).wait()
    return readings[0], verdicts[0]


def names(readings, reading):
    return [n for n, _ in readings[reading]]


def test_the_decoders_are_the_real_ones_and_read_as_documented():
    """What the comparison relies on, from the decoders themselves."""
    r, _ = read(b"access[token=1&+refresh_token=2&token%00x=3&a.b c=4&refresh[token[x=5&[client_id]=6")
    # PHP (php_register_variable_ex): an unclosed '[' is '_', leading spaces dropped, the name
    # cut at NUL, ' ' and '.' as '_'; after an unclosed '[' PHP 8.2 also turns '[' into '_';
    # a name starting with '[' is dropped.
    assert names(r, "php") == ["access_token", "refresh_token", "token", "a_b_c", "refresh_token_x"]
    # qs reads the name inside a leading bracket; URLSearchParams reads names as they are.
    assert "client_id" in names(r, "qs") and "[client_id]" in names(r, "urlsearchparams")
    # Tomcat decodes with the declared charset: a UTF-16 body, ISO-2022 escape sequences.
    r, _ = read("token=abc".encode("utf-16-le"), content_type=gen.FORM + "; charset=utf-16le")
    assert names(r, "java:utf-16le") == ["token"]
    r, _ = read(b"access_\x1b(Btoken=1", content_type=gen.FORM + "; charset=ISO-2022-JP")
    assert names(r, "java:iso-2022-jp") == ["access_token"]
    # Django decodes the body with its charset before splitting it.
    r, _ = read("token=abc".encode("cp037"), content_type=gen.FORM + "; charset=ibm037")
    assert r["django:ibm037"] == [["token", "abc"]]
    r, _ = read(b"access+AF8-token=1", content_type=gen.FORM + "; charset=utf-7")
    assert names(r, "django:utf-7") == ["access_token"]
    # Older Python and Rack split on ';' too; repeated names are kept.
    r, _ = read(b"a=1;token=2&token=3")
    assert r["python-semicolon:utf-8"] == [["a", "1"], ["token", "2"], ["token", "3"]]
    assert r["python:utf-8"] == [["a", "1;token=2"], ["token", "3"]]
    # qs with allowDots reads a leading '.' as a bracket: '.token' is 'token'.
    r, _ = read(b".token=1")
    assert names(r, "qs-dots") == ["token"] and names(r, "qs") == [".token"]
    # Arrays: the name is read, and so are their values.
    r, _ = read(b"access_token[]=x&access_token[]=y")
    assert ["access_token", "x,y"] in r["qs"] and ["access_token", "x"] in r["php"]


def test_the_oracle_refuses_what_the_decoders_read():
    _, v = read(b"a=1&access.token=x", where="query")
    assert v["resource"]["refused"]
    _, v = read(b"grant_type=refresh_token&refresh_token=rt-1", content_type=gen.FORM)
    assert v["token"] == {"refused": False, "value": "rt-1"}
    _, v = read(b"+refresh_token=rt-1", content_type=gen.FORM)
    assert v["token"]["refused"]
    _, v = read(b"token=x", content_type=gen.FORM + "; charset=utf-16")
    assert v["introspection"] == {"refused": True, "reason": "unsupported_charset"}


# Classes the generated run found (issue 19), each at its smallest: the
# decoder reads the token parameter (checked here, so a change of decoder
# shows), and certbound must refuse it.
U7 = gen.FORM + "; charset=utf-7"
FOUND = [
    # qs with allowDots reads a leading '.' (raw or %2E) as a bracket: '.name' is 'name'.
    ("query", None, b".access_token=x", "resource", "qs-dots", "access_token"),
    ("query", None, b"%2Eaccess_token=x", "resource", "qs-dots", "access_token"),
    ("form", gen.FORM, b".access_token=x", "resource", "qs-dots", "access_token"),
    ("form", gen.FORM, b".refresh_token=rt-1", "token", "qs-dots", "refresh_token"),
    ("form", gen.FORM, b".token=x", "introspection", "qs-dots", "token"),
    ("form", gen.FORM, b".token]=x", "introspection", "qs-dots", "token"),
    ("query", None, b".client_id=x", "endpoint_query", "qs-dots", "client_id"),
    # URLSearchParams drops one leading '?' of its input (so does fetch's Request.formData()):
    # a request-target '/api/x??access_token=x', or a body starting with '?'.
    ("query", None, b"?access_token=x", "resource", "urlsearchparams", "access_token"),
    ("query", None, b"?client_id=x", "endpoint_query", "urlsearchparams", "client_id"),
    ("form", gen.FORM, b"?refresh_token=rt-1", "token", "urlsearchparams", "refresh_token"),
    ("form", gen.FORM, b"?token=x", "introspection", "urlsearchparams", "token"),
    # The endpoint's query read with the charset of the request's Content-Type (Django
    # decodes the query with it; Tomcat with useBodyEncodingForURI; parse_qsl's encoding).
    ("query", U7, b"to+AGs-en=x", "endpoint_query", "django:utf-7", "token"),
    ("query", U7, b"grant+AF8-type=refresh_token", "endpoint_query", "django:utf-7", "grant_type"),
    ("query", gen.FORM + "; charset=hz-gb-2312", b"~{~}token=x", "endpoint_query", "django:hz-gb-2312", "token"),
    ("query", gen.FORM + "; charset=hz-gb-2312", b"~{~}tok%65n=x", "endpoint_query", "python:hz-gb-2312", "token"),
    ("query", gen.FORM + "; charset=ibm037", b"%A3%96%92%85%95=x", "endpoint_query", "java-body-enc:ibm037", "token"),
    (
        "query",
        gen.FORM + "; charset=utf-16",
        b"%FF%FE%74%00%6F%00%6B%00%65%00%6E%00=x",
        "endpoint_query",
        "java-body-enc:utf-16",
        "token",
    ),
]


@pytest.fixture(scope="module")
def found():
    """Every FOUND case through the decoders and the oracle, in one batch."""
    cases = [
        {"id": i, "where": w, "content_type": ct, "charsets": gen.declared_charsets(ct), "data": d}
        for i, (w, ct, d, *_) in enumerate(FOUND)
    ]
    return harness.Batch(cases).wait()


@pytest.mark.parametrize("i", range(len(FOUND)), ids=[f"{f[4]}-{f[2].decode()}" for f in FOUND])
def test_what_the_decoders_read_in_the_classes_found_is_refused(found, i):
    where, content_type, data, context, reading, name = FOUND[i]
    verdicts, readings, _ = found
    assert name in names(readings[i], reading), readings[i]
    verdict = verdicts[i][context]
    assert verdict["refused"], f"{reading} reads {name} in {where} {data!r} ({content_type}); certbound: {verdict}"


def test_generation_is_deterministic():
    a = list(gen.cases(SEED, 300))
    b = list(gen.cases(SEED, 300))
    assert a == b
    assert [c["data"] for c in gen.cases(SEED + 1, 50)] != [c["data"] for c in a[:50]]
    for c in a:
        if c["where"] == "query":
            assert all(0x21 <= x <= 0x7E and x != 0x23 for x in c["data"]), c


def test_no_decoder_reads_a_token_parameter_certbound_lets_through(capsys):
    summary = harness.run(gen.cases(SEED, CASES), chunk=CASES)
    report = summary.report()
    (harness.OUT_DIR / "differential-summary.txt").write_text(f"seed {SEED}\n{report}\n")
    with capsys.disabled():
        print(f"\ndifferential test, seed {SEED}\n{report}")
    assert summary.cases["query"] > CASES // 4 and summary.cases["form"] > CASES // 4
    # The generator reaches every context's token parameters, through every kind of decoder.
    for ctx in ("resource", "endpoint_query", "token", "introspection"):
        assert summary.carrying[ctx] > 0, ctx
    assert summary.failed_cases == 0, (
        f"{summary.failed_cases} cases are read by a decoder as carrying a token parameter "
        f"certbound does not refuse; they are in {harness.FAILURES}\n" + "\n".join(summary.failure_lines())
    )
