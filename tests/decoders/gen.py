"""Generated query strings and form bodies for the differential test (tests/decoders/).

Deterministic: ``cases(seed, count)`` yields the same cases for the same seed,
whatever size the chunks they are read in. Each case is a dict:

- ``id``: its number (0, 1, ...);
- ``where``: ``"query"`` (what follows ``?`` on a request line: printable
  ASCII without ``#``) or ``"form"`` (an ``application/x-www-form-urlencoded`` body: any bytes);
- ``content_type``: the Content-Type sent with it, or None;
- ``charsets``: every ``charset=`` label the Content-Type carries (what
  servers may pick from), in order;
- ``family``: what those labels are: ``none``, ``utf-8``, ``us-ascii``,
  ``latin-1`` (ISO-8859-1, windows-1252) or ``other`` (any other label among them);
- ``bom``: True when the body starts with a byte-order mark;
- ``data``: the bytes;
- ``tags``: the mutations used (for grouping failures).

Names come from a base set (token parameters and benign ones) and are mutated
as server stacks read names differently: case, percent-encoding (upper and
lower hex, twice, IIS ``%uXXXX``), leading and trailing whitespace, ``.``,
space, ``+``, ``-`` or an unclosed ``[`` for ``_``, brackets, a leading ``.``
(``qs`` with ``allowDots``), a leading ``?`` (``URLSearchParams`` drops one), NUL, ISO-2022 escapes and shift codes, a UTF-8
byte-order mark, the non-ASCII letters that fold to ASCII, UTF-16 code units,
UTF-7, overlong UTF-8, invalid escapes and raw non-ASCII bytes. Values are
token-like, sometimes with ``;``, spaces, escapes or non-ASCII. Separators
are ``&``, ``;``, ``&&``, a leading or trailing ``&``; names repeat. Bodies
in UTF-16, IBM037, Shift_JIS or UTF-7 are encoded in it, whole or name by
name, sometimes after a byte-order mark.
"""

import base64
import random
import re
import string

TOKEN_NAMES = ["access_token", "refresh_token", "token", "client_id", "grant_type", "code", "client_secret"]
BENIGN_NAMES = [
    "a",
    "scope",
    "item",
    "q",
    "state",
    "redirect_uri",
    "token_type_hint",
    "my_access_token",
    "tokens",
    "access",
    "refresh",
    "id_token",
    "x_token",
    "access_tokens",
    "page",
    "nonce",
    "code_verifier",
    "client",
]

FORM = "application/x-www-form-urlencoded"

# label -> (family, Python codec used to encode a body in it, or None when
# the body stays ASCII bytes, byte-order marks it may start with)
CHARSETS = {
    "utf-8": ("utf-8", None, [b"\xef\xbb\xbf"]),
    "utf8": ("utf-8", None, [b"\xef\xbb\xbf"]),
    "us-ascii": ("us-ascii", None, []),
    "ascii": ("us-ascii", None, []),
    "iso-8859-1": ("latin-1", None, []),
    "windows-1252": ("latin-1", None, []),
    "latin1": ("latin-1", None, []),
    "iso_8859-1": ("latin-1", None, []),
    "cp1252": ("latin-1", None, []),
    "iso-8859-15": ("iso-8859-n/windows-125x", None, []),
    "windows-1250": ("iso-8859-n/windows-125x", None, []),
    "utf-16": ("other", "utf-16-le", [b"\xff\xfe", b"\xfe\xff"]),
    "utf-16le": ("other", "utf-16-le", [b"\xff\xfe"]),
    "utf-16be": ("other", "utf-16-be", [b"\xfe\xff"]),
    "unicode": ("other", "utf-16-be", [b"\xfe\xff", b"\xff\xfe"]),
    "x-utf-16le-bom": ("other", "utf-16-le", [b"\xff\xfe"]),
    "utf-32": ("other", "utf-32-be", [b"\x00\x00\xfe\xff"]),
    "utf-32le": ("other", "utf-32-le", [b"\xff\xfe\x00\x00"]),
    "iso-2022-jp": ("other", "iso-2022-jp", []),
    "iso-2022-kr": ("other", "iso2022_kr", []),
    "hz-gb-2312": ("other", "hz", []),
    "ibm037": ("other", "cp037", []),
    "cp500": ("other", "cp500", []),
    "shift_jis": ("other", "shift_jis", []),
    "utf-7": ("other", "utf-7", [b"+/v8-"]),
}
CHARSET_WEIGHTS = [
    (None, 24),
    ("utf-8", 22),
    ("utf8", 2),
    ("us-ascii", 5),
    ("ascii", 1),
    ("iso-8859-1", 7),
    ("windows-1252", 5),
    ("latin1", 1),
    ("iso_8859-1", 1),
    ("cp1252", 1),
    ("iso-8859-15", 1),
    ("windows-1250", 1),
    ("utf-16", 5),
    ("utf-16le", 3),
    ("utf-16be", 3),
    ("unicode", 1),
    ("x-utf-16le-bom", 1),
    ("utf-32", 1),
    ("utf-32le", 1),
    ("iso-2022-jp", 5),
    ("iso-2022-kr", 1),
    ("hz-gb-2312", 1),
    ("ibm037", 4),
    ("cp500", 1),
    ("shift_jis", 4),
    ("utf-7", 4),
]

BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff", b"+/v8-")

B64URL = string.ascii_letters + string.digits + "-_"

# Characters that decoders read as ASCII letters once case is folded.
FOLDS = {"k": ["\u212a"], "s": ["\u017f"], "i": ["\u0131", "\u0130"]}
ISO2022 = [b"\x1b(B", b"\x1b$(D", b"\x0e\x0f", b"\x1b$B", b"\x1b(J", b"\x1b$)C\x0f", b"~{~}"]
INVALID_ESCAPES = [b"%zz", b"%", b"%4", b"%G0", b"%u00", b"%%"]
RAW_NON_ASCII = [b"\xe9", b"\xff", b"\xc3\xa9", b"\xa0", b"\xc2\xa0", b"\x80", b"\xef\xbc\xbf"]
TRAILING = [b" ", b"\t", b"\r\n", b"\x0b", b"\x0c", b"\x00", b".", b"_", b"\xc2\xa0"]


def _weighted(rng, pairs):
    total = sum(w for _, w in pairs)
    x = rng.random() * total
    for item, w in pairs:
        x -= w
        if x < 0:
            return item
    return pairs[-1][0]


# A name is built as a list of units: (bytes, encodable), where an encodable
# unit may be percent-encoded when rendered and a literal one (an escape the
# mutation wrote itself) is rendered as it is.


def _units(text):
    return [(c.encode("utf-8"), True) for c in text]


def _utf7_run(text):
    """UTF-7's base64 form of `text`, even for characters UTF-7 may send as they are."""
    return b"+" + base64.b64encode(text.encode("utf-16-be")).rstrip(b"=") + b"-"


