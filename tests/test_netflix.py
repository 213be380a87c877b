"""
Tests for llmrec.data.netflix: reading and writing Netflix Prize files.
"""

from __future__ import annotations

import functools
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmrec.data import Dataset, Movies, Ratings, day_to_date, netflix
from llmrec.data.netflix import read_netflix, write_netflix
from llmrec.errors import DataError

TINY = Path(__file__).parent / "data" / "ratings" / "tiny"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "netflix"
EXCERPT = "combined_data_4_head.txt"


def _day(text: str) -> int:
    return int(np.datetime64(text, "D").astype(np.int64))


def _sorted_columns(ratings: Ratings) -> list[np.ndarray]:
    order = np.lexsort((ratings.day, ratings.stars, ratings.user, ratings.movie))
    return [ratings.user[order], ratings.movie[order], ratings.stars[order], ratings.day[order]]


def _assert_same(a: Dataset, b: Dataset) -> None:
    for x, y in zip(_sorted_columns(a.ratings), _sorted_columns(b.ratings), strict=True):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a.movies.ids, b.movies.ids)
    np.testing.assert_array_equal(a.movies.years, b.movies.years)
    assert a.movies.titles == b.movies.titles


def _folder(tmp_path: Path, ratings: bytes, name: str = "combined_data_1.txt") -> Path:
    """
    A dataset folder with the tiny titles and one rating file holding ``ratings``.
    """
    shutil.copy(TINY / "movie_titles.csv", tmp_path / "movie_titles.csv")
    (tmp_path / name).write_bytes(ratings)
    return tmp_path


def _error(folder: Path) -> DataError:
    with pytest.raises(DataError) as info:
        read_netflix(folder)
    return info.value


@pytest.fixture
def shared() -> Path:
    """
    The genuine Netflix excerpts in the shared folder; the test skips when they are absent.
    """
    if not (SHARED / EXCERPT).is_file() or not (SHARED / "movie_titles.csv").is_file():
        pytest.skip(f"genuine Netflix excerpts not found under {SHARED}")
    return SHARED


# --- the tiny hand-made fixture ----------------------------------------------------------------


def test_tiny_reads_every_rating_in_file_order() -> None:
    """Both rating files are read, in name order, one rating per line, with their movie block."""
    data = read_netflix(TINY)
    r = data.ratings

    assert len(r) == 29
    assert r.user.dtype == np.int32
    assert r.movie.dtype == np.int16
    assert r.stars.dtype == np.int8
    assert r.day.dtype == np.int16
    assert (r.user[0], r.movie[0], r.stars[0], r.day[0]) == (1488844, 1, 3, _day("2005-09-06"))
    assert (r.user[15], r.movie[15], r.stars[15], r.day[15]) == (1488844, 4, 1, _day("2000-01-06"))
    assert (r.user[16], r.movie[16]) == (885013, 5)
    assert (r.user[-1], r.movie[-1], r.stars[-1], r.day[-1]) == (44937, 10, 4, _day("2005-11-11"))
    assert np.bincount(r.movie).tolist() == [0, 5, 3, 6, 2, 2, 1, 2, 3, 3, 2]
    assert data.source == str(TINY)


def test_tiny_titles_keep_commas_quotes_latin1_and_null_years() -> None:
    """Titles split on the first two commas only, decode as ISO-8859-1, and NULL years become 0."""
    movies = read_netflix(TINY).movies

    assert movies.ids.tolist() == list(range(1, 11))
    assert movies.titles[2] == "At Home Among Friends, A Friend Among Strangers"
    assert movies.titles[3] == "Le Petit Café"
    assert movies.titles[4] == "Rain, Sun, Wind and Snow"
    assert movies.titles[5] == 'Harbor: The "Long Night" Cut'
    assert movies.years.tolist() == [1999, 0, 1974, 2001, 1980, 1985, 1990, 1990, 2005, 2003]
    assert movies.display(2) == "Ancient Cities: The Lost Coast"
    assert movies.titles[6] == movies.titles[7]


