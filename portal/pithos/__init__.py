"""Pithos object storage: the OpenStack Object Storage (Swift) API with Pithos' extensions,
on the shared archipelago block store (``/object-store/v1/<account>``, ``/public/<token>``)."""
