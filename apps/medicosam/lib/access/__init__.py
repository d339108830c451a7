"""Sign-in, roles per route (the route table), the audit trail of requests, and what a request's code may know about its caller."""
