"""`python -m owlmetry.fcm.mock`: the mock FCM server's command line (`cli`)."""

from .cli import main

main()
