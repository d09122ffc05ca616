"""Alembic environment: the state database named by STATE_DB_URL (grid_platform.settings).

``grid_platform.store.db.upgrade(url)`` passes an explicit URL through
``config.attributes["url"]``; the ``alembic`` command line uses ``STATE_DB_URL``.
"""

from __future__ import annotations

import logging.config

from alembic import context
from grid_platform.settings import load_settings
from grid_platform.store.db import make_engine
from grid_platform.store.models import Base

config = context.config
if config.config_file_name is not None and "url" not in config.attributes:
    logging.config.fileConfig(config.config_file_name, disable_existing_loggers=False)

url = config.attributes.get("url") or load_settings().state_db_url
target_metadata = Base.metadata


def run_offline() -> None:
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True,
                      render_as_batch=url.startswith("sqlite"))
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            context.configure(connection=connection, target_metadata=target_metadata,
                              render_as_batch=connection.dialect.name == "sqlite")
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
