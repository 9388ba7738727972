"""Leader election among the daemons of one installation (docs/leader.md).

Several daemons (shards, replica pairs) share one PostgreSQL usage store; some work must run once per
shard (MQTT events and summaries) or once for the whole installation (month-to-date gauges, report
closing). The daemons elect, through that database's session-level advisory locks, one holder of
each role; one daemon alone (SQLite) holds every role without asking anybody.

- `config.LeaderSettings`: the `leader:` section (timings, automatic report closing).
- `election`: the roles, the election store port (`ElectionStore`, `ElectionSession`), the
  always-leader store, and `Elector`, the long-lived loop that holds roles and says when they change.
- `postgres.PostgresElection`: the advisory-lock implementation.
"""
