BACKOFF_MS = 250
MAX_RETRIES = 7


def delay(attempt: int) -> int:
    return BACKOFF_MS * 2**attempt
