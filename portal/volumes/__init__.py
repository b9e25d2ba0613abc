"""The volume service (Cinder-like, ``/volume/v2.0`` and ``/volume/v3``): servers' disks as
volumes, extra volumes attached and detached over RAPI, and live snapshots."""