def test_subset_of_rating_files_is_enough(tmp_path: Path) -> None:
    """Any subset of the combined_data files is read; here only the second one."""
    shutil.copy(TINY / "movie_titles.csv", tmp_path)
    shutil.copy(TINY / "combined_data_2.txt", tmp_path)

    ratings = read_netflix(tmp_path).ratings

    assert len(ratings) == 13
    assert ratings.movie[0] == 5


def test_crlf_reads_like_lf(tmp_path: Path) -> None:
    """CRLF line endings give the same dataset as LF ones."""
    for path in TINY.iterdir():
        (tmp_path / path.name).write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))

    crlf = read_netflix(tmp_path)

    _assert_same(crlf, read_netflix(TINY))
    assert np.array_equal(crlf.ratings.user, read_netflix(TINY).ratings.user)


def test_parsing_in_small_blocks_gives_the_same_result(monkeypatch: pytest.MonkeyPatch) -> None:
    """The block-wise parser gives the same ratings when a file spans many blocks."""
    whole = read_netflix(TINY)
    monkeypatch.setattr(netflix, "_BLOCK_BYTES", 7)

    pieces = read_netflix(TINY)

    assert np.array_equal(whole.ratings.user, pieces.ratings.user)
    assert np.array_equal(whole.ratings.movie, pieces.ratings.movie)
    assert np.array_equal(whole.ratings.stars, pieces.ratings.stars)
    assert np.array_equal(whole.ratings.day, pieces.ratings.day)


