"""The polling engine: when and how targets are polled; knows profiles, not what rows mean."""