def _mutate_name(rng, base, where, tags, codec=None):
    units = _units(base)
    n = _weighted(rng, [(0, 22), (1, 40), (2, 26), (3, 12)])
    kinds = [
        "case",
        "underscore",
        "leading",
        "trailing",
        "nul",
        "iso2022",
        "bom",
        "fold",
        "brackets",
        "dots",
        "utf16",
        "utf7",
        "overlong",
        "non_ascii",
    ]
    if codec is not None:
        kinds += ["in_charset", "in_charset"]
    for _ in range(n):
        kind = rng.choice(kinds)
        tags.add(kind)
        if kind == "case":
            how = rng.randrange(3)
            if how == 0:  # ACCESS_TOKEN
                units = [(u.upper(), e) for u, e in units]
            elif how == 1:  # Access_token
                units = [(u.title(), e) if i == 0 else (u, e) for i, (u, e) in enumerate(units)]
            else:  # aCcEsS_tOkEn
                units = [(u.upper() if rng.random() < 0.5 else u, e) for u, e in units]
        elif kind == "underscore":
            repl = rng.choice([b".", b" ", b"+", b"-", b"[", b"]", b"%2E", b"%20", b"%5B", b""])
            literal = repl.startswith(b"%") or repl == b"+"
            idx = [i for i, (u, _) in enumerate(units) if u == b"_"]
            if idx:
                i = rng.choice(idx)
                units[i : i + 1] = [(repl, not literal)] if repl else []
            else:
                i = rng.randrange(len(units) + 1)
                units[i:i] = [(repl, not literal)] if repl else []
        elif kind == "leading":
            lead = rng.choice([b" ", b"+", b"%20", b".", b"\t", b"[", b"]", b"_", b"  ", b"%2E", b"\x00", b"?"])
            units[0:0] = [(lead, not (lead.startswith(b"%") or lead == b"+"))]
        elif kind == "trailing":
            units.append((rng.choice(TRAILING), True))
        elif kind == "nul":
            at = rng.choice(["end", "inside", "end_junk"])
            if at == "inside":
                units.insert(rng.randrange(1, len(units) + 1), (b"\x00", True))
            else:
                units.append((b"\x00", True))
                if at == "end_junk":
                    units.extend(_units(rng.choice(["x", "zz", "_x", "[]"])))
        elif kind == "iso2022":
            units.insert(rng.randrange(len(units) + 1), (rng.choice(ISO2022), True))
        elif kind == "bom":
            units.insert(0 if rng.random() < 0.5 else rng.randrange(len(units) + 1), (b"\xef\xbb\xbf", True))
        elif kind == "fold":
            idx = [i for i, (u, _) in enumerate(units) if u.lower() in (b"k", b"s", b"i")]
            for i in idx:
                if rng.random() < 0.7:
                    units[i] = (rng.choice(FOLDS[units[i][0].lower().decode()]).encode("utf-8"), True)
        elif kind == "brackets":
            how = rng.randrange(10)
            if how == 8:
                units = _units(rng.choice(["[]", "[x]", "[[", "[ ]", "[0]"])) + units
            elif how == 9:
                units = _units("[[") + units + _units("]]")
            elif how == 0:
                units += [(b"[", True), (b"]", True)]
            elif how == 1:
                units += _units(rng.choice(["[0]", "[x]", "[]]", "[][]", "[a][b]", "[ ]"]))
            elif how == 2:
                units.append((b"[", True))
            elif how == 3:
                units = [(b"[", True)] + units + [(b"]", True)]
            elif how == 4:
                units = [(b"[", True)] + units
            elif how == 5:
                units = _units(rng.choice(["x", "a", "]"])) + [(b"[", True)] + units + [(b"]", True)]
            elif how == 6:
                units = [(b"]", True)] + units
            else:
                units += _units(rng.choice(["]", "[x", "]["]))
        elif kind == "dots":
            how = rng.randrange(5)
            if how == 0:
                units = [(b".", True)] + units
            elif how == 1:
                units += _units(rng.choice([".x", ".0", ".", "..x"]))
            elif how == 2:
                units = _units(rng.choice(["x.", "a.", "."])) + units
            elif how == 3:
                units = [(b"%2E", False)] + units
            else:
                units = [(b".", True), (b".", True)] + units
        elif kind == "utf16":
            le = rng.random() < 0.5
            units = [((u + b"\x00") if le else (b"\x00" + u), e) for u, e in units]
        elif kind == "utf7":
            idx = [i for i, (u, _) in enumerate(units) if u == b"_"]
            for i in idx:
                units[i] = (b"+AF8-", False)
            if not idx or rng.random() < 0.5:
                i = rng.randrange(len(units))
                if len(units[i][0]) == 1:
                    units[i] = (_utf7_run(units[i][0].decode("latin-1")), False)
        elif kind == "overlong":
            idx = [i for i, (u, _) in enumerate(units) if len(u) == 1 and u < b"\x80"]
            if idx:
                i = rng.choice(idx)
                c = units[i][0][0]
                units[i] = (bytes([0xC0 | (c >> 6), 0x80 | (c & 0x3F)]), True)
        elif kind == "in_charset":
            # The name written in the case's own charset (the body's, or the
            # query's when a server decodes it with the Content-Type's charset).
            text = b"".join(u for u, _ in units).decode("utf-8", errors="replace")
            if codec == "utf-7":
                start = rng.randrange(len(text))
                end = rng.randrange(start + 1, len(text) + 1)
                units = _units(text[:start]) + [(_utf7_run(text[start:end]), False)] + _units(text[end:])
            else:
                units = [(c.encode(codec, errors="replace"), True) for c in text]
        elif kind == "non_ascii":
            units.insert(rng.randrange(len(units) + 1), (rng.choice(RAW_NON_ASCII), True))
    return units


MUST_FORM = re.compile(rb"[&=%#]")
MUST_QUERY = re.compile(rb"[&=%#]|[^\x21-\x7e]")