def test_error_line_is_right_across_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Line numbers stay right when the bad line lies in a later block."""
    text = (TINY / "combined_data_1.txt").read_bytes() + b"5:\n12,9,2005-01-01\n"
    folder = _folder(tmp_path, text)
    monkeypatch.setattr(netflix, "_BLOCK_BYTES", 10)

    error = _error(folder)

    assert error.line == 22
    assert "rating 9 outside 1-5" in str(error)


@pytest.mark.parametrize("text", [b"", b"\xef\xbb\xbf"], ids=["empty", "only-a-bom"])
def test_empty_rating_file_is_named(tmp_path: Path, text: bytes) -> None:
    """An empty rating file (or one holding only a byte order mark) is an error naming it."""
    folder = _folder(tmp_path, text)

    error = _error(folder)

    assert error.path == str(folder / "combined_data_1.txt")
    assert error.line is None
    assert "empty file: expected 'MovieID:' lines" in str(error)


def test_rating_file_of_headers_only_is_named(tmp_path: Path) -> None:
    """A rating file of 'MovieID:' lines and no ratings is an error naming it."""
    folder = _folder(tmp_path, b"1:\n2:\n")

    error = _error(folder)

    assert str(error) == f"{folder / 'combined_data_1.txt'}: no ratings: the file holds only 'MovieID:' lines"


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        pytest.param(b"1:\n12,3,2005-01-01\n13,4,2005-0", 3, "cut short", id="partial-last-line"),
        pytest.param(b"1:\n12,3,2005-01-01\n1345", 3, "cut short", id="partial-last-line-short"),
        pytest.param(b"1:\n12,6,2005-01-01\n", 2, "rating 6 outside 1-5", id="rating-6"),
        pytest.param(b"1:\n12,3,2005-01-01\n12,0,2005-01-01\n", 3, "rating 0 outside 1-5", id="rating-0"),
        pytest.param(b"1:\n12,10,2005-01-01\n", 2, "rating 10 outside 1-5", id="rating-10"),
        pytest.param(b"1:\n12,3,2005-02-30\n", 2, "'2005-02-30' does not exist", id="feb-30"),
        pytest.param(b"1:\n12,3,2005-13-01\n", 2, "'2005-13-01' does not exist", id="month-13"),
        pytest.param(b"1:\n12,3,2005-00-10\n", 2, "does not exist", id="month-0"),
        pytest.param(b"1:\n12,3,2004-02-29\n12,3,2005-02-29\n", 3, "does not exist", id="not-leap"),
        pytest.param(b"1:\n12,3,05-01-01\n", 2, "'05-01-01' is not YYYY-MM-DD", id="short-year"),
        pytest.param(b"1:\n12,3,2005/01/01\n", 2, "is not YYYY-MM-DD", id="slashes"),
        pytest.param(b"1:\nab,3,2005-01-01\n", 2, "customer id 'ab' is not a number", id="customer"),
        pytest.param(b"1:\n12,x,2005-01-01\n", 2, "rating 'x' is not a number", id="rating-x"),
        pytest.param(b"1:\n0,3,2005-01-01\n", 2, "customer id 0 outside", id="customer-0"),
        pytest.param(b"1:\n1234567890,3,2005-01-01\n", 2, "customer id 1234567890 outside", id="long-id"),
        pytest.param(b"1:\n12,3\n", 2, "expected 'MovieID:' or", id="two-fields"),
        pytest.param(b"1:\n12,3,2005-01-01,x\n", 2, "expected 'MovieID:' or", id="four-fields"),
        pytest.param(b"1:\n 12,3,2005-01-01\n", 2, "customer id ' 12' is not a number", id="space"),
        pytest.param(b"x1:\n12,3,2005-01-01\n", 1, "movie id 'x1' is not a number", id="movie-x"),
        pytest.param(b":\n", 1, "movie id '' is not a number", id="movie-empty"),
        pytest.param(b"1:\n12,3,2005-01-01\n0:\n", 3, "movie id 0 outside", id="movie-0"),
        pytest.param(b"40000:\n12,3,2005-01-01\n", 1, "movie id 40000 outside", id="movie-big"),
        pytest.param(b"11:\n12,3,2005-01-01\n", 1, "movie 11 is not in movie_titles.csv", id="unknown"),
        pytest.param(b"12,3,2005-01-01\n1:\n", 1, "before any 'MovieID:' line", id="no-header"),
        pytest.param(b"1:\n12,3,2005-01-01\n\n13,3,2005-01-01\n", 3, "empty line", id="blank-line"),
        pytest.param(b"1:\n12,3,2005-01-01\n\n", 3, "empty line", id="trailing-blank-line"),
        pytest.param(b"1:\r\n12,3,2005-01\r-01\r\n", 2, "is not YYYY-MM-DD", id="stray-cr"),
        pytest.param(b"1:\r\n12,3,2005-01-01\r\n12,7,2005-01-01\r\n", 3, "outside 1-5", id="crlf"),
    ],
)
def test_bad_rating_line_names_file_and_line(tmp_path: Path, text: bytes, line: int, words: str) -> None:
    """A malformed rating file raises DataError naming the file, the 1-based line and the problem."""
    folder = _folder(tmp_path, text)

    error = _error(folder)

    assert error.path == str(folder / "combined_data_1.txt")
    assert error.line == line
    assert words in str(error)
    assert str(error).startswith(f"{folder / 'combined_data_1.txt'}:{line}: ")


def test_only_the_first_bad_line_is_reported(tmp_path: Path) -> None:
    """With several bad lines the first one is named."""
    error = _error(_folder(tmp_path, b"1:\n12,3,2005-01-01\n12,9,2005-01-01\n12,3,2005-02-31\n"))

    assert error.line == 3


def test_rating_file_must_start_its_own_block(tmp_path: Path) -> None:
    """A later file that starts with a rating line fails even though the previous file ended in a block."""
    _folder(tmp_path, b"1:\n12,3,2005-01-01\n")
    (tmp_path / "combined_data_2.txt").write_bytes(b"13,4,2005-01-01\n")

    error = _error(tmp_path)

    assert error.path == str(tmp_path / "combined_data_2.txt")
    assert error.line == 1
    assert "before any 'MovieID:' line" in str(error)


def test_missing_folder_is_named(tmp_path: Path) -> None:
    """A folder that does not exist raises DataError naming it."""
    error = _error(tmp_path / "nowhere")

    assert error.path == str(tmp_path / "nowhere")
    assert error.line is None
    assert "folder not found" in str(error)


def test_folder_without_rating_files_is_named(tmp_path: Path) -> None:
    """A folder without combined_data_*.txt raises DataError naming the folder and the pattern."""
    shutil.copy(TINY / "movie_titles.csv", tmp_path)

    error = _error(tmp_path)

    assert error.path == str(tmp_path)
    assert "combined_data_*.txt" in str(error)


def test_missing_titles_file_is_named(tmp_path: Path) -> None:
    """A folder without movie_titles.csv raises DataError naming that file."""
    shutil.copy(TINY / "combined_data_1.txt", tmp_path)

    error = _error(tmp_path)

    assert error.path == str(tmp_path / "movie_titles.csv")
    assert "not found" in str(error)


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        pytest.param(b"1,1999,A\n2,19x9,B\n", 2, "year '19x9' is neither a year nor NULL", id="year"),
        pytest.param(b"1,1999,A\n2,1999\n", 2, "expected 'MovieID,YearOfRelease,Title'", id="fields"),
        pytest.param(b"a,1999,A\n", 1, "movie id 'a' is not a number", id="movie-id"),
        pytest.param(b"1,1999,A\n1,2000,B\n", 2, "movie id 1 already listed on line 1", id="repeat"),
        pytest.param(b"0,1999,A\n", 1, "movie id 0 outside", id="movie-0"),
        pytest.param(b"1,1999,\n", 1, "empty title", id="empty-title"),
        pytest.param(b"1,1999,A\n\n2,2000,B\n", 2, "expected 'MovieID,YearOfRelease,Title'", id="blank"),
    ],
)
def test_bad_titles_line_names_file_and_line(tmp_path: Path, text: bytes, line: int, words: str) -> None:
    """A malformed movie_titles.csv raises DataError naming the file, the 1-based line and the problem."""
    (tmp_path / "combined_data_1.txt").write_bytes(b"1:\n12,3,2005-01-01\n")
    (tmp_path / "movie_titles.csv").write_bytes(text)

    error = _error(tmp_path)

    assert error.path == str(tmp_path / "movie_titles.csv")
    assert error.line == line
    assert words in str(error)


# --- writing -----------------------------------------------------------------------------------


def test_write_then_read_round_trips(tmp_path: Path) -> None:
    """read_netflix(write_netflix(x)) gives back the same ratings and catalogue."""
    original = read_netflix(TINY)

    write_netflix(original, tmp_path / "out")
    again = read_netflix(tmp_path / "out")

    _assert_same(again, original)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["combined_data_1.txt", "movie_titles.csv"]


def test_written_files_are_netflix_format(tmp_path: Path) -> None:
    """The writer puts one block per movie, ISO-8859-1 titles and NULL for unknown years."""
    write_netflix(read_netflix(TINY), tmp_path)
    lines = (tmp_path / "combined_data_1.txt").read_bytes().split(b"\n")
    titles = (tmp_path / "movie_titles.csv").read_bytes()

    assert lines[:3] == [b"1:", b"1488844,3,2005-09-06", b"822109,5,2005-05-13"]
    assert lines.count(b"9:") == 1
    assert lines[-1] == b""
    assert b"2,NULL,Ancient Cities: The Lost Coast\n" in titles
    assert b"4,2001,Le Petit Caf\xe9\n" in titles


def test_write_round_trips_wide_values(tmp_path: Path) -> None:
    """Large ids, every star value and dates far apart survive a round trip."""
    ratings = Ratings(
        [1, 9, 99999999, 999999999, 123456, 7],
        [32767, 1, 1, 32767, 500, 500],
        [1, 2, 3, 4, 5, 5],
        [_day("1970-01-01"), _day("1999-12-31"), _day("2000-02-29"), -3000, 32767, _day("2005-12-31")],
    )
    movies = Movies([1, 500, 32767], [0, 1896, 2005], ["Ä, b, c", "B", "C"])
    data = Dataset(ratings, movies)

    write_netflix(data, tmp_path)

    _assert_same(read_netflix(tmp_path), data)


def test_write_rejects_what_cannot_be_written(tmp_path: Path) -> None:
    """Titles outside ISO-8859-1, stars outside 1-5 and unknown movies raise ValueError."""
    ratings = Ratings([1], [1], [3], [0])

    with pytest.raises(ValueError, match="ISO-8859-1"):
        write_netflix(Dataset(ratings, Movies([1], [2000], ["Kyōto"])), tmp_path)
    with pytest.raises(ValueError, match="one line"):
        write_netflix(Dataset(ratings, Movies([1], [2000], ["a\nb"])), tmp_path)
    with pytest.raises(ValueError, match="stars"):
        write_netflix(Dataset(Ratings([1], [1], [6], [0]), Movies([1], [2000], ["A"])), tmp_path)
    with pytest.raises(ValueError, match="not in the catalogue"):
        write_netflix(Dataset(Ratings([1], [2], [3], [0]), Movies([1], [2000], ["A"])), tmp_path)
    assert list(tmp_path.iterdir()) == []


# --- the genuine excerpts (skipped when absent) ------------------------------------------------


def test_genuine_excerpt_blocks_and_cut_last_block(shared: Path) -> None:
    """The excerpt holds 11 blocks with the documented counts; the cut last block ends without a newline."""
    ratings = read_netflix(shared).ratings
    movies, counts = np.unique(ratings.movie, return_counts=True)

    assert len(ratings) == 10068
    assert movies.tolist() == list(range(13368, 13379))
    assert counts.tolist() == [527, 150, 2715, 112, 358, 286, 854, 1157, 120, 1048, 2741]
    assert (ratings.user[-1], ratings.movie[-1], ratings.stars[-1]) == (639559, 13378, 5)
    assert day_to_date(ratings.day[-1]).isoformat() == "2004-09-29"
    assert not (shared / EXCERPT).read_bytes().endswith(b"\n")


def test_genuine_excerpt_values(shared: Path) -> None:
    """Stars, dates and customer ids match the excerpt's documented summary; customers are unsorted."""
    ratings = read_netflix(shared).ratings
    first_block = ratings.user[ratings.movie == 13368]

    assert np.bincount(ratings.stars).tolist() == [0, 503, 767, 2495, 3472, 2831]
    assert day_to_date(ratings.day.min()).isoformat() == "2000-01-05"
    assert day_to_date(ratings.day.max()).isoformat() == "2005-12-31"
    assert (int(ratings.user.min()), int(ratings.user.max())) == (333, 2649299)
    assert len(np.unique(ratings.user)) == 9337
    assert first_block[:3].tolist() == [2385003, 659432, 751812]
    assert not np.all(np.diff(first_block) > 0)


