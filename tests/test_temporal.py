"""
The global temporal protocol (``ground_truth = "future_global"``): one cut date for everyone.

On a hand-made dataset whose cut falls on day 100: eligibility, profiles and the classic baselines'
fitting data see only the ratings dated before the cut, the relevant movies only those on or after
it; then a whole run records the protocol and its cut date in results.json and the report.
"""

from __future__ import annotations

import attrs
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmrec.baselines import Interactions
from llmrec.data import Dataset, Movies, Ratings, day_to_date
from llmrec.data.synthetic import generate_synthetic
from llmrec.errors import SpecError
from llmrec.evaluate import run_experiment
from llmrec.executor import SerialExecutor
from llmrec.ground_truth import (
    future_global_ground_truth,
    future_ground_truth,
    global_cut_day,
    ratings_before,
)
from llmrec.providers.fake import FakeProvider
from llmrec.ragged import Ragged
from llmrec.report import render_report
from llmrec.results import Results
from llmrec.sampling import Sample, build_index, sample_users
from llmrec.spec import EvaluationSpec, SamplingSpec, parse_spec
from llmrec.stages import baselines as baselines_stage
from llmrec.stages import ground_truth as truth_stage
from llmrec.stages import sample as sample_stage
from llmrec.stages.evaluate import fit_counts, protocol_of, truth_popularity
from llmrec.stages.sample import Sampled
from llmrec.stages.training_files import TrainingFiles
from llmrec.store import MemoryRunStore

CUT = 100
# (user, movie, stars, day). Eight ratings before day 100, nine on or after it: the date at quantile
# 0.5 (position floor(0.5 * 17) = 8 of the sorted dates) is day 100.
ROWS = [
    # user 1 (test): four 5-star ratings before the cut, then a 5-star and a 2-star one after it
    (1, 1, 5, 10),
    (1, 2, 5, 11),
    (1, 3, 5, 12),
    (1, 4, 5, 13),
    (1, 5, 5, 100),
    (1, 6, 2, 101),
    # user 2 (test): eligible on all the ratings (five 5-star ones), not before the cut (two)
    (2, 1, 5, 20),
    (2, 2, 5, 21),
    (2, 3, 5, 110),
    (2, 4, 5, 111),
    (2, 7, 5, 112),
    # users 3-5 (never sampled): movie 8 is the most rated overall, but only after the cut
    (3, 1, 5, 30),
    (3, 2, 4, 31),
    (3, 8, 5, 120),
    (4, 8, 5, 121),
    (4, 9, 5, 122),
    (5, 8, 4, 123),
]
SPEC = SamplingSpec(profile_size=3, ground_truth="future_global", cut_quantile=0.5, future_min_stars=4)


@pytest.fixture
def dataset() -> Dataset:
    cols = list(zip(*ROWS, strict=True))
    ids = np.arange(1, 10)
    movies = Movies(ids=ids, years=[1990 + i for i in ids], titles=[f"Movie {i}" for i in ids])
    return Dataset(ratings=Ratings(user=cols[0], movie=cols[1], stars=cols[2], day=cols[3]), movies=movies)


def _rated(ratings: Ratings, user: int, movies: np.ndarray) -> np.ndarray:
    """The days on which ``user`` rated each of ``movies``."""
    mine = ratings.user == user
    by_movie = dict(zip(ratings.movie[mine].tolist(), ratings.day[mine].tolist(), strict=True))
    return np.array([by_movie[int(m)] for m in movies], dtype=np.int64)


def test_the_cut_is_the_date_at_the_quantile(dataset):
    """Day 100 is the 9th of 17 sorted dates; a tie on the cut date puts every such rating after it."""
    assert global_cut_day(dataset.ratings.day, 0.5) == CUT
    days = np.array([1, 2, 3, 3, 3], dtype=np.int16)
    assert global_cut_day(days, 0.5) == 3  # position 2: the three ratings on day 3 are all "after"
    assert global_cut_day(days, 0.2) == 2
    assert global_cut_day(days, 0.99) == 3
    assert global_cut_day(np.zeros(0, dtype=np.int16), 0.5) == 0


@given(
    st.lists(st.integers(-300, 20000), min_size=1, max_size=200),
    st.floats(0.001, 0.999, allow_nan=False),
)
def test_the_cut_matches_a_sort(days, quantile):
    """The counted cut is the sorted date at min(n - 1, floor(q * n)); at most a q share precedes it."""
    arr = np.array(days, dtype=np.int16)
    cut = global_cut_day(arr, quantile)

    assert cut == int(np.sort(arr)[min(len(arr) - 1, int(np.floor(quantile * len(arr))))])
    assert np.count_nonzero(arr < cut) <= quantile * len(arr)


