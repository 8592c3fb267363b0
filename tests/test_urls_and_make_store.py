"""make_store dispatch, register(), store URLs, the #table= fragment and password redaction."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from typedstore import (
    FilesystemStore,
    GetAttribute,
    Store,
    StoreError,
    UrlError,
    make_filesystemstore,
    make_store,
    register,
)
from typedstore.urls import parse_store_url, redact


class Thing:
    def __init__(self, value: Any) -> None:
        self.value = value


def unique_scheme() -> str:
    return f"ts{uuid.uuid4().hex[:8]}"


def assert_hidden(password: str, error: BaseException) -> None:
    for text in (str(error), repr(error), str(getattr(error, "url", ""))):
        assert password not in text, text


# ---------------------------------------------------------------- file stores


def test_bare_path_gives_filesystem_store(tmp_path: Path) -> None:
    store = make_store(str(tmp_path / "jobs"))
    assert isinstance(store, FilesystemStore)
    assert store.directory == tmp_path / "jobs"
    assert (tmp_path / "jobs").is_dir()
    id_ = store.save(Thing(1))
    assert make_store(str(tmp_path / "jobs")).load(id_).value == 1


def test_path_object_gives_filesystem_store(tmp_path: Path) -> None:
    assert isinstance(make_store(tmp_path / "jobs"), FilesystemStore)


def test_relative_path_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = make_store("rel/jobs")
    assert isinstance(store, FilesystemStore)
    assert store.directory == tmp_path / "rel" / "jobs"


@pytest.mark.parametrize("form", ["file://{}", "file://localhost{}", "FILE://{}"])
def test_file_url_gives_filesystem_store(tmp_path: Path, form: str) -> None:
    directory = tmp_path / "jobs"
    store = make_store(form.format(directory))
    assert isinstance(store, FilesystemStore)
    assert store.directory == directory
    id_ = store.save({"x": 1})
    assert make_store(str(directory)).load(id_) == {"x": 1}


def test_file_url_with_escaped_characters(tmp_path: Path) -> None:
    store = make_store(f"file://{tmp_path}/my%20jobs")
    assert store.directory == tmp_path / "my jobs"


def test_file_url_on_another_host_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UrlError, match="otherhost"):
        make_store(f"file://otherhost{tmp_path}")


def test_make_filesystemstore(tmp_path: Path) -> None:
    store = make_filesystemstore(f"file://{tmp_path}/jobs")
    assert isinstance(store, FilesystemStore)
    assert store.directory == tmp_path / "jobs"


def test_filesystem_store_ignores_sql_only_arguments(tmp_path: Path) -> None:
    store = make_store(
        str(tmp_path / "jobs"),
        table_name="store",
        extra_fields={sa.Column("value", sa.Integer): GetAttribute("value", default=None)},
        create=True,
        unknown_future_option=3,
    )
    assert isinstance(store, FilesystemStore)
    id_ = store.save(Thing(7))
    assert FilesystemStore(tmp_path / "jobs", table_name="x").load(id_).value == 7


def test_filesystem_store_rejects_sql_url() -> None:
    with pytest.raises(StoreError):
        FilesystemStore("sqlite:///somewhere.db")


# ---------------------------------------------------------------- unknown schemes and errors


def test_unknown_scheme_names_the_scheme() -> None:
    with pytest.raises(UrlError) as info:
        make_store("nosuchscheme://host/db")
    assert "nosuchscheme" in str(info.value)
    assert isinstance(info.value, StoreError)
    assert isinstance(info.value, ValueError)


def test_empty_url_is_an_error() -> None:
    with pytest.raises(UrlError):
        make_store("")


PASSWORDS = [
    "s3cret-pw",
    "with:colon",
    "per%40cent",
    "se/cret-pw",
]


@pytest.mark.parametrize("password", PASSWORDS)
def test_redact_hides_password(password: str) -> None:
    url = f"postgresql+psycopg://alice:{password}@db.example.org:5432/jobs"
    hidden = redact(url)
    assert password not in hidden
    assert hidden.startswith("postgresql+psycopg://alice:")
    assert hidden.endswith("@db.example.org:5432/jobs")


def test_redact_leaves_urls_without_password_alone(tmp_path: Path) -> None:
    for url in ("sqlite:///tmp/x.db", "postgresql://alice@host/db", str(tmp_path)):
        assert redact(url) == url


@pytest.mark.parametrize("password", PASSWORDS)
def test_unknown_scheme_error_hides_password(password: str) -> None:
    with pytest.raises(UrlError) as info:
        make_store(f"nosuchscheme://alice:{password}@host/db")
    assert "nosuchscheme" in str(info.value)
    assert "alice" in str(info.value)
    assert_hidden(password, info.value)


@pytest.mark.parametrize("password", PASSWORDS)
def test_bad_fragment_error_hides_password(password: str) -> None:
    with pytest.raises(UrlError) as info:
        make_store(f"postgresql://alice:{password}@host/db#tabel=jobs")
    assert_hidden(password, info.value)


def test_fragment_error_does_not_echo_password_tail() -> None:
    with pytest.raises(UrlError) as info:
        make_store("postgresql://alice:open#sesame99@host/db")
    assert_hidden("sesame99", info.value)


# ---------------------------------------------------------------- the #table= fragment


def test_table_fragment_is_parsed() -> None:
    url = parse_store_url("postgresql+psycopg://u:pw@host/db#table=my_jobs")
    assert url.table == "my_jobs"
    assert url.scheme == "postgresql"
    assert url.driver == "psycopg"
    assert url.target == "postgresql+psycopg://u:pw@host/db"
    # str() keeps the password (GC3Pie reopens sessions from it); repr() and
    # .redacted, which every message uses, hide it.
    assert str(url) == "postgresql+psycopg://u:pw@host/db#table=my_jobs"
    assert "pw" not in repr(url)
    assert url.redacted == "postgresql+psycopg://u:***@host/db#table=my_jobs"


def test_no_fragment_means_no_table() -> None:
    url = parse_store_url("sqlite:///tmp/store.db")
    assert url.table is None
    assert url.driver is None
    # GC3Pie 2.6.8 reads the path of a sqlite URL as absolute.
    assert url.target == "sqlite:////tmp/store.db"


@pytest.mark.parametrize("fragment", ["tabel=x", "table=", "table", "x", "=jobs"])
def test_malformed_fragment_is_url_error(fragment: str) -> None:
    with pytest.raises(UrlError, match="table"):
        parse_store_url(f"sqlite:///tmp/store.db#{fragment}")
    with pytest.raises(UrlError):
        make_store(f"sqlite:///tmp/store.db#{fragment}")


def test_bare_path_is_file_scheme(tmp_path: Path) -> None:
    url = parse_store_url(str(tmp_path / "a"))
    assert (url.scheme, url.target, url.table) == ("file", str(tmp_path / "a"), None)


# ---------------------------------------------------------------- register


def test_register_adds_a_scheme_and_passes_arguments(tmp_path: Path) -> None:
    scheme = unique_scheme()
    calls: list[tuple[Any, ...]] = []

    def constructor(url: str, *args: Any, **kwargs: Any) -> Store:
        calls.append((url, args, kwargs))
        return FilesystemStore(tmp_path / "registered")

    register(scheme, constructor)
    url = f"{scheme}://somewhere/else#table=t"
    store = make_store(url, 1, "two", flag=True)
    assert isinstance(store, FilesystemStore)
    assert calls == [(url, (1, "two"), {"flag": True})]


def test_registered_scheme_matches_case_insensitively_and_with_driver(tmp_path: Path) -> None:
    scheme = unique_scheme()
    seen: list[str] = []

    def constructor(url: str, **kwargs: Any) -> Store:
        seen.append(url)
        return FilesystemStore(tmp_path / "s")

    register(scheme.upper(), constructor)
    make_store(f"{scheme}://a")
    make_store(f"{scheme.upper()}+driver://b")
    assert seen == [f"{scheme}://a", f"{scheme.upper()}+driver://b"]


def test_register_replaces_earlier_constructor(tmp_path: Path) -> None:
    scheme = unique_scheme()
    used: list[str] = []

    def first(url: str) -> Store:
        used.append("first")
        return FilesystemStore(tmp_path / "1")

    def second(url: str) -> Store:
        used.append("second")
        return FilesystemStore(tmp_path / "2")

    register(scheme, first)
    register(scheme, second)
    store = make_store(f"{scheme}://x")
    assert used == ["second"]
    assert isinstance(store, FilesystemStore)
    assert store.directory == tmp_path / "2"


def test_register_a_store_subclass(tmp_path: Path) -> None:
    scheme = unique_scheme()

    class Custom(FilesystemStore):
        def __init__(self, url: str, **kwargs: Any) -> None:
            super().__init__(tmp_path / "custom", **kwargs)
            self.given_url = url

    register(scheme, Custom)
    store = make_store(f"{scheme}://anything", table_name="ignored")
    assert type(store) is Custom
    assert store.given_url == f"{scheme}://anything"
    id_ = store.save(Thing(5))
    assert FilesystemStore(tmp_path / "custom").load(id_).value == 5


@pytest.mark.parametrize(
    ("given", "target"),
    [
        ("sqlite:///tmp/x.db", "sqlite:////tmp/x.db"),
        ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
        ("sqlite:///tmp/x.db?mode=ro#table=t", "sqlite:////tmp/x.db?mode=ro"),
        ("sqlite://", "sqlite://"),
        ("sqlite:///:memory:", "sqlite://"),
    ],
)
def test_sqlite_paths_read_as_gc3pie_reads_them(given: str, target: str) -> None:
    # gc3libs.persistence.sql.SqlStore._to_sqlalchemy_url: "sqlite:///" + path.
    assert parse_store_url(given).target == target


def test_relative_sqlite_path_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                               ) -> None:
    monkeypatch.chdir(tmp_path)
    url = parse_store_url("sqlite:jobs.db#table=t")
    assert url.target == f"sqlite:///{tmp_path / 'jobs.db'}"
    assert str(url) == f"sqlite:///{tmp_path / 'jobs.db'}#table=t"


@pytest.mark.parametrize("bad", ["sqlite:///", "sqlite://host/x.db", "sqlite:"])
def test_sqlite_url_without_a_file_is_an_error(bad: str) -> None:
    with pytest.raises(UrlError, match="sqlite URL"):
        make_store(bad)


class ForeignUrl:
    """A URL object of another library (GC3Pie's gc3libs.url.Url is one): str() is the URL."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text


def test_make_store_takes_url_objects(tmp_path: Path) -> None:
    store = make_store(ForeignUrl(f"sqlite:///{tmp_path}/objects.db"))
    try:
        assert str(store.url) == f"sqlite:////{str(tmp_path).lstrip('/')}/objects.db"
    finally:
        store.close()
    files = make_store(ForeignUrl(f"file://{tmp_path}/jobs"))
    try:
        assert files.directory == tmp_path / "jobs"
    finally:
        files.close()


def test_store_url_reopens_the_store_with_its_password() -> None:
    url = parse_store_url("postgresql://alice:s3cr%2Ft@db.example/jobs#table=t")
    assert parse_store_url(str(url)) == url
    assert "s3cr" not in url.redacted and "s3cr" not in repr(url)


def test_other_backends_arguments_are_accepted_and_typos_warned(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # GC3Pie's stores accept each other's keywords; a keyword no store takes is a typo.
    with caplog.at_level("DEBUG", logger="typedstore"):
        files = make_store(str(tmp_path / "jobs"), table_name="x", create=True, row_modle=None)
        sql = make_store(f"sqlite:///{tmp_path}/x.db", durable=False, gc3pie_compatible=False)
    files.close()
    sql.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "row_modle=" in warnings[0]


def test_sqlite_folder_is_created(tmp_path: Path) -> None:
    # GC3Pie's make_sqlstore creates the database's folder.
    store = make_store(f"sqlite:///{tmp_path}/new/folder/jobs.db")
    try:
        store.save({"a": 1})
        assert (tmp_path / "new" / "folder" / "jobs.db").exists()
    finally:
        store.close()


@pytest.mark.parametrize(
    ("given", "target"),
    [
        ("file:/tmp/x", "/tmp/x"),  # GC3Pie's Url reads it as /tmp/x
        ("SQLITE:///tmp/a.db", "sqlite:////tmp/a.db"),
        ("postgresql://u:Tr0ub4dor@horse@db.example/jobs",
         "postgresql+psycopg://u:Tr0ub4dor%40horse@db.example/jobs"),  # up to the last @
        ("postgresql://u:p%40ss@db.example/jobs",
         "postgresql+psycopg://u:p%40ss@db.example/jobs"),
        ("POSTGRESQL+psycopg://u@db.example/jobs", "postgresql+psycopg://u@db.example/jobs"),
    ],
)
def test_urls_gc3pie_accepts(given: str, target: str) -> None:
    url = parse_store_url(given)
    assert url.target == target
    assert "horse" not in url.redacted and "Tr0ub4dor" not in repr(url)


def test_bare_relative_path_reads_back_from_anywhere(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert str(parse_store_url("jobs")) == str(tmp_path / "jobs")


def test_percent_in_a_store_path(tmp_path: Path) -> None:
    store = make_store(str(tmp_path / "pct%41dir"))
    try:
        id_ = store.save({"a": 1})
        assert list(store.query().ids()) == [id_]
    finally:
        store.close()


# ---------------------------------------------------------------- database-server URLs


@pytest.mark.parametrize("bad", [
    "postgresql:/host/db", "postgresql:host/db", "POSTGRESQL:/host/db", "mysql:/host/db",
    "mariadb:/host/db", "postgresql+psycopg:/host/db", "mysql+pymysql:host/db",
    "postgres:/host/db", "Postgres:host/db", "postgres+psycopg:/host/db",
])
def test_server_url_without_two_slashes_is_an_error_not_a_directory(
        bad: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UrlError) as info:
        make_store(bad + "#table=t")
    assert "without '//'" in str(info.value) and "://" in str(info.value)
    assert list(tmp_path.iterdir()) == []  # no store was made anywhere


@pytest.mark.parametrize("bad", [
    "postgresql+psycopg_async://u@h/db", "sqlite+pysqlite_numeric:///x.db",
    "mysql+pymysql_x://h/db", "mysql+mariadb_connector://h/db", "my_sql://h/db",
    "postgresql ://h/db", "postgresql+ psycopg://h/db", "post gres://h/db",
])
def test_anything_shaped_like_a_url_is_never_a_directory(
        bad: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UrlError):
        make_store(bad + "#table=t")
    assert list(tmp_path.iterdir()) == []  # no store was made anywhere


def test_the_postgres_alias_is_postgresql(pg_base_url: str) -> None:
    alias = "postgres://" + pg_base_url.split("://", 1)[1]
    store = make_store(f"{alias}#table=alias_{uuid.uuid4().hex[:8]}")
    try:
        assert store.url.scheme == "postgresql"
        id_ = store.save({"n": 1})
        assert store.load(id_) == {"n": 1}
    finally:
        store.close()


def test_a_database_path_with_a_slash_is_an_error() -> None:
    with pytest.raises(UrlError, match="not one database name"):
        make_store("postgresql://u@h/test/extra")


@pytest.mark.parametrize("bad", [
    "postgresql://host", "postgresql://host/", "postgresql://alice:s3cret-pw@host:5432",
    "mysql://root@127.0.0.1:3306", "mariadb://host/", "postgresql://",
])
def test_server_url_without_a_database_is_an_error(bad: str) -> None:
    with pytest.raises(UrlError, match="names no database") as info:
        make_store(bad)
    assert_hidden("s3cret-pw", info.value)


def test_server_url_that_cannot_be_read_is_an_error() -> None:
    with pytest.raises(UrlError, match="cannot be read") as info:
        make_store("postgresql://alice:s3cret-pw@host:port/db")
    assert_hidden("s3cret-pw", info.value)


@pytest.mark.parametrize(("given", "target"), [
    ("postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
    ("postgresql:///db", "postgresql+psycopg:///db"),  # the local socket
    ("mysql://u@h:3306/db", "mysql+pymysql://u@h:3306/db"),
    ("mariadb://u@h/db?charset=utf8mb4", "mariadb+pymysql://u@h/db?charset=utf8mb4"),
    ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
    ("mysql+pymysql://u@h/db", "mysql+pymysql://u@h/db"),
])
def test_server_urls_without_a_driver_get_typedstores(given: str, target: str) -> None:
    url = parse_store_url(given + "#table=t")
    assert url.target == target
    assert str(url) == given + "#table=t"  # written down as given (GC3Pie reads it back)


@pytest.mark.parametrize("url", [
    "postgresql+psycopg2://h/db", "postgresql+asyncpg://h/db", "postgresql+pg8000://h/db",
    "mysql+mysqldb://h/db", "mysql+mysqlconnector://h/db", "mariadb+mariadbconnector://h/db",
    "sqlite+aiosqlite:///x.db",
])
def test_other_drivers_are_refused_clearly(url: str) -> None:
    driver = url.partition("+")[2].partition(":")[0]
    with pytest.raises(UrlError, match=f"\\+{driver}: typedstore runs"):
        make_store(url)


@pytest.mark.parametrize(("url", "module", "extra"), [
    ("postgresql://h/db", "psycopg", "typedstore[postgres]"),
    ("mysql://h/db", "pymysql", "typedstore[mysql]"),
    ("mariadb+pymysql://h/db", "pymysql", "typedstore[mysql]"),
])
def test_a_missing_driver_names_the_extra(url: str, module: str, extra: str,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # as if it were not installed
    with pytest.raises(UrlError) as info:
        make_store(url)
    assert module in str(info.value) and f"pip install '{extra}'" in str(info.value)


def _check_store_works(url: str, driver: str) -> None:
    store = make_store(url)
    try:
        assert store.engine.dialect.driver == driver  # type: ignore[attr-defined]
        id_ = store.save(Thing("value"))
        assert store.load(id_).value == "value"
        assert store.query().ids() == [id_]  # type: ignore[attr-defined]
    finally:
        store.close()


def test_postgresql_without_a_driver_runs_on_psycopg(pg_base_url: str) -> None:
    assert pg_base_url.startswith("postgresql+psycopg://")
    plain = "postgresql://" + pg_base_url.partition("://")[2]
    _check_store_works(f"{plain}#table=t_{uuid.uuid4().hex[:8]}", "psycopg")


@pytest.mark.parametrize("scheme", ["mysql", "mariadb", "mariadb+pymysql"])
def test_mysql_and_mariadb_without_a_driver_run_on_pymysql(mysql_base_url: str,
                                                           scheme: str) -> None:
    plain = f"{scheme}://" + mysql_base_url.partition("://")[2]
    _check_store_works(f"{plain}#table=t_{uuid.uuid4().hex[:8]}", "pymysql")


@pytest.mark.parametrize("bad", [
    " postgresql://u@h/db", "postgresql://u@h/db ", "\tmysql://u@h/db", "mysql://u@h/db\n",
    " sqlite:jobs.db", "sqlite:jobs.db ", " jobs", "jobs ", " postgres:/host/db",
    "file:///tmp/jobs ", " /tmp/jobs",
])
def test_a_url_with_white_space_around_it_is_an_error_not_a_directory(
        bad: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UrlError, match="begins or ends with white space") as info:
        make_store(bad)
    assert repr(bad) in str(info.value)  # the white space shows
    assert list(tmp_path.iterdir()) == []  # no store was made anywhere


def test_a_directory_whose_name_ends_with_a_space_is_written_as_a_file_url(
        tmp_path: Path) -> None:
    with make_store(f"file://{tmp_path}/jobs%20") as store:
        store.save(Thing(1))
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == ["jobs "]


@pytest.mark.parametrize(("query", "parameter"), [
    ("charset=utf8", "charset"), ("charset=utf8mb3", "charset"), ("charset=latin1", "charset"),
    ("charset=utf8mb4&use_unicode=0", "use_unicode"),
])
@pytest.mark.parametrize("scheme", ["mysql", "mariadb+pymysql"])
def test_a_mysql_url_whose_charset_cannot_carry_emoji_is_refused(
        scheme: str, query: str, parameter: str) -> None:
    url = f"{scheme}://alice:s3cret-pw@h/db?{query}#table=t"
    with pytest.raises(UrlError, match=f"sets {parameter}=") as info:
        make_store(url)
    assert "utf8mb4" in str(info.value) or "use_unicode=1" in str(info.value)
    assert_hidden("s3cret-pw", info.value)


def test_a_postgresql_url_with_another_client_encoding_is_refused() -> None:
    with pytest.raises(UrlError, match="client_encoding=latin1"):
        make_store("postgresql://h/db?client_encoding=latin1")
    assert parse_store_url("postgresql://h/db?client_encoding=UTF-8").scheme == "postgresql"


@pytest.mark.parametrize("charset", ["utf8mb4", "UTF8MB4"])
def test_emoji_round_trip_with_an_explicit_utf8mb4_charset(mysql_base_url: str,
                                                           charset: str) -> None:
    from tests.types.typed_models import TextRow
    from tests.types.typed_models import Thing as TypedThing

    url = f"{mysql_base_url}?charset={charset}#table=t_{uuid.uuid4().hex[:8]}"
    text = "emoji \U0001f9ea and \U0001d518"
    with make_store(url, row_model=TextRow) as store:
        id_ = store.save(TypedThing(jobname=text, note=text, short="x"))
    with make_store(url, row_model=TextRow) as store:
        assert store.load(id_).jobname == text
        assert [r.note for r in store.query(TextRow.jobname == text).rows()] == [text]  # type: ignore[attr-defined]