def test_genuine_titles(shared: Path) -> None:
    """The genuine titles: 17770 rows, Café decodes, 7 NULL years, unquoted commas kept in titles."""
    movies = read_netflix(shared).movies
    with_comma = [t for t in movies.titles if "," in t]
    pairs = list(zip(movies.years.tolist(), movies.titles, strict=True))

    assert len(movies) == 17770
    assert movies.ids.tolist() == list(range(1, 17771))
    assert movies.display(6483) == "Smokey Joe's Café (2001)"
    assert int((movies.years == 0).sum()) == 7
    assert movies.ids[movies.years == 0].tolist() == [4388, 4794, 7241, 10782, 15918, 16678, 17667]
    assert movies.display(72) == "At Home Among Strangers, A Stranger Among His Own (1974)"
    assert movies.display(394) == "20,000 Leagues Under the Sea (1916)"
    assert movies.display(5917) == "Tinker, Tailor, Soldier, Spy (1980)"
    assert len(with_comma) == 336
    assert len(pairs) - len(set(pairs)) == 9
    assert movies.display(13378) == "His Girl Friday (1940)"


def test_genuine_excerpt_round_trips(shared: Path, tmp_path: Path) -> None:
    """The genuine excerpt and titles survive write_netflix then read_netflix."""
    original = read_netflix(shared)

    write_netflix(original, tmp_path)

    _assert_same(read_netflix(tmp_path), original)


