"""
Tests for llmrec.data.movielens: reading ml-100k, ml-1m and ml-latest folders.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import attrs
import numpy as np
import pytest

from llmrec.data import Dataset
from llmrec.data import movielens as ml
from llmrec.data.movielens import (
    STAR_SCALE,
    detect_layout,
    read_movielens,
    read_movielens_with_ids,
    split_year,
)
from llmrec.errors import DataError
from llmrec.evaluate import run_experiment
from llmrec.providers.fake import FakeProvider
from llmrec.spec import parse_spec

FIXTURES = Path(__file__).parent / "data" / "movielens"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "movielens"
SPEC = Path(__file__).resolve().parents[1] / "specs" / "movielens.toml"

CSV_HEAD = "userId,movieId,rating,timestamp\n"

# The hand-made fixture folders and their two files.
LAYOUT_FILES = {
    "ml-100k": ("u.data", "u.item"),
    "ml-1m": ("ratings.dat", "movies.dat"),
    "ml-latest": ("ratings.csv", "movies.csv"),
}


def _copy(tmp_path: Path, layout: str) -> Path:
    """
    A copy of one fixture folder, to be altered by a test.
    """
    folder = tmp_path / layout
    shutil.copytree(FIXTURES / layout, folder)
    return folder


def _with(tmp_path: Path, layout: str, name: str, text: bytes) -> Path:
    """
    A copy of one fixture folder with one file replaced by ``text``.
    """
    folder = _copy(tmp_path, layout)
    (folder / name).write_bytes(text)
    return folder


def _error(folder: Path) -> DataError:
    with pytest.raises(DataError) as info:
        read_movielens(folder)
    return info.value


def _columns(dataset: Dataset) -> list[list[int]]:
    r = dataset.ratings
    return [r.user.tolist(), r.movie.tolist(), r.stars.tolist(), r.day.tolist()]


def _shared(name: str, *files: str) -> Path:
    folder = SHARED / name
    if not all((folder / f).is_file() for f in files):
        pytest.skip(f"genuine MovieLens {name} not found under {SHARED}")
    return folder


# --- the three layouts ---------------------------------------------------------------------------


def test_ml_100k_fixture() -> None:
    """u.data and u.item read with dense ids, doubled stars, the Latin-1 title and the title's year."""
    dataset, original = read_movielens_with_ids(FIXTURES / "ml-100k")
    movies = dataset.movies

    assert original.tolist() == [1, 2, 4, 11, 267, 543]
    assert movies.ids.tolist() == [1, 2, 3, 4, 5, 6]
    assert movies.titles == (
        "Toy Story",
        "GoldenEye",
        "Get Shorty",
        "Seven (Se7en)",
        "unknown",
        "Misérables, Les",
    )
    assert movies.years.tolist() == [1995, 1995, 1995, 1995, 0, 1995]
    assert _columns(dataset)[:3] == [
        [196, 186, 22, 196, 186, 22, 244, 22],
        [1, 2, 6, 4, 1, 3, 6, 1],
        [6, 6, 2, 10, 10, 8, 4, 10],
    ]
    assert dataset.ratings.day[0] == 881250949 // 86400
    assert dataset.ratings.star_scale == STAR_SCALE == 2
    assert dataset.source == str(FIXTURES / "ml-100k")