def _render_units(rng, units, where, tags):
    """Bytes of a name: each encodable unit raw, %XX (upper or lower hex),
    %25XX (double), or IIS %uXXXX; '&', '=', '%', '#' and, in a query,
    what a request line cannot carry, always escaped."""
    p = rng.choice([0.0, 0.0, 0.0, 0.0, 0.1, 0.3, 0.3, 1.0])
    style = rng.choice(["upper", "lower", "mixed"])
    out = []
    for u, encodable in units:
        if not encodable:
            out.append(u)
            continue
        must = MUST_QUERY.search(u) if where == "query" else MUST_FORM.search(u)
        if u == b" " and not must and rng.random() < 0.4:
            out.append(b"+")
            continue
        if not must and (p == 0.0 or rng.random() >= p):
            out.append(u)
            continue
        how = rng.random()
        if how < 0.12 and len(u) == 1:
            tags.add("double_encoding")
            out.append(b"%25" + _hex(rng, u, style)[1:])
        elif how < 0.2:
            try:
                cp = ord(u.decode("utf-8"))
            except (UnicodeDecodeError, TypeError):
                cp = None
            if cp is not None and cp < 0x10000:
                tags.add("iis_u")
                out.append(b"%u" + (b"%04X" % cp if style != "lower" else b"%04x" % cp))
            else:
                out.append(_hex(rng, u, style))
        else:
            out.append(_hex(rng, u, style))
        if p > 0 and not must:
            tags.add("percent")
    name = b"".join(out)
    if rng.random() < 0.06:
        tags.add("invalid_escape")
        at = rng.randrange(len(name) + 1)
        name = name[:at] + rng.choice(INVALID_ESCAPES) + name[at:]
    return name


def _hex(rng, u, style):
    out = []
    for b in u:
        up = style == "upper" or (style == "mixed" and rng.random() < 0.5)
        out.append((b"%%%02X" if up else b"%%%02x") % b)
    return b"".join(out)


def _value(rng, where, tags):
    kind = rng.random()
    if kind < 0.4:
        v = "".join(rng.choices(B64URL, k=rng.randrange(6, 44)))
    elif kind < 0.6:
        seg = lambda n: "".join(rng.choices(B64URL, k=n))  # noqa: E731
        v = f"eyJ{seg(rng.randrange(4, 20))}.eyJ{seg(rng.randrange(4, 30))}.{seg(rng.randrange(0, 30))}"
    elif kind < 0.75:
        v = "rt-" + "".join(rng.choices("0123456789abcdef", k=rng.randrange(4, 33)))
    elif kind < 0.82:
        v = rng.choice(["refresh_token", "authorization_code", "client_credentials", "access_token", "x", "1"])
    elif kind < 0.88:
        v = ""
    else:
        v = rng.choice(["a b", "read write", "c-1", "https://client.example/cb", "x=y"])
    b = v.encode()
    if rng.random() < 0.25:
        tags.add("value_odd")
        how = rng.randrange(9)
        at = rng.randrange(len(b) + 1)
        piece = [b";", b"+", b"%20", b"%3B", b"%zz", b"%C3%A9", b"\xc3\xa9", b"%00", b"%2B"][how]
        if how == 1 and rng.random() < 0.5:
            b = rng.choice([piece + b, b + piece])
        else:
            b = b[:at] + piece + b[at:]
    elif rng.random() < 0.1:
        b = re.sub(rb"[A-Za-z]", lambda m: b"%%%02X" % m.group(0)[0], b, count=rng.randrange(1, 4))
    b = b.replace(b"&", b"%26").replace(b"#", b"%23")
    return b


def _charset_param(rng, label):
    if label is None:
        return ""
    spelled = rng.choice([label, label, label.upper(), label.title()])
    form = rng.randrange(10)
    if form < 5:
        return f"; charset={spelled}"
    if form == 5:
        return f";charset={spelled}"
    if form == 6:
        return f'; charset="{spelled}"'
    if form == 7:
        return f"; Charset={spelled}"
    if form == 8:
        return f"; charset=utf-8; charset={spelled}"
    return f"; charset={spelled}; charset=utf-8"


CHARSET_RE = re.compile(r"""charset\s*=\s*(?:"([^"]*)"|'([^']*)'|([^;,\s"']*))""", re.IGNORECASE)


def declared_charsets(content_type):
    """Every charset label the Content-Type carries, lowercase, unquoted."""
    if not content_type:
        return []
    return [(a or b or c).strip().lower() for a, b, c in CHARSET_RE.findall(content_type)]