def test_eligibility_and_profiles_of_the_draw_see_only_the_past(dataset):
    """Before the cut only user 1 has four 5-star ratings; its profile is its newest three of then."""
    index = build_index(dataset.ratings)
    everyone = sample_users(index, SPEC, seed=0)
    past = sample_users(index, SPEC, seed=0, before_day=CUT)

    assert everyone.users.tolist() == [1, 2]
    assert everyone.eligible == 2
    assert past.users.tolist() == [1]
    assert past.eligible == 1
    assert past.profiles[0].tolist() == [4, 3, 2]  # all 5 stars; days 13, 12, 11
    assert everyone.profiles[0].tolist() == [5, 4, 3]  # movie 5 was rated on the cut date


def test_the_sample_stage_draws_on_the_past_under_the_global_rule(dataset):
    """Stage ``sample`` uses the cut only when [sampling] asks for "future_global", and its key says so."""
    index = build_index(dataset.ratings)
    split = parse_spec("").split
    drawn = sample_stage.compute(index, SPEC, split, seed=0)
    plain = sample_stage.compute(index, attrs.evolve(SPEC, ground_truth="future"), split, seed=0)

    assert drawn.sample.users.tolist() == [1]
    assert plain.sample.users.tolist() == [1, 2]
    keys = {sample_stage.key(attrs.evolve(SPEC, cut_quantile=q), split, 0, "data", "v") for q in (0.5, 0.6)}
    assert len(keys) == 2
    neighbours = attrs.evolve(SPEC, ground_truth="neighbors")
    assert sample_stage.key(neighbours, split, 0, "data", "v") == sample_stage.key(
        attrs.evolve(neighbours, cut_quantile=0.6), split, 0, "data", "v"
    )


def test_profiles_before_the_cut_relevance_after_it(dataset):
    """User 1: profile from days 10-13, relevant movie 5 (day 100, 5 stars; movie 6 has 2 stars).
    User 2, drawn on all ratings, is not eligible before the cut and gets no ground truth."""
    index = build_index(dataset.ratings)
    sample = sample_users(index, SPEC, seed=0)  # drawn on every rating, as a [[variant]] override is
    profiles, truth = future_global_ground_truth(index, sample, SPEC, CUT)

    assert profiles[0].tolist() == [4, 3, 2]
    assert truth.movies[0].tolist() == [5]
    assert truth.shares[0].tolist() == [5.0]
    assert truth.movies[1].tolist() == []  # eligible on all ratings only: dropped
    assert truth.candidates.tolist() == [2, 3]  # ratings on or after the cut
    for i, user in enumerate(sample.users.tolist()):
        assert np.all(_rated(dataset.ratings, user, profiles[i]) < CUT)
        assert np.all(_rated(dataset.ratings, user, truth.movies[i]) >= CUT)
    # the per-user rule keeps user 2: its own last ratings are after its own cut
    _, per_user = future_ground_truth(index, sample, attrs.evolve(SPEC, ground_truth="future"))
    assert len(per_user.movies[1]) > 0


def test_relevance_is_ranked_and_cut_like_the_per_user_rule():
    """After the cut: by stars, newest, movie id; at most max_ground_truth; none below future_min_stars."""
    ratings = Ratings(
        user=[1] * 9,
        movie=[1, 2, 3, 4, 5, 6, 7, 8, 9],
        stars=[5, 5, 5, 5, 4, 5, 4, 5, 3],
        day=[1, 2, 3, 4, 10, 10, 11, 12, 13],
    )
    index = build_index(ratings)
    spec = SamplingSpec(profile_size=2, max_ground_truth=3, ground_truth="future_global")
    sample = sample_users(index, spec, seed=0)
    profiles, truth = future_global_ground_truth(index, sample, spec, 10)

    assert profiles[0].tolist() == [4, 3]
    assert truth.movies[0].tolist() == [8, 6, 7]  # 5 stars day 12, 5 stars day 10, 4 stars day 11


def test_the_ground_truth_stage_records_the_cut_and_stores_it(dataset):
    """Stage ``ground_truth`` computes the cut from the variant's quantile and keeps it through the store."""
    index = build_index(dataset.ratings)
    sample = sample_users(index, SPEC, seed=0, before_day=CUT)
    truth = truth_stage.compute(index, sample, SPEC, seed=0, variant="global", executor=SerialExecutor())
    folder = MemoryRunStore().stage("ground_truth/global", "k")
    truth_stage.save(folder, truth)
    other = truth_stage.compute(
        index,
        sample,
        attrs.evolve(SPEC, ground_truth="future"),
        seed=0,
        variant="f",
        executor=SerialExecutor(),
    )

    assert truth.cut_day == CUT
    assert truth_stage.load(folder).cut_day == CUT
    assert other.cut_day is None