def test_ml_1m_fixture() -> None:
    """ratings.dat and movies.dat read with '::' fields and the Latin-1 title."""
    dataset, original = read_movielens_with_ids(FIXTURES / "ml-1m")

    assert original.tolist() == [1, 10, 29, 3952]
    assert dataset.movies.titles[2] == "City of Lost Children, The (Cité des enfants perdus, La)"
    assert dataset.movies.display(4) == "Contender, The (2000)"
    assert _columns(dataset) == [
        [1, 1, 1, 2, 2, 6040],
        [1, 4, 3, 2, 1, 3],
        [10, 6, 8, 2, 10, 4],
        [t // 86400 for t in (978824268, 978300760, 978302109, 978298413, 978299026, 956703977)],
    ]


def test_ml_latest_fixture() -> None:
    """ratings.csv and movies.csv read with quoted commas, a doubled quote, UTF-8 and sparse ids."""
    dataset, original = read_movielens_with_ids(FIXTURES / "ml-latest")
    movies = dataset.movies

    assert original.tolist() == [1, 11, 47, 1461, 4973, 7789, 193609]
    assert original.dtype == np.int32
    assert movies.titles == (
        "Toy Story",
        "American President, The",
        "Seven (a.k.a. Se7en)",
        "From Dusk Till Dawn 2: Texas Blood Money",
        "Amelie (Fabuleux destin d'Amélie Poulain, Le)",
        "11'09\"01 - September 11",
        "Babylon 5",
    )
    assert movies.years.tolist() == [1995, 1995, 1995, 1999, 2001, 2002, 0]
    assert _columns(dataset)[:3] == [
        [1, 1, 1, 2, 2, 2, 3],
        [1, 3, 5, 2, 6, 7, 1],
        [8, 10, 1, 9, 6, 10, 5],
    ]


def test_unrated_movies_stay_in_the_catalogue() -> None:
    """Listed movies nobody rated (1461 in the fixture) keep their place in the catalogue."""
    dataset = read_movielens(FIXTURES / "ml-latest")

    assert len(dataset.movies) == 7
    assert 4 not in dataset.ratings.movie.tolist()
    assert dataset.movies.display(4) == "From Dusk Till Dawn 2: Texas Blood Money (1999)"


def test_half_stars_are_doubled_and_only_five_is_five_stars() -> None:
    """0.5 -> 1, 4.5 -> 9 and 5.0 -> 10, so at star_scale 2 only 5.0 reaches five stars."""
    dataset = read_movielens(FIXTURES / "ml-latest")
    stars = dataset.ratings.stars
    five = stars == 5 * dataset.ratings.star_scale

    assert stars.tolist() == [8, 10, 1, 9, 6, 10, 5]
    assert five.tolist() == [False, True, False, False, False, True, False]


@pytest.mark.parametrize("rating", ["4", "4.0"])
def test_whole_star_csv_rating_forms(tmp_path: Path, rating: str) -> None:
    """A whole-star rating may be written with or without '.0'."""
    folder = _with(
        tmp_path, "ml-latest", "ratings.csv", f"userId,movieId,rating,timestamp\n1,1,{rating},0\n".encode()
    )

    assert read_movielens(folder).ratings.stars.tolist() == [8]


def test_movie_ids_are_int16_when_the_catalogue_fits(tmp_path: Path) -> None:
    """The ratings' movie column is int16 up to 32,767 movies and int32 beyond (as ml-25m needs)."""
    small = read_movielens(FIXTURES / "ml-latest")
    n = 40_000
    folder = tmp_path / "big"
    folder.mkdir()
    rows = "".join(f"{i},Movie {i} (2000),Drama\n" for i in range(1, n + 1))
    (folder / "movies.csv").write_text("movieId,title,genres\n" + rows)
    (folder / "ratings.csv").write_text(f"userId,movieId,rating,timestamp\n1,{n},5.0,0\n")
    big = read_movielens(folder)

    assert small.ratings.movie.dtype == np.int16
    assert big.ratings.movie.dtype == np.int32
    assert big.ratings.movie.tolist() == [n]


@pytest.mark.parametrize("layout", sorted(LAYOUT_FILES))
def test_crlf_reads_like_lf(tmp_path: Path, layout: str) -> None:
    """Files with CRLF line ends read the same as the LF originals."""
    folder = _copy(tmp_path, layout)
    for name in LAYOUT_FILES[layout]:
        path = folder / name
        path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    expected = read_movielens(FIXTURES / layout)
    got = read_movielens(folder)

    assert _columns(got) == _columns(expected)
    assert got.movies.titles == expected.movies.titles


@pytest.mark.parametrize("layout", sorted(LAYOUT_FILES))
def test_missing_final_newline_is_fine(tmp_path: Path, layout: str) -> None:
    """The last line of either file may lack its newline."""
    folder = _copy(tmp_path, layout)
    for name in LAYOUT_FILES[layout]:
        path = folder / name
        path.write_bytes(path.read_bytes().removesuffix(b"\n"))
    expected = read_movielens(FIXTURES / layout)
    got = read_movielens(folder)

    assert _columns(got) == _columns(expected)
    assert got.movies.titles == expected.movies.titles


@pytest.mark.parametrize("layout", sorted(LAYOUT_FILES))
def test_blocks_split_anywhere_read_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout: str
) -> None:
    """Parsing in tiny blocks (so lines of every shape meet a block edge) gives the same columns."""
    expected = _columns(read_movielens(FIXTURES / layout))
    monkeypatch.setattr(ml, "_BLOCK_BYTES", 7)

    assert _columns(read_movielens(FIXTURES / layout)) == expected


