"""Django admin's titles, and its "View site" link pointing at the console."""

from django.contrib import admin

admin.site.site_header = "Combo administration"
admin.site.site_title = "Combo admin"
admin.site.index_title = "Operators' console"
admin.site.site_url = "/console/"
