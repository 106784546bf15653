"""Entry points of AVVP Studio: the `avvp-studio` command, settings, wiring."""