def test_line_numbers_count_across_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad line found in a later block is still reported with its line in the file."""
    lines = [CSV_HEAD.strip(), *(f"{u},1,4.0,0" for u in range(1, 40)), "41,1,9.0,0"]
    folder = _with(tmp_path, "ml-latest", "ratings.csv", ("\n".join(lines) + "\n").encode())
    monkeypatch.setattr(ml, "_BLOCK_BYTES", 20)
    error = _error(folder)

    assert error.line == len(lines)
    assert "rating 9.0" in str(error)


def test_repeats_are_found_across_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A (user, movie) pair repeated in a later block names both lines of the file."""
    lines = [CSV_HEAD.strip(), *(f"{u},1,4.0,0" for u in range(1, 40)), "7,1,3.0,0", "50,1,4.0,0"]
    folder = _with(tmp_path, "ml-latest", "ratings.csv", ("\n".join(lines) + "\n").encode())
    monkeypatch.setattr(ml, "_BLOCK_BYTES", 20)
    error = _error(folder)

    assert error.line == 41
    assert "user 7 rated movie 1 already on line 8" in str(error)


def test_header_only_ratings_file(tmp_path: Path) -> None:
    """A ratings.csv with only its header is an error naming it: a dataset needs ratings."""
    folder = _with(tmp_path, "ml-latest", "ratings.csv", b"userId,movieId,rating,timestamp\r\n")
    error = _error(folder)

    assert str(error) == f"{folder / 'ratings.csv'}: no ratings: the file holds only its header"


# --- titles --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("Heat (1995)", ("Heat", 1995)),
        ("Seven (a.k.a. Se7en) (1995)", ("Seven (a.k.a. Se7en)", 1995)),
        ("American President, The (1995)", ("American President, The", 1995)),
        (
            "From Dusk Till Dawn 2: Texas Blood Money (1999) ",
            ("From Dusk Till Dawn 2: Texas Blood Money", 1999),
        ),
        ("Babylon 5", ("Babylon 5", 0)),
        ("Death Note: Desu nôto (2006–2007)", ("Death Note: Desu nôto (2006–2007)", 0)),
        ("Land Before Time III (1995) (V)", ("Land Before Time III (1995) (V)", 0)),
        ("1984 (1984)", ("1984", 1984)),
        ("(1995)", ("(1995)", 0)),
    ],
)
def test_split_year(title: str, expected: tuple[str, int]) -> None:
    """Only a final '(YYYY)' is the year; everything before it is the title, as written."""
    assert split_year(title) == expected


# --- layout detection ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("layout", "name"), [("ml-100k", "ml-100k"), ("ml-1m", "ml-1m"), ("ml-latest", "ml-latest")]
)
def test_detect_layout(layout: str, name: str) -> None:
    """Each fixture folder is told apart by its ratings file."""
    assert detect_layout(FIXTURES / layout).name.startswith(name)


def test_missing_folder(tmp_path: Path) -> None:
    """A folder that does not exist is a DataError naming it."""
    error = _error(tmp_path / "nope")

    assert error.path == str(tmp_path / "nope")
    assert error.line is None


def test_folder_without_ratings(tmp_path: Path) -> None:
    """A folder with none of the ratings files is a DataError naming all three."""
    error = _error(tmp_path)

    assert error.path == str(tmp_path)
    assert "u.data, ratings.dat, ratings.csv" in str(error)


