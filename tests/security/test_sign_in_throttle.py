"""The sign-in back-off's rule on a test clock (no sleeping, no timing)."""

from __future__ import annotations

from medicosam_app.security.throttle import SignInThrottle


class ManualClock:
    """A test double for time: it moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_three_free_failures_then_waits_that_double_up_to_the_cap():
    clock = ManualClock()
    throttle = SignInThrottle(free_failures=3, address_free_failures=3, max_wait_s=8, clock=clock)
    waits = []
    for _ in range(7):
        waits.append(throttle.wait_s("ann", "10.0.0.5"))
        throttle.failed("ann", "10.0.0.5")
        waits[-1] = throttle.wait_s("ann", "10.0.0.5")
    assert waits == [0, 0, 1, 2, 4, 8, 8]
    clock.now += 7.5
    assert throttle.wait_s("ann", "10.0.0.5") == 0.5
    clock.now += 0.5
    assert throttle.wait_s("ann", "10.0.0.5") == 0


def test_the_user_and_the_address_are_counted_apart():
    clock = ManualClock()
    throttle = SignInThrottle(free_failures=2, address_free_failures=3, clock=clock)
    for address in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):  # one user's password from many addresses
        throttle.failed("ann", address)
    assert throttle.wait_s("ann", "10.0.0.9") == 2  # the user waits, from any address
    assert throttle.wait_s("bob", "10.0.0.9") == 0  # another user from a clean address does not
    for user in ("u1", "u2", "u3", "u4"):  # many users' passwords from one address
        throttle.failed(user, "10.0.0.66")
    assert throttle.wait_s("carol", "10.0.0.66") == 2
    throttle.succeeded("ann", "10.0.0.9")
    assert throttle.wait_s("ann", "10.0.0.9") == 0
    assert throttle.wait_s("ANN", "10.0.0.9") == 0  # names are counted without case


def test_memory_is_bounded_by_forgetting_the_oldest():
    throttle = SignInThrottle(max_keys=10, clock=ManualClock())
    for n in range(100):
        throttle.failed(f"made-up-{n}", "10.0.0.1")
    assert len(throttle._failures) == 10


def test_an_address_of_none_counts_the_user_only():
    throttle = SignInThrottle(free_failures=1, address_free_failures=1, clock=ManualClock())
    throttle.failed("ann", None)
    assert throttle.wait_s("ann", None) == 1 and throttle.wait_s("bob", None) == 0
