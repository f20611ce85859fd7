"""`manage.py migrate`: Django's, which first says in one line when the database cannot be reached.

Django's own command, with every option it has; only a database that refuses
the connection (or does not answer) ends it with one line on stderr, naming
where and why, and exit status 1, instead of a traceback (combo.dbhealth).
`make run` runs it before `serve`.
"""

from __future__ import annotations

from django.core.management.commands import migrate

from combo.dbhealth import require_database


class Command(migrate.Command):
    def execute(self, *args, **options):
        # Before Django's system checks, which migrate runs against the database too.
        require_database(options["database"])
        return super().execute(*args, **options)
