"""
The corpus of malformed data files: every case is read and gives exactly its recorded result.

Each case is a folder ``tests/data/malformed/<format>/<case>/`` holding a dataset (one broken file and
what it needs beside it) and ``expect.txt``, whose first line is either ``# expect: <message>``, the
exact ``DataError`` message with paths relative to the case folder (``.`` for the folder itself), or
``# reads as: <json>``, the ratings ``[user, movie, stars, date]`` and movies ``[id, year, title]`` the
dataset reads as. Later lines are comments. See ``tests/data/malformed/README.md``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from llmrec.data import Dataset, day_to_date, netflix
from llmrec.data.movielens import read_movielens
from llmrec.data.netflix import read_netflix
from llmrec.errors import DataError

CORPUS = Path(__file__).parent / "data" / "malformed"
CASES = sorted(p.parent for p in CORPUS.glob("*/*/expect.txt"))
READERS: dict[str, Callable[[Path], Dataset]] = {
    "netflix": read_netflix,
    "movielens-100k": read_movielens,
    "movielens-1m": read_movielens,
    "movielens-latest": read_movielens,
}
EXPECT, READS_AS = "# expect: ", "# reads as: "


def _expectation(case: Path) -> tuple[str, str]:
    first = (case / "expect.txt").read_text(encoding="utf-8").splitlines()[0]
    for prefix in (EXPECT, READS_AS):
        if first.startswith(prefix):
            return prefix, first[len(prefix) :]
    msg = f"{case}/expect.txt: the first line must start with {EXPECT!r} or {READS_AS!r}"
    raise AssertionError(msg)


def _relative(text: str, case: Path) -> str:
    return text.replace(f"{case}{os.sep}", "").replace(str(case), ".")


def _error(case: Path, read: Callable[[Path], Dataset]) -> DataError:
    with pytest.raises(DataError) as info:
        read(case)
    return info.value


def _as_json(dataset: Dataset) -> dict[str, list[list[object]]]:
    r, m = dataset.ratings, dataset.movies
    ratings = [
        [u, mv, s, day_to_date(d).isoformat()]
        for u, mv, s, d in zip(
            r.user.tolist(), r.movie.tolist(), r.stars.tolist(), r.day.tolist(), strict=True
        )
    ]
    movies = [[i, y, t] for i, y, t in zip(m.ids.tolist(), m.years.tolist(), m.titles, strict=True)]
    return {"ratings": ratings, "movies": movies}


def test_corpus_covers_every_reader() -> None:
    """The corpus holds at least 60 malformed datasets, and some of every format, errors and reads."""
    kinds = [(case.parent.name, _expectation(case)[0]) for case in CASES]

    assert sum(kind == EXPECT for _, kind in kinds) >= 60
    assert {fmt for fmt, _ in kinds} == set(READERS)
    for fmt in READERS:
        assert (fmt, EXPECT) in kinds
        assert (fmt, READS_AS) in kinds


@pytest.mark.parametrize("case", CASES, ids=[f"{c.parent.name}/{c.name}" for c in CASES])
def test_case_gives_its_recorded_result(case: Path) -> None:
    """A case raises DataError with exactly its message, naming its file and line, or reads as recorded."""
    kind, expected = _expectation(case)
    read = READERS[case.parent.name]

    if kind == READS_AS:
        assert _as_json(read(case)) == json.loads(expected)
        return
    error = _error(case, read)
    message = _relative(str(error), case)
    where = _relative(error.path, case)

    assert message == expected
    assert where == "." or Path(where).name == where  # a file of the case, named relative to it
    if error.line is None:
        assert message.startswith(f"{where}: ")
    else:
        assert message.startswith(f"{where}:{error.line}: ")
        assert error.line <= (case / where).read_bytes().count(b"\n") + 1


def test_docs_show_every_message() -> None:
    """docs/data.md shows the exact message of every error case of the corpus."""
    docs = (Path(__file__).parents[1] / "docs" / "data.md").read_text(encoding="utf-8")

    missing = [
        case.name
        for case in CASES
        if _expectation(case)[0] == EXPECT
        and f"| `{case.name}` | `{_expectation(case)[1].replace('|', chr(92) + '|')}` |" not in docs
    ]
    assert missing == []


NETFLIX_ERRORS = [c for c in CASES if c.parent.name == "netflix" and _expectation(c)[0] == EXPECT]


@pytest.mark.parametrize("case", NETFLIX_ERRORS, ids=[c.name for c in NETFLIX_ERRORS])
def test_netflix_case_reads_the_same_in_tiny_chunks_and_with_a_cache(
    case: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Netflix case gives the same message when read 7 bytes a chunk, and through the parse cache."""
    expected = _expectation(case)[1]
    cached = _error(case, lambda folder: read_netflix(folder, cache_dir=tmp_path / "cache"))
    monkeypatch.setattr(netflix, "_BLOCK_BYTES", 7)
    chunked = _error(case, read_netflix)

    assert _relative(str(cached), case) == expected
    assert _relative(str(chunked), case) == expected
    assert not (tmp_path / "cache").exists() or not [
        p for p in (tmp_path / "cache").iterdir() if p.name.startswith("ratings-")
    ]


