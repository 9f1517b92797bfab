"""The `anchor`, `windows` and `label` sections of conf/features.yaml (DESIGN §4-5), checked.

feature_spec.py keeps these sections uninterpreted; this module gives them meaning and checks
their shape (`load_window_spec`, no Spark); spec_check.py then analyses every expression
against empty DataFrames with the `sessions` / `events` schemas, before any data is read. A
bad entry fails with a message naming it, e.g.
`windows.prev_week.features.prev_week_purchase_amount: ...`.

How a window feature becomes a Spark column (`window_sql`): it is written like a session
aggregate (`coalesce(sum(purchase_amount), 0)`), and every aggregate call in it is given
`FILTER (WHERE <mask>) OVER (<frame>)`. The frame is a range frame partitioned by user; the mask
keeps only the window's source rows, so the anchor rows that share the frame (they are unioned
with the source, see training.py) never count. Which calls are aggregates is asked of Spark's
function catalog, so every built-in aggregate works without a list kept here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import SparkSession

from offer_ai.errors import UserError
from offer_ai.ingest.feature_spec import FeatureSpec

#: A window reads one source; rows enter a time frame by this column and are ordered (count
#: frames, ties) by (time, tie-break key).
SOURCES: dict[str, tuple[str, str]] = {"sessions": ("session_start", "session_id"), "events": ("event_time", "event_key")}
WINDOW_KINDS = ("count", "time")
DIRECTIONS = ("backward", "forward")
#: Microseconds per unit of a time window's length.
LENGTH_UNITS: dict[str, int] = {"days": 86_400_000_000, "hours": 3_600_000_000}
#: Columns every training row / online row has besides the spec's features.
TRAINING_KEYS = ("user_id", "anchor_session_id", "anchor_session_start", "decision_time")
RESERVED_COLUMNS = (*TRAINING_KEYS, "label_complete", "as_of", "spec_version")
_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
_ANCHOR_KEYS = {"condition", "decision_time", "max_per_user_per_day", "identity_features", "action"}
_WINDOW_KEYS = {"kind", "source", "condition", "count", "days", "hours", "direction", "features"}
_LABEL_KEYS = {"name", "source", "condition", "days", "hours", "direction", "aggregate"}


@dataclass(frozen=True)
class AnchorSpec:
    """Which sessions are decisions, when the decision was made, and what was decided."""

    condition: str
    decision_time: str
    #: None: no limit.
    max_per_user_per_day: int | None
    identity_features: tuple[str, ...]
    action: tuple[str, ...]


@dataclass(frozen=True)
class WindowDef:
    """One window: the source rows in a frame before (or after) an anchor, and its features."""

    entry: str  #: where it is defined, for messages: 'windows.prev_week' or 'label'
    kind: str  #: 'count' (last N source rows) or 'time' (a length of time)
    source: str  #: 'sessions' or 'events'
    condition: str | None  #: which source rows count (Spark SQL predicate), None: all
    count: int | None
    length_us: int | None
    direction: str
    features: dict[str, str]  #: output column -> expression (aggregate, or a row value for count 1)

    @property
    def time_column(self) -> str:
        return SOURCES[self.source][0]

    @property
    def tie_column(self) -> str:
        return SOURCES[self.source][1]

    def frame(self, order_column: str) -> str:
        """The OVER clause body. Backward frames end strictly before the anchor's time; the
        forward frame starts at it: [t - L, t) and [t, t + L), in microseconds."""
        if self.kind == "count":  # order_column is the running count of source rows (training.py)
            assert self.count is not None
            start = "CURRENT ROW" if self.count == 1 else f"{self.count - 1} PRECEDING"
            return f"PARTITION BY user_id ORDER BY {order_column} RANGE BETWEEN {start} AND CURRENT ROW"
        assert self.length_us is not None
        if self.direction == "backward":
            bounds = f"{self.length_us} PRECEDING AND 1 PRECEDING"
        else:
            bounds = f"CURRENT ROW AND {self.length_us - 1} FOLLOWING"
        return f"PARTITION BY user_id ORDER BY {order_column} RANGE BETWEEN {bounds}"


@dataclass(frozen=True)
class WindowSpec:
    """The interpreted anchor / windows / label sections, with the FeatureSpec they build on."""

    features: FeatureSpec
    anchor: AnchorSpec
    windows: tuple[WindowDef, ...]
    label: WindowDef  #: a forward time window with exactly one feature: the label column
    _aggregates: dict[str, bool] = field(default_factory=dict, compare=False, repr=False)

    @property
    def version(self) -> str:
        return self.features.version

    @property
    def label_name(self) -> str:
        return next(iter(self.label.features))

    @property
    def window_feature_columns(self) -> tuple[str, ...]:
        return tuple(name for w in self.windows for name in w.features)

    @property
    def online_columns(self) -> tuple[str, ...]:
        """What features_as_of returns (DESIGN §3 online_features, less spec_version)."""
        return ("user_id", "as_of", *self.anchor.identity_features, *self.window_feature_columns)

    @property
    def training_columns(self) -> tuple[str, ...]:
        return (
            *TRAINING_KEYS, *self.anchor.identity_features, *self.window_feature_columns,
            *self.anchor.action, self.label_name, "label_complete",
        )

    def is_aggregate(self, spark: SparkSession, name: str) -> bool:
        """Whether `name` is an aggregate function, per Spark's function catalog (cached)."""
        key = name.lower()
        if key not in self._aggregates:
            try:
                class_name = spark.catalog.getFunction(key).className or ""
            except Exception:  # noqa: BLE001 - not a function: the analysis names the entry
                class_name = ""
            self._aggregates[key] = ".aggregate." in class_name
        return self._aggregates[key]


