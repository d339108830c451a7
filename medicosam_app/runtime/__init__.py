"""Process-wide tuning a model server needs before it serves: how memory is allocated."""
