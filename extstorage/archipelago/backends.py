"""Open the block store that the ``[store]`` configuration section names."""

from __future__ import annotations

from snf.common.config import StoreConfig

from .store import Store


def open_store(section: StoreConfig) -> Store:
    if section.backend == "rados":
        from .store_rados import RadosStore  # python3-rados only where RADOS is used

        return RadosStore(
            section.ceph_conf,
            section.rados_id,
            section.blocks_pool,
            section.maps_pool,
        )
    from .store_dir import DirStore

    return DirStore(section.path)
