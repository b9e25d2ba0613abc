"""snf.quota: the quota engine (resources, holdings, commissions, projects); no Flask.

``engine`` is the public API (and states the transaction rule); ``resources`` the registry;
``models`` the tables (on ``snf.common.db.Base``); ``errors`` the error tree under
``QuotaError``; ``database.configure`` prepares a SQLite engine. The rest: ``provisions``
(input checks), ``commissions``, ``projects``, ``usage`` (the quota views).
"""
