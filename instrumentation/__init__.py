"""tracehound's OpenTelemetry instrumentation: the only part installed into users' Flask apps.

Entry points (``pyproject.toml``): the distro (:mod:`.distro`, tracehound's ``OTEL_*``
defaults), the configurator (:mod:`.configurator`, SDK set-up plus code location and quiet
export), and the ``opentelemetry_post_instrument`` hook (:mod:`.hooks`: SQLAlchemy 2.1, loud
warnings for refused libraries, SQLAlchemy and Flask-Caching extras). ``tracehound doctor`` is in
:mod:`.doctor`. See ``instrumentation/README.md`` for what the spans carry.
"""
