"""
Tests for llmrec.spec: defaults, parsing, every kind of problem, and round trips.
"""

from __future__ import annotations

import os
import re
import typing
import unicodedata
from pathlib import Path

import attrs
import pytest
from cattrs.errors import ClassValidationError
from hypothesis import given, settings
from hypothesis import strategies as st

from llmrec.errors import SpecError, SpecProblem
from llmrec.spec import (
    _CONVERTER,
    DatasetSpec,
    EvaluationSpec,
    ProviderSpec,
    SamplingSpec,
    Spec,
    SplitSpec,
    VariantSpec,
    make_converter,
    parse_spec,
)
from tests.strategies import any_texts, noisy_spec_documents, raw_spec_documents, specs, to_toml, toml_texts

SPECS = Path(__file__).parent / "data" / "specs"
INVALID = sorted((SPECS / "invalid").glob("*.toml"))
VALID = sorted((SPECS / "valid").glob("*.toml"))


def _problems(text: str) -> tuple[SpecProblem, ...]:
    with pytest.raises(SpecError) as info:
        parse_spec(text, source="spec.toml")
    return info.value.problems


def _expected_line(path: Path) -> str:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} must start with '# expect: <problem line>'"
    return first.removeprefix("# expect: ")


# ---------------------------------------------------------------------------------------------------------
# Defaults


def test_defaults_are_the_papers_setup():
    """
    An empty spec is the paper's setup: sampling, variants, split, fine-tune and metrics of Section 3.
    """
    spec = parse_spec("")

    assert spec == Spec()
    assert spec.sampling.users == 10000
    assert spec.sampling.min_five_star_ratings == 4
    assert spec.sampling.profile_size == 10
    assert spec.sampling.neighbors == 10000
    assert spec.sampling.watch_factor == 0.5
    assert [(v.name, v.watch_factor, v.neighbor_min_stars) for v in spec.variant] == [
        ("profileData50", 0.5, 5),
        ("profileData60", 0.6, 4),
    ]
    assert (spec.split.train, spec.split.validation, spec.split.test) == (0.7, 0.2, 0.1)
    assert spec.finetune.batch_size == 32
    assert spec.finetune.epochs == 2
    assert spec.finetune.learning_rate_multiplier is None  # unset: 1, as in Table 1
    assert spec.finetune.base_model == "gpt-4o-mini-2024-07-18"
    assert spec.evaluation.k == (3, 5)
    assert spec.prompt.n_recommendations == 10


def test_default_variants_apply_their_overrides():
    """
    The paper's variants differ from the base sampling only in watch_factor and neighbor_min_stars.
    """
    spec = Spec()

    sixty = spec.variant_sampling(spec.variant[1])

    assert sixty == attrs.evolve(spec.sampling, watch_factor=0.6, neighbor_min_stars=4)


def test_variant_apply_keeps_unset_fields():
    """
    VariantSpec.apply overrides only the fields the variant sets and leaves the argument unchanged.
    """
    base = SamplingSpec(neighbors=500, max_ground_truth=7)
    variant = VariantSpec(name="v", neighbors=20, watch_factor=0.25, model="ft:x")

    applied = variant.apply(base)

    assert applied == attrs.evolve(base, neighbors=20, watch_factor=0.25)
    assert base.neighbors == 500
    assert VariantSpec(name="none").apply(base) == base


def test_inference_seed_defaults_to_experiment_seed():
    """
    Inference requests use experiment.seed unless inference.seed is set.
    """
    unset = parse_spec("[experiment]\nseed = 9\n")
    set_ = parse_spec("[experiment]\nseed = 9\n[inference]\nseed = 0\n")

    assert unset.inference_seed == 9
    assert set_.inference_seed == 0


# ---------------------------------------------------------------------------------------------------------
# Parsing valid specs


@pytest.mark.parametrize("path", VALID, ids=[p.stem for p in VALID])
def test_valid_specs_parse(path: Path):
    """
    Every spec under tests/data/specs/valid parses.
    """
    spec = parse_spec(path.read_text(encoding="utf-8"), source=str(path), base_dir=str(path.parent))

    assert isinstance(spec, Spec)


