"""Unit tests for the metadata filter compiler (no database: SQL text and params)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql
from psycopg.types.json import Jsonb

from ragtune_common.errors import InvalidArgument
from ragtune_retriever.filters import MAX_DEPTH, MAX_NODES, compile_filter

P = "(c.metadata #> %s::text[])"


def render(spec: Any, **kwargs: Any) -> tuple[str, list[Any]]:
    expr, params = compile_filter(spec, **kwargs)
    text = expr.as_string(None)
    assert text.count("%s") == len(params)
    return text, params


def values(params: list[Any]) -> list[Any]:
    """Params with Jsonb unwrapped, to compare plainly."""
    out: list[Any] = []
    for p in params:
        if isinstance(p, Jsonb):
            out.append(("jsonb", p.obj))
        elif isinstance(p, list) and p and isinstance(p[0], Jsonb):
            out.append(("jsonb[]", [j.obj for j in p]))
        else:
            out.append(p)
    return out


def error(spec: Any) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as info:
        compile_filter(spec)
    return info.value


@pytest.mark.parametrize("spec", [None, {}])
def test_empty_filter_is_true(spec: Any) -> None:
    assert render(spec) == ("TRUE", [])


def test_shorthand_eq() -> None:
    text, params = render({"lang": "en"})
    assert text == f"({P} = %s)"
    assert values(params) == [["lang"], ("jsonb", "en")]


@pytest.mark.parametrize("value", ["en", 2020.0, 7, True, False])
def test_eq_scalars(value: Any) -> None:
    text, params = render({"k": {"$eq": value}})
    assert text == f"({P} = %s)"
    assert values(params) == [["k"], ("jsonb", value)]
    assert isinstance(params[1], Jsonb)


def test_eq_null_matches_missing_or_null() -> None:
    text, params = render({"k": None})
    assert text == f"(COALESCE({P}, 'null'::jsonb) = 'null'::jsonb)"
    assert params == [["k"]]


def test_ne_value_is_distinct_from() -> None:
    text, params = render({"k": {"$ne": "x"}})
    assert text == f"({P} IS DISTINCT FROM %s)"
    assert values(params) == [["k"], ("jsonb", "x")]


def test_ne_null_means_present_and_not_null() -> None:
    text, params = render({"k": {"$ne": None}})
    assert text == f"(COALESCE({P}, 'null'::jsonb) <> 'null'::jsonb)"
    assert params == [["k"]]


@pytest.mark.parametrize(("op", "sym"), [("$gt", ">"), ("$gte", ">="), ("$lt", "<"), ("$lte", "<=")])
@pytest.mark.parametrize(("value", "typ"), [(2000.0, "number"), (3, "number"), ("m", "string")])
def test_comparisons_are_type_guarded(op: str, sym: str, value: Any, typ: str) -> None:
    text, params = render({"year": {op: value}})
    assert text == f"(jsonb_typeof({P}) = '{typ}' AND {P} {sym} %s)"
    assert values(params) == [["year"], ["year"], ("jsonb", value)]


def test_several_operators_on_one_key_are_anded() -> None:
    text, params = render({"year": {"$gte": 2000, "$lt": 2010}})
    gte = f"(jsonb_typeof({P}) = 'number' AND {P} >= %s)"
    lt = f"(jsonb_typeof({P}) = 'number' AND {P} < %s)"
    assert text == f"({gte} AND {lt})"
    assert values(params) == [
        ["year"],
        ["year"],
        ("jsonb", 2000),
        ["year"],
        ["year"],
        ("jsonb", 2010),
    ]


def test_in_and_nin() -> None:
    text, params = render({"tag": {"$in": ["a", 1.0, True]}})
    assert text == f"({P} = ANY(%s))"
    assert values(params) == [["tag"], ("jsonb[]", ["a", 1.0, True])]
    text, params = render({"tag": {"$nin": ["a"]}})
    assert text == f"(NOT COALESCE({P} = ANY(%s), FALSE))"
    assert values(params) == [["tag"], ("jsonb[]", ["a"])]


@pytest.mark.parametrize(("flag", "test"), [(True, "IS NOT NULL"), (False, "IS NULL")])
def test_exists(flag: bool, test: str) -> None:
    assert render({"k": {"$exists": flag}}) == (f"({P} {test})", [["k"]])


def test_dotted_key_is_a_path_param() -> None:
    text, params = render({"author.name": "Ann"})
    assert text == f"({P} = %s)"
    assert values(params) == [["author", "name"], ("jsonb", "Ann")]


def test_keys_at_one_level_are_anded_in_order() -> None:
    text, params = render({"a": 1, "b": 2})
    assert text == f"(({P} = %s) AND ({P} = %s))"
    assert values(params) == [["a"], ("jsonb", 1), ["b"], ("jsonb", 2)]


def test_nested_and_or_mixed_with_keys() -> None:
    spec = {
        "lang": "en",
        "$or": [{"a": 1}, {"$and": [{"b": {"$exists": True}}, {"c": None}]}],
    }
    text, params = render(spec)
    eq = f"({P} = %s)"
    inner = f"(({P} IS NOT NULL) AND (COALESCE({P}, 'null'::jsonb) = 'null'::jsonb))"
    assert text == f"({eq} AND ({eq} OR {inner}))"
    assert values(params) == [
        ["lang"],
        ("jsonb", "en"),
        ["a"],
        ("jsonb", 1),
        ["b"],
        ["c"],
    ]


def test_single_item_or_needs_no_parentheses() -> None:
    assert render({"$or": [{"a": 1}]})[0] == f"({P} = %s)"


def test_custom_column() -> None:
    text, _ = render({"a": 1}, column=sql.Identifier("t", "meta"))
    assert text == '(("t"."meta" #> %s::text[]) = %s)'


def test_user_strings_never_reach_sql_text() -> None:
    evil = "x'); DROP TABLE t;--"
    spec = {
        evil: evil,
        f"{evil}.{evil}": {"$in": [evil]},
        "$or": [{"k": {"$gt": evil}}],
    }
    text, params = render(spec)
    assert "DROP" not in text and "x'" not in text
    assert values(params) == [
        [evil],
        ("jsonb", evil),
        [evil, evil],
        ("jsonb[]", [evil]),
        ["k"],
        ["k"],
        ("jsonb", evil),
    ]


def test_numbers_never_reach_sql_text() -> None:
    text, _ = render({"year": {"$gt": 12345.5, "$in": [67890]}})
    assert "12345" not in text and "67890" not in text


def test_in_accepts_up_to_1000_values() -> None:
    _, params = render({"k": {"$in": list(range(1000))}})
    assert len(params[1]) == 1000


def test_max_depth_is_allowed() -> None:
    spec: dict[str, Any] = {"a": 1}
    for _ in range(MAX_DEPTH - 1):
        spec = {"$and": [spec]}
    text, params = render(spec)
    assert text == f"({P} = %s)"
    assert values(params) == [["a"], ("jsonb", 1)]


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        (
            {"k": {"$regex": "a.*"}},
            "filter.k.$regex",
            ["unknown operator $regex", "$in"],
        ),
        ({"$foo": 1}, "filter.$foo", ["unknown operator $foo"]),
        ({"$and": [{"k": {"$foo": 1}}]}, "filter.$and[0].k.$foo", ["unknown operator"]),
        ({"$gt": 5}, "filter.$gt", ["needs a metadata key"]),
        ({"$in": [1]}, "filter.$in", ["needs a metadata key"]),
        ({"k": {"$or": [{"a": 1}]}}, "filter.k.$or", ["filter level"]),
        (
            {"$and": [{}, {"year": {"$gt": [1]}}]},
            "filter.$and[1].year.$gt",
            ["number or string", "list"],
        ),
        ({"year": {"$gt": {"a": 1}}}, "filter.year.$gt", ["got object"]),
        ({"year": {"$lte": True}}, "filter.year.$lte", ["got boolean"]),
        ({"year": {"$lt": None}}, "filter.year.$lt", ["got null"]),
        ({"year": {"$gt": float("nan")}}, "filter.year.$gt", ["finite"]),
        ({"k": {"$eq": [1, 2]}}, "filter.k.$eq", ["got list"]),
        ({"k": [1, 2]}, "filter.k", ["got list"]),
        ({"k": {"$ne": {"$eq": 1}}}, "filter.k.$ne", ["got object"]),
        ({"k": {"$in": "a"}}, "filter.k.$in", ["non-empty list"]),
        ({"k": {"$in": []}}, "filter.k.$in", ["non-empty list"]),
        ({"k": {"$in": list(range(1001))}}, "filter.k.$in", ["at most 1000"]),
        ({"k": {"$in": [1, {"a": 1}]}}, "filter.k.$in[1]", ["got object"]),
        ({"k": {"$nin": ["a", ["b"]]}}, "filter.k.$nin[1]", ["got list"]),
        ({"k": {"$in": [None]}}, "filter.k.$in[0]", ["got null"]),
        ({"k": {"$exists": "yes"}}, "filter.k.$exists", ["boolean", "got string"]),
        ({"k": {"$exists": 1}}, "filter.k.$exists", ["got number"]),
        ({"$and": []}, "filter.$and", ["non-empty list"]),
        ({"$or": {"a": 1}}, "filter.$or", ["non-empty list"]),
        ({"$and": [{"a": 1}, "b"]}, "filter.$and[1]", ["JSON object", "got string"]),
        ({"$or": [{"$and": [1]}]}, "filter.$or[0].$and[0]", ["got number"]),
        ({"": 1}, "filter.", ["non-empty"]),
        ({"a..b": 1}, "filter.a..b", ["empty segment"]),
        ({".a": 1}, "filter..a", ["empty segment"]),
        ({"k": {}}, "filter.k", ["empty condition"]),
        (
            {"k": {"$gt": 1, "name": "x"}},
            "filter.k",
            ["mixes operators and plain keys"],
        ),
        ({"author": {"name": "x"}}, "filter.author", ["dotted key"]),
    ],
)
def test_errors(spec: Any, field: str, words: list[str]) -> None:
    err = error(spec)
    assert err.field == field
    for word in words:
        assert word in err.message
    assert str(err).startswith(f"{field}: ")


@pytest.mark.parametrize("spec", ["lang=en", ["a"], 3, True])
def test_filter_must_be_an_object(spec: Any) -> None:
    err = error(spec)
    assert err.field == "filter"
    assert "must be a JSON object" in err.message


def test_too_deep() -> None:
    spec: dict[str, Any] = {"a": 1}
    for _ in range(MAX_DEPTH):
        spec = {"$or": [spec]}
    err = error(spec)
    assert err.field == "filter" + ".$or[0]" * MAX_DEPTH
    assert f"deeper than {MAX_DEPTH}" in err.message


def test_field_prefix_is_configurable() -> None:
    with pytest.raises(InvalidArgument) as info:
        compile_filter({"k": {"$bad": 1}}, field="request.filter")
    assert info.value.field == "request.filter.k.$bad"


def test_breadth_is_bounded_and_names_the_path() -> None:
    """40,000 conditions would have made a statement with more parameters than PostgreSQL takes."""
    err = error({"$or": [{"k": i} for i in range(40_000)]})
    assert err.field is not None and err.field.startswith("filter.$or[")
    assert f"more than {MAX_NODES} nodes" in err.message
    err = error({f"k{i}": {"$in": list(range(1000))} for i in range(3)})
    assert err.field == "filter.k1.$in"


def test_empty_objects_count_towards_the_bound() -> None:
    err = error({"$and": [{}] * (MAX_NODES + 1)})
    assert err.field is not None and err.field.startswith("filter.$and[")


def test_filter_at_the_bound_compiles() -> None:
    _, params = render({"k": {"$in": list(range(1000))}, "$or": [{f"a{i}": i} for i in range(498)]})
    assert len(params) == 2 + 2 * 498  # 1002 + 1 + 2 * 498 = 1999 nodes


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"a\x00b": 1}, "filter.a\\x00b"),
        ({"a": "x\x00"}, "filter.a"),
        ({"a": {"$in": ["ok", "b\x00"]}}, "filter.a.$in[1]"),
        ({"$or": [{"a": {"$gt": "\x00"}}]}, "filter.$or[0].a.$gt"),
    ],
)
def test_nul_in_keys_and_values_is_refused(spec: Any, field: str) -> None:
    err = error(spec)
    assert err.field == field
    assert "NUL" in err.message


# -- properties: any JSON in -> a parameterised expression, or InvalidArgument --------------------

_KEYS = st.sampled_from(["$and", "$or", "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists"])
NAMES = st.one_of(_KEYS, st.text(max_size=6), st.sampled_from(["a", "a.b", "a.0", "x y", "'; DROP", "%s", "{}"]))
_SCALARS_ST = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)
JSON = st.recursive(
    _SCALARS_ST,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(NAMES, inner, max_size=4),
    max_leaves=40,
)
# What may appear in the SQL text besides placeholders: the compiler's own fixed vocabulary.
_VOCABULARY = re.compile(
    r"c\.metadata|#>|::text\[\]|::jsonb|%s|'null'|'string'|'number'|jsonb_typeof|COALESCE|IS DISTINCT FROM|"
    r"IS NOT NULL|IS NULL|NOT|ANY|AND|OR|TRUE|FALSE|<>|>=|<=|=|<|>|[(),\s]"
)


def _outcome(spec: Any) -> tuple[str, list[Any]] | None:
    try:
        expr, params = compile_filter(spec)
    except InvalidArgument as exc:
        assert exc.field is not None and exc.field.startswith("filter")
        return None
    return expr.as_string(None), params


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(JSON)
def test_any_json_compiles_or_is_invalid_argument(spec: Any) -> None:
    result = _outcome(spec)
    if result is not None:
        text, params = result
        assert text.count("%s") == len(params)
        assert _VOCABULARY.sub("", text) == "", f"user input reached the SQL text: {text!r}"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(NAMES, JSON, max_size=6))
def test_any_object_compiles_or_is_invalid_argument(spec: Any) -> None:
    test_any_json_compiles_or_is_invalid_argument.hypothesis.inner_test(spec)  # type: ignore[attr-defined]