def family(labels):
    if not labels:
        return "none"
    fams = [CHARSETS.get(lab, ("other",))[0] for lab in labels]
    if "other" in fams:
        return "other"
    return fams[0]


def _templates(rng):
    """A realistic starting point: a token or introspection request."""
    t = rng.randrange(4)
    if t == 0:
        return [("grant_type", b"refresh_token"), ("refresh_token", None), ("client_id", b"client-1")]
    if t == 1:
        return [("token", None), ("token_type_hint", b"access_token")]
    if t == 2:
        return [("grant_type", b"client_credentials"), ("scope", b"read")]
    return [("access_token", None)]


def _case(rng, i):
    where = "query" if rng.random() < 0.45 else "form"
    label = _weighted(rng, CHARSET_WEIGHTS)
    if where == "query" and rng.random() < 0.85:
        label = None  # most queries come without a Content-Type
    codec = CHARSETS[label][1] if label else None
    tags = set()
    pairs = []
    if rng.random() < 0.3:
        tags.add("template")
        plan = _templates(rng)
    else:
        plan = []
        for _ in range(_weighted(rng, [(1, 30), (2, 30), (3, 20), (4, 10), (5, 6), (6, 4)])):
            base = rng.choice(TOKEN_NAMES) if rng.random() < 0.55 else rng.choice(BENIGN_NAMES)
            plan.append((base, None))
    mutate_p = 0.35 if "template" in tags else 1.0
    for base, value in plan:
        if rng.random() < mutate_p:
            units = _mutate_name(rng, base, where, tags, codec)
        else:
            units = _units(base)
        name = _render_units(rng, units, where, tags)
        if value is None:
            value = _value(rng, where, tags)
        if rng.random() < 0.05:
            tags.add("no_equals")
            pairs.append(name)
        else:
            pairs.append(name + b"=" + value)
    if rng.random() < 0.15 and pairs:
        tags.add("repeat")
        pairs.insert(rng.randrange(len(pairs) + 1), rng.choice(pairs))
    if rng.random() < 0.1:
        tags.add("repeat")
        base = rng.choice(TOKEN_NAMES)
        units = _mutate_name(rng, base, where, tags, codec)
        pairs.insert(rng.randrange(len(pairs) + 1), _render_units(rng, units, where, tags) + b"=" + _value(rng, where, tags))
    data = b""
    for k, p in enumerate(pairs):
        if k:
            sep = _weighted(rng, [(b"&", 80), (b";", 10), (b"&&", 5), (b"&;", 2), (b";&", 3)])
            if sep != b"&":
                tags.add("separator")
            data += sep
        data += p
    if rng.random() < 0.05:
        tags.add("separator")
        data = b"&" + data
    if rng.random() < 0.04:
        data += b"&"

    if where == "query":
        content_type = None if label is None else FORM + _charset_param(rng, label)
        # What a request line can carry: printable ASCII, no '#'.
        data = re.sub(rb"[^\x21-\x22\x24-\x7e]", lambda m: b"%%%02X" % m.group(0)[0], data)
        bom = False
    else:
        content_type = FORM + _charset_param(rng, label)
        bom = False
        if label is not None:
            _, codec, boms = CHARSETS[label]
            if codec is not None:
                how = rng.random()
                if how < 0.55:
                    tags.add("body_encoded")
                    data = data.decode("latin-1").encode(codec, errors="replace")
                elif how < 0.8:
                    tags.add("parts_encoded")
                    data = re.sub(
                        rb"[^&=;]+",
                        lambda m: m.group(0).decode("latin-1").encode(codec, errors="replace"),
                        data,
                    )
            if boms and rng.random() < (0.3 if codec else 0.05):
                data = rng.choice(boms) + data
        elif rng.random() < 0.04:
            data = b"\xef\xbb\xbf" + data
        bom = any(data.startswith(m) for m in BOMS)
        if bom:
            tags.add("bom_body")
    charsets = declared_charsets(content_type)
    return {
        "id": i,
        "where": where,
        "content_type": content_type,
        "charsets": charsets,
        "family": family(charsets),
        "bom": bom,
        "data": data,
        "tags": sorted(tags),
    }


def cases(seed, count):
    """The first `count` cases of the run `seed`, one at a time."""
    rng = random.Random(seed)
    for i in range(count):
        yield _case(rng, i)
