"""The README's pictures (its "Pictures" section, Mermaid diagrams) name only what exists.

Every endpoint, header, config field, error code, counter and file a diagram names is
checked against the truth, read from the source each run:

- config fields (`clients[].upstream.client_secret`) segment by segment against the
  JSON keys the parser accepts: the fields of the serde `Raw*` structs with
  `deny_unknown_fields` in `crates/certbound-core/src/config/*.rs` (and the registration
  metadata `clients[]` accepts and ignores), each segment in the struct its parent
  deserializes into, `[]` exactly on arrays;
- endpoints against the config's defaults (`token_path`, `introspection_path`,
  `discovery.paths`) and the demo's routes (`tests/templates/certbound.envoy.yaml.tmpl`);
- headers against the string literals of the Rust code, the shipped Envoy configs and
  the README's tables (outside this section);
- error codes against the `error` of the code's OAuth and RFC 6750 errors, counters
  against `counter.rs` (`certbound.<name>`) and `error.rs` (`certbound.refused.<reason>`);
- files and folders against the work tree.

Mermaid itself is checked for its structure (no Mermaid parser is needed): a sequence
diagram declares its participants before using them, its arrows are Mermaid's, its
blocks close, and no raw `#` or `;` cuts a message short (write `#35;`); a flowchart's
edges join labelled nodes with Mermaid's links. The checks run on synthetic diagrams
too, to show that each kind of mistake is caught.

Nothing here depends on the artifact: it runs once, in the .wasm pass.
"""

from __future__ import annotations

import functools
import html
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

import harness

ROOT: Path = harness.ROOT
README = ROOT / "README.md"
CORE = ROOT / "crates/certbound-core/src"
CONFIG_DIR = CORE / "config"
DEMO_TEMPLATE = ROOT / "tests/templates/certbound.envoy.yaml.tmpl"
SECTION = "## Pictures"

checked_once = harness.wasm_only("the README's pictures are checked once, in the .wasm pass")
pytestmark = checked_once

# Which struct a nested object of the configuration is deserialized into: (parent struct,
# field) -> child struct. Checked against the source below: every Raw struct is reachable
# from RawConfig, every object-valued field of a Raw struct is listed here or in OPAQUE.
NESTED = {
    ("RawConfig", "binding"): "RawBinding",
    ("RawConfig", "clients"): "RawClient",
    ("RawConfig", "protected_routes"): "RawRoute",
    ("RawConfig", "jwt_claims"): "RawJwtClaims",
    ("RawConfig", "certificate_sources"): "RawSources",
    ("RawConfig", "store"): "RawStore",
    ("RawConfig", "discovery"): "RawDiscovery",
    ("RawConfig", "introspection"): "RawIntrospection",
    ("RawConfig", "jwks_fetch"): "RawJwksFetch",
    ("RawClient", "upstream"): "RawUpstream",
    ("RawSources", "headers"): "RawHeaderSource",
    ("RawSources", "forward"): "RawForward",
    ("RawHeaderSource", "trust"): "RawTrust",
    ("RawStore", "etcd"): "RawEtcd",
}
# Object-valued fields certbound does not read member by member (a JWK Set).
OPAQUE = {("RawClient", "jwks")}
# Dashed words a diagram may use that are not header names: each must also appear in the
# README's own text outside the Pictures section.
PROSE = {"put-if-absent"}
# OAuth error codes look like this; any such word must be one the code answers with.
ERROR_CODE_SHAPE = re.compile(
    r"invalid_\w+|temporarily_unavailable|server_error|unauthorized_client|unsupported_\w+|access_denied|insufficient_scope"
)
# Mermaid keywords its sequence lexer reads before a participant id (case-insensitively,
# as a prefix): an id starting with one is cut in two.
SEQUENCE_KEYWORDS = (
    "participant actor create destroy box loop rect opt alt else par par_over and critical option break end "
    "left of right of links link properties details over note activate deactivate title accTitle accDescr "
    "sequenceDiagram autonumber off"
).split()
FLOWCHART_RESERVED = {"end", "subgraph", "graph", "flowchart", "style", "class", "classdef", "click", "default", "direction"}
MAX_MESSAGES = 15


# ---------------------------------------------------------------- the truth, from the source


@dataclass
class RawStruct:
    name: str
    fields: dict[str, str]  # JSON name -> Rust type
    denies_unknown: bool


