"""nginx templates, shipped inside the drophost package as drophost.nginx_templates."""