def _fit_once(dataset: Dataset, truth: truth_stage.Truth, monkeypatch) -> tuple[list[int], Ratings]:
    """MostPopular's list for test user 1, and the ratings the stage fitted on."""
    seen: list[Ratings] = []
    original = baselines_stage.interactions_from_ratings  # type: ignore[attr-defined]

    def spy(ratings: Ratings, exclude_users) -> Interactions:
        seen.append(ratings)
        return original(ratings, exclude_users=exclude_users)

    monkeypatch.setattr(baselines_stage, "interactions_from_ratings", spy)
    sampled = Sampled(
        sample=Sample(users=np.array([1, 2], dtype=np.int32), profiles=truth.profiles, eligible=2),
        splits=np.array([2, 2], dtype=np.int8),
    )
    files = TrainingFiles(members={"train": (), "validation": (), "test": (0,)}, train=b"", validation=b"")
    lists = baselines_stage.compute(
        EvaluationSpec(baselines=("popular",)),
        3,
        0,
        lambda: dataset,
        sampled,
        truth,
        files,
        {},
        lambda k, n: None,
    )
    (fitted,) = seen
    return lists.lists[0][0].tolist(), fitted


def test_the_baselines_fit_on_nothing_dated_after_the_cut(dataset, monkeypatch):
    """Under the global rule the fitting ratings all predate the cut, so movie 8 (rated three times,
    all after it) is not MostPopular's first pick; without a cut it is."""
    index = build_index(dataset.ratings)
    sample = sample_users(index, SPEC, seed=0)
    truth = truth_stage.compute(index, sample, SPEC, seed=0, variant="global", executor=SerialExecutor())
    ranked, fitted = _fit_once(dataset, truth, monkeypatch)

    assert len(fitted) == 8
    assert int(fitted.day.max()) < CUT
    assert ranked[0] == 1  # the only pre-cut non-test ratings: user 3's movies 1 and 2 (2 is in the profile)
    assert 8 not in ranked[:1]

    unbounded = attrs.evolve(truth, cut_day=None)
    ranked_all, fitted_all = _fit_once(dataset, unbounded, monkeypatch)
    assert int(fitted_all.day.max()) >= CUT
    assert ranked_all[0] == 8


def test_the_baselines_cache_is_per_cut(dataset):
    """A fit cached for one cut is not reused for another variant of the same seed without one."""
    index = build_index(dataset.ratings)
    sample = sample_users(index, SPEC, seed=0)
    truth = truth_stage.compute(index, sample, SPEC, seed=0, variant="global", executor=SerialExecutor())
    sampled = Sampled(sample=sample, splits=np.array([2, 2], dtype=np.int8))
    files = TrainingFiles(members={"train": (), "validation": (), "test": (0,)}, train=b"", validation=b"")
    cache: dict[tuple[int, int | None], baselines_stage.SeedFits] = {}
    spec = EvaluationSpec(baselines=("popular",))
    for t in (truth, attrs.evolve(truth, cut_day=None)):
        baselines_stage.compute(spec, 3, 0, lambda: dataset, sampled, t, files, cache, lambda k, n: None)

    assert set(cache) == {(0, CUT), (0, None)}


def test_popularity_counts_the_same_past(dataset):
    """``fit_counts`` with the cut counts the baselines' fitting data: movie 8's ratings are all after it."""
    test_users = np.array([1, 2])
    source, counts = fit_counts(
        "ratings_without_test_users",
        dataset.ratings,
        test_users=test_users,
        train_profiles=[],
        train_truths=[],
        cut_day=CUT,
    )
    _, everything = fit_counts(
        "ratings_without_test_users",
        dataset.ratings,
        test_users=test_users,
        train_profiles=[],
        train_truths=[],
    )

    assert source == "ratings_without_test_users"
    assert np.pad(counts, (0, 10 - len(counts))).tolist() == [0, 1, 1, 0, 0, 0, 0, 0, 0, 0]
    assert everything[8] == 3
    pop = truth_popularity(counts, dataset.movies.ids, [[8]], source=source)
    assert pop.median_rank > 2  # unrated before the cut: ranked after movies 1 and 2
    assert len(ratings_before(dataset.ratings, CUT)) == 8
    assert ratings_before(dataset.ratings, None) is dataset.ratings


