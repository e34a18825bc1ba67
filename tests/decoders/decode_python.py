"""The differential test's Python decoders (tests/decoders/).

- ``python``: ``urllib.parse.parse_qsl(text, keep_blank_values=True,
  encoding=<charset>, errors="replace")`` on the bytes read as Latin-1 (each
  byte one character, so percent-escapes are decoded with the charset);
- ``python-semicolon``: the same, split on ``;`` as well as ``&`` (Python
  before 3.9.2 and Ruby's Rack 2 do; today's ``separator=";"`` splits on ``;``
  only, and the names it reads are a subset of these);
- ``django``: Django's ``QueryDict``: the bytes decoded with the charset
  (Latin-1 when they are not valid in it), then ``parse_qsl`` with it.

``<charset>`` is each charset the case's Content-Type declares (servers
differ in which ``charset=`` they take), UTF-8 when none; one Python does not
know is read as UTF-8 (Django ignores it).

In:  one case per line, ``{"id": n, "charsets": [...], "data": "<base64>", ...}``.
Out: one line per case, ``{"id": n, "r": {"python:<charset>": [[name, value], ...], ...}}``.
"""

import base64
import codecs
import json
import sys
from urllib.parse import parse_qsl


def known(label):
    try:
        codecs.lookup(label)
        return label
    except LookupError:
        return "utf-8"


def readings(data, labels):
    out = {}
    latin1 = data.decode("latin-1")
    for label in labels or ["utf-8"]:
        enc = known(label)
        out[f"python:{label}"] = parse_qsl(latin1, keep_blank_values=True, encoding=enc, errors="replace")
        out[f"python-semicolon:{label}"] = [
            pair
            for piece in latin1.split("&")
            for pair in parse_qsl(piece, keep_blank_values=True, encoding=enc, errors="replace", separator=";")
        ]
        try:
            text = data.decode(enc)
        except UnicodeDecodeError:
            text = latin1
        out[f"django:{label}"] = parse_qsl(text, keep_blank_values=True, encoding=enc, errors="replace")
    return out


def main():
    write = sys.stdout.write
    for line in sys.stdin:
        if not line.strip():
            continue
        case = json.loads(line)
        data = base64.b64decode(case["data"])
        write(json.dumps({"id": case["id"], "r": readings(data, case.get("charsets") or [])}) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
