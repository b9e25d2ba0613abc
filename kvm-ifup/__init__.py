"""snf.network: NIC setup and teardown for Ganeti's KVM hypervisor
(the scripts Ganeti runs live in ganeti/)."""
