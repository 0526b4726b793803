#!/usr/bin/env python3
"""Checks the text of the source tree.

1. Every repository path named in a comment or a doc exists. Scanned: the
   comments (and, in Python, docstrings) of C++ (.h .cc .proto), Python,
   shell and CMake files; in Markdown the link targets (relative to the
   document) and the paths in inline code spans, outside fenced blocks. A
   path counts only if it starts at a top-level directory of the repository
   (a directory at the root holding tracked files, e.g. `server` or `docs`)
   and is not a pattern (followed by `*`, `<`, `{` or `$`, or holding
   `...`). It must exist relative to the repository root or to the file
   that names it, or lie where a .gitignore of the tree says generated
   files go (client/python/_generated, docker/secrets). A bare document
   name in capitals (such as README.md) must name a tracked file.
2. Every C++ string or character literal is ASCII: strings a user greps are
   ASCII; symbols belong in comments and docs.

    check_source_text.py REPO_DIR      check the tree; exit 1 listing findings
    check_source_text.py --self-test   plant each kind of finding in a
                                       scratch tree and check each is reported
"""
import fnmatch
import io
import os
import re
import subprocess
import sys
import tempfile
import tokenize

CPP = (".h", ".cc", ".proto")
SHELL_LIKE = (".sh", ".cmake", ".cmake.in", ".txt")
PATTERN_NEXT = set("*<{$")


def tracked_files(repo):
    """Paths relative to `repo`: git's tracked files, else a walk without build trees."""
    try:
        out = subprocess.run(["git", "-C", repo, "ls-files", "-z"], capture_output=True,
                             check=True).stdout.decode()
        return [p for p in out.split("\0") if p and os.path.isfile(os.path.join(repo, p))]
    except (OSError, subprocess.CalledProcessError):
        pass
    files = []
    for root, dirs, names in os.walk(repo):
        dirs[:] = [d for d in dirs if not d.startswith(".")
                   and not os.path.exists(os.path.join(root, d, "CMakeCache.txt"))]
        files += [os.path.relpath(os.path.join(root, n), repo) for n in names]
    return files


# ---- comments and literals ----

def cpp_comments_and_literals(text):
    """Yields ("comment" | "literal", text, line) for C++ (and .proto) source."""
    i, n, line = 0, len(text), 1
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            yield "comment", text[i:end], line
            i = end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            yield "comment", text[i:end], line
            line += text.count("\n", i, end)
            i = end
        elif c == "R" and text.startswith('R"', i) and (i == 0 or not text[i - 1].isalnum()
                                                         or text[i - 1] in "uUL8"):
            open_paren = text.find("(", i + 2)
            delim = text[i + 2:open_paren]
            end = text.find(")" + delim + '"', open_paren)
            end = n if end < 0 else end + len(delim) + 2
            yield "literal", text[i:end], line
            line += text.count("\n", i, end)
            i = end
        elif c == '"' or (c == "'" and not (i > 0 and text[i - 1].isalnum())):
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            yield "literal", text[i:j + 1], line
            i = j + 1
        else:
            if c == "\n":
                line += 1
            i += 1


def python_comments(text):
    """Yields (text, line) for the comments and docstrings of Python source."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError):
        return
    previous = tokenize.NEWLINE
    for tok in tokens:
        if tok.type == tokenize.COMMENT:
            yield tok.string, tok.start[0]
        elif tok.type == tokenize.STRING and previous in (tokenize.NEWLINE, tokenize.INDENT,
                                                          tokenize.DEDENT, tokenize.NL):
            yield tok.string, tok.start[0]
        if tok.type not in (tokenize.COMMENT, tokenize.NL):
            previous = tok.type


def hash_comments(text):
    """Yields (text, line) for the # comments of shell and CMake files."""
    for number, raw in enumerate(text.splitlines(), 1):
        if number == 1 and raw.startswith("#!"):
            continue
        code = re.sub(r'"(?:\\.|[^"\\])*"|\'[^\']*\'', '""', raw)
        match = re.search(r"(?:^|\s)#(.*)$", code)
        if match:
            yield match.group(1), number


