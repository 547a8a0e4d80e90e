"""BI users: a login role for each BI tool or person, in the read-only BI role (db.bi_role(),
created by db.ensure_bi_role: SELECT on the marts, nothing else). Made and removed by
`s1mig bi-user`, on the embedded server or on S1MIG_DATABASE_URL's (whose user then needs
CREATEROLE). The password is generated, printed once and stored by nobody but PostgreSQL, as a
SCRAM-SHA-256 verifier computed here: the clear password never reaches the server either."""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass

import psycopg
from psycopg import sql

from s1mig import db
from s1mig.errors import S1migError

log = logging.getLogger(__name__)
NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
COMMENT = "s1mig BI user"
DEFAULT_CONNECTION_LIMIT = 5
PASSWORD_BYTES = 24  # 32 characters of base64url


@dataclass(frozen=True)
class BiUser:
    name: str
    connection_limit: int
    settings: tuple[str, ...]
    sessions: int
    comment: str


def check_name(name: str) -> str:
    if not NAME.fullmatch(name) or name.startswith("pg_"):
        raise S1migError(
            f"{name[:70]!r} is not a BI user name: lower-case letters, digits and _, starting with a letter or _ "
            "(at most 63; not pg_...)"
        )
    return name


# A BI user: a role that may log in, is a direct member of the BI role and of no other role,
# and has no other power (not a superuser, may not create roles or databases, replicate or
# bypass row security). Hand-made ones (the documented `create role ... login; grant ...`)
# count too; any other role is refused by `remove`.
_BI_USERS = """
select r.rolname, r.rolconnlimit,
       coalesce((select s.setconfig from pg_db_role_setting s join pg_database d on d.oid = s.setdatabase
                 where s.setrole = r.oid and d.datname = current_database()), '{}'),
       (select count(*) from pg_stat_activity a where a.usesysid = r.oid),
       coalesce(shobj_description(r.oid, 'pg_authid'), '')
from pg_roles r
where r.rolcanlogin and not (r.rolsuper or r.rolcreaterole or r.rolcreatedb or r.rolreplication or r.rolbypassrls)
  and exists (select 1 from pg_auth_members m join pg_roles g on g.oid = m.roleid
              where m.member = r.oid and g.rolname = %(group)s)
  and not exists (select 1 from pg_auth_members m join pg_roles g on g.oid = m.roleid
                  where m.member = r.oid and g.rolname <> %(group)s)
"""


def list_users(conn: psycopg.Connection) -> list[BiUser]:
    rows = conn.execute(_BI_USERS + " order by 1", {"group": db.bi_role()}).fetchall()
    return [
        BiUser(name, limit, tuple(settings), sessions, comment) for name, limit, settings, sessions, comment in rows
    ]


IDLE_SETTING = "idle_in_transaction_session_timeout"


def give_idle_timeout(conn: psycopg.Connection) -> list[str]:
    """The BI users `add` made before it set an idle timeout (none in this database) get
    S1MIG_BI_IDLE_TIMEOUT now; a user with one of its own (0 too) and logins made by hand
    are left alone. Where this connection may not, one warning says what to run. Returns
    the users changed."""
    missing = [
        u.name
        for u in list_users(conn)
        if u.comment == COMMENT and not any(s.startswith(IDLE_SETTING + "=") for s in u.settings)
    ]
    if not missing:
        return []
    timeout = db.bi_idle_timeout()
    try:
        with conn.transaction():
            for name in missing:
                conn.execute(
                    sql.SQL("alter role {} in database {} set {} = {}").format(
                        sql.Identifier(name),
                        sql.Identifier(conn.info.dbname),
                        sql.Identifier(IDLE_SETTING),
                        sql.Literal(timeout),
                    )
                )
    except psycopg.errors.InsufficientPrivilege:
        log.warning(
            "BI users %s have no idle timeout and this connection may not set one: as a superuser run "
            "`alter role NAME in database %s set %s = '%s'` for each",
            ", ".join(missing),
            conn.info.dbname,
            IDLE_SETTING,
            timeout,
        )
        return []
    return missing


def _role_exists(conn: psycopg.Connection, name: str) -> bool:
    return conn.execute("select 1 from pg_roles where rolname = %s", (name,)).fetchone() is not None