@dataclass
class Truth:
    structs: dict[str, RawStruct]
    client_metadata: set[str]
    endpoints: set[str]
    route_prefixes: set[str]
    literal_words: set[str]  # words in the Rust code's string literals (lowercase)
    header_words: set[str]  # dashed and plain names from literals, shipped configs, README tables
    error_codes: set[str]
    reasons: set[str]
    counters: set[str]
    readme_prose: str

    @property
    def field_names(self) -> set[str]:
        return {f for s in self.structs.values() for f in s.fields} | self.client_metadata


def rust_sources() -> list[Path]:
    dirs = [CORE, ROOT / "src", ROOT / "crates/certbound-module/src", ROOT / "cli/src"]
    return sorted(p for d in dirs if d.exists() for p in d.rglob("*.rs"))


def string_literals(text: str) -> list[str]:
    return re.findall(r'"((?:[^"\\\n]|\\.)*)"', text)


def parse_raw_structs(text: str) -> dict[str, RawStruct]:
    """The serde `Raw*` structs of a config source file: JSON field names and Rust types."""
    found = {}
    for m in re.finditer(r"((?:(?:#\[[^\n]*\]|///[^\n]*)\s*)*)(?:pub(?:\([^)]*\))?\s+)?struct\s+(Raw\w+)\s*\{(.*?)\n\}", text, re.S):
        attrs, name, body = m.groups()
        fields, pending = {}, []
        for line in body.splitlines():
            line = line.split("//")[0].strip()
            if not line:
                continue
            if line.startswith("#["):
                pending.append(line)
                continue
            fm = re.match(r"(?:pub(?:\([^)]*\))?\s+)?(\w+)\s*:\s*(.+?),?$", line)
            if fm:
                json_name = fm.group(1)
                for a in pending:
                    rename = re.search(r'rename\s*=\s*"([^"]+)"', a)
                    if rename:
                        json_name = rename.group(1)
                fields[json_name] = fm.group(2).strip()
            pending = []
        found[name] = RawStruct(name, fields, "deny_unknown_fields" in attrs)
    return found


def readme_outside_pictures() -> str:
    text = README.read_text()
    start = text.find(f"\n{SECTION}\n")
    if start < 0:
        return text
    end = text.find("\n## ", start + 1)
    return text[:start] + (text[end:] if end >= 0 else "")