def test_repeated_pair_is_found_among_many_ratings(tmp_path: Path) -> None:
    """A pair repeated far apart in a big block, among 200,000 ratings in several files, names both lines."""
    rng = np.random.default_rng(5)
    users = rng.choice(2_000_000, 200_000, replace=False) + 1
    lines = [b"1:", *(b"%d,3,2005-01-01" % u for u in users[:150_000].tolist())]
    lines[100_001] = lines[20_001]  # rating line 20,001 (file line 20,002) again on file line 100,002
    (tmp_path / "combined_data_1.txt").write_bytes(b"\n".join(lines) + b"\n")
    second = [b"2:", *(b"%d,4,2005-01-02" % u for u in users[150_000:].tolist())]
    (tmp_path / "combined_data_2.txt").write_bytes(b"\n".join(second) + b"\n")
    (tmp_path / "movie_titles.csv").write_bytes(b"1,2001,A\n2,2002,B\n")

    error = _error(tmp_path, read_netflix)

    assert error.path == str(tmp_path / "combined_data_1.txt")
    assert error.line == 100_002
    assert f"customer {users[20_000]} rated movie 1 already on line 20002;" in str(error)


def test_unreadable_file_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rating file without read permission is a DataError naming it."""
    (tmp_path / "movie_titles.csv").write_bytes(b"1,2001,A\n")
    path = tmp_path / "combined_data_1.txt"
    path.write_bytes(b"1:\n12,3,2005-01-01\n")
    path.chmod(0)
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # root reads any file: refuse as the kernel would

        def refuse(file: object, *args: object, **kwargs: object) -> object:
            raise PermissionError(13, "Permission denied", str(file))

        monkeypatch.setattr(netflix, "open", refuse, raising=False)

    error = _error(tmp_path, read_netflix)

    assert str(error) == f"{path}: cannot read file (Permission denied)"


def test_cli_exits_2_with_one_error_line(tmp_path: Path) -> None:
    """`llmrec run` on a malformed Netflix folder exits 2 printing one 'error:' line and no traceback."""
    case = CORPUS / "netflix" / "repeated-pair"
    spec = tmp_path / "spec.toml"
    spec.write_text(f'[dataset]\nformat = "netflix"\npath = "{case}"\n', encoding="utf-8")
    command = [sys.executable, "-m", "llmrec.cli", "run", str(spec), "--out", str(tmp_path / "out")]
    done = subprocess.run(
        [*command, "--runs", str(tmp_path / "runs"), "--quiet"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )

    assert done.returncode == 2
    message = _expectation(case)[1].removeprefix("combined_data_1.txt:4: ")
    assert done.stderr.splitlines() == [f"error: {case / 'combined_data_1.txt'}:4: {message}"]
    assert "Traceback" not in done.stderr
