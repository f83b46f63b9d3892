"""The jobs users run, one module per command, each a thin ``main(argv)`` over the library.

Installed as ``ptychozarr.workflows``; run them through the ``ptychozarr`` command.
"""
