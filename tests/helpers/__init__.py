"""Code the tests share; ``conftest.py`` holds only fixtures and hooks.

``stores`` (every store implementation, the session's redis-server), ``paths`` (repository folders),
``servers`` (real redis-server processes), ``reliability`` (heavy variants, write operations, figures),
``hostile`` (crafted state files), ``leases`` (a run held in another process), ``modules`` (what an
import loads), ``browser`` (JupyterLab and Chromium for the e2e tier).
"""