def window_sql(expr: str, mask: str, over: str, is_aggregate: Callable[[str], bool]) -> tuple[str, int]:
    """`expr` with `FILTER (WHERE mask) OVER (over)` after every aggregate call; and the count of calls.

    A FILTER the author wrote is kept (ANDed with the mask); IGNORE/RESPECT NULLS stays before
    OVER. String literals, quoted identifiers and comments are copied untouched. Raises
    ValueError when the expression brings its own OVER: the window comes from the definition.
    """
    out: list[str] = []
    i, n, calls = 0, len(expr), 0
    while i < n:
        c = expr[i]
        if c in "'\"`":
            j = _skip_quoted(expr, i)
            out.append(expr[i:j])
            i = j
            continue
        if expr.startswith("--", i) or expr.startswith("/*", i):
            end = expr.find("\n", i) if c == "-" else expr.find("*/", i)
            j = n if end == -1 else end + (0 if c == "-" else 2)
            out.append(expr[i:j])
            i = j
            continue
        if c.isdigit():
            m = re.compile(r"[0-9A-Za-z_.]+").match(expr, i)
            assert m is not None
            out.append(m.group())
            i = m.end()
            continue
        m = _IDENT.match(expr, i)
        if not m:
            out.append(c)
            i += 1
            continue
        name, j = m.group(), m.end()
        k = _skip_space(expr, j)
        before = expr[:i].rstrip()
        if k < n and expr[k] == "(" and not before.endswith(".") and is_aggregate(name):
            close = _matching(expr, k)
            call, rest = expr[i : close + 1], close + 1
            where = mask
            f = _FILTER.match(expr, rest)
            if f:
                open_paren = expr.index("(", rest)
                end = _matching(expr, open_paren)
                where = f"({expr[f.end():end].strip()}) AND {mask}"
                rest = end + 1
            nulls = ""
            g = _NULLS.match(expr, rest)
            if g:
                nulls = f" {g.group(1).upper()} NULLS"
                rest = g.end()
            if _OVER.match(expr, rest):
                raise ValueError(
                    f"'{call}' has its own OVER clause: write the plain aggregate, the window definition "
                    "supplies the frame."
                )
            out.append(f"{call} FILTER (WHERE {where}){nulls} OVER ({over})")
            calls += 1
            i = rest
            continue
        out.append(name)
        i = j
    return "".join(out), calls


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FILTER = re.compile(r"\s*FILTER\s*\(\s*WHERE\b", re.IGNORECASE)
_NULLS = re.compile(r"\s*(IGNORE|RESPECT)\s+NULLS\b", re.IGNORECASE)
_OVER = re.compile(r"\s*OVER\b", re.IGNORECASE)


