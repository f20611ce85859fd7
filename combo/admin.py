"""Django admin's titles, its "View site" link pointing at the console, its rate-limited sign-in,
and change lists that never 500 on a filter."""

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import EmptyResultSet

from accounts.forms import AdminSignInForm

admin.site.site_header = "Combo administration"
admin.site.site_title = "Combo admin"
admin.site.index_title = "Operators' console"
admin.site.site_url = "/console/"
# Sign-in tries spend the same budgets as the console's and POST /v1/auth/token.
admin.site.login_form = AdminSignInForm


class CheckedChangeList(ChangeList):
    """A change list whose URL filters are turned into SQL while it is built.

    Django applies `?<field>__<lookup>=` filters lazily: one it cannot run
    (`created_at__year=99999`, `index__range=1`) only fails when the page counts
    its rows, as a 500. Building the SQL here makes it Django's own "?e=1" error
    notice instead, like any other filter it cannot apply.
    """

    def get_queryset(self, request, exclude_parameters=None):
        queryset = super().get_queryset(request, exclude_parameters)
        try:
            queryset.query.get_compiler(queryset.db).as_sql()
        except EmptyResultSet:
            pass  # a filter that matches nothing is fine
        except (ValueError, TypeError, IndexError, OverflowError) as exc:
            raise IncorrectLookupParameters(exc) from exc
        return queryset


class CheckedFiltersMixin:
    """For every ModelAdmin of Combo: its change list is a CheckedChangeList."""

    def get_changelist(self, request, **kwargs):
        return CheckedChangeList


class DeletesPartsMixin:
    """For a ModelAdmin whose rows own rows that are never deleted on their own.

    A related model whose admin sets `deleted_with_parent = True` (a file's
    chunks) refuses its own delete page, yet goes with whatever it belongs to:
    deleting a file, or a user with their files, does not ask for a permission
    no operator can have.
    """

    def get_deleted_objects(self, objs, request):
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        parts = {
            model._meta.verbose_name
            for model, model_admin in self.admin_site._registry.items()
            if getattr(model_admin, "deleted_with_parent", False)
        }
        return deleted, counts, perms_needed - parts, protected
