"""`python -m owlmetry.apns.mock`: the mock APNs server's command line (`cli`)."""

from .cli import main

main()