@functools.lru_cache(maxsize=None)
def truth() -> Truth:
    structs: dict[str, RawStruct] = {}
    for p in sorted(CONFIG_DIR.glob("*.rs")):
        structs.update(parse_raw_structs(p.read_text()))
    clients_rs = (CONFIG_DIR / "clients.rs").read_text()
    ignored = re.search(r"REGISTRATION_METADATA_IGNORED\s*:\s*&\[&str\]\s*=\s*&\[(.*?)\];", clients_rs, re.S)
    client_metadata = set(string_literals(ignored.group(1))) if ignored else set()

    config_rs = (CONFIG_DIR / "mod.rs").read_text()
    endpoints = set()
    for const in ("DEFAULT_TOKEN_PATH", "DEFAULT_INTROSPECTION_PATH"):
        m = re.search(rf'{const}\s*:\s*&str\s*=\s*"([^"]+)"', config_rs)
        if m:
            endpoints.add(m.group(1))
    discovery_rs = (CORE / "discovery.rs").read_text()
    default_discovery = re.search(r"impl Default for Discovery\s*\{.*?paths:\s*vec!\[(.*?)\]", discovery_rs, re.S)
    if default_discovery:
        endpoints |= set(string_literals(default_discovery.group(1)))
    route_prefixes = set(re.findall(r'prefix:\s*"([^"]+)"', DEMO_TEMPLATE.read_text()))

    literal_words, header_words = set(), set()
    for p in rust_sources():
        for lit in string_literals(p.read_text()):
            low = lit.lower()  # words with their dashes and dots (x-certbound-x5t), and without (x5t#s256, cnf)
            literal_words |= {w.strip(".-") for w in re.findall(r"[a-z0-9_#.-]+", low)} | set(re.findall(r"[a-z0-9_#]+", low))
    header_words |= {w for w in literal_words if re.fullmatch(r"[a-z0-9]+(?:-[a-z0-9]+)*", w)}
    shipped = [*sorted((ROOT / "envoy").rglob("*.yaml")), *sorted((ROOT / "tests/templates").glob("*.tmpl"))]
    for p in shipped:
        header_words |= {w.lower() for w in re.findall(r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)+", p.read_text())}
    prose = readme_outside_pictures()
    for row in (l for l in prose.splitlines() if l.startswith("|")):
        for span in re.findall(r"`([^`]+)`", row):
            header_words |= {w.lower() for w in re.findall(r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)+", span)}

    error_codes = set()
    for p in sorted(CORE.rglob("*.rs")):
        error_codes |= set(re.findall(r'error:\s*(?:Some\()?"([a-z_]+)"', p.read_text()))
    reasons = set(re.findall(r'Reason::\w+\s*=>\s*"([a-z0-9_]+)"', (CORE / "error.rs").read_text()))
    counters = set(re.findall(r'Counter::\w+\s*=>\s*"([a-z0-9_]+)"', (CORE / "counter.rs").read_text()))
    return Truth(structs, client_metadata, endpoints, route_prefixes, literal_words, header_words,
                 error_codes, reasons, counters, prose)


# ---------------------------------------------------------------- the diagrams


def mermaid_blocks(markdown: str) -> list[tuple[int, str]]:
    """(line number, body) of every ```mermaid block."""
    blocks, lines, i = [], markdown.splitlines(), 0
    while i < len(lines):
        if lines[i].strip() == "```mermaid":
            start, body = i + 1, []
            i += 1
            while i < len(lines) and lines[i].strip() != "```":
                body.append(lines[i])
                i += 1
            blocks.append((start + 1, "\n".join(body)))
        i += 1
    return blocks


def statements(block: str) -> list[str]:
    return [l.strip() for l in block.splitlines() if l.strip() and not l.strip().startswith("%%")]


def kind_of(block: str) -> str:
    first = (statements(block) or [""])[0]
    if first == "sequenceDiagram":
        return "sequence"
    if re.fullmatch(r"(flowchart|graph)\s+(TB|TD|BT|RL|LR)", first):
        return "flowchart"
    return "unknown"


ENTITY = re.compile(r"#(\w+);")


def decode_entities(text: str) -> str:
    """Mermaid's entity codes (`#35;`, `#quot;`) as the reader sees them."""

    def one(m: re.Match) -> str:
        code = m.group(1)
        if code.isdigit():
            return chr(int(code))
        return html.unescape(f"&{code};")

    return ENTITY.sub(one, text)


SEQ_ID = r"[A-Za-z][A-Za-z0-9_]*"
SEQ_MESSAGE = re.compile(rf"^(?P<src>{SEQ_ID})\s*(?P<arrow>-->>|->>|-->|->|--x|-x|--\)|-\))\s*[+-]?\s*(?P<dst>{SEQ_ID})\s*:(?P<text>.*)$")
SEQ_PARTICIPANT = re.compile(rf"^(?:participant|actor)\s+(?P<id>{SEQ_ID})(?:\s+as\s+(?P<desc>.+))?$")
SEQ_NOTE = re.compile(rf"^note\s+(?:over|left of|right of)\s+(?P<ids>{SEQ_ID}(?:\s*,\s*{SEQ_ID})?)\s*:(?P<text>.*)$", re.I)
SEQ_BLOCK = re.compile(r"^(?P<kw>alt|opt|loop|par|rect|critical|break)\b(?P<text>.*)$")
SEQ_INNER = {"else": "alt", "and": "par", "option": "critical"}


def sequence_structure(block: str) -> tuple[list[str], list[str], int]:
    """Problems, the texts a reader sees (messages, notes, participants, block labels), and the number of messages."""
    problems, texts, declared, stack, messages = [], [], set(), [], 0
    for line in statements(block)[1:]:
        bare = ENTITY.sub("", line)
        if "#" in bare:
            problems.append(f"a raw '#' starts a Mermaid comment and cuts the line short (write #35;): {line!r}")
        if ";" in bare:
            problems.append(f"a raw ';' ends a Mermaid statement (write #59;): {line!r}")
        if m := SEQ_PARTICIPANT.match(line):
            pid = m.group("id")
            if kw := next((k for k in SEQUENCE_KEYWORDS if pid.lower().startswith(k.lower())), None):
                problems.append(f"participant id {pid!r} starts with the Mermaid keyword {kw!r}: Mermaid reads the keyword")
            declared.add(pid)
            texts.append(m.group("desc") or "")
        elif m := SEQ_MESSAGE.match(line):
            messages += 1
            for pid in (m.group("src"), m.group("dst")):
                if pid not in declared:
                    problems.append(f"participant {pid!r} is used before it is declared: {line!r}")
            if not m.group("text").strip():
                problems.append(f"a message without text: {line!r}")
            texts.append(m.group("text"))
        elif m := SEQ_NOTE.match(line):
            for pid in re.split(r"\s*,\s*", m.group("ids")):
                if pid not in declared:
                    problems.append(f"participant {pid!r} is used before it is declared: {line!r}")
            texts.append(m.group("text"))
        elif m := SEQ_BLOCK.match(line):
            stack.append(m.group("kw"))
            texts.append(m.group("text"))
        elif (word := line.split()[0]) in SEQ_INNER:
            if not stack or stack[-1] != SEQ_INNER[word]:
                problems.append(f"'{word}' outside an '{SEQ_INNER[word]}' block: {line!r}")
            texts.append(line[len(word):])
        elif line == "end":
            if not stack:
                problems.append("'end' closes no block")
            else:
                stack.pop()
        elif re.fullmatch(rf"(?:activate|deactivate)\s+{SEQ_ID}", line):
            if line.split()[1] not in declared:
                problems.append(f"participant {line.split()[1]!r} is used before it is declared: {line!r}")
        elif re.fullmatch(r"autonumber(?:\s+\d+(?:\s+\d+)?)?", line):
            pass
        else:
            problems.append(f"not a sequence-diagram statement this check knows (an arrow other than ->>, -->>, ->, -->, -x, --x, -), --)?): {line!r}")
    problems += [f"'{kw}' block is never closed with 'end'" for kw in stack]
    return problems, texts, messages


FC_ID = r"[A-Za-z][A-Za-z0-9_]*"
FC_SHAPES = [("[(", ")]"), ("([", "])"), ("[[", "]]"), ("((", "))"), ("{{", "}}"), ("[/", "/]"), ("[\\", "\\]"),
             ("[", "]"), ("(", ")"), ("{", "}"), (">", "]")]
FC_NODE = re.compile(
    rf"(?P<id>{FC_ID})(?:(?P<shape>" + "|".join(re.escape(o) + r'"[^"]*"' + re.escape(c) for o, c in FC_SHAPES) + "))?"
)
FC_LINK = re.compile(r'\s*(?:-->|---|-\.->|==>|~~~|--\s*"[^"]*"\s*-->|==\s*"[^"]*"\s*==>|-\.\s*"[^"]*"\s*\.->)(?:\|"[^"]*"\|)?\s*')


def flowchart_structure(block: str) -> tuple[list[str], list[str], int]:
    """Problems, the texts a reader sees (labels, edge labels, subgraph titles), and the number of edges."""
    problems, texts, labels, used, subgraphs, depth, edges = [], [], {}, [], set(), 0, 0
    for line in statements(block)[1:]:
        if m := re.fullmatch(rf'subgraph\s+(?P<id>{FC_ID})(?:\s*\["(?P<title>[^"]*)"\])?', line):
            depth += 1
            subgraphs.add(m.group("id"))
            texts.append(m.group("title") or "")
            continue
        if line == "end":
            depth -= 1
            if depth < 0:
                problems.append("'end' closes no subgraph")
                depth = 0
            continue
        if re.fullmatch(r"direction\s+(TB|TD|BT|RL|LR)", line):
            if depth == 0:
                problems.append(f"'direction' outside a subgraph: {line!r}")
            continue
        pos, groups, ok = 0, 0, True
        while ok:
            group_ids = []
            while True:
                m = FC_NODE.match(line, pos)
                if not m:
                    ok = False
                    break
                nid, shape = m.group("id"), m.group("shape")
                group_ids.append(nid)
                if shape:
                    label = re.search(r'"([^"]*)"', shape).group(1)
                    if labels.setdefault(nid, label) != label:
                        problems.append(f"node {nid!r} is labelled twice, differently: {labels[nid]!r} and {label!r}")
                    texts.append(label)
                pos = m.end()
                amp = re.match(r"\s*&\s*", line[pos:])
                if not amp:
                    break
                pos += amp.end()
            if not ok:
                break
            used += group_ids
            groups += 1
            if pos == len(line):
                break
            link = FC_LINK.match(line, pos)
            if not link:
                ok = False
                break
            edges += 1
            texts += re.findall(r'"([^"]*)"', link.group(0))
            pos = link.end()
        if not ok:
            problems.append(f"not a flowchart statement this check knows (nodes need quoted labels, links are -->, ---, -.->, ==>, ~~~, -- \"text\" -->): {line!r}")
    if depth:
        problems.append(f"{depth} subgraph(s) never closed with 'end'")
    for nid in dict.fromkeys(used):
        if nid.lower() in FLOWCHART_RESERVED:
            problems.append(f"node id {nid!r} is a Mermaid keyword")
        elif nid not in labels and nid not in subgraphs:
            problems.append(f"node {nid!r} is used but never given a label (a typo of another node's id?)")
    return problems, texts, edges


def structure(block: str) -> tuple[list[str], list[str], int]:
    kind = kind_of(block)
    if kind == "sequence":
        return sequence_structure(block)
    if kind == "flowchart":
        return flowchart_structure(block)
    return [f"a diagram starts with 'sequenceDiagram' or 'flowchart <direction>', not {statements(block)[:1]}"], [], 0


# ---------------------------------------------------------------- names checked against the truth

FILE_PATH = re.compile(r"(?<![\w./-])[A-Za-z0-9_][\w.-]*(?:/[\w.-]+)+/?|(?<![\w./-])[A-Za-z0-9_][\w.-]*/(?![\w.-])")
ENDPOINT = re.compile(r"(?<![\w./-])/[\w.~%-][\w./~%-]*")
DOTTED = re.compile(r"(?<![\w#.-])[A-Za-z_][A-Za-z0-9_]*(?:\[\])?(?:\.[A-Za-z_][A-Za-z0-9_#]*(?:\[\])?)+|(?<![\w#.-])[a-z_][a-z0-9_]*\[\]")
HASHED = re.compile(r"(?<![\w#.-])[A-Za-z0-9_]+#[A-Za-z0-9_]+")
DASHED = re.compile(r"(?<![\w.-])[A-Za-z0-9]+(?:-[A-Za-z0-9]+)+(?![\w-])")
HEADER_POSITION = re.compile(r"(?<![\w./#-])([A-Za-z][A-Za-z0-9-]*):\s")
SNAKE = re.compile(r"(?<![\w.-])[a-z][a-z0-9]*(?:_[a-z0-9]+)+(?![\w-])")


def field_problem(ref: str, t: Truth) -> str | None:
    """Why a config field reference such as `clients[].upstream.client_secret` names nothing, or None."""
    struct, segments = "RawConfig", ref.split(".")
    for i, seg in enumerate(segments):
        name, is_array = seg.removesuffix("[]"), seg.endswith("[]")
        raw = t.structs.get(struct)
        accepted = set(raw.fields) if raw else set()
        if struct == "RawClient":
            accepted |= t.client_metadata
        path = ".".join(segments[: i + 1])
        if name not in accepted:
            return f"config field {ref!r}: {name!r} is not a field of {path.rsplit('.', 1)[0] if i else 'the configuration'} ({struct} accepts {', '.join(sorted(accepted))})"
        rust_type = raw.fields.get(name, "") if raw else ""
        if is_array and "Vec<" not in rust_type:
            return f"config field {ref!r}: {name!r} is not an array, so no []"
        last = i == len(segments) - 1
        if not last and "Vec<" in rust_type and not is_array:
            return f"config field {ref!r}: {name!r} is an array: write {name}[]"
        if not last:
            child = NESTED.get((struct, name))
            if child is None:
                return f"config field {ref!r}: {path!r} is not an object with fields"
            struct = child
    return None


def endpoint_problem(path: str, t: Truth) -> str | None:
    path = path.rstrip(".,")
    if path in t.endpoints or path in t.route_prefixes:
        return None
    if any(p != "/" and p.endswith("/") and path.startswith(p) for p in t.route_prefixes):
        return None
    known = sorted(t.endpoints | t.route_prefixes)
    return f"endpoint {path!r} is neither a default endpoint of the configuration nor a demo route ({', '.join(known)})"


def name_problems(texts: list[str], t: Truth) -> list[str]:
    problems = []
    for raw_text in texts:
        text = re.sub(r"<br\s*/?>", " ", decode_entities(raw_text))

        def take(pattern: re.Pattern, check) -> None:
            nonlocal text
            for m in pattern.finditer(text):
                if (p := check(m.group(0))) is not None:
                    problems.append(p)
            text = pattern.sub(" ", text)

        take(FILE_PATH, lambda p: None if (ROOT / p.rstrip(".,")).exists() else f"file {p!r} does not exist in the repository")
        take(ENDPOINT, lambda p: endpoint_problem(p, t))

        def dotted(ref: str) -> str | None:
            head = ref.split(".")[0]
            if head == "certbound":
                name = ref.removeprefix("certbound.")
                for prefix in ("refused.", "reported."):
                    if name.startswith(prefix):
                        reason = name.removeprefix(prefix)
                        return None if reason in t.reasons else f"counter {ref!r}: {reason!r} is not a reason of error.rs"
                return None if name in t.counters else f"counter {ref!r}: {name!r} is not a counter of counter.rs"
            if head == "cnf":
                member = ref.removeprefix("cnf.")
                ok = "cnf" in t.literal_words and member.lower() in t.literal_words
                return None if ok else f"introspection member {ref!r} is not one certbound writes"
            return field_problem(ref, t)

        take(DOTTED, dotted)
        take(HASHED, lambda w: None if w.lower() in t.literal_words else f"{w!r} appears nowhere in the code")
        for m in HEADER_POSITION.finditer(text):
            name = m.group(1)
            if name.lower() not in t.header_words and name.lower() not in PROSE:
                problems.append(f"header {name!r} (a name before ': ') appears in no code, shipped config or README table")

        def dashed(w: str) -> str | None:
            if w.lower() in PROSE:
                return None if w.lower() in t.readme_prose.lower() else f"{w!r} is not used in the README outside the pictures"
            return None if w.lower() in t.header_words else f"header {w!r} appears in no code, shipped config or README table"

        take(DASHED, dashed)

        def snake(w: str) -> str | None:
            if ERROR_CODE_SHAPE.fullmatch(w):
                return None if w in t.error_codes else f"error code {w!r} is not one certbound answers ({', '.join(sorted(t.error_codes))})"
            known = t.field_names | t.reasons | t.counters | t.error_codes | t.literal_words
            return None if w in known else f"{w!r} is no config field, reason, counter, error code or word of the code"

        take(SNAKE, snake)
    return problems


def check_diagram(block: str, t: Truth | None = None) -> list[str]:
    """Every problem of one diagram: its structure, then the names it uses."""
    t = t or truth()
    problems, texts, count = structure(block)
    if count > MAX_MESSAGES:
        problems.append(f"{count} messages or edges: keep a diagram to {MAX_MESSAGES}")
    return problems + name_problems(texts, t)


# ---------------------------------------------------------------- the README's diagrams

README_TEXT = README.read_text()


def section_blocks(markdown: str) -> list[tuple[int, str]]:
    """The mermaid blocks of the Pictures section, with their line numbers in the README."""
    start = markdown.find(f"\n{SECTION}\n")
    if start < 0:
        return []
    end = markdown.find("\n## ", start + 1)
    first = markdown[:start].count("\n") + 2
    last = markdown[: end if end >= 0 else len(markdown)].count("\n") + 1
    return [(n, b) for n, b in mermaid_blocks(markdown) if first < n <= last]


BLOCKS = section_blocks(README_TEXT)


def test_the_pictures_section_comes_between_quick_start_and_the_demo():
    headings = [l for l in README_TEXT.splitlines() if l.startswith("## ")]
    assert SECTION in headings, f"README.md has no '{SECTION}' section"
    i = headings.index(SECTION)
    assert headings[i - 1 : i + 2] == ["## Quick start", SECTION, "## The demo"], headings[i - 1 : i + 2]


def test_four_flows_and_one_deployment_picture():
    kinds = [kind_of(b) for _, b in BLOCKS]
    assert kinds == ["sequence"] * 4 + ["flowchart"], kinds
    flowchart = BLOCKS[-1][1]
    for f in ["envoy/mtls-terminating.yaml", "envoy/behind-lb.yaml", "envoy/two-hop-xfcc.yaml", "envoy/etcd-replicas.yaml"]:
        assert f in flowchart, f"the deployment picture does not show {f}"
    flows = [b for _, b in BLOCKS[:4]]
    for needle, flow in zip(["/oauth2/token", "/oauth2/token", "/oauth2/introspect", "/api/"], flows):
        assert needle in flow, f"a flow diagram without {needle}"


@pytest.mark.parametrize("line,block", BLOCKS, ids=[f"README.md:{n}" for n, _ in BLOCKS])
def test_a_readme_diagram_is_well_formed_and_names_only_what_exists(line, block):
    problems = check_diagram(block)
    assert not problems, f"the mermaid block at README.md line {line}:\n  " + "\n  ".join(problems)


# ---------------------------------------------------------------- the checks catch mistakes

GOOD_SEQUENCE = """sequenceDiagram
    participant Client as Client (certificate A)
    participant Envoy as Envoy + certbound
    participant Store as Binding store
    participant AS as AS
    Client->>Envoy: POST /oauth2/token<br/>grant_type=client_credentials, client_id
    Envoy->>AS: Authorization: Basic from clients[].upstream.client_secret
    AS-->>Envoy: 200 {"access_token", "expires_in"}
    Envoy->>Store: put-if-absent, x5t#35;S256 of A
    alt stored
        Envoy-->>Client: 200 (certbound.tokens_bound)
    else not stored
        Envoy-->>Client: 503 temporarily_unavailable, Retry-After (certbound.refused.store_full)
    end
    Note over Envoy: store.etcd.cluster, certificate_sources.headers[].trust.source_cidrs, x-certbound-x5t
"""

GOOD_FLOWCHART = """flowchart LR
    subgraph lb["behind a load balancer (envoy/behind-lb.yaml)"]
        client["Client"] -- "mTLS" --> alb["AWS ALB"]
        alb -- "x-amzn-mtls-clientcert" --> envoy["Envoy + certbound"] & other["Envoy + certbound"]
        envoy & other -->|"/oauth2/introspect"| as1["AS"]
    end
"""


def test_the_checks_pass_good_diagrams():
    assert check_diagram(GOOD_SEQUENCE) == []
    assert check_diagram(GOOD_FLOWCHART) == []


WRONG = [
    # (what, the good text, the wrong text, what the failure names)
    ("a config field misspelt", "clients[].upstream.client_secret", "clients[].upstream.client_secrte", "client_secrte"),
    ("a field the parser refuses", "clients[].upstream.client_secret", "clients[].client_secret", "client_secret"),
    ("a field of another struct", "store.etcd.cluster", "store.cluster", "cluster"),
    ("an array without []", "certificate_sources.headers[].trust", "certificate_sources.headers.trust", "headers"),
    ("[] on an object", "store.etcd.cluster", "store[].etcd.cluster", "store"),
    ("a path into a scalar", "store.etcd.cluster", "store.etcd.cluster.name", "cluster"),
    ("an unknown endpoint", "/oauth2/token<br/>", "/oauth2/tokens<br/>", "/oauth2/tokens"),
    ("an unknown header", "x-certbound-x5t", "x-certbound-thumbprint", "x-certbound-thumbprint"),
    ("an unknown header in header position", "Authorization: Basic", "Authorisation: Basic", "Authorisation"),
    ("an unknown capitalised header", "Retry-After", "Retry-Later", "Retry-Later"),
    ("an unknown error code", "503 temporarily_unavailable", "503 invalid_store", "invalid_store"),
    ("a misspelt word", "503 temporarily_unavailable", "503 temporarily_unavailabel", "temporarily_unavailabel"),
    ("an unknown counter", "certbound.tokens_bound", "certbound.tokens_stored", "tokens_stored"),
    ("an unknown refusal reason", "certbound.refused.store_full", "certbound.refused.store_overflow", "store_overflow"),
    ("an unknown member", "x5t#35;S256", "x5t#35;S265", "x5t#S265"),
    ("a raw # (a Mermaid comment)", "x5t#35;S256", "x5t#S256", "raw '#'"),
    ("a raw ; (a Mermaid statement end)", "put-if-absent, x5t", "put-if-absent; x5t", "raw ';'"),
    ("an undeclared participant", "Envoy->>AS:", "Envoy->>Server:", "'Server'"),
    ("an arrow Mermaid does not have", "AS-->>Envoy:", "AS=>>Envoy:", "not a sequence-diagram statement"),
    ("a block never closed", "    end\n    Note", "    Note", "never closed"),
    ("'else' outside alt", "    alt stored", "    opt stored", "'else' outside"),
    ("a participant id Mermaid reads as a keyword", "participant Store as", "participant Endpoint as", "'end'"),
]


FLOWCHART_WRONG = [
    ("a missing deployment file", "envoy/behind-lb.yaml", "envoy/behind-lb.yml", "envoy/behind-lb.yml"),
    ("a node never labelled (a typo of an id)", "envoy & other -->", "envoy & othr -->", "'othr'"),
    ("an unquoted label", 'alb["AWS ALB"]', "alb[AWS ALB]", "not a flowchart statement"),
    ("a subgraph never closed", "    end\n", "", "never closed"),
    ("an unknown header on an edge", '"x-amzn-mtls-clientcert"', '"x-amzn-mtls-cert"', "x-amzn-mtls-cert"),
    ("an unknown endpoint on an edge", '"/oauth2/introspect"', '"/oauth2/introspection"', "/oauth2/introspection"),
    ("no diagram type", "flowchart LR", "flowchart sideways", "starts with"),
]


# Each mistake made once in a correct synthetic diagram of its kind.
CATCH = [("sequence", GOOD_SEQUENCE, *w) for w in WRONG] + [("flowchart", GOOD_FLOWCHART, *w) for w in FLOWCHART_WRONG]


@pytest.mark.parametrize("kind,diagram,what,good,bad,named", CATCH, ids=[f"{c[0]}: {c[2]}" for c in CATCH])
def test_the_checks_catch(kind, diagram, what, good, bad, named):
    assert good in diagram, f"the synthetic {kind} diagram lost {good!r}"
    wrong = diagram.replace(good, bad, 1)
    if "Endpoint" in bad:
        wrong = wrong.replace("Store", "Endpoint")
    problems = check_diagram(wrong)
    assert any(named in p for p in problems), f"{what}: not caught, or not named ({named!r}): {problems}"


def test_too_many_messages_are_refused():
    long = GOOD_SEQUENCE + "\n".join(["    Envoy->>Store: look up the token's binding"] * MAX_MESSAGES)
    assert any("keep a diagram to" in p for p in check_diagram(long))


# ---------------------------------------------------------------- the truth is really read


def test_the_truth_is_read_from_the_source():
    t = truth()
    assert {"token_path", "clients", "certificate_sources", "store"} <= set(t.structs["RawConfig"].fields)
    assert "client_secret" in t.structs["RawUpstream"].fields
    assert "client_secret" not in t.structs["RawClient"].fields and "grant_types" in t.client_metadata
    assert {"/oauth2/token", "/oauth2/introspect", "/.well-known/openid-configuration"} <= t.endpoints
    assert "/api/" in t.route_prefixes
    assert {"invalid_client", "invalid_grant", "invalid_request", "invalid_token", "temporarily_unavailable"} <= t.error_codes
    assert {"refresh_certificate_mismatch", "token_certificate_mismatch"} <= t.reasons
    assert {"tokens_bound", "introspection_patched"} <= t.counters
    assert {"x-certbound-x5t", "authorization", "www-authenticate", "content-length", "x-wso2-mtls-cert"} <= t.header_words


def test_every_nested_config_object_is_mapped_and_refuses_unknown_fields():
    """A new nested object in the parser makes this fail until NESTED says where it goes."""
    t = truth()
    for name, raw in t.structs.items():
        assert raw.denies_unknown, f"{name} accepts unknown fields: a misspelt field would be ignored, not refused"
    reachable, todo = {"RawConfig"}, ["RawConfig"]
    while todo:
        parent = todo.pop()
        for (p, f), child in NESTED.items():
            if p == parent and child not in reachable:
                reachable.add(child)
                todo.append(child)
    assert reachable == set(t.structs), f"Raw structs not mapped in NESTED: {sorted(set(t.structs) - reachable)}"
    for (parent, f), child in NESTED.items():
        assert f in t.structs[parent].fields, f"NESTED: {parent} has no field {f}"
        assert "Value" in t.structs[parent].fields[f], f"NESTED: {parent}.{f} is not deserialized later"
        assert child in t.structs, f"NESTED: no struct {child}"
    for name, raw in t.structs.items():
        for f, rust_type in raw.fields.items():
            if "Value" in rust_type:
                assert (name, f) in NESTED or (name, f) in OPAQUE, f"{name}.{f} holds an object: add it to NESTED or OPAQUE"