def test_two_layouts_in_one_folder(tmp_path: Path) -> None:
    """A folder holding two layouts' ratings files is refused rather than guessed."""
    folder = _copy(tmp_path, "ml-latest")
    shutil.copy(FIXTURES / "ml-100k" / "u.data", folder / "u.data")
    error = _error(folder)

    assert error.path == str(folder)
    assert "u.data and ratings.csv" in str(error)


@pytest.mark.parametrize("layout", sorted(LAYOUT_FILES))
def test_missing_movies_file(tmp_path: Path, layout: str) -> None:
    """A ratings file without its movies file is a DataError naming the missing file."""
    folder = _copy(tmp_path, layout)
    movies = LAYOUT_FILES[layout][1]
    (folder / movies).unlink()
    error = _error(folder)

    assert error.path == str(folder / movies)
    assert error.line is None


# --- errors in the ratings files -----------------------------------------------------------------

RATING_ERRORS = [
    # (layout, ratings file text, bad line, message part)
    ("ml-100k", "196\t1\t3\t881250949\n186\t2\t3\n", 2, "expected 4 fields"),
    ("ml-100k", "196\t1\t3\t881250949\t7\n", 1, "got 5"),
    ("ml-100k", "196\t1\t3\t881250949\n\n", 2, "empty line"),
    ("ml-100k", "196\t1\t3\t881250949\nx\t2\t3\t881250949\n", 2, "user id 'x' is not a number"),
    ("ml-100k", "0\t1\t3\t881250949\n", 1, "user id 0 outside 1-999999999"),
    ("ml-100k", "1234567890\t1\t3\t881250949\n", 1, "user id 1234567890 outside"),
    ("ml-100k", "196\t1a\t3\t881250949\n", 1, "movie id '1a' is not a number"),
    ("ml-100k", "196\t\t3\t881250949\n", 1, "movie id '' is not a number"),
    ("ml-100k", "196\t1\t6\t881250949\n", 1, "rating 6 is not one of 1, 2, 3, 4, 5"),
    ("ml-100k", "196\t1\t0\t881250949\n", 1, "rating 0 is not one of"),
    ("ml-100k", "196\t1\t4.0\t881250949\n", 1, "rating 4.0 is not one of 1, 2, 3, 4, 5"),
    ("ml-100k", "196\t1\tfour\t881250949\n", 1, "rating 'four' is not a number"),
    ("ml-100k", "196\t1\t3\t8812509x9\n", 1, "timestamp '8812509x9' is not a number"),
    ("ml-100k", "196\t1\t3\t-881250949\n", 1, "timestamp '-881250949' is not a number"),
    ("ml-100k", "196\t1\t3\t9999999999\n", 1, "timestamp 9999999999 is after 2059-09-18"),
    ("ml-100k", "196\t1\t3\t881250949\n196\t3\t3\t881250949\n", 2, "movie 3 is not in u.item"),
    ("ml-100k", "196\t1\t3\t881250949\n196\t99999\t3\t881250949\n", 2, "movie 99999 is not in u.item"),
    ("ml-100k", "196\t1\t3\t881250949\n196\t1 \t3\t881250949\n", 2, "movie id '1 ' is not a number"),
    ("ml-100k", "196\t1\t3\t881250949\r\n196\t2\t3\t88125\r0949\r\n", 2, "timestamp '88125\\r0949'"),
    (
        "ml-100k",
        "196\t1\t3\t881250949\n22\t2\t3\t881250949\n196\t4\t3\t881250949\n196\t1\t5\t881250950\n",
        4,
        "user 196 rated movie 1 already on line 1",
    ),
    ("ml-1m", "1::1::5::978824268\n1::10:5::978824268\n", 2, "expected 4 fields"),
    ("ml-1m", "1::1::5::978824268\n1:::10::5::978824268\n", 2, "movie id ':10' is not a number"),
    ("ml-1m", "1::1::5::978824268\n1::10::4.5::978824268\n", 2, "rating 4.5 is not one of 1, 2, 3, 4, 5"),
    ("ml-1m", "1::1::5::978824268\n1\t10\t5\t978824268\n", 2, "expected 4 fields"),
    ("ml-1m", "1::1::5::978824268\n1::1::3::978824269\n", 2, "user 1 rated movie 1 already on line 1"),
    ("ml-latest", "userId,movieId,rating\n", 1, "expected the header"),
    ("ml-latest", "userId,movieId,rating,timestamp\n\n", 2, "empty line"),
    (
        "ml-latest",
        CSV_HEAD + "1,1,4.0,964982703\n1,11,5.5,964982703\n",
        3,
        "rating 5.5 is not one of 0.5, 1.0",
    ),
    ("ml-latest", CSV_HEAD + "1,1,0.0,964982703\n", 2, "rating 0.0 is not one of"),
    ("ml-latest", CSV_HEAD + "1,1,4.3,964982703\n", 2, "rating 4.3 is not one of"),
    ("ml-latest", CSV_HEAD + "1,1,4.50,964982703\n", 2, "rating 4.50 is not one of"),
    ("ml-latest", CSV_HEAD + "1,1,.5,964982703\n", 2, "rating .5 is not one of"),
    ("ml-latest", CSV_HEAD + "1,1,4,5,964982703\n", 2, "got 5"),
    ("ml-latest", CSV_HEAD + "1,1,4.0,964982703.0\n", 2, "timestamp '964982703.0' is not a number"),
    ("ml-latest", CSV_HEAD + "1,1,4.0,964982703\n1,2,4.0,964982703\n", 3, "movie 2 is not in movies.csv"),
    ("ml-latest", CSV_HEAD + "1,11,4.0,964982703\n1,1,4.0,964982703\n1,11,3.0,1\n", 4, "already on line 2"),
]


