"""The portal's web UI (``/ui/``): login, signup, the dashboard.  Server-rendered, works
without JavaScript; every form carries a CSRF token.  The one exception is the file browser
(files.py, static/files.js), whose JavaScript talks to the object-store API itself."""
