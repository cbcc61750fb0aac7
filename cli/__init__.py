"""The `rrsgan-geo` command line (installed as `rrsgan_geo.cli`)."""
