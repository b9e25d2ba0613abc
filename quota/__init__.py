"""snf.quota: the quota engine (resources, holdings, commissions, projects); no Flask."""
