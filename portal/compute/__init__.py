"""The compute service (Cyclades): backends, flavors and servers over Ganeti's RAPI."""
