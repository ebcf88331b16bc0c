"""SQL migrations, shipped inside the drophost package as drophost.sql."""
