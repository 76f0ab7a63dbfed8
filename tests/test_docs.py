"""Every code block and relative link of README.md and docs/*.md is checked (tests/test_readme.py runs the two
examples that train):

- bash blocks: each command that runs ``run_mixcse.py`` (directly, through ``accelerate launch`` or ``torchrun``),
  a ``mixcse-*`` command, ``python -m mixcse_hf...``, ``python benchmarks/...``, ``python scripts/...``,
  ``bash scripts/...`` or ``sbatch scripts/...`` names files that exist, and its ``--flags`` are ones the program
  takes (run_mixcse.py's own parser, the tool's ``--help``, the script's source);
- python blocks compile, and their ``from mixcse_hf... import X`` lines import;
- every relative link points to an existing file, and a ``#anchor`` to a heading of its target (GitHub's slugs);
- the pages speak of the project, not of the machines or sessions that wrote them.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

PAGES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n?", flags=re.S | re.M)
PLACEHOLDER = re.compile(r"^(CONFIG(\.yaml)?|[A-Z_]+(\.[a-z]+)?)$")
"""Words that stand for a value the reader chooses (CONFIG.yaml, RUN_DIR, MODEL, ...)."""
RUN_MIXCSE_EXTRA_FLAGS = {"help", "help_all", "debug", "version"}
"""run_mixcse.py's flags outside the argument dataclasses (answered before parsing)."""
PLACEHOLDER_FLAGS = {"any_argument"}
"""``[--any_argument value ...]``: any flag the reader chooses."""


def page_id(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT))


def code_blocks(path: Path) -> list[tuple[str, str]]:
    """(language, code) of each fenced block of ``path``."""
    return [(match.group(1), match.group(2)) for match in FENCE.finditer(path.read_text(encoding="utf-8"))]


def prose(path: Path) -> str:
    """``path`` without its fenced blocks and inline code spans: what renders as text, links and headings."""
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    return re.sub(r"`[^`\n]*`", "", text)


def blocks_of(language: str) -> list[tuple[str, int, str]]:
    """(page, index on that page, code) of every block in ``language`` over all pages."""
    found = []
    for path in PAGES:
        blocks = [code for lang, code in code_blocks(path) if lang == language]
        found += [(page_id(path), index, code) for index, code in enumerate(blocks)]
    return found


# --- commands of bash blocks ---------------------------------------------------------------------------------


def commands(code: str) -> list[list[str]]:
    """The simple commands of a bash block: continuation lines joined, comments and redirections dropped, split
    at ``&&``, ``||``, ``;``, ``|`` and ``&``, without leading ``VAR=value`` assignments and ``nohup``."""
    found: list[list[str]] = []
    for line in code.replace("\\\n", " ").splitlines():
        line = re.sub(r"(^|\s)#.*$", "", line)  # a comment starts a word, as in bash
        line = re.sub(r"\s\d?(>>?|<)(&\d+|\s*\S+)", " ", line)  # > file, 2>&1, < file
        current: list[str] = []
        for word in shlex.split(line):
            if word in {"&&", "||", ";", "|", "&"}:
                found.append(current)
                current = []
            elif current or not (re.fullmatch(r"[A-Za-z_]\w*=.*", word) or word == "nohup"):
                current.append(word)
        found.append(current)
    return [command for command in found if command]


def flags(words: list[str]) -> list[str]:
    """The ``--flag`` names among ``words`` (optional ``[--flag v]`` brackets and ``=value`` removed)."""
    names = []
    for word in words:
        word = word.strip("[]")
        if word.startswith("--") and len(word) > 2:
            names.append(word[2:].split("=", 1)[0])
    return names


def positionals(words: list[str]) -> list[str]:
    """The words of a run_mixcse.py command line that are not flags or flag values (the config)."""
    found, after_flag = [], False
    for word in words:
        if word.startswith(("--", "[--")):
            after_flag = "=" not in word
        elif after_flag or word.startswith("["):
            after_flag = False
        else:
            found.append(word)
    return found


@functools.cache
def run_mixcse_flags() -> frozenset[str]:
    from mixcse_hf.training.config import build_parser

    names = {option[2:] for action in build_parser()._actions for option in action.option_strings}
    return frozenset(names | RUN_MIXCSE_EXTRA_FLAGS)


