"""The image service: Plankton (``/image/v1.0``) and the Glance v2 subset (``/image/v2``)."""
