"""The application layer: the `packwise` CLI, cluster submit/schedule/retry and the trigger watcher."""