def test_protocol_of_each_rule(dataset):
    """The protocol names the rule, whether it splits in time, and for the global one the cut and sides."""
    protocol = protocol_of(SPEC, CUT, dataset.ratings)

    assert protocol.temporal == "global"
    assert protocol.cut_date == "1970-04-11"
    assert protocol.cut_day == CUT
    assert protocol.cut_quantile == 0.5
    assert (protocol.ratings_before, protocol.ratings_after) == (8, 9)
    assert protocol_of(attrs.evolve(SPEC, ground_truth="future"), None).temporal == "per_user"
    assert protocol_of(attrs.evolve(SPEC, ground_truth="neighbors"), None).temporal == "none"


def test_train_pairs_are_refused_with_the_global_rule():
    """Fitting on the training users' pairs would fit on ratings after the cut: the spec says so."""
    text = """
[sampling]
ground_truth = "future_global"
[evaluation]
baseline_fit = "train_pairs"
"""
    with pytest.raises(SpecError) as info:
        parse_spec(text)
    assert [p.path for p in info.value.problems] == ["evaluation.baseline_fit"]
    assert "future_global" in info.value.problems[0].message
    # a variant's override counts too; without baselines there is nothing to refuse
    override = """
[[variant]]
name = "g"
ground_truth = "future_global"
[evaluation]
baseline_fit = "train_pairs"
"""
    with pytest.raises(SpecError):
        parse_spec(override)
    parse_spec(
        override.replace('baseline_fit = "train_pairs"', 'baseline_fit = "train_pairs"\nbaselines = []')
    )


RUN = """
[experiment]
name = "temporal"
seed = 3

[dataset.synthetic]
users = 600
movies = 150
mean_ratings = 40

[sampling]
profile_size = 10
ground_truth = "future_global"
cut_quantile = 0.7

[[variant]]
name = "global"

[[variant]]
name = "per-user"
ground_truth = "future"

[prompt]
task = "Recommend movies."

[finetune]
base_model = "fake-llm"

[evaluation]
baselines = ["popular", "item_knn"]
resamples = 50
permutations = 50
"""


@pytest.fixture(scope="module")
def run():
    """A whole run with a global and a per-user temporal variant side by side."""
    spec = parse_spec(RUN)
    dataset = generate_synthetic(spec.dataset.synthetic, spec.experiment.seed)
    fits: list[tuple[int, int]] = []
    original = baselines_stage.interactions_from_ratings  # type: ignore[attr-defined]

    def spy(ratings: Ratings, exclude_users) -> Interactions:
        fits.append((len(ratings), int(ratings.day.max())))
        return original(ratings, exclude_users=exclude_users)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(baselines_stage, "interactions_from_ratings", spy)
        outcome = run_experiment(
            spec, dataset, FakeProvider.for_movies(dataset.movies), store=MemoryRunStore()
        )
    return dataset, outcome, fits


def test_a_run_records_the_protocol_and_the_cut(run):
    """results.json says which protocol each variant used and the global cut date; the report says it too."""
    dataset, outcome, _ = run
    cut = global_cut_day(dataset.ratings.day, 0.7)
    by_name = {v.name: v for v in outcome.results.variants}
    data = outcome.results.to_dict()
    written = {v["name"]: v["protocol"] for v in data["variants"]}

    assert written["global"]["temporal"] == "global"
    assert written["global"]["cut_date"] == day_to_date(cut).isoformat()
    assert written["global"]["cut_quantile"] == 0.7
    assert written["global"]["ratings_before"] == int(np.count_nonzero(dataset.ratings.day < cut))
    assert written["global"]["ratings_before"] + written["global"]["ratings_after"] == len(dataset.ratings)
    assert written["per-user"]["temporal"] == "per_user"
    assert written["per-user"]["cut_date"] is None
    assert Results.from_dict(data).variants[0].protocol == by_name["global"].protocol
    page = render_report(outcome.results)
    assert f"global temporal cut on {day_to_date(cut).isoformat()}" in page
    assert "per-user temporal hold-out" in page


def test_a_run_keeps_the_future_out_of_profiles_and_the_fit(run):
    """Every global-variant profile movie predates the cut and every ground-truth movie does not; the
    global variant's baselines fit on pre-cut ratings, the per-user variant's on all of them."""
    dataset, outcome, fits = run
    cut = global_cut_day(dataset.ratings.day, 0.7)
    predictions = [p for p in outcome.predictions if p.variant == "global" and p.role == "finetuned"]

    assert len(predictions) > 0
    for p in predictions:
        assert np.all(_rated(dataset.ratings, p.user, np.array(p.profile)) < cut)
        assert np.all(_rated(dataset.ratings, p.user, np.array(p.ground_truth)) >= cut)
    assert sorted(day < cut for _, day in fits) == [False, True]  # one fit per cut: global, per-user
    global_fit = next(n for n, day in fits if day < cut)
    assert global_fit == int(np.count_nonzero(dataset.ratings.day < cut))
    popularity = {v.name: v.popularity for v in outcome.results.variants}
    assert popularity["global"] is not None
    assert popularity["global"].items == sum(len(p.ground_truth) for p in predictions)