def test_integer_accepted_where_number_expected():
    """
    A TOML integer is accepted for a float field and becomes a float.
    """
    spec = parse_spec("[sampling]\nwatch_factor = 1\n[finetune]\nlearning_rate_multiplier = 2\n")

    assert spec.sampling.watch_factor == 1.0
    assert isinstance(spec.sampling.watch_factor, float)
    assert isinstance(spec.finetune.learning_rate_multiplier, float)


def test_relative_dataset_path_is_joined_to_base_dir():
    """
    A relative dataset.path is taken relative to base_dir, without the folder having to exist.
    """
    text = '[dataset]\nformat = "netflix"\npath = "../data/netflix"\n'

    spec = parse_spec(text, base_dir="/nowhere/specs")

    assert spec.dataset.path == os.path.normpath("/nowhere/data/netflix")


def test_absolute_dataset_path_is_left_alone():
    """
    An absolute dataset.path is kept as written.
    """
    absolute = os.path.abspath("/does/not/exist")
    text = f'[dataset]\nformat = "netflix"\npath = "{absolute}"\n'

    spec = parse_spec(text, base_dir="/elsewhere")

    assert spec.dataset.path == absolute


def test_parse_spec_never_opens_files(monkeypatch: pytest.MonkeyPatch):
    """
    parse_spec reads nothing from disk: a missing dataset folder parses, and open() is never called.
    """

    def no_open(*args: object, **kwargs: object) -> None:
        msg = "parse_spec opened a file"
        raise AssertionError(msg)

    monkeypatch.setattr("builtins.open", no_open)
    text = '[dataset]\nformat = "netflix"\npath = "missing/folder"\n'

    spec = parse_spec(text, source="missing.toml", base_dir="/no/such/dir")

    assert spec.dataset.path == os.path.normpath("/no/such/dir/missing/folder")


def test_path_without_base_dir_stays_relative():
    """
    Without base_dir a relative dataset.path is kept as written.
    """
    spec = parse_spec('[dataset]\nformat = "netflix"\npath = "data"\n')

    assert spec.dataset.path == "data"


# ---------------------------------------------------------------------------------------------------------
# Invalid specs: one file per problem


def test_invalid_folder_has_enough_cases():
    """
    The invalid-spec folder covers at least fifteen separate problems.
    """
    assert len(INVALID) >= 15


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_spec_reports_its_one_problem(path: Path):
    """
    Each invalid spec fails with exactly the problem line written in its '# expect:' header.
    """
    expected = _expected_line(path)

    with pytest.raises(SpecError) as info:
        parse_spec(path.read_text(encoding="utf-8"), source=path.name, base_dir=str(path.parent))

    assert [p.message for p in info.value.problems] == [expected]
    assert str(info.value) == f"{path.name} has 1 problem\n  {expected}"


@pytest.mark.parametrize(
    ("text", "path", "value"),
    [
        ("[sampling]\nusers = -3\n", "sampling.users", -3),
        ("[sampling]\nusers = 3.7\n", "sampling.users", 3.7),
        ("[sampling]\nusers = true\n", "sampling.users", True),
        ("[experiment]\nname = 5\n", "experiment.name", 5),
        ('[provider]\nkind = "opnai"\n', "provider.kind", "opnai"),
        ("[sampling]\nwatch_factor = 2\n", "sampling.watch_factor", 2),
        ("[evaluation]\nk = [3, 0]\n", "evaluation.k[1]", 0),
        ('[[variant]]\nname = "a"\n[[variant]]\nname = "b"\nneighbors = 0\n', "variant[1].neighbors", 0),
    ],
)
def test_problem_keeps_path_and_value_as_written(text: str, path: str, value: object):
    """
    A value problem keeps the dotted path and the value exactly as the TOML wrote it (type included).
    """
    (problem,) = _problems(text)

    assert problem.path == path
    assert problem.has_value
    assert problem.value == value
    assert type(problem.value) is type(value)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (
            '[provider]\nkind = "local"\n[finetune]\nlearning_rate_multiplier = 2\n',
            "finetune.learning_rate_multiplier = 2.0: expected no learning_rate_multiplier with "
            'provider.kind = "local" (it is OpenAI-only; set finetune.learning_rate instead)',
        ),
        (
            '[provider]\nkind = "openai"\n[finetune]\nlearning_rate = 0.001\n',
            'finetune.learning_rate = 0.001: expected no learning_rate with provider.kind = "openai" (OpenAI '
            "takes finetune.learning_rate_multiplier)",
        ),
        (
            '[provider]\nkind = "openai"\n[finetune.lora]\nrank = 8\n',
            'finetune.lora: expected no [finetune.lora] table with provider.kind = "openai" '
            "(LoRA is local-only)",
        ),
        ("[provider.fake]\nmin_z = -1\n", "provider.fake.min_z = -1: expected a number > 0"),
        (
            '[provider.openai]\nmode = "bach"\n',
            'provider.openai.mode = "bach": expected one of "sync", "batch"',
        ),
        (
            '[provider.local]\ndevice = "tpu"\n',
            'provider.local.device = "tpu": expected one of "auto", "cpu", "cuda"',
        ),
        (
            "[provider.openai]\nconcurency = 3\n",
            'provider.openai: unknown key "concurency" (did you mean "concurrency"?)',
        ),
    ],
    ids=["lr-multiplier-local", "learning-rate-openai", "lora-openai", "fake", "openai", "local", "unknown"],
)
def test_kind_specific_and_per_kind_settings_are_reported_at_their_paths(text: str, line: str):
    """Fine-tune settings of another kind are refused against provider.kind, and each kind's table
    [provider.<kind>] reports its problems at the usual field paths."""
    with pytest.raises(SpecError) as info:
        parse_spec(text, source="spec.toml")

    assert str(info.value) == f"spec.toml has 1 problem\n  {line}"


