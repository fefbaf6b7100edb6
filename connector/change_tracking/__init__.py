"""Change tracking for runs that remember (a state section in the recipe): which mode to crawl
in, which entities changed, what to remove, and the checkpoint to save. It observes the stream of
crawled records; it never reads MLflow itself."""
