"""The portal's web UI (``/ui/``): login, signup, the dashboard.  Server-rendered, works
without JavaScript; every form carries a CSRF token."""
