"""User environments the benchmarks train on: each module registers its envs with gymnasium on import, so
``env_id=benchmarks.user_envs.<module>:<EnvId>`` works from the repository root."""
