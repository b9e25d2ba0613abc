"""snf.portal: the Flask portal.

Identity, compute, network, image, volume and object-storage APIs, and the web UI.
"""