def markdown_references(text):
    """Yields (kind, text, line) outside fenced blocks: "link" targets, "code"
    spans, and the "prose" around them."""
    fenced = False
    for number, raw in enumerate(text.splitlines(), 1):
        if raw.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            continue
        yield "prose", re.sub(r"\]\([^)\s]+\)|`[^`]+`", " ", raw), number
        for match in re.finditer(r"\]\(([^)\s]+)\)", raw):
            yield "link", match.group(1), number
        for match in re.finditer(r"`([^`]+)`", raw):
            yield "code", match.group(1), number


# ---- references ----

BARE_DOC = re.compile(r"(?<![\w./*<-])([A-Z][A-Z_]*\.md)\b")


def ignore_rules(repo, files):
    """(directory, pattern) for every line of every tracked .gitignore."""
    rules = []
    for source in files:
        if os.path.basename(source) != ".gitignore":
            continue
        for line in open(os.path.join(repo, source), encoding="utf-8"):
            line = line.strip()
            if line and not line.startswith(("#", "!")):
                rules.append((os.path.dirname(source), line.rstrip("/")))
    return rules


def ignored(rules, path):
    """True if `path` (relative to the root) or a directory above it is ignored."""
    parts = path.rstrip("/").split("/")
    for directory, pattern in rules:
        base = directory.split("/") if directory else []
        if parts[:len(base)] != base:
            continue
        rest = parts[len(base):]
        if "/" in pattern.lstrip("/"):  # Anchored to `directory`.
            anchored = pattern.lstrip("/").split("/")
            if [fnmatch.fnmatch(p, a) for p, a in zip(rest, anchored)] == [True] * len(
                    anchored) and len(rest) >= len(anchored):
                return True
        elif pattern.startswith("/"):
            if rest and fnmatch.fnmatch(rest[0], pattern[1:]):
                return True
        elif any(fnmatch.fnmatch(p, pattern) for p in rest):
            return True
    return False


def path_pattern(top_dirs):
    names = "|".join(re.escape(d) for d in sorted(top_dirs))
    return re.compile(r"(?<![\w./$~@-])((?:%s)/[\w./+-]*)" % names)


def repo_paths(text, pattern):
    """The repository paths named in `text`, patterns left out."""
    for match in pattern.finditer(text):
        path = match.group(1)
        following = text[match.end():match.end() + 1]
        if following in PATTERN_NEXT or "..." in path:
            continue
        yield path.rstrip(".,:;")


def exists(repo, source, path):
    return any(os.path.exists(os.path.join(base, path))
               for base in (repo, os.path.dirname(os.path.join(repo, source))))


def check(repo):
    """Returns the findings, "file:line: message", for the tree at `repo`."""
    files = tracked_files(repo)
    top_dirs = {f.split("/", 1)[0] for f in files if "/" in f}
    pattern = path_pattern(top_dirs)
    rules = ignore_rules(repo, files)
    basenames = {os.path.basename(f) for f in files}
    findings = []

    def references(source, number, text):
        for path in repo_paths(text, pattern):
            if not exists(repo, source, path) and not ignored(rules, path):
                findings.append(f"{source}:{number}: names {path}, which does not exist")
        for match in BARE_DOC.finditer(text):
            if match.group(1) not in basenames:
                findings.append(f"{source}:{number}: names {match.group(1)}, which is not in "
                                "the repository")

    for source in sorted(files):
        try:
            text = open(os.path.join(repo, source), encoding="utf-8").read()
        except (UnicodeDecodeError, OSError):
            continue
        if source.endswith(CPP):
            for kind, chunk, number in cpp_comments_and_literals(text):
                if kind == "comment":
                    references(source, number, chunk)
                elif not chunk.isascii() and not source.endswith(".proto"):
                    findings.append(f"{source}:{number}: non-ASCII string literal {chunk}")
        elif source.endswith(".py"):
            for chunk, number in python_comments(text):
                references(source, number, chunk)
        elif source.endswith(SHELL_LIKE) and (not source.endswith(".txt")
                                              or os.path.basename(source) == "CMakeLists.txt"):
            for chunk, number in hash_comments(text):
                references(source, number, chunk)
        elif source.endswith(".md"):
            for kind, chunk, number in markdown_references(text):
                if kind == "code":
                    references(source, number, chunk)
                    continue
                if kind == "prose":
                    for match in BARE_DOC.finditer(chunk):
                        if match.group(1) not in basenames:
                            findings.append(f"{source}:{number}: names {match.group(1)}, "
                                            "which is not in the repository")
                    continue
                target = chunk.split("#", 1)[0]
                if target and not re.match(r"^[a-z]+:", chunk) and not exists(
                        repo, source, target):
                    findings.append(f"{source}:{number}: links {target}, which does not exist")
    return findings


