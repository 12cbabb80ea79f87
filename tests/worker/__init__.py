"""What runs inside a worker process and is not public: the watcher, delivery, switching."""