def _skip_quoted(text: str, i: int) -> int:
    """Index after the quoted literal/identifier starting at i (backslash and doubled-quote escapes)."""
    quote, j, n = text[i], i + 1, len(text)
    while j < n:
        if text[j] == "\\" and quote != "`":
            j += 2
            continue
        if text[j] == quote:
            if j + 1 < n and text[j + 1] == quote:
                j += 2
                continue
            return j + 1
        j += 1
    raise ValueError(f"unterminated {quote} quote")


def _skip_space(text: str, i: int) -> int:
    while i < len(text) and text[i].isspace():
        i += 1
    return i


def _matching(text: str, open_index: int) -> int:
    """Index of the ')' that closes the '(' at open_index (quotes skipped)."""
    depth, i, n = 0, open_index, len(text)
    while i < n:
        c = text[i]
        if c in "'\"`":
            i = _skip_quoted(text, i)
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ValueError("unbalanced parentheses")


def describe_window(window: WindowDef) -> str:
    if window.kind == "count":
        return f"{window.count} {window.source}"
    unit = "hours" if window.length_us is not None and window.length_us % LENGTH_UNITS["days"] else "days"
    assert window.length_us is not None
    return f"{window.length_us // LENGTH_UNITS[unit]} {unit}"


# ---------------------------------------------------------------------------------------------
# Shape (no Spark)
# ---------------------------------------------------------------------------------------------


def load_window_spec(features: FeatureSpec) -> WindowSpec:
    """Interpret `anchor`, `windows` and `label` of a loaded FeatureSpec; check their shape."""
    path = features.path
    sections = features.sections
    for name in ("anchor", "label"):
        if name not in sections:
            raise UserError(f"{path}: the '{name}' section is missing (DESIGN §5: it defines the training rows).")
    anchor = _anchor(path, sections["anchor"], features)
    windows_node = sections.get("windows") or {}
    if not isinstance(windows_node, dict):
        raise UserError(f"{path}: 'windows' must map window names to window definitions.")
    windows = tuple(_window(path, f"windows.{name}", name, node) for name, node in windows_node.items())
    label = _label(path, sections["label"])
    columns = [*anchor.identity_features, *[c for w in windows for c in w.features], *anchor.action, *label.features]
    for name in columns:
        if name in RESERVED_COLUMNS:
            raise UserError(f"{path}: column '{name}' is reserved for the training rows' keys and flags.")
    duplicated = sorted({c for c in columns if columns.count(c) > 1})
    if duplicated:
        raise UserError(
            f"{path}: column '{duplicated[0]}' is produced twice "
            "(identity features, window features, action and label share one row)."
        )
    return WindowSpec(features=features, anchor=anchor, windows=windows, label=label)


def _anchor(path: str, node: Any, features: FeatureSpec) -> AnchorSpec:
    if not isinstance(node, dict):
        raise UserError(f"{path}: 'anchor' must be a mapping with condition, decision_time, ...")
    _known_keys(path, "anchor", node, _ANCHOR_KEYS)
    condition = _sql(path, "anchor.condition", node.get("condition"))
    decision_time = _sql(path, "anchor.decision_time", node.get("decision_time"))
    limit = node.get("max_per_user_per_day", 1)
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise UserError(
            f"{path}: anchor.max_per_user_per_day must be a whole number >= 1, or null for no limit (got {limit!r})."
        )
    identity = _names(path, "anchor.identity_features", node.get("identity_features", []))
    for name in identity:
        if name not in features.identity.columns:
            raise UserError(
                f"{path}: anchor.identity_features: '{name}' is not an identity field "
                f"(identity.fields or identity.derived: {', '.join(features.identity.columns)})."
            )
    action = _names(path, "anchor.action", node.get("action", []))
    return AnchorSpec(condition, decision_time, limit, identity, action)


