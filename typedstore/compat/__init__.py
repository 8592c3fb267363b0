"""Opt-in integrations that put typedstore underneath other software.

Nothing here is imported by ``import typedstore``; each integration is a module
of its own that you import and install explicitly:

* :mod:`typedstore.compat.gc3pie` -- GC3Pie 2.6.8's ``gc3libs.persistence``
  served by typedstore (``typedstore.compat.gc3pie.install()`` before
  ``import gc3libs``).
"""