# ---- self-test ----

PLANTED = {
    "server/core/real.h": "// See server/core/gone.h and server/core/real.cc.\n"
                          "// Patterns pass: server/core/*.h, server/core/<name>.h.\n"
                          "const char* kMessage = \"n \u2265 1\";\n"
                          "const char* kPath = \"server/core/not_a_comment.h\";\n",
    "server/core/real.cc": "/* A block naming docs/missing.md. */\n",
    "tests/check.py": "\"\"\"Runs tests/gone.sh.\"\"\"\n# and tests/check.py\nx = 'docs/y.md'\n",
    "tests/run.sh": "#!/bin/sh\n# Calls tests/nothing_here.sh\necho \"# tests/quoted.sh\"\n",
    "tests/CMakeLists.txt": "# Registers tests/lost/check.cmake\n",
    "docs/guide.md": "See [the design](DESIGN.md), [ok](../server/core/real.h#L1), "
                     "`server/core/absent.cc`, [web](https://x.org/a.md).\n"
                     "```\nserver/core/in_a_fence.h\n```\n"
                     "As NOTES.md says; README.md is here; `docs/generated/x.txt` is made.\n",
    "README.md": "# Planted\n",
    ".gitignore": "/docs/generated/\n",
}
EXPECTED = [
    "docs/guide.md:1: links DESIGN.md, which does not exist",
    "docs/guide.md:1: names server/core/absent.cc, which does not exist",
    "docs/guide.md:5: names NOTES.md, which is not in the repository",
    "server/core/real.cc:1: names docs/missing.md, which does not exist",
    "server/core/real.h:1: names server/core/gone.h, which does not exist",
    "server/core/real.h:3: non-ASCII string literal \"n \u2265 1\"",
    "tests/CMakeLists.txt:1: names tests/lost/check.cmake, which does not exist",
    "tests/check.py:1: names tests/gone.sh, which does not exist",
    "tests/run.sh:2: names tests/nothing_here.sh, which does not exist",
]


def self_test():
    with tempfile.TemporaryDirectory() as repo:
        for path, text in PLANTED.items():
            os.makedirs(os.path.dirname(os.path.join(repo, path)), exist_ok=True)
            with open(os.path.join(repo, path), "w", encoding="utf-8") as f:
                f.write(text)
        found = sorted(check(repo))
    if found != EXPECTED:
        print("FAIL: the planted findings were not reported exactly")
        print("expected:\n  " + "\n  ".join(EXPECTED))
        print("found:\n  " + "\n  ".join(found))
        return 1
    print(f"self-test: all {len(EXPECTED)} planted findings reported, nothing else")
    return 0


def main():
    if sys.argv[1:] == ["--self-test"]:
        return self_test()
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    findings = check(os.path.realpath(sys.argv[1]))
    for finding in findings:
        print(finding)
    if findings:
        print(f"FAIL: {len(findings)} finding(s)")
        return 1
    print("every path named in comments and docs exists; every C++ literal is ASCII")
    return 0


if __name__ == "__main__":
    sys.exit(main())
