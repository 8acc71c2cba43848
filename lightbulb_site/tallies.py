"""Per-project counters kept by the database itself: the SQL of their triggers, for the migrations.

`items/next` needs, on every lease, how many items of the project are unlabelled (the size of the pool
the uniform draw records as 1/n) and how many current TEST and TRAIN judgements there are (which stage
to fill). Counting them is linear in the project: on a 100,000-item project the unlabelled count alone
was 6.6 ms of a 32 ms lease on PostgreSQL. Columns on `projects_project` hold them instead, and triggers
keep them exact on every write path at once (services, bulk updates, the admin, cascading deletes), which
counting in Python at each call site could not promise.

- SQLite: row triggers, which run in-process; a 100,000-row import fires 100,000 of them cheaply.
- PostgreSQL: statement triggers with transition tables, so a bulk statement updates each project row
  once, and an UPDATE that changes no count (a lease claim) does not touch the project row at all, so
  concurrent claims never queue on it.

The triggers are not made by a migration but by every `migrate` (projects.apps): after it, `install`
drops and creates them and recounts, in one transaction. SQLite rebuilds a table for many schema
changes, which silently drops that table's triggers, and renaming the rebuilt table fails while
another table's trigger names it; so before a migrate on SQLite `uninstall` takes them out, and
whatever a later migration changes, the next migrate puts them back exact. A change to the SQL here
takes effect at the next migrate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Tally:
    name: str  # prefix of the trigger and function names
    table: str  # the counted table; it has a project_id column
    counter: str  # the column of projects_project
    condition: Callable[[str], str]  # SQL for "this row counts", given the row's alias
    columns: tuple[str, ...]  # the columns whose change can change the condition (SQLite's UPDATE OF)

    def recount_sql(self) -> str:
        """Set the counter from the rows themselves (creating the triggers, or repairing a counter)."""
        return (
            f"UPDATE projects_project SET {self.counter} = (SELECT COUNT(*) FROM {self.table} r "
            f"WHERE r.project_id = projects_project.id AND {self.condition('r')})"
        )

    def create_sql(self, vendor: str) -> list[str]:
        if vendor == "sqlite":
            return self._sqlite_create()
        if vendor == "postgresql":
            return self._postgres_create()
        raise ValueError(f"no tally triggers for {vendor}")

    def drop_sql(self, vendor: str) -> list[str]:
        if vendor == "sqlite":
            return [f"DROP TRIGGER IF EXISTS {self.name}_{op}" for op in ("ins", "upd", "del")]
        if vendor == "postgresql":
            return [f"DROP TRIGGER IF EXISTS {self.name}_{op} ON {self.table}" for op in ("ins", "upd", "del")] + [
                f"DROP FUNCTION IF EXISTS {self.name}_fn()"
            ]
        raise ValueError(f"no tally triggers for {vendor}")

    def _sqlite_create(self) -> list[str]:
        c, new, old = self.counter, self.condition("NEW"), self.condition("OLD")
        bump = "UPDATE projects_project SET {c} = {c} {sign} 1 WHERE id = {row}.project_id"
        return [
            f"CREATE TRIGGER {self.name}_ins AFTER INSERT ON {self.table} WHEN {new} "
            f"BEGIN {bump.format(c=c, sign='+', row='NEW')}; END",
            f"CREATE TRIGGER {self.name}_del AFTER DELETE ON {self.table} WHEN {old} "
            f"BEGIN {bump.format(c=c, sign='-', row='OLD')}; END",
            f"CREATE TRIGGER {self.name}_upd AFTER UPDATE OF {', '.join(self.columns)} ON {self.table} "
            f"WHEN ({old}) <> ({new}) OR OLD.project_id <> NEW.project_id "
            f"BEGIN {bump.format(c=c, sign='-', row='OLD')} AND {old}; "
            f"{bump.format(c=c, sign='+', row='NEW')} AND {new}; END",
        ]

    def _postgres_create(self) -> list[str]:
        c = self.counter

        def counted(rows: str, sign: str) -> str:
            where = self.condition("r")
            return f"SELECT project_id, {sign}COUNT(*) AS n FROM {rows} r WHERE {where} GROUP BY project_id"

        def apply(deltas: str) -> str:
            return f"UPDATE projects_project p SET {c} = p.{c} + d.n FROM ({deltas}) d WHERE p.id = d.project_id;"

        function = f"""
            CREATE OR REPLACE FUNCTION {self.name}_fn() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF TG_OP = 'INSERT' THEN
                    {apply(counted("new_rows", ""))}
                ELSIF TG_OP = 'DELETE' THEN
                    {apply(counted("old_rows", "-"))}
                ELSE
                    {apply(f"SELECT project_id, SUM(n) AS n FROM ({counted('new_rows', '')} UNION ALL "
                           f"{counted('old_rows', '-')}) x GROUP BY project_id HAVING SUM(n) <> 0")}
                END IF;
                RETURN NULL;
            END
            $$
        """
        run = f"FOR EACH STATEMENT EXECUTE FUNCTION {self.name}_fn()"
        return [
            function,
            f"CREATE TRIGGER {self.name}_ins AFTER INSERT ON {self.table} REFERENCING NEW TABLE AS new_rows {run}",
            f"CREATE TRIGGER {self.name}_upd AFTER UPDATE ON {self.table} "
            f"REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows {run}",
            f"CREATE TRIGGER {self.name}_del AFTER DELETE ON {self.table} REFERENCING OLD TABLE AS old_rows {run}",
        ]


# The three counters (columns of projects_project, declared on projects.models.Project).
UNLABELLED = Tally(
    name="lb_tally_unlabelled", table="projects_item", counter="tally_unlabelled",
    condition=lambda r: f"{r}.status = 'unlabelled'", columns=("status", "project_id"),
)
CURRENT_TEST = Tally(
    name="lb_tally_test", table="labeling_judgement", counter="tally_test",
    condition=lambda r: f"({r}.is_current AND {r}.stage = 'TEST')", columns=("is_current", "stage", "project_id"),
)
CURRENT_TRAIN = Tally(
    name="lb_tally_train", table="labeling_judgement", counter="tally_train",
    condition=lambda r: f"({r}.is_current AND {r}.stage = 'TRAIN')", columns=("is_current", "stage", "project_id"),
)


TALLIES = (UNLABELLED, CURRENT_TEST, CURRENT_TRAIN)


def _installable(connection, tally: Tally) -> bool:
    """The counted table and the counter column exist (a migrate to an older state may lack them)."""
    with connection.cursor() as cursor:
        tables = set(connection.introspection.table_names(cursor))
        if tally.table not in tables or "projects_project" not in tables:
            return False
        columns = {c.name for c in connection.introspection.get_table_description(cursor, "projects_project")}
    return tally.counter in columns


def install(connection) -> list[str]:
    """(Re)create every tally's triggers and set its counter from the rows, atomically; the names done.

    In one transaction, so on PostgreSQL writers wait for it (CREATE TRIGGER locks the table) and no
    write falls between the recount and the trigger.
    """
    from django.db import transaction

    if connection.vendor not in ("sqlite", "postgresql"):
        return []
    done = []
    with transaction.atomic(using=connection.alias):
        with connection.cursor() as cursor:
            for tally in TALLIES:
                if not _installable(connection, tally):
                    continue
                for sql in tally.drop_sql(connection.vendor) + tally.create_sql(connection.vendor):
                    cursor.execute(sql)
                cursor.execute(tally.recount_sql())
                done.append(tally.counter)
    return done


def uninstall(connection) -> None:
    """Drop every tally's triggers (the counters stay, and are recounted by the next `install`)."""
    if connection.vendor not in ("sqlite", "postgresql"):
        return
    with connection.cursor() as cursor:
        for tally in TALLIES:
            for sql in tally.drop_sql(connection.vendor):
                cursor.execute(sql)