@functools.cache
def help_flags(*command: str) -> frozenset[str]:
    """The ``--flags`` that ``command --help`` prints (it must exit 0)."""
    proc = subprocess.run([*command, "--help"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{' '.join(command)} --help failed: {proc.stderr[-1000:]}"
    return frozenset(re.findall(r"--([\w-]+)", proc.stdout))


@functools.cache
def console_scripts() -> dict[str, str]:
    """name -> module of setup.py's console_scripts."""
    tree = ast.parse((REPO_ROOT / "setup.py").read_text(encoding="utf-8"))
    entries = next(
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.keyword) and node.arg == "entry_points" and isinstance(node.value, ast.Dict)
    )
    scripts = ast.literal_eval(entries)["console_scripts"]
    return {name.strip(): target.split(":")[0].strip() for name, target in (line.split("=") for line in scripts)}


def source_flags(path: Path) -> set[str]:
    """The ``--flags`` a script's source names (for benchmarks/, their shared harness too)."""
    sources = [path] + ([REPO_ROOT / "benchmarks" / "harness.py"] if path.parent.name == "benchmarks" else [])
    return {flag for source in sources for flag in re.findall(r"--([\w-]+)", source.read_text(encoding="utf-8"))}


def check_train(words: list[str], where: str) -> list[str]:
    """run_mixcse.py's arguments: the config exists (a file, a shipped config's name, or a placeholder), every flag
    is one of its parser's."""
    from mixcse_hf.training.config import shipped_configs

    problems = []
    for word in positionals(words)[:1]:
        if not PLACEHOLDER.match(word) and not (REPO_ROOT / word).is_file() and word not in shipped_configs():
            problems.append(f"{where}: config {word} does not exist")
    known = run_mixcse_flags() | PLACEHOLDER_FLAGS
    problems += [f"{where}: run_mixcse.py has no --{name}" for name in flags(words) if name not in known]
    return problems


def check_file(word: str, where: str) -> list[str]:
    return [] if (REPO_ROOT / word).is_file() else [f"{where}: {word} does not exist"]


def check_command(words: list[str], where: str) -> list[str]:
    """What is wrong with one command of a bash block (empty: nothing, or not a command of this project)."""
    program, args = words[0], words[1:]
    if program in {"python", "python3"} and args:
        if args[0] == "run_mixcse.py":
            return check_train(args[1:], where)
        if args[0] == "-m" and len(args) > 1 and args[1].startswith("mixcse_hf"):
            module = args[1]
            spec = importlib.util.find_spec(module)
            if spec is None:
                return [f"{where}: no module {module}"]
            known = help_flags(sys.executable, "-m", module)
            return [f"{where}: {module} has no --{name}" for name in flags(args[2:]) if name not in known]
        if args[0].startswith(("benchmarks/", "scripts/")):
            if problems := check_file(args[0], where):
                return problems
            known = source_flags(REPO_ROOT / args[0])
            return [f"{where}: {args[0]} has no --{name}" for name in flags(args[1:]) if name not in known]
        return []
    if program == "bash" and args and args[0].startswith("scripts/"):
        if problems := check_file(args[0], where):
            return problems
        known = source_flags(REPO_ROOT / args[0])
        return [f"{where}: {args[0]} has no --{name}" for name in flags(args[1:]) if name not in known]
    if program == "sbatch":
        script = next((word for word in args if word.startswith("scripts/")), None)
        if script is None:
            return [f"{where}: sbatch of no script of this repository"]
        rest = args[args.index(script) + 1 :]
        return check_file(script, where) + [
            problem for word in rest[:1] if not PLACEHOLDER.match(word) for problem in check_file(word, where)
        ]
    if program in {"accelerate", "torchrun"}:
        if "run_mixcse.py" not in args:
            return [f"{where}: {program} without run_mixcse.py"]
        split = args.index("run_mixcse.py")
        launcher, train = args[:split], args[split + 1 :]
        problems = check_train(train, where)
        if program == "accelerate":
            known = help_flags("accelerate", "launch")
            problems += [f"{where}: accelerate launch has no --{name}" for name in flags(launcher) if name not in known]
            if "--config_file" in launcher:
                problems += check_file(launcher[launcher.index("--config_file") + 1], where)
        return problems
    if program.startswith("mixcse-"):
        if program not in console_scripts():
            return [f"{where}: {program} is not a console script of setup.py"]
        if program == "mixcse-train":
            return check_train(args, where)
        known = help_flags(sys.executable, "-m", console_scripts()[program])
        return [f"{where}: {program} has no --{name}" for name in flags(args) if name not in known]
    return []


BASH_BLOCKS = blocks_of("bash")


@pytest.mark.parametrize(("page", "index", "code"), BASH_BLOCKS, ids=[f"{p}#{i}" for p, i, _ in BASH_BLOCKS])
def test_bash_block_commands_name_existing_files_and_flags(page: str, index: int, code: str) -> None:
    problems = [problem for words in commands(code) for problem in check_command(words, f"{page} bash block {index}")]
    assert not problems, "\n".join(problems)


def test_the_command_checks_find_what_is_wrong() -> None:
    """The checker itself: each kind of mistake is reported, and a good line passes."""
    good = (
        "MIXCSE_DATA_DIR=../shared/data python run_mixcse.py configs/quickstart.yaml --max_steps 5 "
        "[--padding_free true] && bash scripts/gpu_check.sh --smoke\n"
        "accelerate launch --config_file configs/accelerate/default.yaml run_mixcse.py CONFIG.yaml [...]"
    )
    assert [problem for words in commands(good) for problem in check_command(words, "x")] == []
    bad = {
        "python run_mixcse.py configs/quickstart.yaml --no_such_flag 1": "run_mixcse.py has no --no_such_flag",
        "python run_mixcse.py configs/missing.yaml": "config configs/missing.yaml does not exist",
        "mixcse-train quikstart": "config quikstart does not exist",
        "bash scripts/missing.sh": "scripts/missing.sh does not exist",
        "python benchmarks/streaming.py make --no_such_flag": "benchmarks/streaming.py has no --no_such_flag",
        "mixcse-nothing x": "mixcse-nothing is not a console script",
        "accelerate launch --config_file configs/accelerate/missing.yaml run_mixcse.py CONFIG": "missing.yaml",
    }
    for line, expected in bad.items():
        problems = [problem for words in commands(line) for problem in check_command(words, "x")]
        assert any(expected in problem for problem in problems), (line, problems)


# --- python blocks -------------------------------------------------------------------------------------------

PYTHON_BLOCKS = blocks_of("python")


@pytest.mark.parametrize(("page", "index", "code"), PYTHON_BLOCKS, ids=[f"{p}#{i}" for p, i, _ in PYTHON_BLOCKS])
def test_python_block_compiles_and_its_mixcse_imports_import(page: str, index: int, code: str) -> None:
    tree = compile(code, f"{page} python block {index}", "exec", flags=ast.PyCF_ONLY_AST)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "mixcse_hf":
            module = importlib.import_module(node.module)
            missing = [alias.name for alias in node.names if not hasattr(module, alias.name)]
            assert not missing, f"{page} python block {index}: {node.module} has no {missing}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "mixcse_hf":
                    importlib.import_module(alias.name)
    compile(code, f"{page} python block {index}", "exec")


def test_every_page_has_its_blocks_checked() -> None:
    """Every fenced block is bash, python or the citation's bibtex: a block in another language would go unchecked."""
    languages = {language for path in PAGES for language, _ in code_blocks(path)}
    assert languages <= {"bash", "python", "bibtex"}, languages


# --- links ---------------------------------------------------------------------------------------------------

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation but ``-`` and ``_`` dropped, spaces to ``-``."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@functools.cache
def anchors(path: Path) -> frozenset[str]:
    """The anchors of ``path``'s headings; a repeated slug gets ``-1``, ``-2``, ... as on GitHub."""
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    found = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *#*$", text, flags=re.M):
        base = slug(heading)
        found.add(f"{base}-{seen[base]}" if base in seen else base)
        seen[base] = seen.get(base, 0) + 1
    return frozenset(found)


def link_problems(path: Path) -> list[str]:
    problems = []
    for target in LINK.findall(prose(path)):
        if re.match(r"^[a-z][a-z+.-]*:", target):  # https:, mailto: ...
            continue
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        where = f"{page_id(path)}: ({target})"
        if not resolved.exists():
            problems.append(f"{where}: {file_part} does not exist")
        elif REPO_ROOT.resolve() not in resolved.parents and resolved != REPO_ROOT.resolve():
            problems.append(f"{where}: points outside the repository")
        elif anchor:
            if resolved.suffix != ".md":
                problems.append(f"{where}: an anchor into a file that is not markdown")
            elif anchor not in anchors(resolved):
                problems.append(f"{where}: {resolved.name} has no heading #{anchor}")
    return problems


@pytest.mark.parametrize("path", PAGES, ids=page_id)
def test_relative_links_point_to_existing_files_and_headings(path: Path) -> None:
    problems = link_problems(path)
    assert not problems, "\n".join(problems)


def test_the_link_check_finds_broken_links(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(sys.modules[__name__], "REPO_ROOT", tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("# Title\n\n## A `code` heading: yes\n", encoding="utf-8")
    page = tmp_path / "docs" / "page.md"
    page.write_text(
        "# Page\n\n[ok](../README.md#a-code-heading-yes) [self](#page) [web](https://example.com/x)\n"
        "[gone](missing.md) [bad anchor](../README.md#nothing) `[in code](missing.md)`\n"
        "```bash\n[in a block](missing.md)\n```\n",
        encoding="utf-8",
    )
    problems = link_problems(page)
    assert len(problems) == 2 and "missing.md does not exist" in problems[0] and "no heading #nothing" in problems[1]


# --- the project, not its history ----------------------------------------------------------------------------

STORY = re.compile(
    r"\bsessions?\b|\bworkspace\b|\blent\b|this machine|\bissue \d+",
    flags=re.I,
)
"""Words of how files reached a machine or who ran what, rather than of the project."""


@pytest.mark.parametrize(
    "path",
    [*PAGES, *sorted(p for p in (REPO_ROOT / "scripts").rglob("*") if p.is_file())],
    ids=lambda path: str(path.relative_to(REPO_ROOT)),
)
def test_pages_and_scripts_speak_of_the_project(path: Path) -> None:
    hits = [
        f"{path.name}:{number}: {line.strip()}"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if STORY.search(line)
    ]
    assert not hits, "\n".join(hits)
