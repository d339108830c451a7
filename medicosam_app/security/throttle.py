"""Sign-in back-off: failed passwords slow down further tries, per user name and per address.

After :attr:`SignInThrottle.free_failures` failures in a row, each further try must wait twice as long as the
one before (1 s, 2 s, 4 s … at most :attr:`SignInThrottle.max_wait_s`) after the last failure, counted for the
user name and, separately, for the caller's address (which gets more free failures,
:attr:`SignInThrottle.address_free_failures`: a ward behind one NAT address shares it): guessing one user's password from many addresses, or many
users' passwords from one address, both slow down. A success clears the user's count and the address's. Tries
during a wait are refused without checking the password (so a wait cannot be probed), and do not extend it.

An address of None (the server's wiring passes None for callers on the server's own machine, where a reverse
proxy makes every caller look alike) is not counted; the user name still is.

Counts are kept for at most :attr:`SignInThrottle.max_keys` names and addresses (the oldest forgotten first), so
a flood of made-up names cannot fill the memory. They live in the server process: a restart forgets them.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple


@dataclass
class _Failures:
    count: int = 0
    last: float = 0.0


class SignInThrottle:
    def __init__(self, free_failures: int = 3, address_free_failures: int = 10, max_wait_s: float = 300.0,
                 max_keys: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.free_failures = free_failures
        self.address_free_failures = address_free_failures
        self.max_wait_s = max_wait_s
        self.max_keys = max_keys
        self._clock = clock
        self._failures: "OrderedDict[Tuple[str, str], _Failures]" = OrderedDict()
        self._lock = threading.Lock()

    def _wait(self, failures: Optional[_Failures], free: int, now: float) -> float:
        if failures is None or failures.count < free:
            return 0.0
        delay = min(self.max_wait_s, 2.0 ** (failures.count - free))
        return max(0.0, failures.last + delay - now)

    @staticmethod
    def _keys(username: str, address: Optional[str]) -> List[Tuple[str, str]]:
        keys = [("user", username.lower())]
        if address is not None:
            keys.append(("address", address))
        return keys

    def wait_s(self, username: str, address: Optional[str]) -> float:
        """Seconds before ``username`` may try again from ``address`` (0: now)."""
        now = self._clock()
        with self._lock:
            user = self._wait(self._failures.get(("user", username.lower())), self.free_failures, now)
            if address is None:
                return user
            return max(user, self._wait(self._failures.get(("address", address)), self.address_free_failures, now))

    def failed(self, username: str, address: Optional[str]) -> None:
        now = self._clock()
        with self._lock:
            for key in self._keys(username, address):
                failures = self._failures.pop(key, None) or _Failures()
                failures.count += 1
                failures.last = now
                self._failures[key] = failures  # newest last
            while len(self._failures) > self.max_keys:
                self._failures.popitem(last=False)

    def succeeded(self, username: str, address: Optional[str]) -> None:
        with self._lock:
            for key in self._keys(username, address):
                self._failures.pop(key, None)
