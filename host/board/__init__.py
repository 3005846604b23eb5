"""Training on the accelerator: the host driver (``driver``), the PYNQ overlay (``pynq_overlay``, on a board) and
the ``rtl`` / ``pynq`` engines (``engine``). Importing this package imports nothing beyond the standard library."""
