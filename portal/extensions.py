"""Flask extensions, created unbound here and bound to an app in create_app()."""

from __future__ import annotations

from flask_sqlalchemy import SQLAlchemy

from snf.common.db import Base

#: Every portal and quota model derives from snf.common.db.Base: one metadata, one history.
db = SQLAlchemy(model_class=Base)