def _window(path: str, entry: str, name: Any, node: Any) -> WindowDef:
    if not isinstance(name, str) or not _NAME.match(name):
        raise UserError(f"{path}: {entry}: window names are lower_snake_case identifiers.")
    if not isinstance(node, dict):
        raise UserError(f"{path}: {entry} must be a mapping with kind, features, ...")
    _known_keys(path, entry, node, _WINDOW_KEYS)
    kind = node.get("kind")
    if kind not in WINDOW_KINDS:
        raise UserError(f"{path}: {entry}.kind: unknown window kind {kind!r} (expected one of {', '.join(WINDOW_KINDS)}).")
    source = _source(path, entry, node)
    direction = node.get("direction", "backward")
    if direction not in DIRECTIONS:
        raise UserError(f"{path}: {entry}.direction must be one of {', '.join(DIRECTIONS)} (got {direction!r}).")
    if direction != "backward":
        raise UserError(
            f"{path}: {entry}.direction: features may only look backward (a forward window would leak "
            "the future into them); the label is the one forward window."
        )
    count = length = None
    if kind == "count":
        for key in LENGTH_UNITS:
            if key in node:
                raise UserError(f"{path}: {entry}.{key}: a count window has 'count', not a length of time.")
        count = node.get("count")
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise UserError(f"{path}: {entry}.count must be a whole number >= 1 (got {count!r}).")
    else:
        if "count" in node:
            raise UserError(f"{path}: {entry}.count: a time window has 'days' or 'hours', not 'count'.")
        length = _length(path, entry, node)
    features = node.get("features")
    if not isinstance(features, dict) or not features:
        raise UserError(f"{path}: {entry}.features must map at least one output column to an expression.")
    exprs: dict[str, str] = {}
    for column, expr in features.items():
        if not isinstance(column, str) or not _NAME.match(column):
            raise UserError(f"{path}: {entry}.features.{column}: column names are lower_snake_case identifiers.")
        exprs[column] = _sql(path, f"{entry}.features.{column}", expr)
    condition = _sql(path, f"{entry}.condition", node["condition"]) if node.get("condition") is not None else None
    return WindowDef(entry, kind, source, condition, count, length, direction, exprs)


def _label(path: str, node: Any) -> WindowDef:
    if not isinstance(node, dict):
        raise UserError(f"{path}: 'label' must be a mapping with name, source, aggregate, days, ...")
    _known_keys(path, "label", node, _LABEL_KEYS)
    name = node.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise UserError(f"{path}: label.name must be a lower_snake_case column name (got {name!r}).")
    if node.get("direction", "forward") != "forward":
        raise UserError(f"{path}: label.direction must be forward: the label is what happens after the decision.")
    source = _source(path, "label", node)
    aggregate = _sql(path, "label.aggregate", node.get("aggregate"))
    condition = _sql(path, "label.condition", node["condition"]) if node.get("condition") is not None else None
    return WindowDef("label", "time", source, condition, None, _length(path, "label", node), "forward", {name: aggregate})


def _source(path: str, entry: str, node: dict[str, Any]) -> str:
    source = node.get("source", "sessions")
    if source not in SOURCES:
        raise UserError(f"{path}: {entry}.source must be one of {', '.join(SOURCES)} (got {source!r}).")
    return str(source)


def _length(path: str, entry: str, node: dict[str, Any]) -> int:
    given = [key for key in LENGTH_UNITS if key in node]
    if len(given) != 1:
        raise UserError(f"{path}: {entry} needs exactly one of 'days' or 'hours' (its length of time).")
    value = node[given[0]]
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise UserError(f"{path}: {entry}.{given[0]} must be a whole number >= 1 (got {value!r}).")
    return value * LENGTH_UNITS[given[0]]


def _known_keys(path: str, entry: str, node: dict[str, Any], known: set[str]) -> None:
    unknown = sorted(str(k) for k in set(node) - known)
    if unknown:
        raise UserError(f"{path}: {entry}.{unknown[0]} is not a known key ({', '.join(sorted(known))}).")


def _sql(path: str, entry: str, expr: Any) -> str:
    if not isinstance(expr, str) or not expr.strip():
        raise UserError(f"{path}: {entry} must be a Spark SQL expression (a non-empty string).")
    return expr.strip()


def _names(path: str, entry: str, names: Any) -> tuple[str, ...]:
    if not isinstance(names, list) or not all(isinstance(n, str) and _NAME.match(n) for n in names):
        raise UserError(f"{path}: {entry} must be a list of column names.")
    return tuple(names)