def _is_bi_user(conn: psycopg.Connection, name: str) -> bool:
    row = conn.execute(_BI_USERS + " and r.rolname = %(name)s", {"group": db.bi_role(), "name": name}).fetchone()
    return row is not None


def _denied(what: str, exc: psycopg.Error, conn: psycopg.Connection) -> S1migError:
    user = conn.info.user
    detail = (exc.diag.message_primary or str(exc)).strip().splitlines()[0]
    return S1migError(
        f"cannot {what}: {detail} (the role {user} needs CREATEROLE and ADMIN on {db.bi_role()}, "
        "or run it on the embedded server)"
    )


def add(
    conn: psycopg.Connection,
    name: str,
    connection_limit: int = DEFAULT_CONNECTION_LIMIT,
    statement_timeout: str = "",
    idle_timeout: str = "",
) -> str:
    """Create the BI user `name` (LOGIN, in the BI role, at most `connection_limit` sessions;
    in the warehouse database statement_timeout S1MIG_BI_STATEMENT_TIMEOUT and
    idle_in_transaction_session_timeout S1MIG_BI_IDLE_TIMEOUT unless given) with a generated
    password, which is returned (to be printed once)."""
    check_name(name)
    settings = {
        "statement_timeout": statement_timeout or db.bi_statement_timeout(),
        IDLE_SETTING: idle_timeout or db.bi_idle_timeout(),
    }
    db.ensure_bi_role(conn)
    if _role_exists(conn, name):
        if _is_bi_user(conn, name):
            raise S1migError(
                f"the BI user {name} exists: `s1mig bi-user remove {name}`, then add it for a new password"
            )
        raise S1migError(f"a role {name} exists and is not a BI user: choose another name")
    password = secrets.token_urlsafe(PASSWORD_BYTES)
    verifier = conn.pgconn.encrypt_password(password.encode(), name.encode(), b"scram-sha-256").decode()
    ident = sql.Identifier(name)
    try:
        with conn.transaction():
            conn.execute(
                sql.SQL("create role {} login password {} connection limit {} in role {}").format(
                    ident, sql.Literal(verifier), sql.Literal(connection_limit), sql.Identifier(db.bi_role())
                )
            )
            conn.execute(sql.SQL("comment on role {} is {}").format(ident, sql.Literal(COMMENT)))
            for setting, value in settings.items():
                conn.execute(
                    sql.SQL("alter role {} in database {} set {} = {}").format(
                        ident, sql.Identifier(conn.info.dbname), sql.Identifier(setting), sql.Literal(value)
                    )
                )
    except psycopg.errors.InsufficientPrivilege as exc:
        raise _denied(f"create the BI user {name}", exc, conn) from None
    return password


def remove(conn: psycopg.Connection, name: str) -> int:
    """Drop the BI user `name`, ending its sessions first; refuses any role that is not a BI
    user. Returns the number of sessions ended."""
    check_name(name)
    if not _role_exists(conn, name):
        raise S1migError(f"there is no BI user {name} (`s1mig bi-user list` shows them)")
    if not _is_bi_user(conn, name):
        raise S1migError(
            f"{name} is not a BI user (a login role in {db.bi_role()} only, with no other power): not removed"
        )
    ident = sql.Identifier(name)
    try:
        with conn.transaction():  # all or nothing: a refusal leaves the user as it was
            ended = 0
            for (pid,) in conn.execute("select pid from pg_stat_activity where usename = %s", (name,)).fetchall():
                try:
                    with conn.transaction():
                        ended += bool(db.scalar(conn, "select pg_terminate_backend(%s, 5000)", (pid,)))
                except psycopg.errors.InsufficientPrivilege:
                    pass  # its session ends with its next statement: the role is gone
            conn.execute(sql.SQL("drop owned by {}").format(ident))
            conn.execute(sql.SQL("drop role {}").format(ident))
    except psycopg.errors.InsufficientPrivilege as exc:
        raise _denied(f"remove the BI user {name}", exc, conn) from None
    except psycopg.errors.DependentObjectsStillReferenced as exc:  # type: ignore[attr-defined]  # generated
        detail = (exc.diag.message_detail or str(exc)).strip().splitlines()[0]
        raise S1migError(
            f"cannot remove the BI user {name}: it still owns or may use objects elsewhere ({detail})"
        ) from None
    return ended
