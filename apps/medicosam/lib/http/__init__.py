"""What a hospital service needs around the endpoints: errors as HTTP, bounded bodies, cancellation, health, metrics, shutdown, the thread pool."""
