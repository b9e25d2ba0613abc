"""snf.portal.identity: users, login methods, API and service tokens, the token APIs."""
