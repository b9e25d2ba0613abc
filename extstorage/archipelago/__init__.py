"""snf.archipelago: the shared block store, volume maps, the volume daemon and the
`archipelago` ExtStorage provider (the scripts Ganeti runs live in provider/)."""