def test_a_run_draws_only_users_eligible_before_the_cut(run):
    """Every sampled user of the run has at least four 5-star ratings before the cut."""
    dataset, outcome, _ = run
    cut = global_cut_day(dataset.ratings.day, 0.7)
    r = dataset.ratings
    past_fives = r.user[(r.day < cut) & (r.stars == 5)].astype(np.int64)
    before_fives = np.bincount(past_fives, minlength=int(r.user.max()) + 1)
    users = {p.user for p in outcome.predictions}

    assert users
    assert all(before_fives[u] >= 4 for u in users)


def _reference(
    ratings: Ratings, users: list[int], spec: SamplingSpec, cut: int
) -> tuple[list[list[int]], list[list[int]]]:
    """The global rule written out per user and per rating, as the docs say it."""
    profiles, truths = [], []
    rows = list(
        zip(
            ratings.user.tolist(),
            ratings.movie.tolist(),
            ratings.stars.tolist(),
            ratings.day.tolist(),
            strict=True,
        )
    )
    sign = -1 if spec.profile_date_order == "newest_first" else 1
    for u in users:
        mine = [(m, s, d) for uu, m, s, d in rows if uu == u]
        past = sorted((r for r in mine if r[2] < cut), key=lambda r: (-r[1], sign * r[2], r[0]))
        profile = [m for m, _, _ in past[: spec.profile_size]]
        fives = sum(1 for _, s, _ in past if s == 5)
        future = sorted(
            (r for r in mine if r[2] >= cut and r[1] >= spec.future_min_stars),
            key=lambda r: (-r[1], -r[2], r[0]),
        )
        keep = fives >= spec.min_five_star_ratings and profile
        profiles.append(profile)
        truths.append([m for m, _, _ in future[: spec.max_ground_truth]] if keep else [])
    return profiles, truths


@given(
    st.lists(
        st.tuples(st.integers(1, 6), st.integers(1, 12), st.integers(1, 5), st.integers(0, 30)),
        min_size=1,
        max_size=80,
        unique_by=lambda r: (r[0], r[1]),
    ),
    st.floats(0.05, 0.95),
    st.integers(1, 4),
    st.sampled_from(["newest_first", "oldest_first"]),
)
def test_the_columnar_rule_matches_a_per_user_loop(rows, quantile, min_fives, order):
    """On random ratings, every sampled user's profile and ground truth are what the per-user loop gives."""
    cols = list(zip(*rows, strict=True))
    ratings = Ratings(user=cols[0], movie=cols[1], stars=cols[2], day=cols[3])
    spec = SamplingSpec(
        profile_size=3,
        max_ground_truth=2,
        min_five_star_ratings=min_fives,
        profile_date_order=order,
        ground_truth="future_global",
        cut_quantile=quantile,
    )
    index = build_index(ratings)
    cut = global_cut_day(ratings.day, quantile)
    sample = Sample(
        users=index.user_ids, profiles=Ragged.from_rows([[]] * len(index.user_ids), np.int32), eligible=0
    )
    profiles, truth = future_global_ground_truth(index, sample, spec, cut)
    want_profiles, want_truths = _reference(ratings, index.user_ids.tolist(), spec, cut)

    assert [p.tolist() for p in profiles] == want_profiles
    assert [t.tolist() for t in truth.movies] == want_truths


@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.sampled_from([-(2**61), -7, 0, 3, 2**61]), st.integers(-5, 5)),
        max_size=40,
    )
)
def test_packed_order_matches_lexsort_also_when_keys_are_too_wide_to_pack(rows):
    """The packed sort and its lexsort fallback (keys spanning more than 63 bits) give lexsort's order."""
    from llmrec.ground_truth import _order_by

    keys = [np.array([r[j] for r in rows], dtype=np.int64) for j in range(3)]
    narrow = [keys[0], keys[2]]

    assert _order_by(keys).tolist() == np.lexsort(tuple(reversed(keys))).tolist()
    assert _order_by(narrow).tolist() == np.lexsort(tuple(reversed(narrow))).tolist()