@pytest.mark.parametrize(("layout", "text", "line", "message"), RATING_ERRORS)
def test_bad_ratings_line(tmp_path: Path, layout: str, text: str, line: int, message: str) -> None:
    """A bad ratings line is a DataError naming the ratings file and its 1-based line."""
    name = LAYOUT_FILES[layout][0]
    folder = _with(tmp_path, layout, name, text.encode("iso-8859-1"))
    error = _error(folder)

    assert error.path == str(folder / name)
    assert error.line == line
    assert message in str(error)
    assert str(error).startswith(f"{folder / name}:{line}: ")


# --- errors in the movies files ------------------------------------------------------------------

FLAGS = "|".join("0" * 19)

MOVIE_ERRORS = [
    # (layout, movies file bytes, bad line, message part)
    (
        "ml-100k",
        f"1|Toy Story (1995)|01-Jan-1995||url|{FLAGS}\n2|GoldenEye (1995)|x\n".encode(),
        2,
        "expected 24 fields, got 3",
    ),
    (
        "ml-100k",
        f"1|Toy Story (1995)|01-Jan-1995||url|{FLAGS}\nx|GoldenEye (1995)||||{FLAGS}\n".encode(),
        2,
        "movie id 'x' is not a number",
    ),
    (
        "ml-100k",
        f"1|Toy Story (1995)|01-Jan-1995||url|{FLAGS}\n0|GoldenEye (1995)||||{FLAGS}\n".encode(),
        2,
        "movie id 0 outside",
    ),
    (
        "ml-100k",
        f"1|Toy Story (1995)|||url|{FLAGS}\n1|Toy Story (1995)||||{FLAGS}\n".encode(),
        2,
        "movie id 1 already listed on line 1",
    ),
    ("ml-100k", f"1|Toy Story (1995)|||url|{FLAGS}\n\n".encode(), 2, "expected 24 fields, got 1"),
    ("ml-1m", b"1::Toy Story (1995)::Comedy\n10::GoldenEye (1995)\n", 2, "expected 3 fields, got 2"),
    ("ml-1m", b"1::Toy Story (1995)::Comedy\n10:: ::Action\n", 2, "movie 10 has an empty title"),
    (
        "ml-1m",
        b"1::Toy Story (1995)::Comedy\n12345678::Big (1988)::Comedy\n",
        2,
        "movie id 12345678 outside 1-9999999",
    ),
    ("ml-latest", b"movieId,title\n1,Toy Story (1995)\n", 1, "expected the header 'movieId,title,genres'"),
    ("ml-latest", b"\xef\xbb\xbfmovieId,title\n", 1, "expected the header 'movieId,title,genres'"),
    (
        "ml-latest",
        b"movieId,title,genres\n1,Toy Story (1995),Comedy\n11,American President, The (1995),Drama\n",
        3,
        "expected 3 fields, got 4",
    ),
    (
        "ml-latest",
        b'movieId,title,genres\n1,Toy Story (1995),Comedy\n11,"American President" x,Drama\n',
        3,
        "malformed CSV",
    ),
    (
        "ml-latest",
        b"movieId,title,genres\n1,Toy Story (1995),Comedy\n11,Mis\xe9rables (1995),Drama\n",
        3,
        "not UTF-8 text",
    ),
    ("ml-latest", b"movieId,title,genres\n1,Toy Story (1995),Comedy\n\n", 3, "expected 3 fields, got 0"),
    (
        "ml-latest",
        b"movieId,title,genres\n1,Toy Story (1995),Comedy\n1.5,Heat (1995),Drama\n",
        3,
        "movie id '1.5' is not a number",
    ),
]