def test_kind_specific_settings_of_the_chosen_kind_are_accepted():
    """The settings a kind takes parse: LoRA and a learning rate for local, a multiplier for OpenAI."""
    local = parse_spec(
        '[provider]\nkind = "local"\n[finetune]\nlearning_rate = 0.001\n[finetune.lora]\nrank = 4\n'
    )
    openai = parse_spec('[provider]\nkind = "openai"\n[finetune]\nlearning_rate_multiplier = 2\n')

    assert local.finetune.lora is not None
    assert local.finetune.lora.rank == 4
    assert local.finetune.learning_rate == 0.001
    assert openai.finetune.learning_rate_multiplier == 2.0
    assert local.provider.settings is local.provider.local
    assert openai.provider.settings is openai.provider.openai


def test_literal_choices_come_from_the_literal():
    """
    A bad provider.kind lists the choices of ProviderKind, and the problem keeps the raw value.
    """
    (problem,) = _problems('[provider]\nkind = "opnai"\n')

    assert problem == SpecProblem(
        "provider.kind", 'one of "fake", "openai", "local"', "opnai", has_value=True
    )


def test_unknown_key_has_no_value():
    """
    An unknown key is reported on its table, without a value, with a spelling suggestion.
    """
    (problem,) = _problems("[finetune]\nepoch = 3\n")

    assert problem.path == "finetune"
    assert not problem.has_value
    assert problem.expected == 'unknown key "epoch" (did you mean "epochs"?)'


def test_unknown_key_without_close_match_has_no_suggestion():
    """
    A key like no known one is reported without a suggestion.
    """
    (problem,) = _problems("[report]\nzzz = 1\n")

    assert problem.message == 'report: unknown key "zzz"'


def test_control_characters_in_keys_and_values_are_escaped_in_messages():
    """
    A quoted key or a string value holding newlines, tabs or NUL is shown escaped, on one line.
    """
    (key,) = _problems('[report]\n"a\\nb\\u0000" = 1\n')
    (value,) = _problems('[sampling]\nusers = "1\\t2\\r"\n')

    assert key.message == 'report: unknown key "a\\nb\\u0000"'
    assert value.message == 'sampling.users = "1\\t2\\r": expected an integer or "all"'


# ---------------------------------------------------------------------------------------------------------
# Several problems at once


def test_all_problems_reported_at_once_in_field_order():
    """
    Problems in several tables are all reported, ordered as the fields are declared, not as written.
    """
    text = '[provider]\nkind = "opnai"\n\n[finetune]\nepoch = 3\n\n[sampling]\nusers = -3\n'

    with pytest.raises(SpecError) as info:
        parse_spec(text, source="specs/netflix-small.toml")

    assert str(info.value) == (
        "specs/netflix-small.toml has 3 problems\n"
        '  sampling.users = -3: expected an integer > 0 or "all"\n'
        '  finetune: unknown key "epoch" (did you mean "epochs"?)\n'
        '  provider.kind = "opnai": expected one of "fake", "openai", "local"'
    )
    assert [p.path for p in info.value.problems] == ["sampling.users", "finetune", "provider.kind"]