# --- the fast path: chunks, threads and the word checks -----------------------------------------


def _careful_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Make every chunk go through the careful parser, the reference for the fast path.
    """
    monkeypatch.setattr(netflix, "_scan_chunk", lambda chunk: None)


_TITLES_32767 = b"".join(b"%d,2000,M%d\n" % (i, i) for i in (1, 2, 7, 9, 10, 11, 500, 32767))


@st.composite
def _rating_files(draw: st.DrawFn) -> bytes:
    """
    A valid rating file with the odd corners the format allows: ids of 1 to 9 digits (leading
    zeros too), every star, dates from 1880 to 2059 (leap days too), empty and repeated blocks
    (never a repeated pair), CRLF lines, a missing final newline.
    """
    lines: list[bytes] = []
    seen: set[tuple[int, int]] = set()  # no (customer, movie) pair twice, even across repeated blocks
    for block in range(draw(st.integers(1, 6))):
        movie = draw(st.sampled_from([1, 2, 7, 9, 10, 11, 500, 32767]))
        lines.append(draw(st.sampled_from([b"%d:", b"0%d:"])) % movie if movie < 10000 else b"%d:" % movie)
        for _ in range(draw(st.integers(1 if block == 0 else 0, 12))):  # a file without ratings is refused
            user = draw(st.integers(1, 999_999_999).filter(functools.partial(_unseen, seen, movie)))
            seen.add((user, movie))
            width = draw(st.integers(len(str(user)), 9))
            day = draw(st.integers(-32768, 32767))
            date = str(np.datetime64(day, "D")).encode()
            lines.append(b"%0*d,%d,%s" % (width, user, draw(st.integers(1, 5)), date))
    ending = draw(st.sampled_from([b"\n", b"\r\n"]))
    text = ending.join(lines)
    return text if draw(st.booleans()) else text + ending


@given(text=_rating_files(), block=st.sampled_from([7, 64, 333, 1 << 20]))
@settings(max_examples=150, deadline=None)
def test_fast_path_agrees_with_careful_parser(
    tmp_path_factory: pytest.TempPathFactory, text: bytes, block: int
) -> None:
    """Any valid file reads the same through the fast path as through the careful parser alone."""
    folder = tmp_path_factory.mktemp("fast")
    (folder / "movie_titles.csv").write_bytes(_TITLES_32767)
    (folder / "combined_data_1.txt").write_bytes(text)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(netflix, "_BLOCK_BYTES", block)
        fast = read_netflix(folder).ratings
        _careful_only(patch)
        careful = read_netflix(folder).ratings

    for x, y in zip(_columns(fast), _columns(careful), strict=True):
        assert np.array_equal(x, y)
        assert x.dtype == y.dtype


def _columns(ratings: Ratings) -> list[np.ndarray]:
    return [ratings.user, ratings.movie, ratings.stars, ratings.day]


def _big_file(lines: int, seed: int = 0) -> list[bytes]:
    """
    ``lines`` rating lines in blocks of 1000, as Netflix writes them (movies 1, 2, 7, 9 and 10).
    """
    rng = np.random.default_rng(seed)
    out: list[bytes] = []
    users = rng.choice(2_649_429, lines, replace=False) + 1  # distinct: no (customer, movie) pair twice
    stars = rng.integers(1, 6, lines)
    days = rng.integers(10_900, 13_149, lines).astype("datetime64[D]").astype(str)
    movies = [1, 2, 7, 9, 10]
    for i in range(lines):
        if i % 1000 == 0:
            out.append(b"%d:" % movies[(i // 1000) % 5])
        out.append(b"%d,%d,%s" % (users[i], stars[i], days[i].encode()))
    return out


def test_many_chunks_on_threads_keep_file_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file of hundreds of chunks, scanned on worker threads, reads in order like the careful parser."""
    folder = _folder(tmp_path, b"\n".join(_big_file(60_000)) + b"\n")
    monkeypatch.setattr(netflix, "_BLOCK_BYTES", 4096)
    fast = read_netflix(folder)
    _careful_only(monkeypatch)
    careful = read_netflix(folder)

    assert len(fast.ratings) == 60_000
    for x, y in zip(_columns(fast.ratings), _columns(careful.ratings), strict=True):
        assert np.array_equal(x, y)


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        pytest.param(b"12,6,2005-01-01", "rating 6 outside 1-5", id="rating"),
        pytest.param(b"12,3,2005-02-29", "does not exist", id="date"),
        pytest.param(b"11:", "movie 11 is not in movie_titles.csv", id="unknown-movie"),
        pytest.param(b"12,3,2005-01\r-01", "is not YYYY-MM-DD", id="stray-cr"),
        pytest.param(b"", "empty line", id="blank"),
    ],
)
def test_bad_line_deep_in_a_big_file_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bad: bytes, words: str
) -> None:
    """A bad line among many chunks raises with its own line number, not a later one."""
    lines = _big_file(50_000)
    lines[31_234] = bad
    lines[45_000] = b"12,9,2005-01-01"  # a second bad line: only the first is reported
    folder = _folder(tmp_path, b"\n".join(lines) + b"\n")
    monkeypatch.setattr(netflix, "_BLOCK_BYTES", 8192)

    error = _error(folder)

    assert error.line == 31_235
    assert words in str(error)


