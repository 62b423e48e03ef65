#!/usr/bin/env python3
"""File-level call graph of a C source folder (default src/ensemble/).

Edge a.c -> b.c: a.c names a function that b.c defines without `static`
(a call, or the function's name taken as a pointer). Prints each file's
layer (the length of its longest chain of callees; 0 = calls no other file
of the folder) with the files it calls, then the strongly connected
components of more than one file (cycles). Exits 1 when there is a cycle
that is not in the allowed list (--allow "a.c,b.c" per allowed component,
exact set), or when a file reaches one it must not (--forbid a.c:b.c: no
chain of calls from a.c to b.c), else 0. Python standard library only; no
ctags.

usage: ensemble_layers.py [--dir DIR] [--allow a.c,b.c ...] [--forbid a.c:b.c ...] [--quiet]
"""
import argparse
import os
import re
import sys

IDENT = re.compile(r"[A-Za-z_]\w*")
KEYWORDS = {"if", "for", "while", "switch", "return", "sizeof", "do", "else", "case"}


def strip(text):
    """Text without comments, string and character literals, or preprocessor
    lines (line breaks kept so that positions stay on their lines)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("\n" * text.count("\n", i, j))
            i = j
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            out.append(c + c)
            i = j + 1
        else:
            out.append(c)
            i += 1
    lines = "".join(out).split("\n")
    keep, cont = [], False
    for line in lines:
        pre = cont or line.lstrip().startswith("#")
        cont = pre and line.rstrip().endswith("\\")
        keep.append("" if pre else line)
    return "\n".join(keep)


def top_level(code):
    """(top-level text, body texts): the file split at brace depth 0."""
    tops, bodies, depth, start = [], [], 0, 0
    cur_top = []
    for i, c in enumerate(code):
        if c == "{":
            if depth == 0:
                cur_top.append(code[start:i])
                start = i
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                bodies.append((cur_top[-1], code[start:i + 1]))
                start = i + 1
    return bodies


def definitions(code):
    """Names of the non-static and static functions defined in code."""
    public, private = set(), set()
    for head, _body in top_level(code):
        # The declaration right before the body: text after the last ';' or '}'.
        decl = re.split(r"[;}]", head)[-1].strip()
        m = re.search(r"([A-Za-z_]\w*)\s*\(([^()]|\([^()]*\))*\)\s*$", decl)
        if not m or "=" in decl or m.group(1) in KEYWORDS:
            continue
        words = IDENT.findall(decl[:m.start(1)])
        if not words or words[0] in ("struct", "enum", "union", "typedef") and "(" not in decl:
            continue
        (private if "static" in words else public).add(m.group(1))
    return public, private


def graph(folder):
    files = sorted(f for f in os.listdir(folder) if f.endswith(".c"))
    code = {}
    owner = {}
    for f in files:
        with open(os.path.join(folder, f), encoding="utf-8", errors="replace") as fh:
            code[f] = strip(fh.read())
        public, _ = definitions(code[f])
        for name in public:
            if name in owner:
                print(f"warning: {name} defined in {owner[name]} and {f}", file=sys.stderr)
            owner[name] = f
    edges = {f: {} for f in files}
    for f in files:
        _, private = definitions(code[f])
        for name in set(IDENT.findall(code[f])):
            g = owner.get(name)
            if g and g != f and name not in private:
                edges[f].setdefault(g, []).append(name)
    return files, edges


def sccs(files, edges):
    """Tarjan's strongly connected components (iterative)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in files:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                out.append(sorted(comp))
    return out


def layers(files, edges, comps):
    """Layer of each file: 0 for a file calling no other, else one more than
    its highest callee (the files of one cycle share a layer)."""
    comp_of = {f: i for i, c in enumerate(comps) for f in c}
    level = {}
    for i, comp in enumerate(comps):  # Tarjan emits callees' components first
        lv = 0
        for f in comp:
            for g in edges[f]:
                if comp_of[g] != i:
                    lv = max(lv, level[comp_of[g]] + 1)
        level[i] = lv
    return {f: level[comp_of[f]] for f in files}


def chain(edges, a, b):
    """A shortest chain of calls from a to b ([a, ..., b]), or None."""
    prev, todo = {a: None}, [a]
    while todo:
        nxt = []
        for f in todo:
            for g in sorted(edges.get(f, {})):
                if g not in prev:
                    prev[g] = f
                    nxt.append(g)
        todo = nxt
    if b not in prev or a == b:
        return None
    path = [b]
    while path[-1] != a:
        path.append(prev[path[-1]])
    return path[::-1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--dir", default=os.path.join(here, "..", "..", "src", "ensemble"))
    ap.add_argument("--allow", action="append", default=[],
                    help="comma-separated files of one allowed cycle (exact set)")
    ap.add_argument("--forbid", action="append", default=[],
                    help="a.c:b.c: no chain of calls may lead from a.c to b.c")
    ap.add_argument("--quiet", action="store_true", help="print only the cycles")
    a = ap.parse_args()
    files, edges = graph(a.dir)
    comps = sccs(files, edges)
    level = layers(files, edges, comps)
    if not a.quiet:
        print(f"{len(files)} files in {os.path.normpath(a.dir)}; layer = longest chain of callees")
        for f in sorted(files, key=lambda f: (level[f], f)):
            calls = ", ".join(sorted(edges[f])) or "-"
            print(f"  {level[f]:2d} {f:14s} calls {calls}")
    allowed = [sorted(x.split(",")) for x in a.allow]
    cycles = [c for c in comps if len(c) > 1]
    bad = [c for c in cycles if c not in allowed]
    for c in cycles:
        tag = "allowed cycle" if c in allowed else "cycle"
        print(f"{tag} of {len(c)} files: {' '.join(c)}")
        cset = set(c)
        for f in c:
            for g in sorted(edges[f]):
                if g in cset:
                    print(f"    {f} -> {g}: {', '.join(sorted(edges[f][g]))}")
    if not cycles:
        print("no cycles: the files form layers")
    for rule in a.forbid:
        src, _, dst = rule.partition(":")
        if src not in edges or dst not in edges:
            print(f"--forbid {rule}: no such file in {a.dir}")
            bad.append(rule)
            continue
        path = chain(edges, src, dst)
        if path:
            print(f"forbidden: {src} reaches {dst}: {' -> '.join(path)}")
            bad.append(rule)
        else:
            print(f"ok: {src} does not reach {dst}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