def test_type_and_range_problems_in_one_table():
    """
    A type problem does not hide a range problem in the same table; both come in field order.
    """
    problems = _problems('[sampling]\nwatch_factor = 2\nneighbors = "many"\nusers = 0\n')

    assert [p.message for p in problems] == [
        'sampling.users = 0: expected an integer > 0 or "all"',
        'sampling.neighbors = "many": expected an integer',
        "sampling.watch_factor = 2: expected a number in (0, 1]",
    ]


def test_cross_field_problems_reported_beside_other_problems():
    """
    Cross-field checks (duplicate variants, netflix without path) still run when other fields fail.
    """
    text = (
        '[dataset]\nformat = "netflix"\n[dataset.synthetic]\nusers = 0\n'
        "[sampling]\nusers = 3.7\n"
        '[[variant]]\nname = "a"\n[[variant]]\nname = "a"\n'
    )

    problems = _problems(text)

    assert [p.message for p in problems] == [
        'dataset.path: expected a folder path when format = "netflix"',
        "dataset.synthetic.users = 0: expected an integer > 0",
        'sampling.users = 3.7: expected an integer or "all"',
        'variant[1].name = "a": expected a name not used by another variant',
    ]


def test_no_false_cross_problem_from_a_broken_table():
    """
    A shared fine-tuned model is not blamed on the default variants when the [[variant]] tables fail.
    """
    text = '[finetune]\nmodel = "ft:x"\n[[variant]]\nname = "only"\nneighbors = "x"\n'

    problems = _problems(text)

    assert [p.path for p in problems] == ["variant[0].neighbors"]


# ---------------------------------------------------------------------------------------------------------
# Building specs in Python


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: SamplingSpec(users=-3), 'users = -3: expected an integer > 0 or "all"'),
        (lambda: SamplingSpec(users="many"), 'users = "many": expected an integer or "all"'),  # type: ignore[arg-type]
        (lambda: ProviderSpec(kind="opnai"), 'kind = "opnai": expected one of "fake", "openai", "local"'),  # type: ignore[arg-type]
        (lambda: EvaluationSpec(k=(3, 0)), "k[1] = 0: expected an integer > 0"),
        (lambda: VariantSpec(name="v", watch_factor=0.0), "watch_factor = 0.0: expected a number in (0, 1]"),
        (lambda: DatasetSpec(format="netflix"), 'path: expected a folder path when format = "netflix"'),
        (
            lambda: SplitSpec(train=0.5),
            "top level: expected train + validation + test to sum to 1 (they sum to 0.8)",
        ),
        (lambda: Spec(variant=()), "variant: expected at least one [[variant]] table"),
    ],
)
def test_building_in_python_checks_values(build, message: str):
    """
    Spec objects built directly in Python run the same checks as parsed ones and raise SpecError.
    """
    with pytest.raises(SpecError) as info:
        build()

    assert [p.message for p in info.value.problems] == [message]


def test_evolve_runs_the_checks():
    """
    attrs.evolve on a valid spec with a bad value raises SpecError too.
    """
    with pytest.raises(SpecError):
        attrs.evolve(SamplingSpec(), neighbors=0)


# ---------------------------------------------------------------------------------------------------------
# Properties


def test_converter_is_strict_about_scalars():
    """
    make_converter builds a converter that refuses the coercions cattrs' default hooks make.
    """
    conv = make_converter()

    for raw in ({"users": 3.7}, {"users": True}, {"users": "3"}):
        with pytest.raises(ClassValidationError):
            conv.structure(raw, SamplingSpec)
    assert conv.structure({"watch_factor": 1}, SamplingSpec).watch_factor == 1.0


@settings(max_examples=200)
@given(specs())
def test_unstructure_structure_roundtrip(spec: Spec):
    """
    Unstructuring a valid spec and structuring it back gives the same spec.
    """
    assert _CONVERTER.structure(_CONVERTER.unstructure(spec), Spec) == spec


@settings(max_examples=200)
@given(specs())
def test_toml_text_roundtrip(spec: Spec):
    """
    A valid spec written as TOML text (unset fields left out) parses back to the same spec.
    """
    text = to_toml(_CONVERTER.unstructure(spec))

    assert parse_spec(text) == spec