def test_wide_ids_and_crlf_take_the_careful_path(tmp_path: Path) -> None:
    """Nine-digit ids and CRLF lines, which the word checks leave alone, still read right."""
    text = b"1:\r\n999999999,5,2059-09-18\r\n123456789,1,1880-04-21\r\n2:\r\n7,3,2000-02-29\r\n"

    ratings = read_netflix(_folder(tmp_path, text)).ratings

    assert ratings.user.tolist() == [999_999_999, 123_456_789, 7]
    assert ratings.movie.tolist() == [1, 1, 2]
    assert ratings.day.tolist() == [_day("2059-09-18"), _day("1880-04-21"), _day("2000-02-29")]


def test_dates_at_the_int16_edges(tmp_path: Path) -> None:
    """The first and last days an int16 holds read; one day beyond either end is refused."""
    first, last = str(np.datetime64(-32768, "D")), str(np.datetime64(32767, "D"))
    ok = f"1:\n5,1,{first}\n6,2,{last}\n".encode()
    before = str(np.datetime64(-32769, "D"))

    ratings = read_netflix(_folder(tmp_path, ok)).ratings
    (tmp_path / "combined_data_1.txt").write_bytes(f"1:\n5,1,{before}\n".encode())
    error = _error(tmp_path)

    assert ratings.day.tolist() == [-32768, 32767]
    assert "outside the supported range" in str(error)


