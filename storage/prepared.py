"""Statements prepared once: on SQLite through `sqlite+inline`, run on the sqlite3 connection itself.

SQLAlchemy's execution path costs about 20 µs a statement on this machine (a cache key, an
execution context, a result object); sqlite3 runs one of these statements in 2 to 4 µs. The
statements every request runs (a charge, a settlement, a /wechat message) are fixed, so their
SQL, the order of their parameters and the conversions of their types are worked out once,
here, with SQLAlchemy's own compiler and its own bind and result processors (`TypeEngine`'s
public API): what reaches SQLite is what SQLAlchemy itself would send, in the connection's
open transaction.

Everywhere else (PostgreSQL, aiosqlite) a prepared statement goes through
`Connection.execute` as any other: the suite runs on both, so both paths run the same callers,
and both answer with the same `Rows` of the same named tuples. Either way the session's pending
ORM objects are flushed first, as its own `execute` would (autoflush).
"""
from __future__ import annotations

import sqlite3
from collections import namedtuple
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from sqlalchemy import Connection, Executable
from sqlalchemy.engine import Dialect
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import DBAPIError, InvalidRequestError, MultipleResultsFound, NoResultFound, StatementError
from sqlalchemy.orm import Session
from sqlalchemy.schema import ColumnDefault

from storage.sqlite_inline import SQLiteDialect_inline


class Rows:
    """A prepared statement's answer, on every backend: the part of SQLAlchemy's `Result` its
    callers use. Rows are named tuples, read by column name as SQLAlchemy's `Row` is."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows: list, rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def all(self) -> list:
        return self._rows

    def first(self) -> Any:
        return self._rows[0] if self._rows else None

    def one(self) -> Any:
        if len(self._rows) != 1:
            raise (NoResultFound if not self._rows else MultipleResultsFound)(f"{len(self._rows)} rows, one expected")
        return self._rows[0]

    def scalar(self) -> Any:
        return self._rows[0][0] if self._rows else None


Conversion = Callable[[Any], Any]


@dataclass(frozen=True)
class _Plan:
    """One statement for one set of parameter keys: where each of its parameters comes from is
    known beforehand, so the statement's own values (and constant column defaults) are
    converted once, here, and only the caller's are converted at each execution."""

    sql: str
    fixed: tuple  # each position's value when the statement gives it, already converted; None elsewhere
    given: tuple[tuple[int, str, Conversion | None], ...]  # (position, the caller's key, conversion)
    made: tuple[tuple[int, ColumnDefault, Conversion | None], ...]  # column defaults made anew each time (default=dict)
    missing: str | None  # a parameter the statement needs and these keys lack
    row: type | None  # the statement's named tuple (Prepared.row)
    processors: tuple[tuple[int, Conversion], ...]  # (column, conversion), only those that convert

    def arguments(self, params: dict[str, Any]) -> list:
        if self.missing is not None:
            raise InvalidRequestError(f"A value is required for bind parameter {self.missing!r}")
        arguments = list(self.fixed)
        for i, key, process in self.given:
            value = params[key]
            arguments[i] = value if process is None else process(value)
        for i, default, process in self.made:
            value = default.arg(None)
            arguments[i] = value if process is None else process(value)
        return arguments

    def rows(self, raw: list[tuple]) -> list:
        if self.row is None:
            return raw
        if not self.processors:
            return [self.row._make(values) for values in raw]
        converted = []
        for values in raw:
            values = list(values)
            for i, process in self.processors:
                values[i] = process(values[i])
            converted.append(self.row._make(values))
        return converted


