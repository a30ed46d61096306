"""User-defined processes (openEO process JSON) of openeo-deepfeatures.

The JSON files here are what users send to a backend by namespace URL; the package installs
this folder as ``openeo_deepfeatures.process_graphs`` and the local executor serves it as the
built-in namespace ``deepfeatures`` (and for plain process ids it does not implement natively).
"""