def test_columns_are_exactly_sized(tmp_path: Path) -> None:
    """The columns, allocated for the most ratings the files could hold, are cut to the ratings read."""
    ratings = read_netflix(TINY).ratings

    assert [c.shape for c in _columns(ratings)] == [(29,)] * 4
    assert all(c.flags.owndata or c.base is not None for c in _columns(ratings))


def test_a_line_longer_than_many_chunks_is_named_briefly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A line spanning many chunks (a file with no newlines) raises quickly, quoting only its start."""
    folder = _folder(tmp_path, b"1:\n" + b"7" * 300_000 + b",3,2005-01-01\n")
    monkeypatch.setattr(netflix, "_BLOCK_BYTES", 1000)

    error = _error(folder)

    assert error.line == 2
    assert "got a line of 300,013 bytes starting '7777" in str(error)
    assert len(str(error)) < 300


@pytest.mark.parametrize(
    ("date", "words"),
    [
        pytest.param(b"1880-04-12", "outside the supported range", id="day-before-int16"),
        pytest.param(b"1879-12-31", "outside the supported range", id="year-1879"),
        pytest.param(b"0000-01-01", "does not exist", id="year-0"),
        pytest.param(b"2059-09-19", "outside the supported range", id="day-after-int16"),
        pytest.param(b"2060-01-01", "outside the supported range", id="year-2060"),
        pytest.param(b"9999-12-31", "outside the supported range", id="year-9999"),
        pytest.param(b"2005-19-01", "does not exist", id="month-19"),
        pytest.param(b"2005-01-39", "does not exist", id="day-39"),
        pytest.param(b"2005-04-31", "does not exist", id="april-31"),
        pytest.param(b"2005-01-00", "does not exist", id="day-0"),
    ],
)
def test_dates_the_day_table_refuses(tmp_path: Path, date: bytes, words: str) -> None:
    """Dates outside the int16 days or the calendar are refused, with the careful parser's words."""
    error = _error(_folder(tmp_path, b"1:\n12,3,2005-01-01\n12,3," + date + b"\n"))

    assert error.line == 3
    assert words in str(error)