class Prepared:
    """A Core statement (on tables, not ORM entities) compiled once per set of parameter keys.

    `execute(session, params)` runs it in the session's transaction and answers with `Rows`
    (`first`, `one`, `scalar`, `all` and `rowcount`). A failure is SQLAlchemy's own exception
    (an `IntegrityError` stays one). All `sqlite+inline` engines are made alike by
    `storage.db.create_engine`, so one plan serves them all.
    """

    def __init__(self, statement: Executable) -> None:
        described = getattr(statement, "column_descriptions", ())
        if any(column.get("entity") is not None and column["expr"] is column["entity"] for column in described):
            raise ValueError("a prepared statement selects columns, not ORM entities (their rows differ by path)")
        _refuse_what_cannot_be_prepared(statement.compile(dialect=sqlite.dialect()))
        self.statement = statement
        columns = list(statement.exported_columns) if hasattr(statement, "exported_columns") else []
        self.row = namedtuple("Row", [column.key for column in columns], rename=True) if columns else None
        self._plans: dict[frozenset[str], _Plan] = {}

    def execute(self, session: Session, params: dict[str, Any]) -> Rows:
        if session.autoflush:
            session.flush()
        connection = _connection(session)
        if connection.dialect.driver != SQLiteDialect_inline.driver:
            result = connection.execute(self.statement, params)
            rows = [self.row._make(values) for values in result] if self.row is not None and result.returns_rows else []
            return Rows(rows, result.rowcount)
        keys = frozenset(params)
        plan = self._plans.get(keys) or self._plans.setdefault(keys, _prepare(self.statement, self.row, connection.dialect, keys))
        try:
            arguments = plan.arguments(params)
        except Exception as error:  # a missing or unconvertible value: SQLAlchemy's path says so the same way
            raise StatementError(str(error), plan.sql, params, error) from error
        try:
            cursor = connection.connection.dbapi_connection.execute(plan.sql, arguments)
            raw = cursor.fetchall()
        except sqlite3.Error as error:
            raise DBAPIError.instance(plan.sql, arguments, error, sqlite3.Error, dialect=connection.dialect) from error
        return Rows(plan.rows(raw), cursor.rowcount)


def _connection(session: Session) -> Connection:
    """The connection the session works in. `Database.run` binds its Session to a connection whose
    transaction is open: that one is used as it is, with no SessionTransaction set up around it
    (about 10 µs, more than the statement)."""
    bind = session.bind
    if isinstance(bind, Connection) and bind.in_transaction():
        return bind
    return session.connection()


def _prepare(statement: Executable, row: type | None, dialect: Dialect, keys: frozenset[str]) -> _Plan:
    # The parameter keys pick an INSERT's or UPDATE's columns, as they do when SQLAlchemy executes it.
    compiled = statement.compile(dialect=dialect, column_keys=sorted(keys))
    defaults = {column.key: column.default for column in compiled.insert_prefetch}
    defaults.update({column.key: column.onupdate for column in compiled.update_prefetch})
    fixed: list[Any] = []
    given, made, missing = [], [], None
    for i, name in enumerate(compiled.positiontup):
        bind = compiled.binds[name]
        process = bind.type.dialect_impl(dialect).bind_processor(dialect)
        default = defaults.get(bind.key)
        value = None
        if bind.key in keys:
            given.append((i, bind.key, process))
        elif default is not None and not default.is_scalar:
            made.append((i, default, process))
        elif default is None and bind.required:
            missing = missing or bind.key
        else:  # the statement's own value, or a constant column default: converted once, here
            value = default.arg if default is not None else bind.value
            value = value if process is None else process(value)
        fixed.append(value)
    columns = list(statement.exported_columns) if hasattr(statement, "exported_columns") else []
    return _Plan(sql=compiled.string, fixed=tuple(fixed), given=tuple(given), made=tuple(made), missing=missing,
                 row=row, processors=_result_processors(columns, dialect))


def _refuse_what_cannot_be_prepared(compiled) -> None:
    """Parameters SQLAlchemy works out anew at each execution (an IN list, a value computed by a
    callable) cannot be fixed once; checked when the statement is declared, whatever the backend."""
    if compiled.literal_execute_params or compiled.post_compile_params:
        raise ValueError("a prepared statement cannot have expanding (IN) or literal-execute parameters")
    if any(bind.callable is not None for bind in compiled.binds.values()):
        raise ValueError("a prepared statement cannot have a parameter computed by a callable")


def _result_processors(columns: Sequence, dialect: Dialect) -> tuple[tuple[int, Conversion], ...]:
    processors = ((i, column.type.dialect_impl(dialect).result_processor(dialect, None)) for i, column in enumerate(columns))
    return tuple((i, process) for i, process in processors if process is not None)
