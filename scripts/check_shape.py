#!/usr/bin/env python3
"""The shape rules of the code base (see README, "Architecture").

1. No Rust source file (src, tests, examples, benches) over MAX_LINES lines.
2. No module cycle inside a crate: files that refer to each other's items
   (`use crate::a::b`, `super::x`, `crate::a::f()` in code) in a loop.
   Declaring a child module (`mod child;`) is not a reference.

Prints each offence and exits 1 when there is one.
"""

import re
import sys
from pathlib import Path

MAX_LINES = 400
CRATES = ["shared", "api", "relay"]
ROOT = Path(__file__).resolve().parent.parent


def module_path(src: Path, file: Path) -> tuple:
    """`src/db/outbox/mod.rs` -> ("db", "outbox"); `src/lib.rs` -> ()."""
    parts = list(file.relative_to(src).with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return tuple(parts)


def strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def expand_use(tree: str) -> list:
    """`a::{b, c::{d, e}}` -> ["a::b", "a::c::d", "a::c::e"]."""
    tree = tree.strip()
    depth, start = 0, None
    for i, ch in enumerate(tree):
        if ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}":
            depth -= 1
    if start is None:
        return [tree]
    prefix, inner = tree[:start], tree[start + 1 : tree.rindex("}")]
    items, depth, cur = [], 0, ""
    for ch in inner:
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        cur += ch
    items.append(cur)
    out = []
    for item in items:
        if item.strip():
            out.extend(prefix + p for p in expand_use(item))
    return out


def references(text: str, here: tuple, modules: set) -> set:
    """Module paths (tuples) this file refers to. Code after an inline
    `mod name {` (the tests) sits one level deeper, so its `super` is the
    file itself."""
    text = strip_comments(text)
    inline = re.search(r"\bmod\s+(\w+)\s*\{", text)
    if inline:
        deeper = references_in(text[inline.start() :], here + (inline.group(1),), modules)
        return references_in(text[: inline.start()], here, modules) | deeper
    return references_in(text, here, modules)


def references_in(text: str, here: tuple, modules: set) -> set:
    paths = []
    for m in re.finditer(r"\buse\s+([^;]+);", text):
        paths.extend(expand_use(m.group(1)))
    paths.extend(m.group(0) for m in re.finditer(r"\b(?:crate|super|\w+)(?:::\w+)+", text))
    found = set()
    for raw in paths:
        segs = [s.strip() for s in raw.split(" as ")[0].split("::") if s.strip()]
        if not segs:
            continue
        if segs[0] == "crate":
            target = segs[1:]
        elif segs[0] == "super":
            # In `a/b.rs` (module a::b) super is a; in `a/mod.rs` (module a) super is ().
            base = list(here)
            while segs and segs[0] == "super":
                base = base[:-1]
                segs = segs[1:]
            target = base + segs
        elif segs[0] == "self":
            target = list(here) + segs[1:]
        elif tuple(here) + (segs[0],) in modules:
            # A path relative to this module: `child::item`.
            target = list(here) + segs
        else:
            continue
        found.add(tuple(target))
    return found


def check_crate(crate: Path, root: Path) -> list:
    src = crate / "src"
    files = {module_path(src, f): f for f in src.rglob("*.rs")}
    graph = {}
    for mod, file in files.items():
        targets = set()
        for ref in references(file.read_text(), mod, set(files)):
            # The longest prefix that is a file of this crate.
            for n in range(len(ref), -1, -1):
                if ref[:n] in files:
                    if ref[:n] != mod:
                        targets.add(ref[:n])
                    break
        graph[mod] = targets
    # Strongly connected components (Tarjan).
    index, low, stack, on, comps, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(comp)

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    errors = []
    for comp in comps:
        names = sorted(str(files[m].relative_to(root)) for m in comp)
        errors.append(f"module cycle in {crate.name}: " + " <-> ".join(names))
    return errors


def offences(root: Path, crates: list) -> list:
    errors = []
    for crate in crates:
        for file in sorted((root / crate).rglob("*.rs")):
            if "target" in file.parts:
                continue
            lines = file.read_text().count("\n")
            if lines > MAX_LINES:
                rel = file.relative_to(root)
                errors.append(f"{rel}: {lines} lines (limit {MAX_LINES})")
        errors.extend(check_crate(root / crate, root))
    return errors


def self_test() -> None:
    """The checker must see a cycle through a parent's re-export, a cycle
    between siblings, and a long file, and pass a clean crate."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "demo" / "src"
        (src / "db").mkdir(parents=True)
        (src / "lib.rs").write_text("pub mod a;\npub mod b;\npub mod db;\n")
        (src / "a.rs").write_text("use crate::b::x;\npub fn y() {}\n")
        (src / "b.rs").write_text("pub fn x() { super::a::y() }\n")
        (src / "db" / "mod.rs").write_text("pub mod q;\npub use q::run;\npub struct C;\n")
        (src / "db" / "q.rs").write_text("use super::C;\npub fn run(_: C) {}\n")
        (src / "long.rs").write_text("//\n" * (MAX_LINES + 1))
        found = "\n".join(offences(Path(tmp), ["demo"]))
        assert "demo/src/a.rs <-> demo/src/b.rs" in found, found
        assert "demo/src/db/mod.rs <-> demo/src/db/q.rs" in found, found
        assert "demo/src/long.rs: 401 lines" in found, found
        (src / "b.rs").write_text("pub fn x() {}\n")
        (src / "db" / "mod.rs").write_text("pub mod q;\npub mod c;\npub use q::run;\n")
        (src / "db" / "q.rs").write_text("use super::c::C;\npub fn run(_: C) {}\n")
        (src / "db" / "c.rs").write_text("pub struct C;\n#[cfg(test)]\nmod tests {\n    use super::*;\n}\n")
        (src / "long.rs").write_text("//\n")
        assert offences(Path(tmp), ["demo"]) == [], offences(Path(tmp), ["demo"])


def main() -> int:
    self_test()
    errors = offences(ROOT, CRATES)
    for e in errors:
        print(e)
    if not errors:
        print(f"Shape OK: no file over {MAX_LINES} lines, no module cycle.")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
