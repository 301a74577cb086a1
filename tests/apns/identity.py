"""What every APNs test shares: the identity its clients sign with and its mocks check, and
Apple's retry rules with the waits cut to milliseconds."""

from owlmetry.apns import RetryPolicy

KEY_ID = "KEY1234567"
TEAM_ID = "TEAM123456"
TOPIC = "com.example.app"


def fast_retry(max_retries: int) -> RetryPolicy:
    return RetryPolicy(max_retries=max_retries, base_delay_s=0.001, max_delay_s=0.01,
                       too_many_requests_delay_s=0.002)