@pytest.mark.parametrize(("layout", "data", "line", "message"), MOVIE_ERRORS)
def test_bad_movies_line(tmp_path: Path, layout: str, data: bytes, line: int, message: str) -> None:
    """A bad movies line is a DataError naming the movies file and its 1-based line."""
    ratings, movies = LAYOUT_FILES[layout]
    folder = _with(tmp_path, layout, movies, data)
    (folder / ratings).write_bytes(b"userId,movieId,rating,timestamp\n" if layout == "ml-latest" else b"")
    error = _error(folder)

    assert error.path == str(folder / movies)
    assert error.line == line
    assert message in str(error)


def test_quoted_line_break_keeps_line_numbers(tmp_path: Path) -> None:
    """A quoted field over two lines is read whole, and later errors name the physical line."""
    data = b'movieId,title,genres\n1,Toy Story (1995),"Comedy\nDrama"\n1,Heat (1995),Drama\n'
    folder = _with(tmp_path, "ml-latest", "movies.csv", data)
    error = _error(folder)

    assert error.line == 4
    assert "already listed on line 2" in str(error)


def test_quoted_line_break_in_a_title_is_refused(tmp_path: Path) -> None:
    """A title holding a line break (quoted over two lines) is refused, naming the row's first line."""
    data = b'movieId,title,genres\n1,"Toy\nStory (1995)",Comedy\n'
    folder = _with(tmp_path, "ml-latest", "movies.csv", data)
    error = _error(folder)

    assert error.line == 2
    assert "holds the control character U+000A" in str(error)


def test_utf8_byte_order_marks_are_skipped(tmp_path: Path) -> None:
    """A UTF-8 byte order mark before either header is ignored."""
    folder = _copy(tmp_path, "ml-latest")
    for name in ("ratings.csv", "movies.csv"):
        path = folder / name
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())

    assert _columns(read_movielens(folder)) == _columns(read_movielens(FIXTURES / "ml-latest"))


# --- a million synthetic ratings -----------------------------------------------------------------