# --- repeated (customer, movie) pairs -------------------------------------------------------------


@st.composite
def _files_maybe_repeating(draw: st.DrawFn) -> list[bytes]:
    """
    One or two rating files whose customers come from a small range, so pairs often repeat, in
    blocks of movies 1, 2 and 7 that may be given more than once.
    """
    files = []
    for _ in range(draw(st.integers(1, 2))):
        lines = []
        for block in range(draw(st.integers(1, 5))):
            lines.append(b"%d:" % draw(st.sampled_from([1, 2, 7])))
            for _ in range(draw(st.integers(1 if block == 0 else 0, 12))):
                lines.append(b"%d,3,2005-01-01" % draw(st.integers(1, 30)))
        files.append(b"\n".join(lines) + b"\n")
    return files


def _first_repeat(files: list[bytes]) -> tuple[int, int, int, int] | None:
    """
    (file, line, earlier file, earlier line) of the first repeated pair, read plainly; None if none.
    """
    seen: dict[tuple[int, int], tuple[int, int]] = {}
    for index, text in enumerate(files):
        movie = 0
        for number, line in enumerate(text.split(b"\n")[:-1], start=1):
            if line.endswith(b":"):
                movie = int(line[:-1])
                continue
            pair = (int(line.split(b",")[0]), movie)
            if pair in seen:
                return index, number, *seen[pair]
            seen[pair] = (index, number)
    return None


@given(
    files=_files_maybe_repeating(),
    block=st.sampled_from([7, 64, 1 << 20]),
    batch=st.sampled_from([4, 1 << 17]),
)
@settings(max_examples=200, deadline=None)
def test_repeated_pairs_are_found_and_named_like_a_plain_reading(
    tmp_path_factory: pytest.TempPathFactory, files: list[bytes], block: int, batch: int
) -> None:
    """The reader refuses exactly the files where a pair repeats, naming the first repeat and its twin."""
    folder = tmp_path_factory.mktemp("repeats")
    (folder / "movie_titles.csv").write_bytes(b"1,2001,A\n2,2002,B\n7,2007,C\n")
    names = [f"combined_data_{i}.txt" for i in range(1, len(files) + 1)]
    for name, text in zip(names, files, strict=True):
        (folder / name).write_bytes(text)
    expected = _first_repeat(files)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(netflix, "_BLOCK_BYTES", block)
        patch.setattr(netflix, "_PAIR_BATCH", batch)
        patch.setattr(netflix, "_BIG_BLOCK", max(2, batch // 2))
        if expected is None:
            assert len(read_netflix(folder).ratings) == sum(t.count(b",") // 2 for t in files)
            return
        with pytest.raises(DataError) as info:
            read_netflix(folder)

    file, line, earlier_file, earlier_line = expected
    earlier = (
        f"line {earlier_line}" if earlier_file == file else f"{folder / names[earlier_file]}:{earlier_line}"
    )
    assert info.value.path == str(folder / names[file])
    assert info.value.line == line
    assert f"already on {earlier}; " in str(info.value)


def test_folder_path_that_is_a_file_is_named(tmp_path: Path) -> None:
    """A dataset path naming a file rather than a folder is a DataError saying so."""
    path = tmp_path / "combined_data_1.txt"
    path.write_bytes(b"1:\n12,3,2005-01-01\n")

    assert str(_error(path)) == f"{path}: is not a folder, expected the dataset folder"


def _unseen(seen: set[tuple[int, int]], movie: int, user: int) -> bool:
    return (user, movie) not in seen
