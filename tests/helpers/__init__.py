"""Code the tests share, imported as ``tests.helpers.<module>``; conftest.py keeps fixtures and hooks.

``stores`` every store implementation and the session's redis-server; ``servers`` real redis-server
processes; ``paths`` repository folders; ``reliability`` heavy variants, write operations and the
reported figures; ``hostile`` crafted state files; ``go`` Go-written files and ids; ``markup``
markup payloads; ``leases`` a run held in another process; ``modules`` what an import loads;
``line_count`` lines of package code a call runs; ``notebooks`` what each notebook must show;
``browser`` JupyterLab and Chromium for the e2e tier.
"""