@settings(max_examples=300)
@given(raw_spec_documents())
def test_any_document_parses_or_raises_spec_error(document: dict[str, object]):
    """
    Any TOML document either parses or raises SpecError with at least one problem; nothing else escapes.
    """
    text = to_toml(document)

    outcome: Spec | SpecError
    try:
        outcome = parse_spec(text, source="fuzz.toml")
    except SpecError as exc:
        outcome = exc

    if isinstance(outcome, SpecError):
        assert outcome.problems
        assert str(outcome).startswith("fuzz.toml has ")


def _field_names(cls: type, names: set[str]) -> set[str]:
    """Every field name of the spec classes reachable from ``cls``."""
    for name, hint in typing.get_type_hints(cls).items():
        names.add(name)
        inner = [
            hint,
            *typing.get_args(hint),
            *(a for h in typing.get_args(hint) for a in typing.get_args(h)),
        ]
        for table in inner:
            if isinstance(table, type) and attrs.has(table) and table is not cls:
                _field_names(table, names)
    return names


_FIELDS = _field_names(Spec, set())
_PATH_PART = re.compile(r"(?P<name>[a-z_]+)(?:\[\d+\])?")


def _outcome(text: str) -> Spec | SpecError:
    """
    parse_spec's result or its SpecError, checked: every problem has a path of real fields (empty for
    the whole document) and an expected text, in a message without control characters (one line);
    any other exception fails the test.
    """
    try:
        return parse_spec(text, source="fuzz.toml")
    except SpecError as exc:
        error = exc
    assert error.problems
    assert str(error).startswith("fuzz.toml has ")
    for p in error.problems:
        assert p.expected.strip(), p
        assert not any(unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") for c in p.message), p
        for part in p.path.split(".") if p.path else []:
            m = _PATH_PART.fullmatch(part)
            assert m is not None, p
            assert m.group("name") in _FIELDS, p
    return error


@settings(max_examples=300)
@given(toml_texts)
def test_any_toml_like_text_gives_a_spec_or_a_spec_error(text: str):
    """
    TOML-shaped lines in any order and mix (often invalid TOML) give a Spec or a SpecError, nothing else.
    """
    _outcome(text)


@settings(max_examples=200)
@given(any_texts(100))
def test_any_text_gives_a_spec_or_a_spec_error(text: str):
    """
    Any text at all, lone surrogates and NUL included, gives a Spec or a SpecError.
    """
    _outcome(text)


@settings(max_examples=150)
@given(noisy_spec_documents())
def test_valid_spec_with_random_edits_gives_a_spec_or_a_spec_error(document: dict[str, object]):
    """
    A valid spec with values replaced, keys added or keys removed at random never crashes the parser.
    """
    _outcome(to_toml(document))


@settings(max_examples=100)
@given(specs(), st.data())
def test_a_table_where_a_value_belongs_is_reported_at_its_path(spec: Spec, data: st.DataObject):
    """
    Replacing any value of a valid spec by an inline table gives a problem at exactly that path.
    """
    document = _CONVERTER.unstructure(spec)
    leaves = [
        (table, key, path)
        for table, path in _tables_with_paths(document, "")
        for key, value in table.items()
        if value is not None
        and not isinstance(value, dict)
        and not (isinstance(value, list) and value and isinstance(value[0], dict))
    ]
    table, key, path = data.draw(st.sampled_from(leaves))
    table[key] = {"x": 1}

    outcome = _outcome(to_toml(document))

    assert isinstance(outcome, SpecError)
    assert (f"{path}.{key}" if path else key) in [p.path for p in outcome.problems]


def _tables_with_paths(table: dict[str, object], path: str) -> list[tuple[dict[str, object], str]]:
    out = [(table, path)]
    for key, value in table.items():
        inner = f"{path}.{key}" if path else key
        if isinstance(value, dict):
            out += _tables_with_paths(value, inner)
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for i, item in enumerate(value):
                out += _tables_with_paths(item, f"{inner}[{i}]")
    return out


def test_sampling_users_all_means_every_eligible_user():
    """users = "all" parses, in TOML and in Python; any other string is a type problem."""
    spec = parse_spec('[sampling]\nusers = "all"\n')

    assert spec.sampling.users == "all"
    assert SamplingSpec(users="all").users == "all"
    assert [p.message for p in _problems('[sampling]\nusers = "All"\n')] == [
        'sampling.users = "All": expected an integer or "all"'
    ]
