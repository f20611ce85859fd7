#!/usr/bin/env python
import os
import sys


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "combo.settings")
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    except Exception as exc:
        # Any command (createsuperuser, createapikey, shell...) with the database
        # away: the one line that `migrate` and `serve` print, not a traceback.
        from combo.dbhealth import unreachable
        from combo.errors import DATABASE_UNAVAILABLE_ERRORS

        problem = unreachable() if isinstance(exc, DATABASE_UNAVAILABLE_ERRORS) else None
        if problem is None:
            raise
        sys.stderr.write(f"CommandError: {problem}\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