def test_a_million_synthetic_ratings(tmp_path: Path) -> None:
    """A synthetic 1M-row ratings.csv (ml-25m's format) parses into the right columns."""
    rng = np.random.default_rng(5)
    n, n_movies, per_user = 1_000_000, 5000, 200
    ids = np.sort(rng.choice(200_000, n_movies, replace=False)) + 1
    user = np.repeat(np.arange(1, n // per_user + 1), per_user)
    # distinct movies per user, ascending, as in ml-25m's file (sorted by user, then movie)
    first = rng.integers(0, n_movies, (n // per_user, 1))
    pick = np.sort((first + 7 * np.arange(per_user)) % n_movies, axis=1).ravel()
    movie = ids[pick]
    half = rng.integers(1, 11, n)
    stamp = rng.integers(789_652_009, 1_700_000_000, n)
    rating_text = np.array([f"{h / 2:.1f}" for h in range(11)])[half]
    lines = [
        f"{u},{m},{r},{t}\n"
        for u, m, r, t in zip(
            user.tolist(), movie.tolist(), rating_text.tolist(), stamp.tolist(), strict=True
        )
    ]
    folder = tmp_path / "ml-synthetic"
    folder.mkdir()
    (folder / "ratings.csv").write_text(CSV_HEAD + "".join(lines))
    titles = "".join(f"{m},Movie {m} (2000),Drama\n" for m in ids.tolist())
    (folder / "movies.csv").write_text("movieId,title,genres\n" + titles)
    dataset, original = read_movielens_with_ids(folder)
    r = dataset.ratings

    assert len(r) == n
    assert np.array_equal(r.user, user)
    assert np.array_equal(original[r.movie.astype(np.int64) - 1], movie)
    assert np.array_equal(r.stars, half)
    assert np.array_equal(r.day, stamp // 86400)


# --- the genuine files ---------------------------------------------------------------------------


def test_genuine_ml_100k() -> None:
    """The genuine ml-100k: 100,000 ratings by 943 users of 1,682 movies, stars doubled."""
    dataset, original = read_movielens_with_ids(_shared("ml-100k", "u.data", "u.item"))
    r, movies = dataset.ratings, dataset.movies

    assert len(r) == 100_000
    assert len(np.unique(r.user)) == 943
    assert len(movies) == 1682
    assert original.tolist() == list(range(1, 1683))
    assert np.bincount(r.stars, minlength=11).tolist() == [0, 0, 6110, 0, 11370, 0, 27145, 0, 34174, 0, 21201]
    assert (r.user[0], r.movie[0], r.stars[0], r.day[0]) == (196, 242, 6, 881250949 // 86400)
    assert movies.display(1) == "Toy Story (1995)"
    assert movies.display(543) == "Misérables, Les (1995)"
    assert movies.display(1633) == "Á köldum klaka (Cold Fever) (1994)"
    assert (movies.titles[266], movies.years[266]) == ("unknown", 0)
    assert (r.day.min(), r.day.max()) == (874724710 // 86400, 893286638 // 86400)


def test_genuine_ml_latest_small() -> None:
    """The genuine ml-latest-small: 100,836 half-star ratings by 610 users, 9,742 movies listed."""
    dataset, original = read_movielens_with_ids(_shared("ml-latest-small", "ratings.csv", "movies.csv"))
    r, movies = dataset.ratings, dataset.movies
    dense = {int(m): i + 1 for i, m in enumerate(original)}

    assert len(r) == 100_836
    assert len(np.unique(r.user)) == 610
    assert len(movies) == 9742
    assert len(np.unique(r.movie)) == 9724
    assert (original[0], original[-1]) == (1, 193609)
    assert (r.stars.min(), r.stars.max()) == (1, 10)
    assert np.count_nonzero(r.stars % 2) > 0
    assert movies.display(dense[11]) == "American President, The (1995)"
    assert movies.display(dense[7789]) == "11'09\"01 - September 11 (2002)"
    assert movies.display(dense[47]) == "Seven (a.k.a. Se7en) (1995)"
    assert sum(1 for y in movies.years.tolist() if y == 0) == 13
    assert (int(r.day.min()), int(r.day.max())) == (828124615 // 86400, 1537799250 // 86400)


def test_end_to_end_on_ml_latest_small() -> None:
    """specs/movielens.toml runs on the genuine ml-latest-small with the fake provider, both variants."""
    folder = _shared("ml-latest-small", "ratings.csv", "movies.csv")
    spec = parse_spec(SPEC.read_text(encoding="utf-8"), source=str(SPEC), base_dir=str(SPEC.parent))
    relative = parse_spec(SPEC.read_text(encoding="utf-8")).dataset.path
    spec = attrs.evolve(spec, dataset=attrs.evolve(spec.dataset, path=str(folder)))
    dataset = read_movielens(folder)
    outcome = run_experiment(spec, dataset, FakeProvider.for_movies(dataset.movies))
    variants = outcome.results.variants

    assert relative == "../data/ml-latest-small"
    assert spec.dataset.format == "movielens"
    assert [v.name for v in variants] == ["profileData50", "profileData60"]
    for v in variants:
        assert dict(v.counts)["test_users"] > 0
        for role in ("baseline", "finetuned"):
            assert 0.0 <= v.model_scores(role).metric("precision@5") <= 1.0
