"""Print the error-code table, or rewrite README.md's copy of it."""

import re
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from combo.errors import markdown_table


class Command(BaseCommand):
    help = "Print the error-code table (Markdown); --update-readme rewrites README.md's copy."

    def add_arguments(self, parser):
        parser.add_argument("--update-readme", action="store_true")

    def handle(self, update_readme, **options):
        table = markdown_table()
        if not update_readme:
            self.stdout.write(table)
            return
        readme = Path(settings.BASE_DIR) / "README.md"
        text = readme.read_text()
        new = re.sub(
            r"(<!-- error-codes:start -->\n).*?(\n<!-- error-codes:end -->)",
            lambda m: m.group(1) + table + m.group(2),
            text,
            flags=re.S,
        )
        readme.write_text(new)
        self.stdout.write("README.md updated." if new != text else "README.md already up to date.")
